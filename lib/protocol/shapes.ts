/**
 * The JSON shapes of the contract, as the server sends them and the SDK receives them. Types only.
 */

/** A user as anyone may see it: never a password hash or a token version. */
export interface PublicUser {
  id: string;
  username: string;
  displayName: string;
  createdAt: string;
}

export type ParticipantRole = 'owner' | 'member';

export interface PublicParticipant {
  userId: string;
  username: string;
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
