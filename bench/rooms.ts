/** XFChat's room names (lib/realtime/notifier.ts), so the bench's own servers route the same way. */
export const userRoom = (userId: string): string => `user:${userId}`;
export const conversationRoom = (conversationId: string): string => `conversation:${conversationId}`;
