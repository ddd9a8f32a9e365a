import type { ControlBus } from '../cluster/controlBus.js';
import type { Notifier, PassedOver } from '../notifier.js';
import type { Logger } from '../logger.js';
import type {
  PublicConversation,
  PublicFriendRequest,
  PublicMessage,
  SessionEndReason,
} from '../protocol/index.js';
import type { ConversationEvents } from './conversationEvents.js';
import type { AppServer, AppSocket } from './io.js';

/**
 * The one place that knows rooms and server event names. Each user's sockets are in the user's room, and a
 * socket subscribed to a conversation is in the conversation's room; `io.to(room)` goes through the postgres
 * adapter to every node.
 */
const userRoom = (userId: string): string => `user:${userId}`;
const conversationRoom = (conversationId: string): string => `conversation:${conversationId}`;
const sessionRoom = (sessionId: string): string => `session:${sessionId}`;
/**
 * Rooms named by one `user:updated` broadcast: a room is 44 bytes of the adapter's JSON, so 150 of them (6600 bytes)
 * and a User (a display name of 64 code points, 256 bytes at most) stay under NOTIFY's 8000 bytes.
 */
const USER_ROOMS_PER_BROADCAST = 150;

/**
 * Every socket of a node that follows the conversations' removals and changes on the control bus
 * (lib/realtime/conversationEvents.ts). Nodes of 0.2.0 do not, and hear of them only through the adapter: the
 * node that made the change sends its events to the sockets outside this room, which are theirs (a rolling upgrade
 * from 0.2.0).
 */
export const FOLLOWS_REMOVALS_ROOM = 'xfchat:follows-removals';

/**
 * Puts a new socket in its user's room and its session's room, so events for the user reach it on any node and
 * ending the session reaches it too.
 */
export function joinUserRoom(socket: AppSocket): Promise<void> | void {
  return socket.join([
    userRoom(socket.data.userId),
    sessionRoom(socket.data.sessionId),
    FOLLOWS_REMOVALS_ROOM,
  ]);
}

/**
 * The socket belongs to another session of its user from now on (`auth:refresh` with that session's token): that
 * session's end ends it, the previous session's no longer does. `confirm` looks once more that the new session is
 * live, while the socket is in both sessions' rooms: an end of either meanwhile reaches it. Only once `confirm`
 * has answered does the socket change sessions; if it throws (the database failed it, or the new session has
 * ended), the socket leaves the new session's room again and stays the previous session's, as if it had never
 * asked: an error answer changes nothing.
 */
export async function moveToSession(
  socket: AppSocket,
  sessionId: string,
  confirm: () => Promise<void>,
): Promise<void> {
  await socket.join(sessionRoom(sessionId));
  try {
    await confirm();
  } catch (err) {
    // Unless a move of its own to the same session has completed meanwhile.
    if (socket.data.sessionId !== sessionId) await socket.leave(sessionRoom(sessionId));
    throw err;
  }
  const previous = socket.data.sessionId;
  socket.data.sessionId = sessionId;
  // Again: a move to the same session that failed while this one looked has taken the socket out of the room.
  await socket.join(sessionRoom(sessionId));
  if (previous !== sessionId) await socket.leave(sessionRoom(previous));
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

/** Tells the sockets of `room` on this node why, then disconnects them. */
function endLocally(io: AppServer, room: string, reason: SessionEndReason): void {
  io.local.to(room).emit('session:ended', { reason });
  io.local.in(room).disconnectSockets(true);
}

/** This node's sockets as the database must still allow them: each one's session, and its subscriptions. */
export interface LocalSockets {
  /** Each session with a socket here, and its user. */
  sessions: Map<string, string>;
  /** Each (user, conversation) that a socket here is subscribed to, once. */
  subscriptions: Array<{ userId: string; conversationId: string }>;
}

const CONVERSATION_ROOM_PREFIX = conversationRoom('');

export function localSockets(io: AppServer): LocalSockets {
  const sessions = new Map<string, string>();
  const seen = new Set<string>();
  const subscriptions: LocalSockets['subscriptions'] = [];
  for (const socket of io.of('/').sockets.values()) {
    const { userId, sessionId } = socket.data;
    sessions.set(sessionId, userId);
    for (const room of socket.rooms) {
      if (!room.startsWith(CONVERSATION_ROOM_PREFIX)) continue;
      const key = `${userId} ${room}`;
      if (seen.has(key)) continue;
      seen.add(key);
      subscriptions.push({ userId, conversationId: room.slice(CONVERSATION_ROOM_PREFIX.length) });
    }
  }
  return { sessions, subscriptions };
}

/** Ends a session's sockets on this node only: the other nodes check their own (lib/realtime/revalidation.ts). */
export function endSessionLocally(io: AppServer, sessionId: string, reason: SessionEndReason): void {
  endLocally(io, sessionRoom(sessionId), reason);
}

/** Takes the user's sockets on this node out of the conversation's room, and tells them. */
export function removeLocally(io: AppServer, userId: string, conversationId: string): void {
  unsubscribeLocally(io, userId, conversationId);
  io.local.to(userRoom(userId)).emit('conversation:removed', { conversationId });
}

/** Takes the user's sockets on this node out of the conversation's room, telling them nothing. */
export function unsubscribeLocally(io: AppServer, userId: string, conversationId: string): void {
  io.local.in(userRoom(userId)).socketsLeave(conversationRoom(conversationId));
}

/**
 * Notices told again to one user's sockets on this node only, found in the database after the node's adapter did
 * not listen for a while (lib/realtime/revalidation.ts): the other nodes heard the originals.
 */
export const localNotices = {
  conversationAdded(io: AppServer, userId: string, conversation: PublicConversation): void {
    io.local.to(userRoom(userId)).emit('conversation:added', conversation);
  },
  friendRequest(io: AppServer, request: PublicFriendRequest): void {
    io.local.to(userRoom(request.to.id)).emit('friend:request', request);
  },
  friendAccepted(io: AppServer, request: PublicFriendRequest): void {
    io.local.to(userRoom(request.from.id)).emit('friend:accepted', request);
  },
};

/**
 * A group's detail events, told in the order of its changes (lib/realtime/conversationEvents.ts), to this node's
 * sockets; with `olderNodes`, by the node that made the change, to 0.2.0 nodes' sockets too (through the adapter).
 */
export const detailNotices = {
  /** `event` to the sockets of `userIds`: one broadcast for all of them, however big the group. */
  tell(
    io: AppServer,
    event: 'conversation:added' | 'conversation:updated',
    userIds: readonly string[],
    conversation: PublicConversation,
    olderNodes: boolean,
  ): void {
    const rooms = userIds.map(userRoom);
    io.local.to(rooms).emit(event, conversation);
    if (olderNodes) io.to(rooms).except(FOLLOWS_REMOVALS_ROOM).emit(event, conversation);
  },
};

/** Between nodes only (through the postgres adapter), never to clients. Committed messages are not here: they
 * travel with their commit (lib/messaging/fanout.ts). */
export interface InterServerEvents {
  /** A session or user room whose sockets must hear why, then be disconnected. */
  'sockets:end': (event: { room: string; reason: SessionEndReason }) => void;
}

/**
 * The control bus's channel of session ends. The adapter's broadcast of a session's end and the announcements of
 * messages travel on different connections: a socket of the ended session on another node could still receive, for
 * as long as the broadcast took, messages committed after the request that ended it was answered. On the control
 * bus, which a node hears on the connection that carries the announcements, PostgreSQL delivers the end before any
 * of them (commit order). The adapter's broadcast goes too, for nodes of 0.2.0.
 */
export const SESSION_ENDS_CHANNEL = 'xfchat_session_ends';

const SESSION_END_REASONS: ReadonlySet<string> = new Set<SessionEndReason>([
  'logged_out',
  'revoked',
  'password_changed',
  'expired',
  'reused',
  'deleted',
]);

/** A session end as the control bus carries it: the room of the session or of the user, and why. */
function isSessionEnd(value: unknown): value is { room: string; reason: SessionEndReason } {
  if (typeof value !== 'object' || value === null) return false;
  const { room, reason } = value as Record<string, unknown>;
  return (
    typeof room === 'string' &&
    /^(session|user):[0-9a-f-]{36}$/.test(room) &&
    typeof reason === 'string' &&
    SESSION_END_REASONS.has(reason)
  );
}

/** Ends this node's sockets of each session end the control bus carries (from any node, this one included). */
export function listenForSessionEnds(
  io: AppServer,
  controlBus: Pick<ControlBus, 'listen'>,
  logger: Logger,
): Promise<void> {
  return controlBus.listen(SESSION_ENDS_CHANNEL, (payload) => {
    if (isSessionEnd(payload)) endLocally(io, payload.room, payload.reason);
    else
      logger.warn({ channel: SESSION_ENDS_CHANNEL }, 'control bus: a session end that does not read as one');
  });
}

/**
 * The Socket.IO notifier. Events for users and conversations go through the postgres adapter to every node.
 * Committed messages are delivered to this node's subscribers only: the messaging core announces them to the
 * other nodes inside the commit (lib/messaging/fanout.ts), which deliver them through their own notifier.
 *
 * A group's changes are told by every node from the control bus (`conversationEvents`,
 * lib/realtime/conversationEvents.ts): the other nodes' removals of participants too, with the removal's commit, so
 * that the user's sockets there leave the conversation's room, and hear `conversation:removed`, before that node
 * hears of any message committed after the removal. The node that removed them does it itself
 * (`conversationRemoved`), and so does a node whose write found the removal first (`keepParticipantsOnly`); both
 * tell `conversationEvents`, which then does not tell them again.
 */
export function createNotifier(
  io: AppServer,
  logger: Logger,
  conversationEvents: Pick<ConversationEvents, 'removedHere'>,
  controlBus: Pick<ControlBus, 'notify'>,
): Notifier {
  const rooms = io.of('/').adapter.rooms;

  /** Per conversation, the users being removed through this node, and the conversation's version at the removal. */
  const leaving = new Map<string, Map<string, number>>();
  const stopLeaving = (userId: string, conversationId: string) => {
    const users = leaving.get(conversationId);
    users?.delete(userId);
    if (users?.size === 0) leaving.delete(conversationId);
  };

  /**
   * A message's subscribers on this node, but those its event passes over (each socket is a room of its id) and
   * the users being removed as of an older version.
   */
  const subscribersHere = (message: PublicMessage, except: PassedOver | undefined) => {
    const room = io.local.to(conversationRoom(message.conversationId));
    const readers = except?.get(message);
    const removing = leaving.get(message.conversationId);
    if (readers === undefined && removing === undefined) return room;
    const left = readers === undefined ? [] : [...readers];
    for (const [userId, version] of removing ?? []) {
      if (message.version > version) left.push(userRoom(userId));
    }
    return left.length === 0 ? room : room.except(left);
  };

  // The reason and the disconnect travel as ONE cross-node event and run in order on each node: as two
  // adapter broadcasts they could arrive the other way round, and the client would never hear why.
  const endEverywhere = (room: string, reason: SessionEndReason): Promise<void> => {
    endLocally(io, room, reason);
    try {
      io.serverSideEmit('sockets:end', { room, reason });
    } catch (err) {
      // The tokens are revoked already: other nodes refuse this session's next request or handshake, and end
      // its sockets at their next check against the database (lib/realtime/revalidation.ts).
      logger.error({ err, room }, 'cross-node session end failed');
    }
    // Ahead of every message committed once it is sent (SESSION_ENDS_CHANNEL). Failed, the same as above.
    return controlBus
      .notify(SESSION_ENDS_CHANNEL, { room, reason })
      .catch((err: unknown) =>
        logger.error({ err, room }, 'cross-node session end on the control bus failed'),
      );
  };
  io.on('sockets:end', ({ room, reason }) => endLocally(io, room, reason));

  return {
    friendRequest(request) {
      io.to(userRoom(request.to.id)).emit('friend:request', request);
    },
    friendAccepted(request) {
      io.to(userRoom(request.from.id)).emit('friend:accepted', request);
    },
    participantLeaving(userId, conversationId, version) {
      const users = leaving.get(conversationId) ?? new Map<string, number>();
      leaving.set(conversationId, users.set(userId, version));
      return () => stopLeaving(userId, conversationId);
    },
    keepParticipantsOnly(conversationId, participants, removals) {
      const sockets = rooms.get(conversationRoom(conversationId));
      if (sockets === undefined) return;
      const removed = new Set<string>();
      for (const socketId of sockets) {
        const userId = io.of('/').sockets.get(socketId)?.data.userId;
        if (userId !== undefined && !participants.has(userId)) removed.add(userId);
      }
      for (const userId of removed) {
        removeLocally(io, userId, conversationId);
        conversationEvents.removedHere(userId, conversationId, removals);
      }
    },
    conversationRemoved(userId, conversationId, removals) {
      // A write of this node that committed after the removal may have told them first (keepParticipantsOnly):
      // then their sockets left the room already, and hear it once.
      if (conversationEvents.removedHere(userId, conversationId, removals))
        removeLocally(io, userId, conversationId);
      else unsubscribeLocally(io, userId, conversationId);
      stopLeaving(userId, conversationId);
      // To nodes of 0.2.0, as that release did it; the other nodes of this release follow the control bus.
      const onOlderNodes = io.in(userRoom(userId)).except(FOLLOWS_REMOVALS_ROOM);
      onOlderNodes.socketsLeave(conversationRoom(conversationId));
      onOlderNodes.emit('conversation:removed', { conversationId });
    },
    messagesCommitted(messages, except) {
      for (const message of messages) subscribersHere(message, except).emit('message:new', message);
    },
    messagesUpdated(messages, except) {
      for (const message of messages) subscribersHere(message, except).emit('message:updated', message);
    },
    hasSubscribersHere(conversationId) {
      return rooms.has(conversationRoom(conversationId));
    },
    conversationsWithSubscribersHere() {
      const prefix = conversationRoom('');
      const ids: string[] = [];
      for (const room of rooms.keys()) if (room.startsWith(prefix)) ids.push(room.slice(prefix.length));
      return ids;
    },
    readMoved(event) {
      io.to(conversationRoom(event.conversationId)).emit('conversation:read', event);
    },
    typing(event) {
      // socket.to(room) would exclude only the emitting socket; the typist's other devices are excluded too.
      io.to(conversationRoom(event.conversationId)).except(userRoom(event.userId)).emit('typing', event);
    },
    userUpdated(audience, user) {
      // In broadcasts of USER_ROOMS_PER_BROADCAST rooms: each goes to the other nodes in a NOTIFY of its own. One
      // naming every room of a big audience went through the adapter's attachments table, which a receiving node
      // reads before it delivers: a rename after it, in a NOTIFY, could be delivered first and then undone.
      const rooms = [...new Set([...audience, user.id])].map(userRoom);
      for (let i = 0; i < rooms.length; i += USER_ROOMS_PER_BROADCAST) {
        io.to(rooms.slice(i, i + USER_ROOMS_PER_BROADCAST)).emit('user:updated', user);
      }
    },
    disconnectSession(sessionId, reason) {
      return endEverywhere(sessionRoom(sessionId), reason);
    },
    disconnectUser(userId, reason) {
      return endEverywhere(userRoom(userId), reason);
    },
  };
}
