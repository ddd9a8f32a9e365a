import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import type { Ack, ErrorCode, SendResult } from '../lib/protocol/index.js';
import type { RunningServer } from '../lib/server.js';
import {
  rows,
  seqState,
  createGroup,
  expectOk,
  friendsOf,
  newUser,
  range,
  record,
  send,
  subscribe,
  putMessage,
} from './helpers/chat.js';
import { errorCodeOf, expectAckError, expectError } from './helpers/errors.js';
import { controlBusSettled } from './helpers/faults.js';
import { useNode, useTwoNodes } from './helpers/nodes.js';
import { request } from './helpers/http.js';
import { sampleValue, scrape } from './helpers/prometheus.js';
import { createTestDatabase, untilAStatementWaitsForALock } from './helpers/postgres.js';
import { startTestServer } from './helpers/server.js';
import { startProxy, type FaultProxy } from './helpers/proxy.js';
import type { TestUser } from './helpers/users.js';
import { waitFor } from './helpers/waitFor.js';

const POISON = 'this body makes the test trigger raise';

describe('message failures, limits and shutdown', function () {
  const { a: server, b: other, pool } = useTwoNodes();

  before(async () => {
    // A trigger that fails inserts of one marked body: a message that fails inside the transaction.
    await server.services.db.knex
      .raw(`CREATE FUNCTION refuse_marked_body() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.body = '${POISON}' THEN RAISE EXCEPTION 'refused by the test trigger'; END IF;
        RETURN NEW;
      END $$`);
    await server.services.db.knex.raw(
      'CREATE TRIGGER refuse_marked_body BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION refuse_marked_body()',
    );
  });

  const put = (
    user: TestUser,
    conversationId: string,
    clientMsgId: string,
    body: unknown,
    url = server.url,
  ) => putMessage(url, user, conversationId, clientMsgId, body);

  const conversationState = (id: string) => seqState(server.services.db.knex, id);

  /** A node on a database of its own, reached through a fault proxy, with short pool timeouts and `env` on top. */
  async function proxiedNode(env: Record<string, string> = {}) {
    const databaseUrl = await createTestDatabase();
    const proxy = await startProxy(databaseUrl);
    const node = await startTestServer(proxy.urlThrough(databaseUrl), {
      DB_ACQUIRE_TIMEOUT_MS: '1000',
      DB_CONNECT_TIMEOUT_MS: '500',
      ...env,
    });
    return { proxy, node };
  }

  /** A user's group on `node`, a socket of theirs there, and a first message, sent while all works. */
  async function groupWithFirstMessage(node: RunningServer, body: string) {
    const owner = await newUser(node);
    const group = await createGroup(node.url, owner, await friendsOf(node, owner, 1));
    const socket = await pool.open(node.url, owner);
    expectOk(await send(socket, group.id, body));
    return { owner, group, socket };
  }

  it('rolls back a failing batch: nothing stored, every sender told, seq untouched, next sends fine', async () => {
    const owner = await newUser(server);
    const members = await friendsOf(server, owner, 3);
    const group = await createGroup(server.url, owner, members);
    const sockets = await Promise.all(members.map((m) => pool.open(server.url, m)));
    const watcher = await pool.open(other.url, owner);
    const seen = record(watcher, 'message:new');
    await subscribe(watcher, group.id);
    expectOk(await send(sockets[0]!, group.id, 'first'));

    // Hold the conversation row so the next send waits in the writer and the following ones queue behind it.
    const lock = await server.services.db.knex.transaction();
    let acks: Array<Ack<SendResult>>;
    try {
      await lock.raw('SELECT id FROM conversations WHERE id = ? FOR UPDATE', [group.id]);
      const inFlight = send(sockets[0]!, group.id, 'in flight');
      const actor = await waitFor(() => server.services.messaging.registry.find(group.id), {
        what: 'the actor',
      });
      await untilAStatementWaitsForALock(server.services.db.knex, 'the in-flight send to wait for the lock');
      const batch = [
        send(sockets[0]!, group.id, 'fine 1'),
        send(sockets[1]!, group.id, POISON),
        send(sockets[2]!, group.id, 'fine 2'),
      ];
      await waitFor(() => actor.queued === 3, { what: 'the three sends to queue as one batch' });
      await lock.commit();
      expect(expectOk(await inFlight).message.seq).to.equal(2);
      acks = await Promise.all(batch);
    } finally {
      if (!lock.isCompleted()) await lock.rollback();
    }
    expect(acks.map(errorCodeOf)).to.deep.equal(['INTERNAL', 'INTERNAL', 'INTERNAL'] satisfies ErrorCode[]);
    for (const ack of acks) {
      if (ack.ok) continue;
      // The catalog's message only: no SQL, no trigger text.
      expect(ack.error.message).to.equal('Internal error.');
    }
    expect(await conversationState(group.id)).to.deep.equal({ lastSeq: 2, seqs: [1, 2] });
    const next = await Promise.all(sockets.map((s, i) => send(s, group.id, `after ${i}`)));
    expect(next.map((a) => expectOk(a).message.seq).sort()).to.deep.equal([3, 4, 5]);
    await waitFor(() => seen.length === 5, { what: 'the watcher to see the five stored messages' });
    expect(seen.map((m) => m.body)).to.not.include(POISON);
    expect(seen.map((m) => m.seq).sort()).to.deep.equal(range(5));
  });

  describe('with a message rate limit', () => {
    const { server: limited } = useNode({ env: { RATE_LIMIT_MESSAGES_PER_SEC: '1' } });

    it('answers 429 RATE_LIMITED with Retry-After past the burst, one budget for REST and sockets', async () => {
      const owner = await newUser(limited);
      const group = await createGroup(limited.url, owner, await friendsOf(limited, owner, 1));
      const socket = await pool.open(limited.url, owner);
      // Burst of twice the rate: two sends pass, the third is refused on either interface.
      expectOk(await send(socket, group.id, 'one'));
      const two = await put(owner, group.id, randomUUID(), { body: 'two' }, limited.url);
      expect(two.status).to.equal(201);
      const three = await put(owner, group.id, randomUUID(), { body: 'three' }, limited.url);
      expectError(three, 429, 'RATE_LIMITED');
      expect(Number(three.headers.get('retry-after'))).to.be.at.least(1);
      // An ack has no headers: the wait is in its details.
      const four = expectAckError(await send(socket, group.id, 'four'), 'RATE_LIMITED');
      expect(four.details).to.have.property('retryAfter').that.is.within(1, 2);
      const stored = await seqState(limited.services.db.knex, group.id);
      expect(stored).to.deep.equal({ lastSeq: 2, seqs: [1, 2] });
    });
  });

  describe('while PostgreSQL is unreachable', () => {
    let proxy: FaultProxy;
    let cut: RunningServer;

    before(async () => {
      ({ proxy, node: cut } = await proxiedNode());
    });

    after(async () => {
      await proxy?.start();
      await cut?.close();
      await proxy?.stop();
    });

    it('drops every cached participant set when the control bus reconnects (events may have been missed)', async function () {
      this.timeout(60_000);
      const owner = await newUser(cut);
      const [friend] = await friendsOf(cut, owner, 1);
      const group = await createGroup(cut.url, owner, [friend!]);
      // The group's own membership.changed, heard late, would drop the entry the read below caches.
      await controlBusSettled(cut.services.controlBus);
      const readAs = (user: TestUser) =>
        request(cut.url, 'GET', `/conversations/${group.id}/messages`, { token: user.token });
      expect((await readAs(friend!)).status).to.equal(200);
      // The cache's own answer (every path that acts also checks the database in its statement now, typing and
      // read markers included, and drops the entry when that disagrees: only the cache itself shows it stale).
      const { membership } = cut.services.messaging;
      const cached = () =>
        membership.assert(group.id, friend!.id).then(
          () => 'ok',
          (err: unknown) => (err as { code?: string }).code,
        );
      // Removed behind the node's back: no membership.changed is published, so the cached entry stays stale.
      await cut.services.db.knex.raw(
        'DELETE FROM conversation_participants WHERE conversation_id = ? AND user_id = ?',
        [group.id, friend!.id],
      );
      expect(await cached(), 'the stale entry').to.equal('ok');
      await proxy.stop();
      await proxy.start();
      await waitFor(async () => (await cached()) === 'NOT_FOUND', {
        timeoutMs: 20_000,
        what: 'the reconnected node to read the participants again',
      });
    });

    it('answers sends DB_UNAVAILABLE within the acquire timeout, stores nothing, and works again after', async function () {
      this.timeout(60_000);
      const { group, socket } = await groupWithFirstMessage(cut, 'before the cut');
      await proxy.stop();
      const started = Date.now();
      const clientMsgId = randomUUID();
      const acks = await Promise.all([
        send(socket, group.id, 'during the cut', clientMsgId),
        send(socket, group.id, 'too'),
      ]);
      expect(acks.map(errorCodeOf)).to.deep.equal(['DB_UNAVAILABLE', 'DB_UNAVAILABLE'] satisfies ErrorCode[]);
      expect(Date.now() - started).to.be.below(5000);
      await proxy.start();
      // The client retries with the same clientMsgId until it gets an ack: exactly one message, right after seq 1.
      const retried = await waitFor(
        async () => {
          const ack = await send(socket, group.id, 'during the cut', clientMsgId);
          return ack.ok ? ack : undefined;
        },
        { timeoutMs: 20_000, what: 'a send to succeed once the database is back' },
      );
      expect(retried.message.seq).to.equal(2);
      expect(retried.duplicate).to.equal(false);
      const stored = await rows<{ body: string }>(
        cut.services.db.knex,
        'SELECT body FROM messages WHERE conversation_id = ? ORDER BY seq',
        [group.id],
      );
      expect(stored.map((r) => r.body)).to.deep.equal(['before the cut', 'during the cut']);
    });

    it('answers DB_UNAVAILABLE, never INTERNAL, within the acquire timeout while PostgreSQL takes connections and never answers', async function () {
      this.timeout(60_000);
      const { owner, group, socket } = await groupWithFirstMessage(cut, 'before the silence');
      const timed = async <T>(work: () => Promise<T>): Promise<{ result: T; ms: number }> => {
        const started = Date.now();
        const result = await work();
        return { result, ms: Date.now() - started };
      };
      // Every connection is cut; new ones are taken, and nothing they send reaches PostgreSQL (pg's own connect
      // timeout, 500 ms here, fires before the pool's acquire timeout of 1000 ms).
      proxy.cut();
      proxy.hold('upstream');
      try {
        const sends: Array<Promise<{ result: Ack<SendResult>; ms: number }>> = [];
        for (let i = 0; i < 4; i++) {
          sends.push(timed(() => send(socket, group.id, `into the silence ${i}`)));
          await new Promise((resolve) => setTimeout(resolve, 250));
        }
        const read = timed(() =>
          request(cut.url, 'GET', `/conversations/${group.id}/messages`, { token: owner.token }),
        );
        const acks = await Promise.all(sends);
        expect(acks.map((a) => errorCodeOf(a.result))).to.deep.equal(
          range(4).map((): ErrorCode => 'DB_UNAVAILABLE'),
        );
        // Those queued behind a failed write were answered with it, not after a wait of their own.
        for (const { ms } of acks) expect(ms).to.be.below(2500);
        const { result: res, ms } = await read;
        expectError(res, 503, 'DB_UNAVAILABLE');
        expect(ms).to.be.below(2500);
      } finally {
        proxy.release();
      }
      await waitFor(async () => (await send(socket, group.id, 'after the silence')).ok, {
        timeoutMs: 20_000,
        what: 'a send to succeed once the database answers again',
      });
      const stored = await rows<{ body: string }>(
        cut.services.db.knex,
        'SELECT body FROM messages WHERE conversation_id = ? ORDER BY seq',
        [group.id],
      );
      expect(stored.map((r) => r.body)).to.deep.equal(['before the silence', 'after the silence']);
    });
  });

  describe('while PostgreSQL stops answering on connections already open', () => {
    let proxy: FaultProxy;
    let node: RunningServer;

    before(async () => {
      ({ proxy, node } = await proxiedNode({ DB_STATEMENT_TIMEOUT_MS: '1000' }));
    });

    after(async () => {
      proxy?.release();
      await node?.close();
      await proxy?.close();
    });

    it('answers REST, subscribes and sends DB_UNAVAILABLE, never INTERNAL, once the query timeout passes', async function () {
      this.timeout(60_000);
      const { owner, group, socket } = await groupWithFirstMessage(node, 'before the freeze');
      // The pool's connections stay open, and nothing sent on them reaches PostgreSQL, as with a server stopped
      // (SIGSTOP) or a network that drops packets without a reset: each statement ends at pg's query timeout
      // (DB_STATEMENT_TIMEOUT_MS + 1 s), which Knex reports as "<statement> - Query read timeout".
      proxy.hold('upstream');
      try {
        const [res, subscribed, sent] = await Promise.all([
          request(node.url, 'GET', `/conversations/${group.id}/messages`, { token: owner.token }),
          socket.emitWithAck('conversation:subscribe', { conversationId: group.id }),
          send(socket, group.id, 'into the freeze'),
        ]);
        expectError(res, 503, 'DB_UNAVAILABLE');
        expect(errorCodeOf(subscribed)).to.equal('DB_UNAVAILABLE');
        expect(errorCodeOf(sent)).to.equal('DB_UNAVAILABLE');
      } finally {
        proxy.release();
      }
      await waitFor(async () => (await send(socket, group.id, 'after the freeze')).ok, {
        timeoutMs: 20_000,
        what: 'a send to succeed once the database answers again',
      });
    });
  });

  describe('while PostgreSQL stops answering, once the node finds it stalled (DB_STALL_TIMEOUT_MS)', () => {
    let proxy: FaultProxy;
    let node: RunningServer;
    // pg's query timeout is 21 s here, the acquire timeout 15 s and the connect timeout 12 s (a new connection for a
    // caller that waits for one fails no sooner): every answer below comes long before either, from the stall watch.
    // Three connections, so that some requests wait for one.
    const QUERY_TIMEOUT_MS = 21_000;
    const ACQUIRE_TIMEOUT_MS = 15_000;

    before(async () => {
      ({ proxy, node } = await proxiedNode({
        DB_STATEMENT_TIMEOUT_MS: String(QUERY_TIMEOUT_MS - 1000),
        DB_ACQUIRE_TIMEOUT_MS: String(ACQUIRE_TIMEOUT_MS),
        DB_CONNECT_TIMEOUT_MS: '12000',
        DB_STALL_TIMEOUT_MS: '1000',
        DB_POOL_SIZE: '3',
        DB_WRITE_CONCURRENCY: '2',
      }));
    });

    after(async () => {
      proxy?.release();
      await node?.close();
      await proxy?.close();
    });

    const stalledGauge = async () => sampleValue(await scrape(node.url), 'xfchat_db_stalled');

    it('does not take a long statement for a stall while PostgreSQL answers a fresh connection', async function () {
      this.timeout(20_000);
      let seenStalled = false;
      // The pool has an idle connection for the long statement, so a new connection is the probe's.
      await node.services.db.knex.raw('SELECT 1');
      const connectionsBefore = proxy.connections.length;
      const watching = setInterval(() => (seenStalled ||= node.services.db.stalled), 50);
      try {
        // Nothing else runs on the pool (the node's minute timers may answer once each): the silence lasts past the
        // timeout, and the probe's answer settles it.
        await node.services.db.knex.raw('SELECT pg_sleep(8)');
      } finally {
        clearInterval(watching);
      }
      expect(proxy.connections.length - connectionsBefore, 'connections opened: the probe').to.be.at.least(1);
      expect(seenStalled).to.equal(false);
      expect(await stalledGauge()).to.equal(0);
    });

    it('answers the statements waiting, the callers waiting for a connection and every new request DB_UNAVAILABLE long before the timeouts, then recovers', async function () {
      this.timeout(60_000);
      const { owner, group, socket } = await groupWithFirstMessage(node, 'before the freeze');
      const history = () =>
        request(node.url, 'GET', `/conversations/${group.id}/messages`, { token: owner.token });
      proxy.hold('upstream');
      try {
        const started = performance.now();
        // More requests than the pool has connections: the rest wait for one.
        const answers = Promise.all([
          send(socket, group.id, 'into the freeze'),
          ...[1, 2, 3, 4, 5].map(history),
        ]);
        await waitFor(async () => (sampleValue(await scrape(node.url), 'xfchat_db_pool_waiting') ?? 0) >= 1, {
          timeoutMs: 2000,
          what: 'requests waiting for a pool connection',
        });
        const [sent, ...responses] = await answers;
        const waitedMs = performance.now() - started;
        for (const res of responses) expectError(res, 503, 'DB_UNAVAILABLE');
        expect(errorCodeOf(sent)).to.equal('DB_UNAVAILABLE');
        // The watch needs its timeout (1 s), up to a check (1 s) and the probe's connect timeout (2 s).
        expect(waitedMs, 'answered by the stall watch, not at the query or acquire timeout').to.be.below(
          QUERY_TIMEOUT_MS / 2,
        );
        expect(waitedMs).to.be.below(ACQUIRE_TIMEOUT_MS / 2);
        expect(node.services.db.stalled).to.equal(true);
        expect(await stalledGauge()).to.equal(1);

        // From now on, at once: no statement is sent to the silent server.
        const now = performance.now();
        const [later, ready, laterSend] = await Promise.all([
          history(),
          fetch(`${node.url}/readyz`),
          send(socket, group.id, 'still frozen'),
        ]);
        expectError(later, 503, 'DB_UNAVAILABLE');
        expect(ready.status).to.equal(503);
        expect(errorCodeOf(laterSend)).to.equal('DB_UNAVAILABLE');
        expect(performance.now() - now, 'answered without waiting for PostgreSQL').to.be.below(1000);
      } finally {
        proxy.release();
      }
      await waitFor(async () => (await send(socket, group.id, 'after the freeze')).ok, {
        timeoutMs: 20_000,
        what: 'a send to succeed once the database answers again',
      });
      expect(node.services.db.stalled).to.equal(false);
      expect(await stalledGauge()).to.equal(0);
      const stored = await rows<{ body: string }>(
        node.services.db.knex,
        'SELECT body FROM messages WHERE conversation_id = ? ORDER BY seq',
        [group.id],
      );
      expect(stored.map((r) => r.body)).to.deep.equal(['before the freeze', 'after the freeze']);
    });
  });

  describe('shutting down', () => {
    it('finishes every send already accepted into a mailbox before closing sockets and the pool', async () => {
      const databaseUrl = await createTestDatabase();
      const closing = await startTestServer(databaseUrl);
      const survivor = await startTestServer(databaseUrl);
      try {
        const { owner, group, socket } = await groupWithFirstMessage(closing, 'warm-up');
        const lock = await survivor.services.db.knex.transaction();
        let acks: Array<Ack<SendResult>>;
        let putStatus: number;
        try {
          await lock.raw('SELECT id FROM conversations WHERE id = ? FOR UPDATE', [group.id]);
          const pending = range(4).map((n) => send(socket, group.id, `accepted ${n}`));
          const viaRest = put(owner, group.id, randomUUID(), { body: 'accepted over REST' }, closing.url);
          const actor = await waitFor(() => closing.services.messaging.registry.find(group.id));
          await waitFor(() => actor.queued === 4, { what: 'sends queued behind the locked one' });
          const stopped = closing.close();
          // Once draining, new sends are refused at once.
          const late = await send(socket, group.id, 'too late');
          expectAckError(late, 'OVERLOADED');
          await lock.commit();
          acks = await Promise.all(pending);
          putStatus = (await viaRest).status;
          await stopped;
        } finally {
          if (!lock.isCompleted()) await lock.rollback();
        }
        expect(acks.map((a) => expectOk(a).message.seq).sort()).to.have.length(4);
        expect(putStatus).to.equal(201);
        expect(await seqState(survivor.services.db.knex, group.id)).to.deep.equal({
          lastSeq: 6,
          seqs: range(6),
        });
      } finally {
        await closing.close();
        await survivor.close();
      }
    });
  });
});
