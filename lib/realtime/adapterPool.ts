import pg from 'pg';
import type { DatabaseConfig } from '../config.js';
import { pgConnectionConfig } from '../db.js';
import type { Logger } from '../logger.js';

/**
 * The small pool of @socket.io/postgres-adapter, apart from the app's so broadcasts never wait behind queries.
 *
 * The adapter keeps one client checked out for LISTEN and attaches no 'error' listener to it: without the guard
 * below, a PostgreSQL restart or pg_terminate_backend would throw an unhandled 'error' and crash the node. It
 * also never releases that client when its connection ends, which would leak a pool slot at every restart; the
 * 'end' guard releases it with an error so the pool discards it, and the adapter's own reconnect takes a new one.
 * Only that LISTEN client (the one with a 'notification' listener) is released here: a client of `pool.query` is
 * released by pg-pool itself when its query fails, and a second release would throw.
 *
 * Shutdown: the adapter's close() releases its LISTEN client only if it has finished connecting; a node closed
 * while that connection is being made (or re-made after a restart) would keep it checked out and `end()` would
 * wait forever. So `end()` discards the LISTEN client, also one handed out after `end()`, and `connect()` after
 * `end()` never settles instead of rejecting, because the adapter answers a rejection by retrying on a timer,
 * forever.
 */
/**
 * Calls `listening` each time a `LISTEN` that the adapter sends on `client` has taken effect. Its LISTEN client
 * is the only one that sends one, at startup and each time it reconnects; from then on the cluster's events reach
 * this node again (see lib/realtime/revalidation.ts for what it missed meanwhile). The wrapper is the client's
 * own property for as long as the client is checked out; the release removes it.
 */
function watchListen(client: pg.PoolClient, listening: () => void): void {
  const query = client.query.bind(client) as (...args: unknown[]) => unknown;
  const watched = (...args: unknown[]): unknown => {
    const result = query(...args);
    if (typeof args[0] === 'string' && args[0].startsWith('LISTEN ') && result instanceof Promise) {
      // A LISTEN that fails is the adapter's to handle (it reconnects): only its success matters here.
      result.then(listening, () => undefined);
    }
    return result;
  };
  client.query = watched as typeof client.query;
}

/** The `application_name` of the connections of a node's Socket.IO adapter pool (`pg_stat_activity`). */
export const ADAPTER_APPLICATION_NAME = 'xfchat-adapter';

/**
 * How often the LISTEN connection is asked a `SELECT 1`, and how long its answer may take: a connection that went
 * silent without closing (a half-open link: a NAT's or a firewall's idle timeout, a host gone) is otherwise noticed
 * only by TCP keepalive, hours later, and the node heard none of the cluster's broadcasts meanwhile. One that does
 * not answer is destroyed: the adapter reconnects, and what the node missed is told (lib/realtime/revalidation.ts).
 */
export const LISTEN_CHECK_MS = 10_000;
export const LISTEN_CHECK_TIMEOUT_MS = 5_000;
/** The longest the LISTEN connection can have been silent when its loss is noticed. */
export const LISTEN_SILENT_AT_MOST_MS = LISTEN_CHECK_MS + LISTEN_CHECK_TIMEOUT_MS;

/** Marks the adapter's PubSubClient (shared by its namespaces) as made to reconnect once at a time. */
const RECONNECTING_ONCE = Symbol('xfchat.reconnectingOnce');

/**
 * The adapter's LISTEN connection, lost again while it reconnects (its LISTEN failing as its connection ends),
 * scheduled its reconnection twice, from the connection's 'end' and from the failed LISTEN: two LISTEN connections,
 * every broadcast heard twice by the node's sockets, two of the pool's four connections held for good. Here one
 * reconnection is scheduled at a time.
 */
export function reconnectingOnce(adapter: object): void {
  const pubsub = (adapter as { client?: Record<string | symbol, unknown> }).client;
  if (pubsub === undefined || pubsub[RECONNECTING_ONCE] === true) return;
  const schedule = pubsub.scheduleReconnection;
  const init = pubsub.initClient;
  if (typeof schedule !== 'function' || typeof init !== 'function') return;
  pubsub[RECONNECTING_ONCE] = true;
  let scheduled = false;
  pubsub.scheduleReconnection = (): unknown => {
    if (scheduled) return undefined;
    scheduled = true;
    return (schedule as () => unknown).call(pubsub);
  };
  pubsub.initClient = (): unknown => {
    scheduled = false;
    return (init as () => unknown).call(pubsub);
  };
}

/**
 * Asks `client` a `SELECT 1` every LISTEN_CHECK_MS; one not answered within LISTEN_CHECK_TIMEOUT_MS destroys its
 * connection (its 'end' follows: the guard below). Returns the stop.
 */
function checkListening(client: pg.PoolClient, logger: Logger): () => void {
  let stopped = false;
  const timer = setInterval(() => {
    client.query({ text: 'SELECT 1', query_timeout: LISTEN_CHECK_TIMEOUT_MS } as pg.QueryConfig).then(
      () => undefined,
      (err: unknown) => {
        if (stopped) return;
        logger.warn({ err }, 'socket.io adapter: the LISTEN connection does not answer: reconnecting');
        (
          client as unknown as { connection?: { stream?: { destroy(): void } } }
        ).connection?.stream?.destroy();
      },
    );
  }, LISTEN_CHECK_MS);
  timer.unref();
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}

export function createAdapterPool(
  config: DatabaseConfig,
  logger: Logger,
  onListening: () => void = () => undefined,
  /** The adapter's LISTEN connection ended: the cluster's events no longer reach this node until it listens again. */
  onListenLost: () => void = () => undefined,
): pg.Pool {
  const pool = new pg.Pool({ ...pgConnectionConfig(config, ADAPTER_APPLICATION_NAME), max: 4 });
  const checkedOut = new Set<pg.PoolClient>();
  /** The liveness checks of the LISTEN clients, each stopped when its client goes back or ends. */
  const checks = new Map<pg.PoolClient, () => void>();
  const stopCheck = (client: pg.PoolClient) => {
    checks.get(client)?.();
    checks.delete(client);
  };
  let ended = false;
  const isListener = (client: pg.PoolClient) => client.listenerCount('notification') > 0;
  const discard = (client: pg.PoolClient, why: string) => {
    if (checkedOut.has(client) && isListener(client)) client.release(new Error(why));
  };
  const connect = pool.connect.bind(pool);
  const end = pool.end.bind(pool);
  pool.connect = ((...args: Parameters<typeof connect>) => {
    if (ended) return new Promise<never>(() => undefined);
    return connect(...args);
  }) as typeof pool.connect;
  pool.end = () => {
    ended = true;
    for (const client of [...checkedOut]) discard(client, 'shutting down');
    return end();
  };
  pool.on('acquire', (client) => {
    checkedOut.add(client);
    watchListen(client, () => {
      if (ended) return;
      if (!checks.has(client)) checks.set(client, checkListening(client, logger));
      onListening();
    });
    // Handed out while end() was already running: once the adapter has attached its listener (after its await,
    // hence setImmediate and not nextTick), discard it.
    if (ended) setImmediate(() => discard(client, 'shutting down'));
  });
  pool.on('release', (_err, client) => {
    checkedOut.delete(client);
    stopCheck(client);
    // The adapter leaves its handler on a LISTEN client it gives back; without it, the client is a plain one.
    client.removeAllListeners('notification');
    Reflect.deleteProperty(client, 'query');
  });
  pool.on('error', (err) => logger.warn({ err }, 'socket.io adapter: idle PostgreSQL connection failed'));
  pool.on('connect', (client) => {
    client.on('error', (err) => logger.warn({ err }, 'socket.io adapter: PostgreSQL connection failed'));
    client.on('end', () => {
      stopCheck(client);
      if (!ended && checkedOut.has(client) && isListener(client)) onListenLost();
      discard(client, 'connection ended');
    });
  });
  return pool;
}
