import { expect } from 'chai';
import pg from 'pg';
import type { Ack, SendResult, SubscribeResult } from '../lib/protocol/index.js';
import { expectAckError, type ErrorResponse } from './helpers/errors.js';
import { request } from './helpers/http.js';
import { captureLogs } from './helpers/logCapture.js';
import { useNode } from './helpers/nodes.js';
import type { ClientSocket } from './helpers/sockets.js';
import { insertFriendship, insertUser, type TestUser } from './helpers/users.js';
import { waitFor } from './helpers/waitFor.js';

/**
 * Guarantee 6 with the pool as the bottleneck: a node with DB_POOL_SIZE=2 whose two connections are both held by
 * requests blocked on a lock taken from outside (LOCK TABLE messages). Everything else needing a connection must
 * answer DB_UNAVAILABLE within the acquire timeout, nothing may hang, and once the lock goes the node recovers.
 */

const POOL_SIZE = 2;
const ACQUIRE_TIMEOUT_MS = 1000;
/** Scheduling slack on a shared 2-core machine; still far below "hanging". */
const SLACK_MS = 2000;

function subscribe(
  socket: ClientSocket,
  conversationId: string,
  timeoutMs: number,
): Promise<Ack<SubscribeResult>> {
  return socket
    .timeout(timeoutMs)
    .emitWithAck('conversation:subscribe', { conversationId, limit: 10 }) as Promise<Ack<SubscribeResult>>;
}

function send(
  socket: ClientSocket,
  conversationId: string,
  clientMsgId: string,
  body: string,
): Promise<Ack<SendResult>> {
  return socket.timeout(15_000).emitWithAck('message:send', { conversationId, clientMsgId, body }) as Promise<
    Ack<SendResult>
  >;
}

/** `work`'s result, how long it took and when it ended (`performance.now()`). */
async function timed<T>(work: () => Promise<T>): Promise<{ value: T; ms: number; at: number }> {
  const t0 = performance.now();
  const value = await work();
  const at = performance.now();
  return { value, ms: at - t0, at };
}

describe('pool exhaustion (DB_POOL_SIZE=2, DB_ACQUIRE_TIMEOUT_MS=1000)', function () {
  this.timeout(60_000);
  const logs = captureLogs('info');
  const node = useNode({
    env: { DB_POOL_SIZE: String(POOL_SIZE), DB_ACQUIRE_TIMEOUT_MS: String(ACQUIRE_TIMEOUT_MS) },
    logger: logs.logger,
  });
  const { server, pool: sockets } = node;
  let observer: pg.Client;
  const lockers: pg.Client[] = [];

  before(async function () {
    // pg_stat_activity is read from a connection of its own, outside any transaction (its snapshot is per transaction).
    observer = new pg.Client({ connectionString: node.databaseUrl });
    await observer.connect();
  });

  afterEach(async function () {
    for (const locker of lockers.splice(0)) {
      // ROLLBACK outside a transaction is only a warning: safe whether or not the test released the lock.
      await locker.query('ROLLBACK');
      await locker.end();
    }
  });

  after(async function () {
    await observer?.end();
  });

  /** Two friends, their direct conversation (through the API), and alice's socket subscribed to it. */
  async function conversationWithSocket(): Promise<{
    alice: TestUser;
    bob: TestUser;
    conversationId: string;
    socket: ClientSocket;
  }> {
    const knex = server.services.db.knex;
    const alice = await insertUser(knex, server.services.config);
    const bob = await insertUser(knex, server.services.config);
    await insertFriendship(knex, alice.id, bob.id);
    const created = await request<{ conversation: { id: string } }>(server.url, 'POST', '/conversations', {
      token: alice.token,
      body: { type: 'direct', userId: bob.id },
    });
    expect(created.status).to.equal(201);
    const conversationId = created.body.conversation.id;
    const socket = await sockets.open(server.url, alice);
    const subscribed = await subscribe(socket, conversationId, 10_000);
    expect(subscribed.ok).to.equal(true);
    return { alice, bob, conversationId, socket };
  }

  /**
   * Locks the messages table from outside, then makes two subscribes (which read history) block on it: each holds
   * one of the node's two pool connections. Two sockets, since a socket's subscribes run one at a time. Resolves
   * once both backends wait on the lock.
   */
  async function holdPool(user: TestUser, conversationId: string) {
    const holders = await Promise.all([1, 2].map(() => sockets.open(server.url, user)));
    const locker = new pg.Client({ connectionString: node.databaseUrl, application_name: 'test-locker' });
    await locker.connect();
    lockers.push(locker);
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE messages IN ACCESS EXCLUSIVE MODE');
    const held = holders.map((holder) => timed(() => subscribe(holder, conversationId, 30_000)));
    await waitFor(
      async () => {
        const result = await observer.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity
           WHERE datname = current_database() AND application_name = 'xfchat'
             AND wait_event_type = 'Lock' AND wait_event <> 'object'`,
        );
        return (result.rows[0]?.n ?? 0) >= POOL_SIZE;
      },
      { what: 'both pool connections blocked on the lock', timeoutMs: 10_000 },
    );
    return {
      held,
      release: async () => {
        await locker.query('COMMIT');
      },
    };
  }

  it('answers DB_UNAVAILABLE within the acquire timeout over REST and Socket.IO, while /healthz still answers', async function () {
    const { alice, bob, conversationId, socket } = await conversationWithSocket();
    const { held, release } = await holdPool(alice, conversationId);

    const [history, list, sent, ready, health] = await Promise.all([
      timed(() =>
        request(server.url, 'GET', `/conversations/${conversationId}/messages?after=0`, { token: bob.token }),
      ),
      timed(() => request(server.url, 'GET', '/conversations', { token: bob.token })),
      timed(() => send(socket, conversationId, 'during-exhaustion', 'will not be stored')),
      timed(() => request(server.url, 'GET', '/readyz')),
      timed(() => request(server.url, 'GET', '/healthz')),
    ]);

    for (const [name, response] of [
      ['GET messages', history],
      ['GET /conversations', list],
    ] as const) {
      expect(response.value.status, name).to.equal(503);
      expect(response.value.body, name).to.deep.equal({
        error: { code: 'DB_UNAVAILABLE', message: 'The database is unavailable; retry later.' },
      } satisfies ErrorResponse);
      expect(response.value.text, `${name} leaks no driver text`).to.not.match(/knex|pool|timeout|SELECT/i);
      expect(response.ms, name).to.be.below(ACQUIRE_TIMEOUT_MS + SLACK_MS);
    }
    expectAckError(sent.value, 'DB_UNAVAILABLE');
    expect(sent.ms).to.be.below(ACQUIRE_TIMEOUT_MS + SLACK_MS);
    expect(ready.value.status).to.equal(503);
    expect(ready.ms).to.be.below(ACQUIRE_TIMEOUT_MS + SLACK_MS);
    expect(health.value.status).to.equal(200);

    // The held requests were waiting all along; they complete as soon as the lock goes.
    await release();
    for (const { value } of await Promise.all(held)) expect(value.ok).to.equal(true);
    // Answers of an outage are not defects: no error lines (no stack per request), one warning per code.
    const entries = logs.entries();
    expect(entries.filter((e) => Number(e.level) >= 50).map((e) => e.msg)).to.deep.equal([]);
    expect(entries.filter((e) => e.msg === 'request failed' && Number(e.level) === 40)).to.have.length.within(
      1,
      2,
    );
  });

  it('answers a send that waited for the writer behind a failed one within the acquire timeout too', async function () {
    const { alice, conversationId, socket } = await conversationWithSocket();
    // A second conversation of alice's: its send waits for the writer's only transaction slot (DB_POOL_SIZE=2
    // leaves the writer one), which the first send's transaction holds while it waits for a connection.
    const carol = await insertUser(server.services.db.knex, server.services.config);
    await insertFriendship(server.services.db.knex, alice.id, carol.id);
    const second = await request<{ conversation: { id: string } }>(server.url, 'POST', '/conversations', {
      token: alice.token,
      body: { type: 'direct', userId: carol.id },
    });
    expect(second.status).to.equal(201);
    // Subscribed, the node knows alice takes part: the send needs no connection before the writer.
    expect((await subscribe(socket, second.body.conversation.id, 10_000)).ok).to.equal(true);
    const { held, release } = await holdPool(alice, conversationId);
    try {
      const first = timed(() => send(socket, conversationId, 'first-waits', 'first'));
      await new Promise((resolve) => setTimeout(resolve, 200));
      const behind = await timed(() => send(socket, second.body.conversation.id, 'second-waits', 'second'));
      const ahead = await first;
      expectAckError(ahead.value, 'DB_UNAVAILABLE');
      expectAckError(behind.value, 'DB_UNAVAILABLE');
      // Answered with the write it waited behind, not an acquire timeout after it (the two answers leave together;
      // timed from each other, not from the sends, so that a stall of the test between the sends cannot count).
      expect(
        behind.at - ahead.at,
        'answered with the write it waited behind, not after one of its own',
      ).to.be.below(ACQUIRE_TIMEOUT_MS / 2);
    } finally {
      await release();
    }
    await Promise.all(held);
  });

  it('recovers once the pool frees: held requests finish, sends work, and the failed send left no seq', async function () {
    const { alice, bob, conversationId, socket } = await conversationWithSocket();
    const { held, release } = await holdPool(alice, conversationId);

    const failed = await send(socket, conversationId, 'retry-me', 'first try');
    expectAckError(failed, 'DB_UNAVAILABLE');

    const released = performance.now();
    await release();
    const heldResults = await Promise.all(held);
    for (const { value } of heldResults) {
      expect(value.ok).to.equal(true);
      expect(value.ok && value.messages).to.deep.equal([]);
    }
    expect(performance.now() - released).to.be.below(SLACK_MS);

    // The retry of the failed send is stored once, as the conversation's first message: no gap, no ghost.
    const retried = await send(socket, conversationId, 'retry-me', 'first try');
    expect(retried.ok).to.equal(true);
    expect(retried.ok && retried.duplicate).to.equal(false);
    expect(retried.ok && retried.message.seq).to.equal(1);
    const next = await send(socket, conversationId, 'after-recovery', 'second');
    expect(next.ok && next.message.seq).to.equal(2);

    const history = await request<{
      messages: Array<{ seq: number; clientMsgId: string }>;
      hasMore: boolean;
    }>(server.url, 'GET', `/conversations/${conversationId}/messages?after=0`, { token: bob.token });
    expect(history.status).to.equal(200);
    expect(history.body.messages.map((m) => [m.seq, m.clientMsgId])).to.deep.equal([
      [1, 'retry-me'],
      [2, 'after-recovery'],
    ]);
    const ready = await request(server.url, 'GET', '/readyz');
    expect(ready.status).to.equal(200);
  });
});
