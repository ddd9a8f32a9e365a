import type { ConversationActor } from '../actors/ConversationActor.js';
import type { ConversationRegistry } from '../actors/ConversationRegistry.js';
import type { AuthService } from './auth/accounts.js';
import type { Config } from './config.js';
import type { ConversationService } from './conversations/conversationService.js';
import type { MessageService } from './conversations/messageService.js';
import type { Database } from './db.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';
import type { ControlBus } from './realtime/controlBus.js';
import type { AppServer } from './realtime/io.js';
import type { SocialService } from './social/service.js';

/**
 * Everything a request or socket handler may use, built once by startServer(). Handlers receive this;
 * nothing is reached through module-level state.
 */
export interface Services {
  readonly config: Readonly<Config>;
  readonly logger: Logger;
  readonly db: Database;
  /** Emit to `userRoom(id)` / `conversationRoom(id)`: the postgres adapter carries it to every node. */
  readonly io: AppServer;
  /** Cross-node control events (pg-listen). */
  readonly controlBus: ControlBus;
  /** Accounts: signup, credential checks, tokens, logout (revocation), and the signup/login rate limits. */
  readonly auth: AuthService;
  /** Friend requests, friendships and blocks; `areFriends` / `isBlocked` for NOT_FRIENDS and BLOCKED checks. */
  readonly social: SocialService;
  /** This node's Prometheus instruments, e.g. `metrics.messagesPersisted.inc(n)`, `metrics.observeBatch(size)`. */
  readonly metrics: Metrics;
  /** Conversations and participants: the REST rules, `conversation:added` / `conversation:removed`. */
  readonly conversations: ConversationService;
  /** Sends (through the conversation actors), history, read markers and typing, for REST and Socket.IO alike. */
  readonly messages: MessageService;
  /** This node's conversation actors (get-or-spawn, idle eviction, drain). */
  readonly conversationRegistry: ConversationRegistry<ConversationActor>;
}
