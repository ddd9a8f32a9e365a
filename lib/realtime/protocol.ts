/**
 * The Socket.IO wire contract, typed once and shared by the server, the client SDK and the tests.
 * Plain types only: importing this file pulls in no server code.
 */
import type { ErrorBody } from '../errors.js';
import type { PublicConversation } from '../models/Conversation.js';
import type { PublicFriendRequest } from '../models/FriendRequest.js';
import type { PublicMessage } from '../models/Message.js';

export type { ErrorBody, PublicConversation, PublicFriendRequest, PublicMessage };

/** Every acknowledgement: `{ok: true, ...T}` or `{ok: false, error}`. */
export type Ack<T extends object = object> = ({ ok: true } & T) | { ok: false; error: ErrorBody };
export type AckCallback<T extends object = object> = (response: Ack<T>) => void;

export interface SubscribeRequest {
  conversationId: string;
  afterSeq?: number;
  limit?: number;
}
export interface SubscribeResult {
  messages: PublicMessage[];
  hasMore: boolean;
  lastSeq: number;
}
export interface SendRequest {
  conversationId: string;
  clientMsgId: string;
  body: string;
}
export interface SendResult {
  message: PublicMessage;
  duplicate: boolean;
}
export interface ConversationRef {
  conversationId: string;
}
export interface ReadRequest {
  conversationId: string;
  seq: number;
}

export interface ClientToServerEvents {
  'conversation:subscribe': (request: SubscribeRequest, ack: AckCallback<SubscribeResult>) => void;
  'conversation:unsubscribe': (request: ConversationRef, ack: AckCallback) => void;
  'message:send': (request: SendRequest, ack: AckCallback<SendResult>) => void;
  'conversation:read': (request: ReadRequest, ack: AckCallback) => void;
  typing: (request: ConversationRef, ack: AckCallback) => void;
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

export interface ServerToClientEvents {
  'message:new': (message: PublicMessage) => void;
  typing: (event: TypingEvent) => void;
  'conversation:read': (event: ReadEvent) => void;
  'friend:request': (request: PublicFriendRequest) => void;
  'friend:accepted': (request: PublicFriendRequest) => void;
  'conversation:added': (conversation: PublicConversation) => void;
  'conversation:removed': (event: ConversationRef) => void;
}

/** Between nodes only (through the postgres adapter), never to clients. */
export interface InterServerEvents {
  /** Messages committed on one node, for the other nodes' subscribers. */
  'messages:committed': (messages: PublicMessage[]) => void;
}

/** Room names: one per user (all of that user's sockets) and one per subscribed conversation. */
export const userRoom = (userId: string): string => `user:${userId}`;
export const conversationRoom = (conversationId: string): string => `conversation:${conversationId}`;
