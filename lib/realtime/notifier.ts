import type { Logger } from '../logger.js';
import type { Notifier } from '../notifier.js';
import type { PublicMessage } from '../protocol/index.js';
import type { AppServer, AppSocket } from './io.js';

/**
 * The one place that knows rooms and server event names. Each user's sockets are in the user's room, and a
 * socket subscribed to a conversation is in the conversation's room; `io.to(room)` goes through the postgres
 * adapter to every node.
 */
const userRoom = (userId: string): string => `user:${userId}`;
const conversationRoom = (conversationId: string): string => `conversation:${conversationId}`;

/** Puts a new socket in its user's room, so events for the user reach it on any node. */
export function joinUserRoom(socket: AppSocket): Promise<void> | void {
  return socket.join(userRoom(socket.data.userId));
}

/** From now on the socket gets the conversation's `message:new`, `typing` and `conversation:read`. */
export function subscribeSocket(socket: AppSocket, conversationId: string): Promise<void> | void {
  return socket.join(conversationRoom(conversationId));
}

/** Whether the socket gets the conversation's events now. */
export function isSubscribed(socket: AppSocket, conversationId: string): boolean {
  return socket.rooms.has(conversationRoom(conversationId));
}

export function unsubscribeSocket(socket: AppSocket, conversationId: string): Promise<void> | void {
  return socket.leave(conversationRoom(conversationId));
}

/** Between nodes only (through the postgres adapter), never to clients. */
export interface InterServerEvents {
  /** Messages committed on one node, for the other nodes' subscribers. */
  'messages:committed': (messages: PublicMessage[]) => void;
}

/**
 * The Socket.IO notifier.
 *
 * Messages: `io.to(room).emit()` through the postgres adapter waits for its own NOTIFY round trip before even
 * this node's sockets get the packet. Instead this node's sockets get each message at once, and every message
 * committed in the same tick goes to the other nodes as ONE server-side event. Per conversation the order is kept
 * on every node; across nodes the contract lets `message:new` arrive out of order (clients order by seq).
 */
export function createNotifier(io: AppServer, logger: Logger): Notifier {
  let outgoing: PublicMessage[] = [];

  const deliverLocally = (message: PublicMessage) =>
    io.local.to(conversationRoom(message.conversationId)).emit('message:new', message);

  const flush = () => {
    const messages = outgoing;
    outgoing = [];
    try {
      io.serverSideEmit('messages:committed', messages);
    } catch (err) {
      // Committed and acked already: other nodes' clients fill the gap with afterSeq when the next message comes.
      logger.error({ err, count: messages.length }, 'cross-node message fan-out failed');
    }
  };

  io.on('messages:committed', (messages) => {
    for (const message of messages) deliverLocally(message);
  });

  return {
    friendRequest(request) {
      io.to(userRoom(request.to.id)).emit('friend:request', request);
    },
    friendAccepted(request) {
      io.to(userRoom(request.from.id)).emit('friend:accepted', request);
    },
    conversationAdded(userIds, conversation) {
      if (userIds.length === 0) return;
      io.to(userIds.map(userRoom)).emit('conversation:added', conversation);
    },
    conversationUpdated(conversation) {
      io.to(conversation.participants.map((p) => userRoom(p.userId))).emit(
        'conversation:updated',
        conversation,
      );
    },
    conversationRemoved(userId, conversationId) {
      io.in(userRoom(userId)).socketsLeave(conversationRoom(conversationId));
      io.to(userRoom(userId)).emit('conversation:removed', { conversationId });
    },
    messagesCommitted(messages) {
      for (const message of messages) deliverLocally(message);
      if (outgoing.length === 0) queueMicrotask(flush);
      for (const message of messages) outgoing.push(message);
    },
    readMoved(event) {
      io.to(conversationRoom(event.conversationId)).emit('conversation:read', event);
    },
    typing(event) {
      // socket.to(room) would exclude only the emitting socket; the typist's other devices are excluded too.
      io.to(conversationRoom(event.conversationId)).except(userRoom(event.userId)).emit('typing', event);
    },
    userUpdated(audience, user) {
      io.to([...new Set([...audience, user.id])].map(userRoom)).emit('user:updated', user);
    },
    disconnectUser(userId) {
      io.in(userRoom(userId)).disconnectSockets(true);
    },
  };
}
