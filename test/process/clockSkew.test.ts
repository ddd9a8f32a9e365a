import { expect } from 'chai';
import { io, type Socket } from 'socket.io-client';
import { ADAPTER_APPLICATION_NAME } from '../../lib/realtime/adapterPool.js';
import { startMain, type RunningChild } from '../helpers/childProcess.js';
import { listeningPids } from '../helpers/faults.js';
import { request } from '../helpers/http.js';
import { adminQuery, createTestDatabase } from '../helpers/postgres.js';
import { TEST_JWT_SECRET } from '../helpers/server.js';
import { uniqueUsername } from '../helpers/users.js';
import { waitFor } from '../helpers/waitFor.js';

/**
 * Three nodes on one database whose machines' clocks differ by minutes (no NTP): one on time, one 90 s ahead, one
 * 90 s behind, each a process of its own with its clock shifted (test/fixtures/skewClock.ts). They count tokens
 * and the shared login limits by PostgreSQL's clock, so they agree.
 */

const SKEW_MS = 90_000;
const PASSWORD = 'correct horse battery';
/** Shorter than the skew: a node ahead by 90 s that counted by its own clock would take every token for expired. */
const TOKEN_TTL_SECONDS = 60;
/** Also the signups per address per minute: the tests sign up six users. */
const LOGINS_PER_MIN = 6;

describe('nodes whose machines’ clocks differ by minutes', function () {
  this.timeout(90_000);
  const nodes: Record<'onTime' | 'ahead' | 'behind', RunningChild | undefined> = {
    onTime: undefined,
    ahead: undefined,
    behind: undefined,
  };
  const node = (name: keyof typeof nodes): RunningChild => {
    const running = nodes[name];
    if (!running) throw new Error(`node ${name} did not start`);
    return running;
  };
  const sockets: Socket[] = [];

  let databaseName = '';

  before(async () => {
    const databaseUrl = await createTestDatabase();
    databaseName = new URL(databaseUrl).pathname.slice(1);
    const start = (skewMs: number) =>
      startMain(
        {
          DATABASE_URL: databaseUrl,
          JWT_SECRET: TEST_JWT_SECRET,
          PORT: '0',
          HOST: '127.0.0.1',
          LOG_LEVEL: 'info',
          JWT_TTL_SECONDS: String(TOKEN_TTL_SECONDS),
          RATE_LIMIT_AUTH_PER_MIN: String(LOGINS_PER_MIN),
          SKEW_MS: String(skewMs),
        },
        { nodeArgs: ['--import', './test/fixtures/skewClock.ts'], timeoutMs: 40_000 },
      );
    nodes.onTime = await start(0);
    nodes.ahead = await start(SKEW_MS);
    nodes.behind = await start(-SKEW_MS);
  });

  afterEach(() => {
    for (const socket of sockets.splice(0)) socket.disconnect();
  });

  after(async () => {
    const running = Object.values(nodes).filter((n): n is RunningChild => n !== undefined);
    await Promise.all(running.map((n) => n.kill()));
  });

  async function signup(on: RunningChild): Promise<{ username: string; token: string }> {
    const username = uniqueUsername();
    const res = await request<{ token: string }>(on.url, 'POST', '/auth/signup', {
      body: { username, password: PASSWORD },
    });
    expect(res.status, JSON.stringify(res.body)).to.equal(201);
    return { username, token: res.body.token };
  }

  /** A socket on `on` with `token`: resolves once connected, rejects with the server's refusal. */
  function connect(on: RunningChild, token: string): Promise<Socket> {
    const socket = io(on.url, { auth: { token }, transports: ['websocket'], reconnection: false });
    sockets.push(socket);
    return new Promise((resolve, reject) => {
      socket.once('connect', () => resolve(socket));
      socket.once('connect_error', reject);
    });
  }

  it('warns on the nodes whose clocks are off, naming by how much and which way', async () => {
    await waitFor(() => /90\.\d s ahead of PostgreSQL's/.test(node('ahead').stdout()), {
      what: 'the warning of the node ahead',
    });
    await waitFor(() => /90\.\d s behind PostgreSQL's/.test(node('behind').stdout()), {
      what: 'the warning of the node behind',
    });
    expect(node('onTime').stdout()).not.to.match(/PostgreSQL's: run NTP/);
  });

  it('takes a token signed by any node on every node, over REST and Socket.IO, and keeps its socket', async () => {
    const names = ['onTime', 'ahead', 'behind'] as const;
    for (const signer of names) {
      const { token } = await signup(node(signer));
      for (const checker of names) {
        const me = await request(node(checker).url, 'GET', '/auth/me', { token });
        expect(me.status, `${signer}'s token on ${checker}`).to.equal(200);
        const socket = await connect(node(checker), token);
        // A node that counted the token's expiry by its own clock (90 s ahead, for a 60 s token) cut it at once.
        await new Promise((resolve) => setTimeout(resolve, 300));
        expect(socket.connected, `${signer}'s token's socket on ${checker}`).to.equal(true);
      }
    }
  });

  it('holds a login lockout made on the node behind on the others', async () => {
    const { username } = await signup(node('onTime'));
    const attempt = (on: RunningChild, password: string) =>
      request(on.url, 'POST', '/auth/login', { body: { username, password } });
    for (let i = 0; i < LOGINS_PER_MIN; i += 1) {
      expect((await attempt(node('behind'), 'wrong password')).status).to.equal(401);
    }
    const lockedOut = await attempt(node('behind'), 'wrong password');
    expect(lockedOut.status).to.equal(429);
    // Counted by the node's own clock, the lockout written by the node behind had already ended everywhere else.
    for (const other of [node('onTime'), node('ahead')]) {
      const refused = await attempt(other, PASSWORD);
      expect(refused.status).to.equal(429);
      expect(Number(refused.headers.get('retry-after'))).to.be.within(50, 60);
    }
  });

  it('tells a socket on the node ahead of a friend request sent while its adapter did not listen', async () => {
    const alice = await signup(node('onTime'));
    const bob = await signup(node('onTime'));
    const socket = await connect(node('ahead'), bob.token);
    const heard: unknown[] = [];
    socket.on('friend:request', (payload: unknown) => heard.push(payload));
    const listeners = await waitFor(
      async () => {
        const pids = await listeningPids(databaseName, ADAPTER_APPLICATION_NAME);
        return pids.length === 3 && pids;
      },
      { what: 'every adapter to listen' },
    );
    // Every node stops hearing the others for a moment; the request's announcement is sent meanwhile.
    await adminQuery('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid', [listeners]);
    const sent = await request(node('onTime').url, 'POST', '/friends/requests', {
      token: alice.token,
      body: { username: bob.username },
    });
    expect(sent.status, JSON.stringify(sent.body)).to.equal(201);
    // Once it listens again, the node looks in the database for what it missed since it stopped listening: by
    // its own clock, 90 s ahead, that start lay after every row and nothing was told.
    await waitFor(() => heard.length > 0, { what: 'friend:request on the node ahead', timeoutMs: 20_000 });
  });
});
