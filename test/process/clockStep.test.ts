import { expect } from 'chai';
import { io, type Socket } from 'socket.io-client';
import { startMain, type RunningChild } from '../helpers/childProcess.js';
import { request } from '../helpers/http.js';
import { createTestDatabase } from '../helpers/postgres.js';
import { TEST_JWT_SECRET } from '../helpers/server.js';
import { uniqueUsername } from '../helpers/users.js';
import { waitFor } from '../helpers/waitFor.js';

/**
 * A node whose machine's wall clock is stepped while it runs (NTP stepping a drifted clock, a VM's clock corrected
 * after a resume): its limits count by a clock that never steps, and its tokens by PostgreSQL's clock counted on
 * from the last measurement by that one (lib/rateLimiter.ts, lib/cluster/clock.ts). Before, a step back of an hour
 * took an hour's refill from every rate-limit bucket (a connected user's next send ended its own connection, a REST
 * send answered 429 with Retry-After: 3537), and refused every token issued before it until the next measurement.
 */
const PASSWORD = 'correct horse battery';

describe('a node whose wall clock is stepped back an hour while it runs', function () {
  this.timeout(60_000);
  let node: RunningChild | undefined;
  const sockets: Socket[] = [];

  before(async () => {
    const databaseUrl = await createTestDatabase();
    node = await startMain(
      {
        DATABASE_URL: databaseUrl,
        JWT_SECRET: TEST_JWT_SECRET,
        PORT: '0',
        HOST: '127.0.0.1',
        LOG_LEVEL: 'info',
        STEP_MS: String(-3_600_000),
      },
      { nodeArgs: ['--import', './test/fixtures/stepClock.ts'], timeoutMs: 40_000 },
    );
  });

  after(async () => {
    for (const s of sockets) s.disconnect();
    await node?.kill();
  });

  async function signup(): Promise<{ id: string; username: string; token: string }> {
    const username = uniqueUsername();
    const res = await request<{ token: string; user: { id: string } }>(node!.url, 'POST', '/auth/signup', {
      body: { username, password: PASSWORD },
    });
    expect(res.status, res.text).to.equal(201);
    return { id: res.body.user.id, username, token: res.body.token };
  }

  let alice: { id: string; username: string; token: string } | undefined;
  let conversationId = '';

  it('keeps answering a connected user’s sends after the clock is set back an hour', async () => {
    const url = node!.url;
    alice = await signup();
    const bob = await signup();
    const asked = await request<{ request: { id: string } }>(url, 'POST', '/friends/requests', {
      token: alice.token,
      body: { username: bob.username },
    });
    expect(asked.status, asked.text).to.equal(201);
    const accepted = await request(url, 'POST', `/friends/requests/${asked.body.request.id}/accept`, {
      token: bob.token,
    });
    expect(accepted.status, accepted.text).to.equal(200);
    const direct = await request<{ conversation: { id: string } }>(url, 'POST', '/conversations', {
      token: alice.token,
      body: { type: 'direct', userId: bob.id },
    });
    expect(direct.status, direct.text).to.equal(201);
    conversationId = direct.body.conversation.id;

    const socket = io(url, { auth: { token: alice.token }, transports: ['websocket'], reconnection: false });
    sockets.push(socket);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('connect_error', reject);
    });
    const send = (body: string) =>
      socket.timeout(10_000).emitWithAck('message:send', {
        conversationId,
        clientMsgId: `m-${Math.random().toString(36).slice(2)}`,
        body,
      }) as Promise<{ ok: boolean; error?: { code: string; details?: { retryAfter?: number } } }>;

    const first = await send('before the step');
    expect(first.ok, JSON.stringify(first)).to.equal(true);

    process.kill(node!.pid, 'SIGUSR2');
    await waitFor(() => node!.stdout().includes('[test] clock stepped'), { what: 'the clock to be stepped' });

    // One send a second, far below RATE_LIMIT_MESSAGES_PER_SEC (20) and SOCKET_EVENTS_PER_SEC (50).
    const second = await send('after the step').catch((err: Error) => ({ ok: false, thrown: err.message }));
    const closes = node!
      .stdout()
      .split('\n')
      .filter((l) => l.includes('closing a transport'));
    expect(
      second,
      `the second send of a connected user, the wall clock set back an hour; node: ${closes.join('\n')}`,
    ).to.deep.include({ ok: true });
  });

  it('still takes the access tokens it issued before the step (REST)', async () => {
    const me = await request(node!.url, 'GET', '/auth/me', { token: alice!.token });
    expect(me.status, me.text).to.equal(200);
  });

  it('takes a REST send of a user who sent before the step, at once', async () => {
    const put = await request(node!.url, 'PUT', `/conversations/${conversationId}/messages/after-the-step`, {
      token: alice!.token,
      body: { body: 'after the step, by REST' },
    });
    expect(put.status, `${put.text} Retry-After: ${put.headers.get('retry-after')}`).to.equal(201);
  });
});
