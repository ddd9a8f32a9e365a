import { expect } from 'chai';
import type pg from 'pg';
import type { RunningServer } from '../lib/server.js';
import { sampleValue, scrape } from './helpers/prometheus.js';
import { createTestDatabase } from './helpers/postgres.js';
import { startTestServer } from './helpers/server.js';
import { useNode, useNodeBehindProxy } from './helpers/nodes.js';
import { waitFor } from './helpers/waitFor.js';

interface Probe {
  status: number;
  body: unknown;
  ms: number;
}

describe('/readyz follows PostgreSQL', function () {
  this.timeout(30_000);
  const { node, proxy } = useNodeBehindProxy();

  async function probe(): Promise<Probe> {
    const started = performance.now();
    // The client gives up long after the server should have answered, so a hang fails the assertion.
    const res = await fetch(`${node().url}/readyz`, { signal: AbortSignal.timeout(10_000) });
    const body: unknown = await res.json();
    return { status: res.status, body, ms: performance.now() - started };
  }

  async function probeUntil(status: number, what: string): Promise<Probe> {
    return waitFor(
      async () => {
        const result = await probe();
        return result.status === status ? result : undefined;
      },
      { timeoutMs: 10_000, what },
    );
  }

  it('is 200 ready, turns 503 unavailable within bounded time when the database goes away, and 200 again', async () => {
    const before = await probe();
    expect(before.status).to.equal(200);
    expect(before.body).to.deep.equal({ status: 'ready' });
    expect(proxy().connectionCount()).to.be.greaterThan(0);

    await proxy().stop();
    const down = await probeUntil(503, '/readyz to answer 503');
    expect(down.body).to.deep.equal({ status: 'unavailable' });
    // The pool's acquire timeout (500 ms here) or /readyz's own 2 s cap, plus slack: it never hangs.
    expect(down.ms).to.be.below(3000);
    // It keeps answering promptly while the database stays away.
    const again = await probe();
    expect(again.status).to.equal(503);
    expect(again.body).to.deep.equal({ status: 'unavailable' });
    expect(again.ms).to.be.below(3000);

    await proxy().start();
    const up = await probeUntil(200, '/readyz to answer 200 again');
    expect(up.body).to.deep.equal({ status: 'ready' });
  });

  it('/healthz stays 200 while the database is away', async () => {
    await proxy().stop();
    try {
      const res = await fetch(`${node().url}/healthz`, { signal: AbortSignal.timeout(5000) });
      expect(res.status).to.equal(200);
      expect(await res.json()).to.deep.equal({ status: 'ok' });
    } finally {
      await proxy().start();
    }
    await probeUntil(200, '/readyz to answer 200 again');
  });
});

/**
 * DB_ACQUIRE_TIMEOUT_MS far longer than /readyz's 2 s (an acquire a probe left behind would still be waiting), and
 * shorter (the pool's own timeout would end the probe's acquire as a POOL_TIMEOUT, as if a caller had been refused).
 */
for (const acquireTimeoutMs of [20_000, 1000]) {
  describe(`/readyz while the app pool is exhausted (DB_ACQUIRE_TIMEOUT_MS=${acquireTimeoutMs})`, function () {
    this.timeout(30_000);
    let server: RunningServer | undefined;
    const held: pg.ClientBase[] = [];

    before(async () => {
      server = await startTestServer(await createTestDatabase(), {
        DB_POOL_SIZE: '2',
        DB_ACQUIRE_TIMEOUT_MS: String(acquireTimeoutMs),
      });
    });

    after(async () => {
      for (const client of held.splice(0)) server?.services.db.connections.release(client);
      await server?.close();
    });

    const metric = async (name: string, labels: Record<string, string> = {}) =>
      sampleValue(await scrape(server!.url), name, labels) ?? 0;

    it('answers 503 and leaves nothing behind: no acquire waiting, no POOL_TIMEOUT; 200 once a connection is free', async () => {
      const { connections } = server!.services.db;
      held.push(await connections.acquire(), await connections.acquire());
      expect(await metric('xfchat_db_pool_waiting')).to.equal(0);

      const probes = await Promise.all(
        [1, 2, 3].map(() => fetch(`${server!.url}/readyz`, { signal: AbortSignal.timeout(10_000) })),
      );
      expect(probes.map((res) => res.status)).to.deep.equal([503, 503, 503]);
      // Each probe took its acquire back when it gave up: nothing queues for the pool.
      expect(await metric('xfchat_db_pool_waiting')).to.equal(0);
      // Past the pool's acquire timeout when it is the shorter: a probe's acquire left to it would be a POOL_TIMEOUT.
      await new Promise((resolve) => setTimeout(resolve, Math.min(acquireTimeoutMs, 1500)));
      expect(await metric('xfchat_db_errors_total', { code: 'POOL_TIMEOUT' })).to.equal(0);

      for (const client of held.splice(0)) connections.release(client);
      const res = await fetch(`${server!.url}/readyz`, { signal: AbortSignal.timeout(10_000) });
      expect(res.status).to.equal(200);
      expect(await metric('xfchat_db_pool_used')).to.equal(0);
    });
  });
}

describe('/readyz probes share one ping', function () {
  this.timeout(30_000);
  const { server } = useNode();

  it('300 probes at once cost a few pool acquires, not one each (anyone may probe; each ping takes a connection)', async () => {
    const pool = (server.services.db.knex.client as { pool: { acquire: (...a: unknown[]) => unknown } }).pool;
    const original = pool.acquire.bind(pool);
    let acquires = 0;
    pool.acquire = (...args: unknown[]) => {
      acquires++;
      return original(...args);
    };
    try {
      const probes = await Promise.all(
        Array.from({ length: 300 }, () =>
          fetch(`${server.url}/readyz`).then(async (res) => {
            await res.arrayBuffer();
            return res.status;
          }),
        ),
      );
      expect(probes.every((status) => status === 200)).to.equal(true);
      // One ping on its way, then its answer for a second: a few at most, however long the 300 take.
      expect(acquires, 'pool acquires for 300 probes').to.be.below(10);
    } finally {
      pool.acquire = original;
    }
  });
});

/**
 * docs/operations.md (Deploy, step 4): once a node begins stopping, "a probe already on its way is answered /readyz
 * 503". A probe whose database ping was waiting for a pool connection when the stop began was answered 200 ready
 * (the stop was looked at only before the ping).
 */
describe('health: /readyz while the node begins stopping', function () {
  this.timeout(30_000);
  let server: RunningServer | undefined;
  const held: pg.ClientBase[] = [];

  before(async () => {
    server = await startTestServer(await createTestDatabase(), {
      DB_POOL_SIZE: '2',
      DB_ACQUIRE_TIMEOUT_MS: '10000',
    });
  });

  after(async () => {
    for (const client of held.splice(0)) server?.services.db.connections.release(client);
    await server?.close();
  });

  it('answers a probe on its way when the node begins stopping 503 (not ready), not 200', async () => {
    const node = server!;
    const { connections } = node.services.db;
    // PostgreSQL slow to give the probe a connection: the probe's ping waits (up to 2 s).
    held.push(await connections.acquire(), await connections.acquire());
    const probe = fetch(`${node.url}/readyz`, { signal: AbortSignal.timeout(10_000) });
    await waitFor(async () => (sampleValue(await scrape(node.url), 'xfchat_db_pool_waiting') ?? 0) >= 1, {
      what: "the probe's ping to wait for a connection",
    });
    // SIGTERM: the node starts stopping while the probe is on its way.
    const closing = node.close();
    // The database answers again (well within the probe's 2 s).
    for (const client of held.splice(0)) connections.release(client);
    const res = await probe;
    const body = await res.text();
    await closing;
    server = undefined;
    expect(res.status, body).to.equal(503);
  });
});
