/**
 * The XFChat client SDK (`import { XFChatClient } from '@xfchat/client'`). Browser- and Node-safe: at run time it
 * imports `socket.io-client`, `valibot` and, of the server's sources, only lib/protocol (the error catalog and the
 * request schemas it checks realtime requests with; the rest is types).
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
  AccountUser,
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
