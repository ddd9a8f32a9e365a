/**
 * The Socket.IO wire contract, typed once and shared by the server, the SDK and the tests. Client events derive
 * from their schemas (lib/protocol/schemas.ts); each event's ack result is declared here, and the server's
 * `handle()` makes a handler that returns another shape a compile error.
 */
import type { ErrorBody } from './errors.js';
import type { ClientEventName, ClientEventRequest } from './schemas.js';
import type { PublicConversation, PublicFriendRequest, PublicMessage, PublicUser } from './shapes.js';

/** Every acknowledgement: `{ok: true, ...T}` or `{ok: false, error}`. */
export type Ack<T extends object = object> = ({ ok: true } & T) | { ok: false; error: ErrorBody };
export type AckCallback<T extends object = object> = (response: Ack<T>) => void;

/** What each client event's ack carries on success (besides `ok: true`). */
export interface ClientEventResults {
  'conversation:subscribe': { messages: PublicMessage[]; hasMore: boolean; lastSeq: number; version: number };
  'conversation:unsubscribe': Record<string, never>;
  'message:send': { message: PublicMessage; duplicate: boolean };
  'message:edit': { message: PublicMessage };
  'message:delete': Record<string, never>;
  'reaction:add': Record<string, never>;
  'reaction:remove': Record<string, never>;
  'conversation:read': Record<string, never>;
  typing: Record<string, never>;
  'auth:refresh': Record<string, never>;
}

export type ClientEventResult<E extends ClientEventName> = ClientEventResults[E];

export type ClientToServerEvents = {
  [E in ClientEventName]: (request: ClientEventRequest<E>, ack: AckCallback<ClientEventResults[E]>) => void;
};

export type SubscribeRequest = ClientEventRequest<'conversation:subscribe'>;
export type SubscribeResult = ClientEventResults['conversation:subscribe'];
export type SendRequest = ClientEventRequest<'message:send'>;
export type SendResult = ClientEventResults['message:send'];

export interface ConversationRef {
  conversationId: string;
}
export interface TypingEvent {
  conversationId: string;
  userId: string;
}
export interface ReadEvent {
  conversationId: string;
  userId: string;
  seq: number;
}

/**
 * Why a session ended: `logged_out` (POST /auth/logout or /auth/logout-all), `revoked` (DELETE
 * /auth/sessions/:id from another device), `password_changed`, `expired` (unused for REFRESH_TTL_DAYS),
 * `reused` (a used refresh token came back: the session is presumed stolen), `deleted` (the account).
 */
export type SessionEndReason =
  'logged_out' | 'revoked' | 'password_changed' | 'expired' | 'reused' | 'deleted';

export interface SessionEndedEvent {
  reason: SessionEndReason;
}

export interface ServerToClientEvents {
  'message:new': (message: PublicMessage) => void;
  /** A message's current state after an edit, a delete or a reaction change. */
  'message:updated': (message: PublicMessage) => void;
  typing: (event: TypingEvent) => void;
  'conversation:read': (event: ReadEvent) => void;
  'friend:request': (request: PublicFriendRequest) => void;
  'friend:accepted': (request: PublicFriendRequest) => void;
  'conversation:added': (conversation: PublicConversation) => void;
  /** A conversation I take part in was renamed or its participants changed (an addition to the contract). */
  'conversation:updated': (conversation: PublicConversation) => void;
  'conversation:removed': (event: ConversationRef) => void;
  'user:updated': (user: PublicUser) => void;
  /** Sent to a session's sockets just before the server disconnects them because the session ended. */
  'session:ended': (event: SessionEndedEvent) => void;
}
