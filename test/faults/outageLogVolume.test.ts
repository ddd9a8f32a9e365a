import { expect } from 'chai';
import type { RunningServer } from '../../lib/server.js';
import { newUser } from '../helpers/chat.js';
import { request } from '../helpers/http.js';
import { captureLogs } from '../helpers/logCapture.js';
import { createTestDatabase } from '../helpers/postgres.js';
import { startProxy, type FaultProxy } from '../helpers/proxy.js';
import { startTestServer } from '../helpers/server.js';
import { connectSocket } from '../helpers/sockets.js';
import type { TestUser } from '../helpers/users.js';

/**
 * docs/operations.md: the answers of an outage are logged once per code every 10 s. Clients keep asking while
 * PostgreSQL is away (and reconnecting sockets retry their handshakes): the log must not grow with them.
 */
describe('faults: log volume while PostgreSQL is away', function () {
  this.timeout(60_000);
  const ATTEMPTS = 20;
  const logs = captureLogs('info');
  let proxy: FaultProxy | undefined;
  let server: RunningServer | undefined;
  let user: TestUser;

  before(async () => {
    const databaseUrl = await createTestDatabase();
    proxy = await startProxy(databaseUrl);
    server = await startTestServer(
      proxy.urlThrough(databaseUrl),
      { DB_ACQUIRE_TIMEOUT_MS: '500', DB_CONNECT_TIMEOUT_MS: '500', LOG_LEVEL: 'info' },
      logs.logger,
    );
    user = await newUser(server);
  });

  after(async () => {
    await server?.close();
    await proxy?.close();
  });

  it('socket handshakes and requests that fail DB_UNAVAILABLE add a few lines, not lines per attempt', async () => {
    await proxy!.stop();
    const before = logs.entries().length;
    try {
      for (let i = 0; i < ATTEMPTS; i++) {
        const refused = await connectSocket(server!.url, user.token).then(
          (socket) => {
            socket.close();
            return 'connected';
          },
          (err: Error) => err.message,
        );
        expect(refused).to.equal('DB_UNAVAILABLE');
        const res = await request(server!.url, 'GET', '/auth/me', { token: user.token });
        expect(res.status).to.equal(503);
      }
    } finally {
      await proxy!.start();
    }
    const lines = logs.entries().slice(before);
    const count = (msg: string) => lines.filter((l) => l.msg === msg).length;
    // Before: a `socket auth failed` and a Knex `Acquire connection error` (stack in msg) per handshake.
    expect(count('socket auth failed'), 'socket auth failed').to.equal(1);
    expect(lines.filter((l) => String(l.msg).startsWith('Acquire connection error')).length).to.equal(0);
    // One line per code (refused connects, acquires that waited), each with its cause under err.
    expect(count('acquiring a database connection failed'), 'failed acquires').to.be.within(1, 2);
    expect(count('request failed'), 'request failed').to.equal(1);
    for (const line of lines.filter((l) => (l.level as number) >= 40)) {
      expect(String(line.msg), 'no stack in msg').not.to.match(/\n\s+at /);
    }
    const auth = lines.find((l) => l.msg === 'socket auth failed')!;
    expect(auth).to.include({ level: 40, code: 'DB_UNAVAILABLE', suppressed: 0 });
    expect((auth.err as { message: string }).message).to.match(/ECONNREFUSED|timed out|Timeout/i);
    const warnings = lines.filter((l) => (l.level as number) >= 40);
    expect(warnings.length, JSON.stringify(warnings.map((l) => String(l.msg).slice(0, 60)))).to.be.below(
      ATTEMPTS,
    );
  });
});
