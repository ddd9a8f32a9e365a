/**
 * The JSON shapes of the contract, as the server sends them and the SDK receives them. Types only.
 */

/**
 * A user as anyone may see it: never a password hash. A deleted account keeps its id and shows as
 * `{username: null, displayName: "Deleted user"}`.
 */
export interface PublicUser {
  id: string;
  username: string | null;
  displayName: string;
  createdAt: string;
}

/**
 * A User whose account exists, so its username is there: what signup, login, `GET /auth/me`, a profile change, an
 * exact lookup and a search answer (none of them ever gives a deleted account).
 */
export interface AccountUser extends PublicUser {
  username: string;
}

export type ParticipantRole = 'owner' | 'member';

export interface PublicParticipant {
  userId: string;
  /** null for a deleted account (its displayName is then "Deleted user"). */
  username: string | null;
  displayName: string;
  role: ParticipantRole;
  lastReadSeq: number;
  joinedAt: string;
}

export type ConversationType = 'direct' | 'group';

export interface PublicConversation {
  id: string;
  type: ConversationType;
  title: string | null;
  createdBy: string | null;
  createdAt: string;
  lastSeq: number;
  /** The conversation's change counter: see PublicMessage.version. */
  version: number;
  participants: PublicParticipant[];
}

/** A conversation in `GET /conversations`: with its last message and my unread count. */
export interface ConversationListItem extends PublicConversation {
  lastMessage: PublicMessage | null;
  unreadCount: number;
}

/** Who reacted with one emoji, in the order they did. */
export interface Reaction {
  emoji: string;
  userIds: string[];
}

export interface PublicMessage {
  id: string;
  conversationId: string;
  seq: number;
  senderId: string | null;
  clientMsgId: string;
  /** Empty once the message is deleted. */
  body: string;
  createdAt: string;
  /** An earlier seq of the same conversation this message answers, or null. */
  replyToSeq: number | null;
  editedAt: string | null;
  deletedAt: string | null;
  /** By first reaction; none once the message is deleted. */
  reactions: Reaction[];
  /** The conversation's version at this message's latest change (its creation, an edit, a delete, a reaction). */
  version: number;
}

export type FriendRequestStatus = 'pending' | 'accepted' | 'declined' | 'cancelled';

export interface PublicFriendRequest {
  id: string;
  from: PublicUser;
  to: PublicUser;
  status: FriendRequestStatus;
  createdAt: string;
  respondedAt: string | null;
}

export interface PublicFriend {
  user: PublicUser;
  since: string;
}

/** One signed-in device: `GET /auth/sessions`. */
export interface PublicSession {
  id: string;
  createdAt: string;
  /** The last login or token refresh of this session. */
  lastUsedAt: string;
  /** The User-Agent header of the login or signup, if any. */
  userAgent: string | null;
  /** True for the session of the token that asked. */
  current: boolean;
}

/** What signup and login answer. */
export interface AuthTokens {
  /** The short-lived access token (a JWT): `Authorization: Bearer` and the Socket.IO handshake. */
  token: string;
  /** Opaque, single-use: `POST /auth/refresh` trades it for a new pair. */
  refreshToken: string;
  /** Seconds until `token` expires. */
  expiresIn: number;
}

export interface AuthResponse extends AuthTokens {
  user: PublicUser;
}
