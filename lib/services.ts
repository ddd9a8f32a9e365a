import type { Config } from './config.js';
import type { Database } from './db.js';
import type { Logger } from './logger.js';

/**
 * Everything a request or socket handler may use, built once by startServer(). Handlers receive this;
 * nothing is reached through module-level state.
 */
export interface Services {
  readonly config: Readonly<Config>;
  readonly logger: Logger;
  readonly db: Database;
}
