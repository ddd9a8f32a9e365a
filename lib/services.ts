import type { Config } from './config.js';
import type { Database } from './db.js';
import type { Logger } from './logger.js';
import type { ControlBus } from './realtime/controlBus.js';
import type { AppServer } from './realtime/io.js';

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
}
