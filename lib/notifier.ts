import type {
  PublicFriendRequest,
  PublicMessage,
  PublicUser,
  ReadEvent,
  SessionEndReason,
  TypingEvent,
} from './protocol/index.js';

/**
 * Per message, the subscribers (socket ids) its event leaves out: their own page gave it in this state or a newer
 * one (lib/messaging/fanout.ts).
 */
export type PassedOver = ReadonlyMap<PublicMessage, readonly string[]>;

/**
 * What the services tell connected clients, in domain terms. The services call it after their commit and know
 * nothing of Socket.IO, rooms or event names: lib/realtime/notifier.ts is the one implementation, and the one
 * file that maps each call to its event and its audience on every node. A group's renames and changes of
 * participants are not told through it: every node tells them from the control bus event the change sends inside
 * its transaction, in the order of the conversation's commits (lib/realtime/conversationEvents.ts).
 */
export interface Notifier {
  /** A new friend request, to its recipient. */
  friendRequest(request: PublicFriendRequest): void;
  /** A request was accepted, to its original sender. */
  friendAccepted(request: PublicFriendRequest): void;
  /**
   * `userId` left or was removed, the conversation's `removals`th removal: their sockets on THIS node leave the
   * conversation, then hear why, and hear nothing more of it until they are added again. The other nodes do the
   * same when they hear the removal's `membership.changed`, which the service sends inside the removal's
   * transaction (`ControlBus.publishWithin`), so that it comes before any message committed after it.
   */
  conversationRemoved(userId: string, conversationId: string, removals: number | undefined): void;
  /**
   * Called under the removal's lock on the conversation, before its commit: from now on this node gives the
   * user's sockets no state of the conversation's messages newer than `version` (the conversation's version at
   * the removal), even when it reads a later message's commit before the removal's; `conversationRemoved()`
   * ends it. Returns what undoes it if the removal does not commit.
   */
  participantLeaving(userId: string, conversationId: string, version: number): () => void;
  /**
   * A write found a removal of the conversation's participants that this node has not heard of yet
   * (lib/messaging/removals.ts): every socket on THIS node of a user not in `participants` (read after the
   * conversation's `removals`th removal) leaves the conversation's room and hears `conversation:removed`, once
   * (not again when that removal is heard).
   */
  keepParticipantsOnly(conversationId: string, participants: ReadonlySet<string>, removals: number): void;
  /**
   * Committed messages, in seq order per conversation, to the conversations' subscribers on THIS node (the
   * messaging core carries them to the other nodes itself, coupled to the commit: lib/messaging/fanout.ts).
   */
  messagesCommitted(messages: readonly PublicMessage[], except?: PassedOver): void;
  /** The current state of changed messages (edits, deletes, reactions), to this node's subscribers. */
  messagesUpdated(messages: readonly PublicMessage[], except?: PassedOver): void;
  /** Whether a socket of this node is subscribed to the conversation. */
  hasSubscribersHere(conversationId: string): boolean;
  /** The conversations a socket of this node is subscribed to. */
  conversationsWithSubscribersHere(): string[];
  /** A read marker moved, to the conversation's subscribers. */
  readMoved(event: ReadEvent): void;
  /** Someone is typing, to the conversation's subscribers except the typist's own sockets. */
  typing(event: TypingEvent): void;
  /** A user's profile changed, to `audience` (their friends and co-participants) and to the user. */
  userUpdated(audience: readonly string[], user: PublicUser): void;
  /**
   * Every socket of the session, on every node, hears `session:ended {reason}` and is disconnected (its tokens
   * were revoked). Resolves (never rejects) once every node will hear it before any message committed from then on:
   * answer the request that ended the session after it.
   */
  disconnectSession(sessionId: string, reason: SessionEndReason): Promise<void>;
  /** The same for every socket of the user, whatever its session. */
  disconnectUser(userId: string, reason: SessionEndReason): Promise<void>;
}
