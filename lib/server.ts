import { createServer, type Server as HttpServer, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { createAuthService } from './auth/accounts.js';
import { adoptJwtSecret, checkJwtSecret, JWT_SECRET_MISMATCH } from './auth/secretFingerprint.js';
import { createPasswordHasher, type GateLimits } from './auth/passwords.js';
import { createControlBus } from './cluster/controlBus.js';
import { describeConfig, writeConcurrency, type Config } from './config.js';
import { createConversationService } from './conversations/conversationService.js';
import { createDatabase, type Database } from './db.js';
import { createDatabaseClock, databaseTimeMs, startClockSync } from './cluster/clock.js';
import { continueWithinBodyLimit, createApp } from './http/app.js';
import {
  answerMalformedRequests,
  requestTimeoutResponse,
  serveDeclinedUpgrades,
} from './http/malformedRequests.js';
import { createLogger, type Logger } from './logger.js';
import { createMessaging } from './messaging/index.js';
import { createMetrics } from './metrics.js';
import { createMigrator } from './migrations.js';
import { registerAuthHandlers } from './realtime/authHandlers.js';
import { registerConversationHandlers } from './realtime/handlers.js';
import { createServerErrorLog } from './serverErrorLog.js';
import { requestIdOf } from './http/requestId.js';
import { STRICT_TRANSPORT_SECURITY } from './http/transportSecurity.js';
import { createRealtime } from './realtime/io.js';
import { createNotifier, listenForSessionEnds } from './realtime/notifier.js';
import type { Services } from './services.js';
import { createSocialService } from './social/service.js';
import {
  explainConnectError,
  explainListenError,
  isPortFree,
  explainMigrationError,
  portInUse,
  StartupError,
} from './startupErrors.js';
import { analyzeTablesWithoutStatistics, autovacuumGaps } from './statistics.js';

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
  /** How many password checks run and wait at once, instead of PASSWORD_CHECKS (tests make it small). */
  passwordChecks?: GateLimits;
  /**
   * `npm run dev` only: when the database's cluster uses another JWT_SECRET, adopt this one (ending every session)
   * instead of refusing to start.
   */
  adoptJwtSecret?: boolean;
  /** Aborted when a stop is asked for while starting (SIGTERM): a wait for the migration lock gives up. */
  stop?: AbortSignal;
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
 * The logger of the `[STARTUP]` lines, which the process contract prints on every successful start: at `info` even
 * when LOG_LEVEL is `warn` or above (an operator who keeps only warnings still sees the configuration, the database,
 * the migrations and the listening address once); nothing at `silent`.
 */
function startupLogger(logger: Logger): Logger {
  if (logger.isLevelEnabled('info') || logger.level === 'silent') return logger;
  return logger.child({}, { level: 'info' });
}

/** Connects and verifies with the driver's real reason on failure, migrates, and reports each step. */
async function prepareDatabase(
  db: Database,
  config: Readonly<Config>,
  logger: Logger,
  stop: AbortSignal | undefined,
): Promise<void> {
  let info;
  try {
    info = await db.verify();
  } catch (err) {
    throw explainConnectError(err, config.database);
  }
  const { sslMode, poolMax } = config.database;
  logger.info(
    { ...info, status: 'connected', sslMode, poolMax },
    `[STARTUP] database ${info.host}/${info.database}: connected, PostgreSQL ${info.version}, TLS ${info.ssl ? 'on' : 'off'} (DB_SSL_MODE=${sslMode}), pool max ${poolMax}`,
  );

  let migrated;
  try {
    migrated = await createMigrator(db.knex, config.database, logger).latest(stop);
  } catch (err) {
    throw err instanceof StartupError ? err : explainMigrationError(err);
  }
  const { applied } = migrated.status;
  const latest = applied.at(-1) ?? '(none)';
  logger.info(
    { applied: applied.length, newlyApplied: migrated.newlyApplied, latest },
    `[STARTUP] migrations: ${applied.length} applied (${migrated.newlyApplied.length} new), latest ${latest}`,
  );

  await checkMaintenance(db, logger);

  // Accounts, not the rows of deleted ones (kept for their messages' sender).
  const [{ count }] = (await db.knex('users').whereNull('deleted_at').count({ count: '*' })) as [
    { count: string | number },
  ];
  logger.info({ users: Number(count) }, `[STARTUP] users: ${Number(count)}`);
}

/**
 * The database's upkeep, reported and never a reason to refuse to start (only plan quality and bloat are at
 * stake): analyzes the never-analyzed tables (lib/statistics.ts) and warns where autovacuum does not run.
 */
async function checkMaintenance(db: Database, logger: Logger): Promise<void> {
  try {
    const analyzed = await analyzeTablesWithoutStatistics(db.knex);
    if (analyzed.length > 0) {
      logger.info(
        { analyzed },
        `[STARTUP] planner statistics: analyzed ${analyzed.join(', ')} (never analyzed, as after a restore)`,
      );
    }
  } catch (err) {
    // Only the plans' quality is at stake, and autovacuum analyzes them later: not a reason to refuse to start.
    logger.warn({ err }, '[STARTUP] planner statistics: ANALYZE of never analyzed tables failed');
  }
  try {
    const { serverOff, tablesOff } = await autovacuumGaps(db.knex);
    const consequence =
      'dead rows pile up in messages and conversations, planner statistics go stale, and PostgreSQL will in the end refuse writes to prevent transaction ID wraparound';
    if (serverOff) {
      logger.warn(
        { autovacuum: 'off' },
        `[STARTUP] autovacuum is off on this PostgreSQL server (autovacuum or track_counts): ${consequence}; turn both on`,
      );
    }
    if (tablesOff.length > 0) {
      logger.warn(
        { autovacuumOff: tablesOff },
        `[STARTUP] autovacuum is off for ${tablesOff.join(', ')} (autovacuum_enabled = false): ${consequence}; ALTER TABLE ... RESET (autovacuum_enabled)`,
      );
    }
  } catch (err) {
    logger.warn({ err }, '[STARTUP] autovacuum: reading its settings failed');
  }
}

/**
 * Refuses to start with a JWT_SECRET other than the one the database's cluster uses (lib/auth/secretFingerprint.ts):
 * such a node would refuse every other node's tokens and refresh tokens while answering `/readyz`. Never logs the
 * secret or its fingerprint.
 */
async function checkClusterSecret(
  db: Database,
  config: Readonly<Config>,
  logger: Logger,
  adopt: boolean,
): Promise<void> {
  const { jwtSecret } = config.auth;
  const outcome = await checkJwtSecret(db.knex, jwtSecret);
  if (outcome === 'differs') {
    if (!adopt) throw new StartupError(JWT_SECRET_MISMATCH);
    const { endedSessions } = await adoptJwtSecret(db.knex, jwtSecret);
    logger.warn(
      { jwtSecretCheck: 'adopted', endedSessions },
      `[STARTUP] JWT_SECRET: this database's cluster used another one; adopted this one (development), ${endedSessions} sessions ended`,
    );
    return;
  }
  logger.info(
    { jwtSecretCheck: outcome },
    outcome === 'stored'
      ? "[STARTUP] JWT_SECRET: recorded as this database's cluster secret (the first node to start with it)"
      : "[STARTUP] JWT_SECRET: the same as the cluster's",
  );
}

/** How long a connection that has sent nothing yet may stay open once the node stops (see doClose). */
const UNUSED_GRACE_MS = 1000;

/**
 * How long, once the drain is done, a WebSocket has for its last acks and its closing handshake before its connection
 * is ended (see doClose); less if the shutdown's deadline comes sooner.
 */
const CLOSING_HANDSHAKE_MS = 1000;

/**
 * Node times out a request's head only from its first byte: a connection that never sends one would stay open for
 * ever, and enough of them take every file descriptor of the process. So an HTTP connection silent both ways for
 * `ms` is closed, unless a request has arrived whole and is being answered (the database's own timeouts bound
 * that), and so is one whose answer, written whole, the client has taken nothing of for `ms`. A long-poll hears a
 * ping every 25 s; a WebSocket leaves this timeout at its upgrade and keeps Socket.IO's heartbeat.
 */
export function timeOutSilentConnections(server: HttpServer, ms: number): void {
  server.timeout = ms;
  // Between requests too (Node's default: 5 s), and announced in `Keep-Alive: timeout=`: a load balancer that reuses
  // an upstream connection for up to its own idle timeout (60 s for nginx's and AWS's) would otherwise send a request
  // down one this node closed a moment before, and answer that client 502.
  server.keepAliveTimeout = ms;
  // A request trickled in (its head, an upgrade's head, or its body a byte at a time) is not silent: it must
  // arrive whole within the same time, or it is answered 408 and closed (Node's defaults: 60 s for the head,
  // 300 s for the whole request).
  server.headersTimeout = ms;
  server.requestTimeout = ms;
  // With a listener on the response, Node leaves the socket to it; without one (no request yet, or none in
  // progress) it destroys the socket. A request whose body stopped coming is answered 408 before its connection
  // closes, unless an answer has begun.
  server.on('request', (req, res) => {
    res.on('timeout', (socket: Socket) => {
      // An answer written whole of which the client has taken nothing for `ms`: it stopped reading, and the
      // answer's bytes would stay in the node until it closes. (engine.io answers its long-polls outside this
      // listener; with no listener on their responses, Node destroys such a connection itself.)
      if (res.writableEnded && !res.writableFinished) {
        socket.destroy();
        return;
      }
      if (req.complete) return;
      if (res.headersSent || !socket.writable) socket.destroy();
      else socket.end(requestTimeoutResponse(requestIdOf(req, res)), () => socket.destroy());
    });
  });
}

/**
 * The whole startup sequence, in order: check that HOST is an address of this machine, connect and verify, migrate
 * (mandatory), report, check JWT_SECRET against the cluster's, then bind.
 * Any failure before binding rejects with a StartupError whose message is one actionable line, after closing
 * whatever had been opened, newest first.
 */
export async function startServer(
  config: Readonly<Config>,
  options: StartOptions = {},
): Promise<RunningServer> {
  const logger = options.logger ?? createLogger(config.logLevel);
  const startupLog = startupLogger(logger);
  startupLog.info({ config: describeConfig(config) }, '[STARTUP] configuration');
  const writes = writeConcurrency(config);
  if (writes !== config.limits.writeConcurrency) {
    startupLog.warn(
      { DB_WRITE_CONCURRENCY: config.limits.writeConcurrency, DB_POOL_SIZE: config.database.poolMax, writes },
      `[STARTUP] DB_WRITE_CONCURRENCY is above DB_POOL_SIZE - 1: ${writes} message-writing transactions at once`,
    );
  }
  // HOST and PORT before anything is connected or migrated: a HOST that is not an address of this machine, or a
  // PORT that is taken (the old release still running on the host), stops the node here, not after it migrated the
  // database. PORT itself is bound last: a conflict that comes in between is told then.
  const portFree = await isPortFree(config.port, config.host).catch(async (err: unknown) => {
    throw await explainListenError(err, config.port, config.host);
  });
  if (!portFree) throw await portInUse(config.port, config.host);
  // First, with nothing open yet: the dummy hash that makes a login of an unknown user cost one argon2 run.
  const passwords = await createPasswordHasher(logger, options.passwordChecks);
  const metrics = createMetrics();

  const opened: Array<{ close(): Promise<void> | void }> = [];
  const own = <T extends { close(): Promise<void> | void }>(resource: T): T => {
    opened.push(resource);
    return resource;
  };
  try {
    const db = own(
      createDatabase(config.database, logger, {
        onSlowQuery: () => metrics.slowQueries.inc(),
        onQueryError: (err) => metrics.recordDbError(err),
      }),
    );
    metrics.observePool(db.knex);
    metrics.sample('dbStalled', () => (db.stalled ? 1 : 0));
    await prepareDatabase(db, config, startupLog, options.stop);
    await checkClusterSecret(db, config, startupLog, options.adoptJwtSecret === true);
    const clock = createDatabaseClock(() => databaseTimeMs(db.knex));
    const clockSync = own(await startClockSync(clock, logger));
    metrics.sample('clockOffset', () => clock.offsetMs / 1000);

    // Bound once messaging exists: a reconnect may have missed membership events (removals of participants among
    // them) and message announcements.
    let onControlBusReconnect = (): void => undefined;
    let onControlBusLost = (): void => undefined;
    const controlBus = own(
      await createControlBus(
        config.database,
        db.connections,
        logger,
        () => onControlBusReconnect(),
        () => onControlBusLost(),
      ).catch((err: unknown) => {
        throw explainConnectError(err, config.database);
      }),
    );
    const realtime = own(createRealtime({ config, db, logger, clock, controlBus }));
    metrics.sample('connectedSockets', () => realtime.io.of('/').sockets.size);
    const { conversationEvents } = realtime;
    const notify = createNotifier(realtime.io, logger, conversationEvents, controlBus);
    await listenForSessionEnds(realtime.io, controlBus, logger);
    const messaging = own(
      await createMessaging({
        config,
        db,
        notify,
        logger,
        controlBus,
        metrics,
        nodeCount: () => realtime.io.of('/').adapter.serverCount(),
      }),
    );
    onControlBusReconnect = () => {
      messaging.resync();
      realtime.controlBusListening();
    };
    onControlBusLost = () => {
      messaging.listenLost();
      realtime.controlBusLost();
    };
    const conversations = createConversationService({
      knex: db.knex,
      notify,
      logger,
      controlBus,
      invalidateLocal: (conversationId) => messaging.membership.invalidate(conversationId),
      creationsPerMinute: config.limits.conversationsPerMinute,
      turnTimeoutMs: config.database.acquireTimeoutMs,
    });
    const auth = own(
      createAuthService({ config, knex: db.knex, notify, logger, passwords, conversations, clock }),
    );
    const services: Services = {
      config,
      logger,
      db,
      clock,
      io: realtime.io,
      notify,
      conversationEvents,
      controlBus,
      metrics,
      auth,
      social: createSocialService({ knex: db.knex, notify, controlBus }),
      conversations,
      messages: messaging.service,
      messaging,
    };
    // The node's own lines for the server errors its sockets are answered with (not another node's in this process).
    const socketServerErrors = createServerErrorLog();
    registerConversationHandlers(services, realtime.backpressure, socketServerErrors);
    registerAuthHandlers(services, socketServerErrors);
    let closing: Promise<void> | undefined;
    const stopping = () => closing !== undefined;
    // Node enforces headersTimeout and requestTimeout at this interval (30 s by default).
    const httpServer = createServer(
      {
        connectionsCheckingInterval: Math.min(5000, Math.ceil(config.limits.httpIdleTimeoutMs / 2)),
        // A request without Host is refused by the app (lib/http/app.ts), in the envelope, not by Node's bare 400.
        requireHostHeader: false,
      },
      createApp(services, stopping),
    );
    // Once the node stops, every answer closes its connection: a client that keeps one connection busy (a load
    // balancer's health checks, a proxy's upstream keep-alive) would otherwise hold the node open for ever. The
    // answers not yet begun when it stops are told too.
    const answering = new Set<ServerResponse>();
    const closeAfterAnswer = (res: ServerResponse) => {
      if (!res.headersSent) res.setHeader('connection', 'close');
    };
    // Node's closeIdleConnections() leaves a connection that has not sent a request yet (it counts as one whose
    // request is on its way), so close() would wait for it until HTTP_IDLE_TIMEOUT_MS, past the shutdown's
    // deadline. Such connections are common: a browser's preconnect, or the one fetch() opens in place of a
    // connection it dropped (its unread answer was garbage-collected), which it never uses. Kept here, with when
    // each was accepted, until its first request.
    const unused = new Map<Socket, number>();
    // Every connection, with the answer it is on (if any): once the drain is done, one whose request has not come
    // whole is closed (below).
    const connections = new Map<Socket, ServerResponse | undefined>();
    // WebSockets, taken over by Socket.IO, which closes them itself (after writing out their last acks); at a stop,
    // those whose closing handshake has not ended CLOSING_HANDSHAKE_MS after the drain are ended here (doClose).
    const upgraded = new WeakSet<Socket>();
    httpServer.prependListener('upgrade', (_req, socket: Socket) => upgraded.add(socket));
    httpServer.on('connection', (socket: Socket) => {
      unused.set(socket, performance.now());
      connections.set(socket, undefined);
      socket.once('close', () => {
        unused.delete(socket);
        connections.delete(socket);
      });
    });
    httpServer.prependListener('request', (req, res) => {
      unused.delete(req.socket);
      if (connections.has(req.socket)) {
        connections.set(req.socket, res);
        res.once('close', () => {
          if (connections.get(req.socket) === res) connections.set(req.socket, undefined);
        });
      }
      if (stopping()) {
        closeAfterAnswer(res);
        return;
      }
      answering.add(res);
      res.once('close', () => answering.delete(res));
    });
    timeOutSilentConnections(httpServer, config.limits.httpIdleTimeoutMs);
    continueWithinBodyLimit(httpServer);
    realtime.attach(httpServer);
    // After the engine attached, so that it sees the engine's own requests too (their answers, pipelined ahead of
    // bytes the parser refuses, go out before the connection closes).
    answerMalformedRequests(httpServer, logger);
    // The engine takes the WebSocket upgrades under its path (with the trailing slash its own check adds:
    // `/socket.io/`); any other is served as a plain HTTP/1.1 request.
    serveDeclinedUpgrades(httpServer, `${realtime.io.path()}/`);
    // Also on what the Socket.IO engine answers itself (its polling requests, its refusals), which Express's helmet
    // never sees. Added after the engine attached: it wraps the 'request' listeners there before, and calls them only
    // for requests outside its path.
    httpServer.prependListener('request', (req, res) => {
      res.setHeader('Strict-Transport-Security', STRICT_TRANSPORT_SECURITY);
      requestIdOf(req, res);
    });
    const address = await listen(httpServer, config.port, config.host).catch(async (err: unknown) => {
      throw await explainListenError(err, config.port, config.host);
    });

    const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    const url = `http://${shownHost === '0.0.0.0' ? '127.0.0.1' : shownHost}:${address.port}`;
    startupLog.info({ address: address.address, port: address.port }, `[STARTUP] listening on ${url}`);

    async function doClose(): Promise<void> {
      logger.info('shutting down');
      // The drain, then a statement already running in PostgreSQL: past both, nothing is waited for any more (a
      // database that does not answer would hold each step below for a statement timeout of its own).
      const deadline = performance.now() + config.shutdownTimeoutMs + config.database.statementTimeoutMs;
      const bounded = (step: Promise<void>, what: string): Promise<void> => {
        let passed = false;
        // Settled late, it is no one's to await: a failure then is only logged (before, the race rejects with it).
        step.catch((err: unknown) => {
          if (passed) logger.warn({ err, what }, 'a shutdown step failed after the deadline');
        });
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<void>((resolve) => {
          timer = setTimeout(
            () => {
              passed = true;
              logger.warn({ what }, 'shutdown: not waiting any longer for a step past the deadline');
              resolve();
            },
            Math.max(0, deadline - performance.now()),
          );
        });
        return Promise.race([step, late]).finally(() => clearTimeout(timer));
      };
      // Stop accepting first; requests in flight finish, and their connections close after their answers.
      for (const res of answering) closeAfterAnswer(res);
      answering.clear();
      const httpClosed = new Promise<void>((resolve) => httpServer.close(() => resolve()));
      // A connection silent since it was accepted is closed too, once it has been open for UNUSED_GRACE_MS: one
      // accepted a moment before the stop may have its first request on the way, and that request is answered.
      const closeIdle = () => {
        httpServer.closeIdleConnections();
        const acceptedBefore = performance.now() - UNUSED_GRACE_MS;
        for (const [socket, acceptedAt] of unused) {
          if (acceptedAt <= acceptedBefore && socket.bytesRead === 0) socket.destroy();
        }
      };
      // Once the drain is done, a connection whose request has not come whole is closed as well: Node counts it as
      // a request in progress, which would hold close() until the deadline (one TCP connection and one byte made
      // every stop take SHUTDOWN_TIMEOUT_MS + DB_STATEMENT_TIMEOUT_MS). A head cut short is closed at once; a body,
      // once it has received nothing since the sweep before (one still arriving is answered, as is a request that
      // came whole). An upgraded connection is left to Socket.IO, which writes out its last acks, for
      // CLOSING_HANDSHAKE_MS (below).
      let drained = false;
      const progress = new Map<Socket, number>();
      const closeUnfinished = () => {
        for (const [socket, res] of connections) {
          if (res === undefined) {
            if (socket.bytesRead > 0 && !upgraded.has(socket)) socket.destroy();
            continue;
          }
          if (res.req.complete) continue;
          if (progress.get(socket) === socket.bytesRead) socket.destroy();
          else progress.set(socket, socket.bytesRead);
        }
      };
      // Socket.IO's close waits for each WebSocket's closing handshake, and a client whose network went silent (a
      // phone in a tunnel, a hung tab) never answers it: its connection would hold the stop for LINGER_MS
      // (transportEnd.ts). So once the drain is done, the WebSockets have CLOSING_HANDSHAKE_MS, or what is left
      // before the deadline if less, to hand their clients the last acks and close; then their connections end.
      let handshakesOver = false;
      let handshakeTimer: NodeJS.Timeout | undefined;
      const endUpgraded = () => {
        for (const socket of connections.keys()) if (upgraded.has(socket)) socket.destroy();
      };
      const sweep = () => {
        closeIdle();
        if (drained) closeUnfinished();
        if (handshakesOver) endUpgraded();
      };
      closeIdle();
      const idleSweep = setInterval(sweep, 250);
      try {
        // Every command already accepted into a mailbox is written and acked while its socket or request is open.
        // Past SHUTDOWN_TIMEOUT_MS, the writes running in PostgreSQL are waited for still (up to the deadline).
        await bounded(
          messaging.drain(config.shutdownTimeoutMs).then(() => undefined),
          'draining the mailboxes',
        );
        // Socket.IO's close waits for the HTTP server's.
        drained = true;
        sweep();
        // Not a sweep: closeUnfinished() counts a body stalled from one sweep to the next, a quarter second apart.
        handshakeTimer = setTimeout(
          () => {
            handshakesOver = true;
            endUpgraded();
          },
          Math.min(CLOSING_HANDSHAKE_MS, Math.max(0, deadline - performance.now())),
        );
        await bounded(realtime.close(), 'closing Socket.IO and its adapter');
        await bounded(httpClosed, 'closing HTTP connections');
      } finally {
        clearInterval(idleSweep);
        clearTimeout(handshakeTimer);
        endUpgraded();
        httpServer.closeAllConnections();
      }
      await bounded(messaging.close(), 'closing the messaging core');
      auth.close();
      clockSync.close();
      await bounded(controlBus.close(), 'closing the control bus');
      await bounded(conversationEvents.close(), "telling the conversations' last events");
      await bounded(db.close(), 'closing the database pool');
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
  } catch (err) {
    for (const resource of opened.reverse()) {
      try {
        await resource.close();
      } catch (closeError) {
        logger.warn({ err: closeError }, 'closing after a failed startup failed');
      }
    }
    metrics.close();
    throw err;
  }
}
