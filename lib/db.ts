import knexFactory, { type Knex } from 'knex';
import pg from 'pg';
import type { ConnectionOptions } from 'node:tls';
import type { DatabaseConfig } from './config.js';
import type { Logger } from './logger.js';
import { createLogThrottle } from './serverErrorLog.js';
import { DatabaseStalledError, StallWatch } from './dbStall.js';

export type { Knex };

const INT8_OID = 20;

/** bigint (int8) columns such as seq come back as numbers; they stay far below 2^53. */
const pgTypes: Knex.PgCustomTypesConfig = {
  getTypeParser(oid: number, format: string): (value: string) => unknown {
    if (oid === INT8_OID && format !== 'binary') return (value: string) => Number(value);
    return pg.types.getTypeParser(oid, format === 'binary' ? 'binary' : 'text') as (value: string) => unknown;
  },
};

export interface ServerInfo {
  host: string;
  database: string;
  version: string;
  /** Whether this connection is encrypted (pg_stat_ssl), so the startup log shows TLS as it really is. */
  ssl: boolean;
}

export interface Database {
  readonly knex: Knex;
  /** Connections of Knex's pool for the statements Knex cannot send (named ones), observed like Knex's queries. */
  readonly connections: PoolConnections;
  /**
   * Resolves true when PostgreSQL answers `SELECT 1` within `timeoutMs`, false at once while it is stalled. Never
   * rejects.
   */
  ping(timeoutMs: number): Promise<boolean>;
  /** True while PostgreSQL is taken as not answering (lib/dbStall.ts): every new statement fails at once. */
  readonly stalled: boolean;
  /** Connects and reports the server; rejects with the driver error when it cannot. */
  verify(): Promise<ServerInfo>;
  close(): Promise<void>;
}

/** TLS options for node-postgres from the configured mode. */
export function sslOptions(config: DatabaseConfig): false | ConnectionOptions {
  switch (config.sslMode) {
    case 'disable':
      return false;
    case 'require':
      // Encrypted, but the certificate is not checked: libpq's "require".
      return { rejectUnauthorized: false };
    case 'verify-full':
      return { rejectUnauthorized: true, ca: config.sslCa };
  }
}

/** PostgreSQL's port when DATABASE_URL names none. */
export const DEFAULT_PG_PORT = 5432;

/**
 * The host DATABASE_URL names, as the driver takes it: an IPv6 address without the URL's brackets, a host of
 * `%2Fvar%2Frun%2Fpostgresql` decoded to a Unix socket's folder (as in node-postgres's own parsing).
 */
export function databaseHost(url: URL): string {
  return decodeURIComponent(url.hostname).replace(/^\[(.*)\]$/, '$1');
}

/** `host:port` of DATABASE_URL, for what the node tells (an IPv6 address in brackets, as URLs write it). */
export function databaseWhere(url: URL): string {
  const host = databaseHost(url);
  return `${host.includes(':') ? `[${host}]` : host}:${url.port || DEFAULT_PG_PORT}`;
}

/**
 * The pg connection settings shared by the app pool and the Socket.IO adapter's pool.
 *
 * Each part of DATABASE_URL is handed over on its own, decoded, rather than the URL as a connection string:
 * node-postgres decodes a connection string's database name with `decodeURI`, which leaves `%2F`, `%40`, `%23` and
 * the like encoded (another database than the one named), and takes a missing port from `PGPORT` (another server
 * than the 5432 the URL means and the startup line names). Its query parameters (sslmode, ssl, options...), which
 * node-postgres would let override the node's settings, are not read (the configuration refuses them at startup).
 */
export function pgConnectionConfig(config: DatabaseConfig, applicationName: string): pg.ClientConfig {
  const url = new URL(config.url);
  const decoded = (part: string) => (part === '' ? undefined : decodeURIComponent(part));
  return {
    host: databaseHost(url),
    port: url.port === '' ? DEFAULT_PG_PORT : Number(url.port),
    user: decoded(url.username),
    password: decoded(url.password),
    database: decodeURIComponent(url.pathname.slice(1)),
    ssl: sslOptions(config),
    connectionTimeoutMillis: config.connectTimeoutMs,
    statement_timeout: config.statementTimeoutMs,
    query_timeout: config.statementTimeoutMs + 1000,
    application_name: applicationName,
    keepAlive: true,
  };
}

/** Observers of the query stream, for metrics; they receive no SQL and no values. */
export interface DatabaseHooks {
  /** A query took SLOW_QUERY_MS or longer. */
  onSlowQuery?: () => void;
  /** A query failed (the driver error, for its code). */
  onQueryError?: (err: unknown) => void;
}

/**
 * True when PostgreSQL itself sent this error (an ErrorResponse: a constraint, a cancelled statement, too many
 * clients), so the server answered; not for a socket error or a timeout of the client's.
 */
function answeredByServer(err: unknown): boolean {
  return err instanceof pg.DatabaseError;
}

/** Where the statements' log lines and metrics go: Knex's queries and the named statements alike. */
export interface QueryObserver {
  logger: Logger;
  /** SLOW_QUERY_MS; 0 turns the slow-query report off. */
  slowQueryMs: number;
  hooks: DatabaseHooks;
  /** Counts every statement in flight and every answer, to tell a stalled server from a slow one. */
  watch: StallWatch;
}

/**
 * A statement that finished: slow ones at warn, by their SQL text (Knex's, with placeholders) or their name (a
 * named statement). Values are never logged.
 */
function finished(
  observer: QueryObserver,
  ms: number,
  failed: boolean,
  what: { sql: string } | { statement: string },
) {
  if (observer.slowQueryMs > 0 && ms >= observer.slowQueryMs) {
    observer.logger.warn({ ...what, ms: Math.round(ms), failed }, 'slow query');
    observer.hooks.onSlowQuery?.();
  }
}

/** Wires query logging: every statement at debug, slow ones at warn. Values are never logged. */
function attachQueryLogging(knex: Knex, observer: QueryObserver): void {
  // The stall watch's record of each query in flight (by Knex's query uid) also times it for the slow-query log.
  knex.on('query', (q: { __knexQueryUid?: string; sql: string }) => {
    if (q.__knexQueryUid) observer.watch.begin(q.__knexQueryUid);
    observer.logger.debug({ sql: q.sql }, 'query');
  });
  const finish = (q: { __knexQueryUid?: string; sql: string }, failed: boolean, answered: boolean) => {
    if (!q.__knexQueryUid) return;
    const ms = observer.watch.end(q.__knexQueryUid, answered);
    if (ms !== undefined) finished(observer, ms, failed, { sql: q.sql });
  };
  knex.on('query-response', (_r: unknown, q: { __knexQueryUid?: string; sql: string }) =>
    finish(q, false, true),
  );
  knex.on('query-error', (err: unknown, q: { __knexQueryUid?: string; sql: string }) => {
    observer.hooks.onQueryError?.(err);
    finish(q, true, answeredByServer(err));
  });
}

/** An acquire of Knex's tarn pool, still waiting or done. */
interface PendingAcquire {
  readonly promise: Promise<pg.ClientBase>;
  /** Takes it out of the pool's queue (rejecting it with `aborted`); nothing once it has a connection. */
  abort(): void;
  /** Takes it out of the pool's queue, rejecting it with `err`; nothing once it has a connection. */
  reject(err: Error): void;
}

/** The part of Knex's tarn pool (`knex.client.pool`, typed `any` by Knex; undefined after destroy) used here. */
interface TarnPool {
  acquire(): PendingAcquire;
  /** The callers waiting for a connection, oldest first. */
  readonly pendingAcquires: readonly PendingAcquire[];
  release(connection: pg.ClientBase): boolean;
  on(event: 'acquireFail', listener: (eventId: number, err: unknown) => void): void;
  on(
    event: 'createSuccess' | 'destroySuccess',
    listener: (eventId: number, connection: pg.Client) => void,
  ): void;
  on(event: 'destroyFail', listener: (eventId: number, connection: pg.Client, err: unknown) => void): void;
}

function tarnPool(knex: Knex): TarnPool | undefined {
  return (knex.client as { pool?: TarnPool }).pool;
}

/**
 * How much sooner than DB_ACQUIRE_TIMEOUT_MS a ping takes its acquire back: a probe is no caller that was refused a
 * connection, so it must not end as one of the pool's timeouts (a POOL_TIMEOUT in xfchat_db_errors_total).
 */
const PING_ACQUIRE_MARGIN_MS = 50;

/** Knex's own line for every failed acquire: the error's stack inside the message, once per caller. */
const KNEX_ACQUIRE_ERROR = 'Acquire connection error:';

/** An acquire taken back (a ping that gave up, the pool closing): no failure of the database, nothing to log. */
function isAborted(err: unknown): boolean {
  return err instanceof Error && err.message === 'aborted';
}

/**
 * The key a failed acquire is logged under: `POOL_TIMEOUT` (as in `xfchat_db_errors_total`) when it waited
 * DB_ACQUIRE_TIMEOUT_MS, the driver's code (`ECONNREFUSED`, a SQLSTATE) when connecting failed, else its class.
 */
function acquireFailureCode(err: unknown): string {
  if (err instanceof Error && err.constructor.name === 'TimeoutError') return 'POOL_TIMEOUT';
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  if (typeof code === 'string' && /^[A-Z0-9_]{1,32}$/i.test(code)) return code;
  return err instanceof Error ? err.constructor.name.slice(0, 64) : 'other';
}

/** The `application_name` of the connections of a node's Knex pool (`pg_stat_activity`). */
export const POOL_APPLICATION_NAME = 'xfchat';

/** The `application_name` of the connection that checks whether a silent PostgreSQL answers at all. */
export const PROBE_APPLICATION_NAME = 'xfchat-probe';

/** How long that check may take, connecting and `SELECT 1` each. */
const PROBE_TIMEOUT_MS = 2000;

/**
 * Whether PostgreSQL answers a connection of its own (not the pool's, whose connections may all be waiting on the
 * silent server): connect and `SELECT 1` within PROBE_TIMEOUT_MS each. An error PostgreSQL sends (too many
 * clients, a refused login) is an answer: the server is there. Never rejects.
 */
async function probeDatabase(config: DatabaseConfig, logger: Logger): Promise<boolean> {
  const client = new pg.Client({
    ...pgConnectionConfig(config, PROBE_APPLICATION_NAME),
    connectionTimeoutMillis: PROBE_TIMEOUT_MS,
    query_timeout: PROBE_TIMEOUT_MS,
  });
  client.on('error', (err) => logger.debug({ err }, 'database probe connection error'));
  let answers: boolean;
  try {
    await client.connect();
    await client.query('SELECT 1');
    answers = true;
  } catch (err) {
    answers = answeredByServer(err);
    logger.debug({ err, answers }, 'database probe failed');
  }
  if (answers) {
    // Not awaited: a server that stops again right now must not hold up the next check.
    client.end().catch((err: unknown) => logger.debug({ err }, 'closing the database probe failed'));
  } else {
    // A graceful end waits for a server that does not answer: drop the socket instead.
    client.connection.stream.destroy();
  }
  return answers;
}

/** Builds the Knex instance and its pool. Nothing connects until the first query. */
export function createDatabase(config: DatabaseConfig, logger: Logger, hooks: DatabaseHooks = {}): Database {
  const knex = knexFactory({
    client: 'pg',
    connection: {
      ...(pgConnectionConfig(config, POOL_APPLICATION_NAME) as Knex.PgConnectionConfig),
      types: pgTypes,
    },
    pool: { min: 0, max: config.poolMax, idleTimeoutMillis: 30_000 },
    acquireConnectionTimeout: config.acquireTimeoutMs,
    // Knex otherwise writes its own warnings ("Connection Error: ...") to the console, outside the JSON log.
    log: {
      warn: (message: string) => {
        // Logged from the pool instead (below): once per code every 10 s, the error under `err`.
        if (message.startsWith(KNEX_ACQUIRE_ERROR)) return;
        logger.warn({ source: 'knex' }, message);
      },
      error: (message: string) => logger.error({ source: 'knex' }, message),
      deprecate: (method: string, alternative: string) =>
        logger.warn({ source: 'knex' }, `${method} is deprecated, use ${alternative}`),
      debug: (message: string) => logger.debug({ source: 'knex' }, message),
    },
  });
  // Every connection the pool holds, so that a stalled database's can be dropped (their statements fail at once).
  const pooled = new Set<pg.Client>();
  const pool = tarnPool(knex);
  pool?.on('createSuccess', (_eventId, connection) => pooled.add(connection));
  pool?.on('destroySuccess', (_eventId, connection) => pooled.delete(connection));
  pool?.on('destroyFail', (_eventId, connection) => pooled.delete(connection));
  const watch = new StallWatch({
    stallMs: config.stallTimeoutMs,
    probe: () => probeDatabase(config, logger),
    onStall: ({ silentMs, waiting }) => {
      // The callers still waiting for a connection get none from this server: answered now, not at the acquire
      // timeout. First, so that the connections dropped below are not handed to them.
      const queued = pool ? [...pool.pendingAcquires] : [];
      for (const pending of queued) pending.reject(new DatabaseStalledError());
      const dropped = pooled.size;
      for (const connection of pooled) connection.connection.stream.destroy();
      logger.error(
        { silentMs, waiting, queued: queued.length, dropped },
        'PostgreSQL has stopped answering: dropped the pool connections, answering DB_UNAVAILABLE at once until it answers again',
      );
    },
    onRecover: ({ stalledMs }) => {
      logger.info({ stalledMs }, 'PostgreSQL answers again');
    },
  });
  watch.start();
  const observer: QueryObserver = { logger, slowQueryMs: config.slowQueryMs, hooks, watch };
  attachQueryLogging(knex, observer);
  // While stalled, a statement fails before it takes a connection (Knex's queries and transactions, and the named
  // statements, all acquire through this method).
  const knexPool = knex.client as KnexPool;
  const acquireConnection = knexPool.acquireConnection.bind(knexPool);
  knexPool.acquireConnection = () =>
    watch.stalled ? Promise.reject(new DatabaseStalledError()) : acquireConnection();
  // A failed acquire: every caller that wanted a connection while PostgreSQL is away or the pool is exhausted gets
  // one, all with the same cause. One line per code every 10 s (the first at once, with its cause), with
  // `suppressed`, like the answers of an outage (lib/serverErrorLog.ts).
  const acquireLog = createLogThrottle();
  pool?.on('acquireFail', (_eventId, err) => {
    // Taken back, or refused by a stall (which has its own line): no failure to log per caller.
    if (isAborted(err) || err instanceof DatabaseStalledError) return;
    const code = acquireFailureCode(err);
    const suppressed = acquireLog.take(code);
    if (suppressed !== undefined)
      logger.warn({ source: 'knex', err, code, suppressed }, 'acquiring a database connection failed');
  });
  let closing: Promise<void> | undefined;

  return {
    knex,
    connections: knexConnections(knex, observer),
    get stalled() {
      return watch.stalled;
    },
    async ping(timeoutMs) {
      if (watch.stalled) return false;
      // On a connection of the pool, taken from tarn itself rather than through Knex, so that a ping that gives
      // up takes its acquire out of the queue: with the pool exhausted, each probe otherwise left one waiting
      // (xfchat_db_pool_waiting) until DB_ACQUIRE_TIMEOUT_MS, then a POOL_TIMEOUT. It gives up at `timeoutMs`, or
      // just before the pool's own acquire timeout if that is sooner.
      const pool = tarnPool(knex);
      if (!pool) return false;
      const waitMs = Math.min(timeoutMs, Math.max(1, config.acquireTimeoutMs - PING_ACQUIRE_MARGIN_MS));
      let timer: NodeJS.Timeout | undefined;
      const acquire = pool.acquire();
      const query = acquire.promise
        .then(async (connection) => {
          try {
            await connection.query('SELECT 1');
            watch.answered();
            return true;
          } catch (err) {
            hooks.onQueryError?.(err);
            if (answeredByServer(err)) watch.answered();
            throw err;
          } finally {
            pool.release(connection);
          }
        })
        .catch((err: unknown) => {
          if (!isAborted(err)) logger.debug({ err }, 'database ping failed');
          return false;
        });
      const timeout = new Promise<boolean>((resolve) => {
        timer = setTimeout(() => {
          // Still waiting for a connection: leave the queue. A query already running ends within its timeout
          // (query_timeout) and hands its connection back.
          acquire.abort();
          resolve(false);
        }, waitMs);
      });
      try {
        return await Promise.race([query, timeout]);
      } finally {
        clearTimeout(timer);
      }
    },
    async verify() {
      // A client of its own, not the pool: startup must report the driver's real reason (refused, timed out,
      // bad password, TLS) within the connect timeout, not the pool's acquire timeout.
      // Its statements too: a server that takes the login and then answers nothing (a pooler in front of a
      // PostgreSQL that is down) is reported within the connect timeout, not the statement timeout.
      const client = new pg.Client({
        ...pgConnectionConfig(config, 'xfchat-startup'),
        query_timeout: config.connectTimeoutMs,
      });
      client.on('error', (err) => logger.debug({ err }, 'startup check connection error'));
      const url = new URL(config.url);
      try {
        await client.connect();
        await client.query('SELECT 1');
        const result = await client.query<{ version: string; db: string; ssl: boolean | null }>(
          `SELECT current_setting($1) AS version, current_database() AS db,
            (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()) AS ssl`,
          ['server_version'],
        );
        const row = result.rows[0];
        return {
          host: databaseWhere(url),
          database: row?.db ?? '?',
          version: row?.version ?? '?',
          ssl: row?.ssl === true,
        };
      } finally {
        await client
          .end()
          .catch((err: unknown) => logger.debug({ err }, 'closing the startup check connection failed'));
      }
    },
    close() {
      watch.stop();
      closing ??= knex.destroy();
      return closing;
    },
  };
}

/**
 * Connections of Knex's own pool (its acquire timeout and its types apply), for statements that Knex cannot send:
 * named (prepared) ones, such as the writer's calls and the notifications to other nodes.
 */
export interface PoolConnections {
  acquire(): Promise<pg.ClientBase>;
  release(client: pg.ClientBase): void;
  /**
   * An acquired connection as named statements are sent on it: each one logged at debug by its name, and its
   * failure or slow run reported like a Knex query's (the log, `xfchat_db_errors_total`,
   * `xfchat_db_slow_queries_total`), since Knex's query events never see it.
   */
  observed(client: pg.ClientBase): StatementTarget;
}

/** What a named statement is sent on (a pool connection, observed). */
export interface StatementTarget {
  query<R extends pg.QueryResultRow>(statement: pg.QueryConfig): Promise<pg.QueryResult<R>>;
}

/** The part of Knex's client (typed `any` by Knex) that hands out and takes back pool connections. */
interface KnexPool {
  acquireConnection(): Promise<pg.ClientBase>;
  releaseConnection(connection: pg.ClientBase): Promise<void>;
}

function knexConnections(knex: Knex, observer: QueryObserver): PoolConnections {
  const pool = knex.client as KnexPool;
  return {
    acquire: () => pool.acquireConnection(),
    release: (client) => {
      // Knex's release never rejects (it only hands the connection back to its pool).
      void pool.releaseConnection(client);
    },
    observed(client) {
      return {
        async query<R extends pg.QueryResultRow>(statement: pg.QueryConfig): Promise<pg.QueryResult<R>> {
          const name = statement.name ?? 'unnamed';
          observer.logger.debug({ statement: name }, 'query');
          // The statement's config names it for the stall watch, which also times it: callers build one per call
          // (writer, control bus).
          observer.watch.begin(statement);
          try {
            const result = await client.query<R>(statement);
            finished(observer, observer.watch.end(statement, true) ?? 0, false, { statement: name });
            return result;
          } catch (err) {
            const ms = observer.watch.end(statement, answeredByServer(err)) ?? 0;
            observer.hooks.onQueryError?.(err);
            finished(observer, ms, true, { statement: name });
            throw err;
          }
        },
      };
    },
  };
}
