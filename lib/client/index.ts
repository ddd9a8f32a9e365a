/**
 * The XFChat client SDK (`import { XFChatClient } from '@xfchat/client'`). Browser- and Node-safe: it imports
 * only types from the server and `socket.io-client`.
 */
export {
  XFChatClient,
  type XFChatClientOptions,
  type XFChatClientEvents,
  type AuthResult,
  type SessionEnded,
  type SignupInput,
} from './client.js';
export type { ChangesPage, ConversationSummary, Friend, MessagePage, PutOptions } from './api.js';
export type { ChangeOptions, Changes } from './changes.js';
export type { ConnectionState } from './connection.js';
export {
  XFChatError,
  isRetryable,
  type XFChatErrorCode,
  type ServerErrorCode,
  type ClientErrorCode,
} from './errors.js';
export type { SendOptions } from './send.js';
export { newClientMsgId } from './retry.js';
export { tokenSubject } from './http.js';
export type { Subscription, SubscribeOptions } from './subscription.js';
export type {
  PublicConversation,
  PublicFriendRequest,
  PublicMessage,
  PublicParticipant,
  PublicSession,
  PublicUser,
  Reaction,
  ReadEvent,
  SessionEndReason,
  AuthTokens,
  TypingEvent,
} from '../protocol/index.js';
