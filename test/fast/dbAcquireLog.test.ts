import net from 'node:net';
import { expect } from 'chai';
import { loadDatabaseConfig } from '../../lib/config.js';
import { createDatabase } from '../../lib/db.js';
import { captureLogs } from '../helpers/logCapture.js';

/** A loopback port nothing listens on: connecting to it is refused at once. */
async function refusedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('database: failed pool acquires while PostgreSQL is away', () => {
  it('are logged once per code (the first with its cause under err, no stack in msg), not once per caller', async () => {
    const logs = captureLogs('debug');
    const config = loadDatabaseConfig({
      DATABASE_URL: `postgres://xfchat:pw@127.0.0.1:${await refusedPort()}/xfchat`,
      DB_POOL_SIZE: '2',
      DB_ACQUIRE_TIMEOUT_MS: '300',
      DB_CONNECT_TIMEOUT_MS: '300',
    });
    const db = createDatabase(config, logs.logger);
    try {
      const results = await Promise.allSettled(Array.from({ length: 60 }, () => db.knex.raw('SELECT 1')));
      expect(results.every((r) => r.status === 'rejected')).to.equal(true);
    } finally {
      await db.close();
    }
    const warnings = logs.entries().filter((e) => (e.level as number) >= 40);
    // One line per code (ECONNREFUSED for the acquires the failed connects rejected, POOL_TIMEOUT for those that
    // waited), not one per query: 60 before.
    const shown = warnings.slice(0, 3).map((w) => String(w.msg).slice(0, 80));
    expect(warnings.length, `warn lines, the first: ${JSON.stringify(shown)}`).to.be.within(1, 3);
    for (const line of warnings) {
      expect(line.msg).to.equal('acquiring a database connection failed');
      expect(line.suppressed).to.be.a('number');
    }
    const first = warnings[0]!;
    const err = first.err as { type: string; message: string; stack: string };
    expect(err.message).to.include('ECONNREFUSED');
    expect(err.stack).to.be.a('string');
    expect(first.suppressed).to.equal(0);
    expect(logs.text()).not.to.include('Acquire connection error');
  });
});
