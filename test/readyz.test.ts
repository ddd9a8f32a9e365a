import { expect } from 'chai';
import type { RunningServer } from '../lib/server.js';
import { createTestDatabase } from './helpers/postgres.js';
import { startTestServer } from './helpers/server.js';
import { startProxy, type FaultProxy } from './helpers/proxy.js';
import { waitFor } from './helpers/waitFor.js';

interface Probe {
  status: number;
  body: unknown;
  ms: number;
}

describe('/readyz follows PostgreSQL', function () {
  this.timeout(30_000);
  let proxy: FaultProxy | undefined;
  let server: RunningServer | undefined;

  before(async () => {
    const databaseUrl = await createTestDatabase();
    proxy = await startProxy(databaseUrl);
    server = await startTestServer(proxy.urlThrough(databaseUrl), {
      DB_ACQUIRE_TIMEOUT_MS: '500',
      DB_CONNECT_TIMEOUT_MS: '500',
    });
  });

  after(async () => {
    await server?.close();
    await proxy?.close();
  });

  async function probe(): Promise<Probe> {
    const started = performance.now();
    // The client gives up long after the server should have answered, so a hang fails the assertion.
    const res = await fetch(`${server!.url}/readyz`, { signal: AbortSignal.timeout(10_000) });
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
    expect(proxy!.connectionCount()).to.be.greaterThan(0);

    await proxy!.stop();
    const down = await probeUntil(503, '/readyz to answer 503');
    expect(down.body).to.deep.equal({ status: 'unavailable' });
    // The pool's acquire timeout (500 ms here) or /readyz's own 2 s cap, plus slack: it never hangs.
    expect(down.ms).to.be.below(3000);
    // It keeps answering promptly while the database stays away.
    const again = await probe();
    expect(again.status).to.equal(503);
    expect(again.body).to.deep.equal({ status: 'unavailable' });
    expect(again.ms).to.be.below(3000);

    await proxy!.start();
    const up = await probeUntil(200, '/readyz to answer 200 again');
    expect(up.body).to.deep.equal({ status: 'ready' });
  });

  it('/healthz stays 200 while the database is away', async () => {
    await proxy!.stop();
    try {
      const res = await fetch(`${server!.url}/healthz`, { signal: AbortSignal.timeout(5000) });
      expect(res.status).to.equal(200);
      expect(await res.json()).to.deep.equal({ status: 'ok' });
    } finally {
      await proxy!.start();
    }
    await probeUntil(200, '/readyz to answer 200 again');
  });
});
