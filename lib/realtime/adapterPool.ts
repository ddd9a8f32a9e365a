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
 */
export function createAdapterPool(config: DatabaseConfig, logger: Logger): pg.Pool {
  const pool = new pg.Pool({ ...pgConnectionConfig(config, 'xfchat-adapter'), max: 4 });
  const checkedOut = new WeakSet<pg.PoolClient>();
  pool.on('acquire', (client) => checkedOut.add(client));
  pool.on('release', (_err, client) => checkedOut.delete(client));
  pool.on('error', (err) => logger.warn({ err }, 'socket.io adapter: idle PostgreSQL connection failed'));
  pool.on('connect', (client) => {
    client.on('error', (err) => logger.warn({ err }, 'socket.io adapter: PostgreSQL connection failed'));
    client.on('end', () => {
      if (checkedOut.has(client)) client.release(new Error('connection ended'));
    });
  });
  return pool;
}
