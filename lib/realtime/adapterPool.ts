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

export function createAdapterPool(
  config: DatabaseConfig,
  logger: Logger,
  onListening: () => void = () => undefined,
  /** The adapter's LISTEN connection ended: the cluster's events no longer reach this node until it listens again. */
  onListenLost: () => void = () => undefined,
): pg.Pool {
  const pool = new pg.Pool({ ...pgConnectionConfig(config, ADAPTER_APPLICATION_NAME), max: 4 });
  const checkedOut = new Set<pg.PoolClient>();
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
      if (!ended) onListening();
    });
    // Handed out while end() was already running: once the adapter has attached its listener (after its await,
    // hence setImmediate and not nextTick), discard it.
    if (ended) setImmediate(() => discard(client, 'shutting down'));
  });
  pool.on('release', (_err, client) => {
    checkedOut.delete(client);
    // The adapter leaves its handler on a LISTEN client it gives back; without it, the client is a plain one.
    client.removeAllListeners('notification');
    Reflect.deleteProperty(client, 'query');
  });
  pool.on('error', (err) => logger.warn({ err }, 'socket.io adapter: idle PostgreSQL connection failed'));
  pool.on('connect', (client) => {
    client.on('error', (err) => logger.warn({ err }, 'socket.io adapter: PostgreSQL connection failed'));
    client.on('end', () => {
      if (!ended && checkedOut.has(client) && isListener(client)) onListenLost();
      discard(client, 'connection ended');
    });
  });
  return pool;
}
