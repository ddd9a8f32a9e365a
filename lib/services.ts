import type { AuthService } from './auth/accounts.js';
import type { Config } from './config.js';
import type { ConversationService } from './conversations/conversationService.js';
import type { Database } from './db.js';
import type { DatabaseClock } from './cluster/clock.js';
import type { Logger } from './logger.js';
import type { Messaging } from './messaging/index.js';
import type { MessageService } from './messaging/service.js';
import type { Metrics } from './metrics.js';
import type { Notifier } from './notifier.js';
import type { ControlBus } from './cluster/controlBus.js';
import type { ConversationEvents } from './realtime/conversationEvents.js';
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
  /** PostgreSQL's clock as this node estimates it: for times another node compares (lib/cluster/clock.ts). */
  readonly clock: DatabaseClock;
  /** The Socket.IO server, for the realtime layer only: services tell clients things through the notifier. */
  readonly io: AppServer;
  /** What the services tell connected clients (lib/realtime/notifier.ts). */
  readonly notify: Notifier;
  /** The groups' detail events, told from the control bus in commit order (shutdown and tests reach them here). */
  readonly conversationEvents: ConversationEvents;
  /** Cross-node control events (pg-listen). */
  readonly controlBus: ControlBus;
  /** Accounts: signup, credential checks, tokens, logout (revocation), and the signup/login rate limits. */
  readonly auth: AuthService;
  /** Friend requests, friendships and blocks. */
  readonly social: SocialService;
  /** This node's Prometheus instruments. */
  readonly metrics: Metrics;
  /** Conversations and participants: the REST rules, membership changes. */
  readonly conversations: ConversationService;
  /** Sends (through the conversation actors), history, read markers and typing, for REST and Socket.IO alike. */
  readonly messages: MessageService;
  /** The messaging core: actors, writer, membership cache (shutdown and tests reach them here). */
  readonly messaging: Messaging;
}
