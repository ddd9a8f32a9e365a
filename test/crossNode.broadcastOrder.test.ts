import { expect } from 'chai';
import pg from 'pg';
import WebSocket from 'ws';
import type { AuthResponse, PublicUser } from '../lib/protocol/index.js';
import { ORDER_WAIT_MS, QUEUE_MAX_MS } from '../lib/realtime/localFirstAdapter.js';
import { newUser, record } from './helpers/chat.js';
import { useTwoNodes, type TwoNodes } from './helpers/nodes.js';
import { request } from './helpers/http.js';
import { insertFriendship, uniqueUsername, insertUser } from './helpers/users.js';
import { waitFor } from './helpers/waitFor.js';

const PASSWORD = 'correct horse battery';

const userShape = (id: string, displayName: string): PublicUser => ({
  id,
  username: null,
  displayName,
  createdAt: new Date(0).toISOString(),
});

/**
 * A node's broadcasts reach the other nodes in the order it made them (lib/realtime/localFirstAdapter.ts). The
 * Socket.IO postgres adapter publishes each with `pool.query("SELECT pg_notify(...)")` on a pool of several
 * connections (lib/realtime/adapterPool.ts): one whose connection is slower (one being opened, a busy backend) was
 * overtaken by a later one. Here the first notice's NOTIFY is 300 ms slow, as a newly opened adapter connection can
 * be.
 */
describe('broadcasts between nodes, in the order the node made them', function () {
  this.timeout(60_000);
  const nodes = useTwoNodes();

  /** Delays node A's adapter NOTIFYs whose payload contains a key of `delays` by its value (ms). */
  function slowNotifies(delays: Record<string, number>): () => void {
    const client = (
      nodes.a.services.io.of('/').adapter as unknown as {
        client: { pool: { query: (...a: unknown[]) => Promise<unknown> } };
      }
    ).client;
    const pool = client.pool;
    const query = pool.query.bind(pool);
    pool.query = async (...args: unknown[]) => {
      const payload = (args[1] as unknown[] | undefined)?.[1];
      if (typeof args[0] === 'string' && args[0].includes('pg_notify') && typeof payload === 'string') {
        for (const [marker, ms] of Object.entries(delays))
          if (payload.includes(marker)) await new Promise((r) => setTimeout(r, ms));
      }
      return query(...args);
    };
    return () => {
      pool.query = query;
    };
  }

  it('a friend on the other node ends with the deleted shape, not the rename sent just before the deletion', async () => {
    const username = uniqueUsername('ren');
    const signup = await request<AuthResponse>(nodes.a.url, 'POST', '/auth/signup', {
      body: { username, password: PASSWORD },
    });
    const alice = signup.body;
    const bob = await insertUser(nodes.a.services.db.knex, nodes.a.services.config);
    await insertFriendship(nodes.a.services.db.knex, alice.user.id, bob.id);
    const bobOnB = await nodes.pool.open(nodes.b.url, bob);
    const heard = record(bobOnB, 'user:updated');
    const restore = slowNotifies({ 'Still Here': 300 });
    try {
      const renamed = await request(nodes.a.url, 'PATCH', '/users/me', {
        token: alice.token,
        body: { displayName: 'Still Here' },
      });
      expect(renamed.status).to.equal(200);
      const deleted = await request(nodes.a.url, 'DELETE', '/users/me', {
        token: alice.token,
        body: { password: PASSWORD },
      });
      expect(deleted.status).to.equal(204);
      await waitFor(() => heard.length >= 2, { what: 'both notices on node B' });
    } finally {
      restore();
    }
    const now = await request<{ user: PublicUser }>(nodes.b.url, 'GET', `/users/${alice.user.id}`, {
      token: bob.token,
    });
    expect(now.body.user).to.include({ username: null, displayName: 'Deleted user' });
    expect(heard.map((u) => u.displayName)).to.deep.equal(['Still Here', 'Deleted user']);
  });

  it('two renames in a row: a friend on the other node ends with the second', async () => {
    const alice = await insertUser(nodes.a.services.db.knex, nodes.a.services.config);
    const bob = await insertUser(nodes.a.services.db.knex, nodes.a.services.config);
    await insertFriendship(nodes.a.services.db.knex, alice.id, bob.id);
    const bobOnB = await nodes.pool.open(nodes.b.url, bob);
    const heard = record(bobOnB, 'user:updated');
    const restore = slowNotifies({ 'Typo Nmae': 300 });
    try {
      for (const displayName of ['Typo Nmae', 'Typo Name']) {
        const res = await request(nodes.a.url, 'PATCH', '/users/me', {
          token: alice.token,
          body: { displayName },
        });
        expect(res.status).to.equal(200);
      }
      await waitFor(() => heard.length >= 2, { what: 'both notices on node B' });
    } finally {
      restore();
    }
    expect(heard.map((u) => u.displayName)).to.deep.equal(['Typo Nmae', 'Typo Name']);
  });

  // Order gives way to delivery when a NOTIFY is stuck on its connection (ORDER_WAIT_MS), and heartbeats never wait.
  it("one NOTIFY that hangs does not hold back the node's other broadcasts to other users", async () => {
    const ann = await newUser(nodes.a);
    const bob = await newUser(nodes.a);
    const bobOnB = await nodes.pool.open(nodes.b.url, bob);
    const heard = record(bobOnB, 'user:updated');
    const restore = slowNotifies({ 'Stuck Notice': 6000 });
    try {
      // A broadcast to Ann whose NOTIFY hangs on its connection...
      nodes.a.services.io.to(`user:${ann.id}`).emit('user:updated', userShape(ann.id, 'Stuck Notice'));
      // ...and, after it, one to Bob (on node B), on a connection that answers.
      const sent = performance.now();
      nodes.a.services.io.to(`user:${bob.id}`).emit('user:updated', userShape(bob.id, 'For Bob'));
      await waitFor(() => heard.length > 0, { what: "Bob's notice on node B", timeoutMs: 10_000 });
      const tookMs = performance.now() - sent;
      // ORDER_WAIT_MS, then its own NOTIFY, on a busy machine too; waiting for the stuck one would take 6 s.
      expect(tookMs, "ms before Bob's notice reached node B").to.be.below(ORDER_WAIT_MS + QUEUE_MAX_MS);
    } finally {
      restore();
    }
  });

  it('a NOTIFY that hangs past the heartbeat timeout does not make the other node count this one as gone', async () => {
    const ann = await newUser(nodes.a);
    expect(await nodes.b.services.io.of('/').adapter.serverCount()).to.equal(2);
    const restore = slowNotifies({ 'Stuck Notice': 13_000 });
    let lowest = 2;
    try {
      nodes.a.services.io.to(`user:${ann.id}`).emit('user:updated', userShape(ann.id, 'Stuck Notice'));
      const until = Date.now() + 12_500;
      while (Date.now() < until) {
        lowest = Math.min(lowest, await nodes.b.services.io.of('/').adapter.serverCount());
        await new Promise((r) => setTimeout(r, 250));
      }
    } finally {
      restore();
    }
    expect(lowest, "the lowest node count node B's adapter gave while node A's NOTIFY hung").to.equal(2);
  });

  it('two renames in a row behind a second of queued broadcasts: a friend on the other node ends with the second', async () => {
    const alice = await insertUser(nodes.a.services.db.knex, nodes.a.services.config);
    const bob = await insertUser(nodes.a.services.db.knex, nodes.a.services.config);
    const carol = await newUser(nodes.a);
    await insertFriendship(nodes.a.services.db.knex, alice.id, bob.id);
    const bobOnB = await nodes.pool.open(nodes.b.url, bob);
    const heard = record(bobOnB, 'user:updated');
    // A busy database: each of these NOTIFYs takes 200 ms (none is stuck), and the first rename's 300 ms (as a newly
    // opened adapter connection can be, the case of test/crossNode.broadcastOrder.test.ts).
    const restore = slowNotifies({ 'Busy Notice': 200, 'Typo Nmae': 300 });
    try {
      for (let i = 0; i < 6; i++)
        nodes.a.services.io
          .to(`user:${carol.id}`)
          .emit('user:updated', userShape(carol.id, `Busy Notice ${i}`));
      for (const displayName of ['Typo Nmae', 'Typo Name']) {
        const res = await request(nodes.a.url, 'PATCH', '/users/me', {
          token: alice.token,
          body: { displayName },
        });
        expect(res.status).to.equal(200);
      }
      await waitFor(() => heard.length >= 2, { what: 'both notices on node B', timeoutMs: 10_000 });
    } finally {
      restore();
    }
    expect(
      heard.map((u) => u.displayName),
      'the renames as node B heard them',
    ).to.deep.equal(['Typo Nmae', 'Typo Name']);
  });

  it('a broadcast goes at the latest QUEUE_MAX_MS after it was made, when the node makes them faster than its NOTIFYs return', async () => {
    const bob = await newUser(nodes.a);
    const bobOnB = await nodes.pool.open(nodes.b.url, bob);
    const made = new Map<string, number>();
    const delays: number[] = [];
    bobOnB.on('user:updated', (u: PublicUser) => {
      const at = made.get(u.displayName);
      if (at !== undefined) delays.push(Date.now() - at);
    });
    // Each of these NOTIFYs takes 120 ms (a busy database, none stuck), and the node makes 40 a second for 2.5 s:
    // one after the other, the last would go about 9.5 s late; at most QUEUE_MAX_MS in the queue, each goes about
    // 2.1 s late, which leaves 1.4 s to reach node B under the bound below (a loaded machine).
    const restore = slowNotifies({ 'Load Notice': 120 });
    const count = 100;
    try {
      for (let i = 0; i < count; i++) {
        const name = `Load Notice ${i}`;
        made.set(name, Date.now());
        nodes.a.services.io.to(`user:${bob.id}`).emit('user:updated', userShape(bob.id, name));
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      await waitFor(() => delays.length >= count, { what: 'every notice on node B', timeoutMs: 30_000 });
    } finally {
      restore();
    }
    expect(Math.max(...delays), 'the longest a broadcast took from node A to node B (ms)').to.be.below(
      QUEUE_MAX_MS + 1500,
    );
  });

  it('a broadcast made 1.5 s after a NOTIFY got stuck reaches the other node without waiting ORDER_WAIT_MS more', async () => {
    const ann = await newUser(nodes.a);
    const bob = await newUser(nodes.a);
    const bobOnB = await nodes.pool.open(nodes.b.url, bob);
    const heard: PublicUser[] = [];
    bobOnB.on('user:updated', (u: PublicUser) => heard.push(u));
    const restore = slowNotifies({ 'Stuck Notice': 6000 });
    try {
      nodes.a.services.io.to(`user:${ann.id}`).emit('user:updated', userShape(ann.id, 'Stuck Notice'));
      // The stuck one began 1.5 s ago: past ORDER_WAIT_MS already.
      await new Promise((r) => setTimeout(r, ORDER_WAIT_MS + 500));
      const sent = performance.now();
      nodes.a.services.io.to(`user:${bob.id}`).emit('user:updated', userShape(bob.id, 'For Bob'));
      await waitFor(() => heard.length > 0, { what: "Bob's notice on node B", timeoutMs: 10_000 });
      const tookMs = performance.now() - sent;
      expect(
        tookMs,
        "ms before Bob's notice reached node B (the stuck one began 1.5 s before it was made)",
      ).to.be.below(ORDER_WAIT_MS);
    } finally {
      restore();
    }
  });
});

describe('broadcasts between nodes: a node that stops sends what it had queued', function () {
  this.timeout(60_000);
  const nodes = useTwoNodes();

  it('the broadcasts made just before the node closes reach the other node, all of them, in order', async () => {
    const bob = await newUser(nodes.a);
    const bobOnB = await nodes.pool.open(nodes.b.url, bob);
    const heard: string[] = [];
    bobOnB.on('user:updated', (u: PublicUser) => heard.push(u.displayName));
    const adapter = nodes.a.services.io.of('/').adapter as unknown as {
      client: { pool: { query: (...a: unknown[]) => Promise<unknown> } };
    };
    const pool = adapter.client.pool;
    const query = pool.query.bind(pool);
    // Each NOTIFY takes 50 ms: ten of them are still queued when the node starts to close.
    pool.query = async (...args: unknown[]) => {
      if (typeof args[0] === 'string' && args[0].includes('pg_notify'))
        await new Promise((r) => setTimeout(r, 50));
      return query(...args);
    };
    const names = Array.from({ length: 10 }, (_, i) => `Last Notice ${i}`);
    for (const name of names)
      nodes.a.services.io.to(`user:${bob.id}`).emit('user:updated', userShape(bob.id, name));
    await nodes.a.close();
    await waitFor(() => heard.length === names.length, { what: 'every notice on node B', timeoutMs: 5000 });
    expect(heard).to.deep.equal(names);
  });
});

/** Waits until each node counts the other, then past their count watch (every second) and its second catch-up 3 s
 * later (peerSettleMs): the count's growth is acted on before what the test does next. */
async function bothCounted(nodes: TwoNodes): Promise<void> {
  const adapterB = nodes.b.services.io.of('/').adapter;
  const adapterA = nodes.a.services.io.of('/').adapter;
  await waitFor(async () => (await adapterB.serverCount()) === 2 && (await adapterA.serverCount()) === 2, {
    what: 'each node counts the other',
    timeoutMs: 15_000,
  });
  await new Promise((r) => setTimeout(r, 4000));
}

/**
 * From now on: the notices on the cluster's channel (node B's catch-ups among them), and node B's count of nodes
 * every 20 ms. `expectAForgotten()` checks that after node A's goodbye (heard from `closedAt`, the notices' count
 * when A began to close) B sent no catch-up and never counted A back.
 */
async function watchFromB(nodes: TwoNodes): Promise<{
  notices: string[];
  expectAForgotten(closedAt: number): void;
  stop(): Promise<void>;
}> {
  const adapterB = nodes.b.services.io.of('/').adapter;
  const listener = new pg.Client({ connectionString: nodes.b.services.config.database.url });
  await listener.connect();
  const notices: string[] = [];
  listener.on('notification', (n) => notices.push(n.payload ?? ''));
  await listener.query('LISTEN xfchat_messages');
  const counts: number[] = [];
  const watch = setInterval(() => void adapterB.serverCount().then((c) => counts.push(c)), 20);
  return {
    notices,
    expectAForgotten(closedAt) {
      const after = notices
        .slice(closedAt)
        .map((p) => JSON.parse(p) as { n: string; c?: number; g?: number });
      // A's goodbye names A.
      const idOfA = after.find((m) => m.g === 1)?.n;
      const catchUpsByB = after.filter((m) => m.c === 1 && m.n !== idOfA);
      expect(catchUpsByB, 'catch-up notices B sent after A said goodbye').to.deep.equal([]);
      expect(counts, 'B counted A gone at its goodbye').to.include(1);
      expect(
        counts.slice(counts.indexOf(1)),
        'B’s count of nodes after A’s goodbye (A stopped)',
      ).to.not.include(2);
    },
    async stop() {
      clearInterval(watch);
      await listener.end();
    },
  };
}

/**
 * A node that stops sends the broadcasts it had queued (above), and its adapter's goodbye (ADAPTER_CLOSE) after
 * them: Socket.IO's cluster adapter counts the sender of any message as a live node, so a broadcast heard after the
 * goodbye brought the stopped node back into the others' counts, and set every node catching up
 * (docs/messaging.md: a node that shuts down cleanly says goodbye and the others forget it without catching up).
 */
describe('broadcasts between nodes: a node that stops cleanly is forgotten by the others', function () {
  this.timeout(60_000);
  const nodes = useTwoNodes();

  it('its last broadcasts go before its goodbye: they do not bring it back into the other node’s count, nor set off catch-ups', async () => {
    const bob = await newUser(nodes.a);
    const bobOnB = await nodes.pool.open(nodes.b.url, bob);
    const heard: string[] = [];
    bobOnB.on('user:updated', (u: PublicUser) => heard.push(u.displayName));
    const adapterB = nodes.b.services.io.of('/').adapter;
    await bothCounted(nodes);
    const watching = await watchFromB(nodes);

    // A's broadcast NOTIFYs take 120 ms each (a busy database): some are still queued when A stops.
    const adapterA = nodes.a.services.io.of('/').adapter as unknown as {
      client: { pool: { query: (...a: unknown[]) => Promise<unknown> } };
    };
    const pool = adapterA.client.pool;
    const query = pool.query.bind(pool);
    pool.query = async (...args: unknown[]) => {
      const payload = (args[1] as unknown[] | undefined)?.[1];
      if (typeof payload === 'string' && payload.includes('Last Notice'))
        await new Promise((r) => setTimeout(r, 120));
      return query(...args);
    };
    try {
      const names = Array.from({ length: 10 }, (_, i) => `Last Notice ${i}`);
      for (const name of names)
        nodes.a.services.io.to(`user:${bob.id}`).emit('user:updated', userShape(bob.id, name));
      const closedAt = watching.notices.length;
      await nodes.a.close();
      await waitFor(() => heard.length === names.length, { what: 'every notice on node B', timeoutMs: 5000 });
      await new Promise((r) => setTimeout(r, 1500));
      watching.expectAForgotten(closedAt);
      expect(await adapterB.serverCount(), 'B’s count of nodes 1.5 s after A stopped').to.equal(1);
    } finally {
      await watching.stop();
    }
  });
});

/**
 * io.close() makes the adapter's goodbye, then waits for the HTTP server to close: a request still being answered
 * (a rename whose row was locked) broadcasts after it. The goodbye is held back until no request is left
 * (sayGoodbye), so the other nodes never hear from the node after it.
 */
describe('broadcasts between nodes: one made while the node closes goes before its goodbye', function () {
  this.timeout(60_000);
  const nodes = useTwoNodes();

  it('a rename answered while the node closes does not bring it back into the other node’s count', async () => {
    const alice = await insertUser(nodes.a.services.db.knex, nodes.a.services.config);
    const bob = await insertUser(nodes.a.services.db.knex, nodes.a.services.config);
    await insertFriendship(nodes.a.services.db.knex, alice.id, bob.id);
    const bobOnB = await nodes.pool.open(nodes.b.url, bob);
    const heard: string[] = [];
    bobOnB.on('user:updated', (u: PublicUser) => heard.push(u.displayName));
    const adapterB = nodes.b.services.io.of('/').adapter;
    await bothCounted(nodes);
    const watching = await watchFromB(nodes);

    // Hold alice's row: her rename waits in flight.
    const locker = new pg.Client({ connectionString: nodes.b.services.config.database.url });
    await locker.connect();
    await locker.query('BEGIN');
    await locker.query('SELECT 1 FROM users WHERE id = $1 FOR UPDATE', [alice.id]);
    try {
      const renamed = request(nodes.a.url, 'PATCH', '/users/me', {
        token: alice.token,
        body: { displayName: 'Late Rename' },
      });
      await new Promise((r) => setTimeout(r, 300));
      const closedAt = watching.notices.length;
      const closing = nodes.a.close();
      // The rename commits a moment later (past the fanout's count watch, every second), while io.close() waits
      // for the HTTP server to close.
      await new Promise((r) => setTimeout(r, 1200));
      await locker.query('COMMIT');
      const res = await renamed;
      expect(res.status).to.equal(200);
      await closing;
      await waitFor(() => heard.length === 1, { what: 'the rename on node B', timeoutMs: 5000 });
      await waitFor(async () => (await adapterB.serverCount()) === 1, {
        what: 'B counts A gone',
        timeoutMs: 5000,
      });
      await new Promise((r) => setTimeout(r, 1500));
      watching.expectAForgotten(closedAt);
    } finally {
      await locker.end().catch(() => undefined);
      await watching.stop();
    }
  });
});

/**
 * The goodbye waits for the requests still being answered (above), but not for a WebSocket whose client never
 * answers the closing handshake, which holds io.close() for ws's 30 s: it goes QUEUE_MAX_MS into the close at the
 * latest, else the other nodes counted the stopped node until their heartbeat timeout.
 */
describe('broadcasts between nodes: a stopping node’s goodbye and a WebSocket client that never answers the close', function () {
  this.timeout(90_000);
  const nodes = useTwoNodes();

  it('the other node counts the stopped node gone within QUEUE_MAX_MS of the close, not at its heartbeat timeout', async () => {
    const alice = await insertUser(nodes.a.services.db.knex, nodes.a.services.config);
    const adapterB = nodes.b.services.io.of('/').adapter;
    await waitFor(async () => (await adapterB.serverCount()) === 2, {
      what: 'B counts A',
      timeoutMs: 15_000,
    });

    const url = nodes.a.url.replace(/^http/, 'ws') + '/socket.io/?EIO=4&transport=websocket';
    const ws = new WebSocket(url);
    const connected = new Promise<void>((resolve, reject) => {
      ws.on('message', (data: Buffer) => {
        const text = data.toString('utf8');
        if (text.startsWith('0')) ws.send(`40${JSON.stringify({ token: alice.token })}`);
        else if (text.startsWith('40')) resolve();
        else if (text.startsWith('44')) reject(new Error(text));
      });
      ws.on('error', reject);
    });
    await connected;
    // The client stops reading: it never answers the server's close frame.
    (ws as unknown as { _socket: { pause(): void } })._socket.pause();

    const started = Date.now();
    const closing = nodes.a.close();
    await waitFor(async () => (await adapterB.serverCount()) === 1, {
      what: 'B counts A gone',
      timeoutMs: 45_000,
    });
    const goneAfter = Date.now() - started;
    await closing;
    ws.terminate();
    expect(goneAfter, 'ms until B counted A gone').to.be.below(QUEUE_MAX_MS + 1000);
  });
});
