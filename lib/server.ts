import { createServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describeConfig, type Config } from './config.js';
import { createDatabase, type Database } from './db.js';
import { createAuthService } from './auth/accounts.js';
import { createPasswordHasher } from './auth/passwords.js';
import { createApp } from './http/app.js';
import { createConversationService } from './conversations/conversationService.js';
import { createLogger, type Logger } from './logger.js';
import { createMessaging } from './messaging/index.js';
import { createMetrics } from './metrics.js';
import { createControlBus, type ControlBus } from './cluster/controlBus.js';
import { registerConversationHandlers } from './realtime/handlers.js';
import { createRealtime } from './realtime/io.js';
import { createNotifier } from './realtime/notifier.js';
import type { Services } from './services.js';
import { createSocialService } from './social/service.js';
import { explainConnectError, explainListenError, explainMigrationError } from './startupErrors.js';

export interface RunningServer {
  /** http://host:port as bound (the real port when PORT=0). */
  readonly url: string;
  readonly port: number;
  readonly services: Services;
  /** Graceful stop: stop accepting, drain, close sockets and the pool. Idempotent. */
  close(): Promise<void>;
}

export interface StartOptions {
  /** A logger to use instead of a new one at the configured level (tests pass a silent one). */
  logger?: Logger;
}

function listen(server: HttpServer, port: number, host: string): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}

/**
 * The whole startup sequence, in order: connect and verify, migrate (mandatory), report, then bind.
 * Any failure before binding rejects with a StartupError whose message is one actionable line.
 */
export async function startServer(
  config: Readonly<Config>,
  options: StartOptions = {},
): Promise<RunningServer> {
  const logger = options.logger ?? createLogger(config.logLevel);
  logger.info({ config: describeConfig(config) }, '[STARTUP] configuration');
  // First, with nothing open yet: the dummy hash that makes a login of an unknown user cost one argon2 run.
  const passwords = await createPasswordHasher(logger);

  const metrics = createMetrics();
  const db: Database = createDatabase(config.database, logger, {
    onSlowQuery: () => metrics.slowQueries.inc(),
    onQueryError: (err) => metrics.recordDbError(err),
  });
  metrics.observePool(db.knex);
  try {
    let info;
    try {
      info = await db.verify();
    } catch (err) {
      throw explainConnectError(err, config.database);
    }
    logger.info(
      { ...info, status: 'connected', sslMode: config.database.sslMode, poolMax: config.database.poolMax },
      `[STARTUP] database ${info.host}/${info.database}: connected, PostgreSQL ${info.version}, TLS ${info.ssl ? 'on' : 'off'} (DB_SSL_MODE=${config.database.sslMode}), pool max ${config.database.poolMax}`,
    );

    let migrated;
    try {
      migrated = await db.migrateLatest();
    } catch (err) {
      throw explainMigrationError(err);
    }
    const latest = migrated.status.applied.at(-1) ?? '(none)';
    logger.info(
      { applied: migrated.status.applied.length, newlyApplied: migrated.newlyApplied, latest },
      `[STARTUP] migrations: ${migrated.status.applied.length} applied (${migrated.newlyApplied.length} new), latest ${latest}`,
    );

    const [{ count }] = (await db.knex('users').count({ count: '*' })) as [{ count: string | number }];
    logger.info({ users: Number(count) }, `[STARTUP] users: ${Number(count)}`);
  } catch (err) {
    await db.close();
    throw err;
  }

  let onControlBusReconnect = (): void => undefined;
  let controlBus: ControlBus;
  try {
    // Bound once the conversation system exists: a reconnect may have missed membership events.
    controlBus = await createControlBus(config.database, logger, () => onControlBusReconnect());
  } catch (err) {
    await db.close();
    throw explainConnectError(err, config.database);
  }
  const realtime = createRealtime({ config, db, logger });
  metrics.sample('connectedSockets', () => realtime.io.of('/').sockets.size);
  const notify = createNotifier(realtime.io);
  const auth = createAuthService({ config, knex: db.knex, notify, logger, passwords });
  const social = createSocialService({ knex: db.knex, notify });
  const messaging = await createMessaging({
    config,
    db,
    notify,
    logger,
    controlBus,
    metrics,
    nodeCount: () => realtime.io.of('/').adapter.serverCount(),
  });
  onControlBusReconnect = () => messaging.membership.invalidateAll();
  const conversations = createConversationService({
    knex: db.knex,
    notify,
    logger,
    controlBus,
    invalidateLocal: (conversationId) => messaging.membership.invalidate(conversationId),
  });
  const services: Services = {
    config,
    logger,
    db,
    io: realtime.io,
    notify,
    controlBus,
    metrics,
    auth,
    social,
    conversations,
    messages: messaging.service,
    messaging,
  };
  registerConversationHandlers(services);
  const app = createApp(services);
  const httpServer = createServer(app);
  realtime.attach(httpServer);

  let address: AddressInfo;
  try {
    address = await listen(httpServer, config.port, config.host);
  } catch (err) {
    await messaging.close();
    await realtime.close();
    await controlBus.close();
    await db.close();
    throw await explainListenError(err, config.port, config.host);
  }
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${shownHost === '0.0.0.0' ? '127.0.0.1' : shownHost}:${address.port}`;
  logger.info({ address: address.address, port: address.port }, `[STARTUP] listening on ${url}`);

  let closing: Promise<void> | undefined;
  async function doClose(): Promise<void> {
    logger.info('shutting down');
    // Stop accepting first; requests in flight finish.
    const httpClosed = new Promise<void>((resolve) => httpServer.close(() => resolve()));
    httpServer.closeIdleConnections();
    // Every send already accepted into a mailbox is written and acked while its socket or request is still open.
    await messaging.drain(config.shutdownTimeoutMs);
    await realtime.close();
    await httpClosed;
    await messaging.close();
    await controlBus.close();
    await db.close();
    metrics.close();
    logger.info('shutdown complete');
  }

  return {
    url,
    port: address.port,
    services,
    close() {
      closing ??= doClose();
      return closing;
    },
  };
}
