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
  participants: PublicParticipant[];
}

/** A conversation in `GET /conversations`: with its last message and my unread count. */
export interface ConversationListItem extends PublicConversation {
  lastMessage: PublicMessage | null;
  unreadCount: number;
}

export interface PublicMessage {
  id: string;
  conversationId: string;
  seq: number;
  senderId: string | null;
  clientMsgId: string;
  body: string;
  createdAt: string;
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
