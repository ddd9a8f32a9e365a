import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { sampleSum } from '../bench/prometheus.js';
import { AppError, ERROR_CATALOG, type ErrorCode } from '../lib/errors.js';
import { failureOutcome } from '../lib/metrics.js';
import type { RunningServer } from '../lib/server.js';
import { expectOk, friendsOf, newUser, putMessage, send } from './helpers/chat.js';
import { expectAckError, expectError } from './helpers/errors.js';
import { request } from './helpers/http.js';
import { useNode, useNodeBehindProxy } from './helpers/nodes.js';
import { connectSocket, type ClientSocket } from './helpers/sockets.js';
import { scrape, type Sample } from './helpers/prometheus.js';
import type { TestUser } from './helpers/users.js';

/** What a metric moved by between two scrapes, summed over the series whose labels include `labels`. */
function deltas(before: Sample[], after: Sample[]) {
  return (name: string, labels: Record<string, string> = {}): number =>
    sampleSum(after, name, labels) - sampleSum(before, name, labels);
}

/** A direct conversation of `owner` with a new friend of theirs. */
async function direct(server: RunningServer, owner: TestUser): Promise<{ id: string; friend: TestUser }> {
  const [friend] = await friendsOf(server, owner, 1);
  const created = await request<{ conversation: { id: string } }>(server.url, 'POST', '/conversations', {
    token: owner.token,
    body: { type: 'direct', userId: friend!.id },
  });
  expect(created.status).to.equal(201);
  return { id: created.body.conversation.id, friend: friend! };
}

describe('metrics: what counts as a persisted message, and whose failure an answer is', function () {
  this.timeout(30_000);
  // A: no per-user send limit and mailboxes of one command, to fill them. B: one send a second, bursts of two.
  const node = useNode({
    env: { MAILBOX_CAPACITY: '1', RATE_LIMIT_MESSAGES_PER_SEC: '0' },
    second: { env: { RATE_LIMIT_MESSAGES_PER_SEC: '1' } },
  });
  const { server: a, second: b, pool } = node;

  it('classes every code of the catalog: 4xx refused (the client or a rule), 5xx error (the server)', () => {
    const refused = (Object.keys(ERROR_CATALOG) as ErrorCode[]).filter(
      (code) => failureOutcome(new AppError(code)) === 'refused',
    );
    expect(refused).to.include.members([
      'VALIDATION_FAILED',
      'FORBIDDEN',
      'BLOCKED',
      'NOT_FOUND',
      'IDEMPOTENCY_CONFLICT',
      'MESSAGE_DELETED',
      'RATE_LIMITED',
    ]);
    const errors = (Object.keys(ERROR_CATALOG) as ErrorCode[]).filter(
      (code) => failureOutcome(new AppError(code)) === 'error',
    );
    expect(errors.sort()).to.deep.equal(['DB_UNAVAILABLE', 'INTERNAL', 'OVERLOADED']);
    expect(failureOutcome(new Error('not from the catalog'))).to.equal('error');
  });

  it('counts new messages only as persisted: not edits, reactions, deletes or a repeated clientMsgId; each is an ok ack and in a batch', async () => {
    const owner = await newUser(a);
    const { id, friend } = await direct(a, owner);
    const path = `/conversations/${id}/messages`;
    const before = await scrape(a.url);
    const clientMsgId = randomUUID();
    expect((await putMessage(a.url, owner, id, clientMsgId, { body: 'hello' })).status).to.equal(201);
    const afterSend = await scrape(a.url);
    expect(deltas(before, afterSend)('xfchat_messages_persisted_total')).to.equal(1);

    // The same send again: answered with the stored message, nothing new written.
    expect((await putMessage(a.url, owner, id, clientMsgId, { body: 'hello' })).status).to.equal(200);
    const edited = await request(a.url, 'PATCH', `${path}/1`, {
      token: owner.token,
      body: { body: 'hello!' },
    });
    expect(edited.status).to.equal(200);
    const emoji = encodeURIComponent('👍');
    expect(
      (await request(a.url, 'PUT', `${path}/1/reactions/${emoji}`, { token: friend.token })).status,
    ).to.equal(204);
    expect(
      (await request(a.url, 'DELETE', `${path}/1/reactions/${emoji}`, { token: friend.token })).status,
    ).to.equal(204);
    expect((await request(a.url, 'DELETE', `${path}/1`, { token: owner.token })).status).to.equal(204);

    const delta = deltas(afterSend, await scrape(a.url));
    expect(delta('xfchat_messages_persisted_total')).to.equal(0);
    // Each of them went through the actor and a group commit: answered ok, one command each.
    expect(delta('xfchat_ack_latency_seconds_count', { outcome: 'ok' })).to.equal(5);
    expect(delta('xfchat_batch_size_sum')).to.equal(5);
    expect(delta('xfchat_batch_size_count')).to.equal(5);
  });

  it("answers a client's mistakes as refused, never error: FORBIDDEN, MESSAGE_DELETED, NOT_FOUND, IDEMPOTENCY_CONFLICT, VALIDATION_FAILED", async () => {
    const owner = await newUser(a);
    const { id, friend } = await direct(a, owner);
    const path = `/conversations/${id}/messages`;
    const clientMsgId = randomUUID();
    expect((await putMessage(a.url, owner, id, clientMsgId, { body: 'mine' })).status).to.equal(201);
    expect((await putMessage(a.url, owner, id, randomUUID(), { body: 'to delete' })).status).to.equal(201);
    expect((await request(a.url, 'DELETE', `${path}/2`, { token: owner.token })).status).to.equal(204);
    const before = await scrape(a.url);

    const patch = (user: TestUser, seq: number) =>
      request(a.url, 'PATCH', `${path}/${seq}`, { token: user.token, body: { body: 'changed' } });
    expectError(await patch(friend, 1), 403, 'FORBIDDEN');
    expectError(await patch(owner, 2), 409, 'MESSAGE_DELETED');
    expectError(await patch(owner, 99), 404, 'NOT_FOUND');
    expectError(
      await putMessage(a.url, owner, id, clientMsgId, { body: 'not the same' }),
      409,
      'IDEMPOTENCY_CONFLICT',
    );
    expectError(
      await putMessage(a.url, owner, id, randomUUID(), { body: 'a reply', replyToSeq: 99 }),
      400,
      'VALIDATION_FAILED',
    );

    const delta = deltas(before, await scrape(a.url));
    expect(delta('xfchat_ack_latency_seconds_count', { outcome: 'refused' })).to.equal(5);
    expect(delta('xfchat_ack_latency_seconds_count', { outcome: 'error' })).to.equal(0);
    expect(delta('xfchat_ack_latency_seconds_count', { outcome: 'ok' })).to.equal(0);
    expect(delta('xfchat_messages_persisted_total')).to.equal(0);
  });

  it('answers a send the server could not write (INTERNAL) as error', async () => {
    const { knex } = a.services.db;
    const marked = `refused-for-outcomes-${randomUUID()}`;
    await knex.raw(`CREATE FUNCTION refuse_for_outcomes() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.body LIKE 'refused-for-outcomes-%' THEN RAISE EXCEPTION 'refused by the test' USING ERRCODE = 'XF002'; END IF;
        RETURN NEW;
      END $$`);
    await knex.raw(
      'CREATE TRIGGER refuse_for_outcomes BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION refuse_for_outcomes()',
    );
    try {
      const owner = await newUser(a);
      const { id } = await direct(a, owner);
      const socket = await pool.open(a.url, owner);
      const before = await scrape(a.url);
      expectAckError(await send(socket, id, marked), 'INTERNAL');
      const delta = deltas(before, await scrape(a.url));
      expect(delta('xfchat_ack_latency_seconds_count', { outcome: 'error' })).to.equal(1);
      expect(delta('xfchat_ack_latency_seconds_count', { outcome: 'refused' })).to.equal(0);
      expect(delta('xfchat_messages_persisted_total')).to.equal(0);
    } finally {
      await knex.raw('DROP TRIGGER refuse_for_outcomes ON messages');
      await knex.raw('DROP FUNCTION refuse_for_outcomes()');
    }
  });

  it('counts the sends a full mailbox refused (OVERLOADED) as server errors, beside the acks of those it took', async () => {
    const owner = await newUser(a);
    const { id } = await direct(a, owner);
    const socket = await pool.open(a.url, owner);
    // Membership cached and the actor alive: the burst below reaches the mailbox at once.
    expectOk(await send(socket, id, 'warm up'));
    const before = await scrape(a.url);
    const acks = await Promise.all(Array.from({ length: 40 }, (_, i) => send(socket, id, `burst ${i}`)));
    const overloaded = acks.filter((ack) => !ack.ok && ack.error.code === 'OVERLOADED').length;
    const ok = acks.filter((ack) => ack.ok).length;
    expect(overloaded, 'sends refused by the full mailbox').to.be.at.least(1);
    expect(ok + overloaded).to.equal(acks.length);

    const delta = deltas(before, await scrape(a.url));
    expect(delta('xfchat_sends_rejected_total', { code: 'OVERLOADED', outcome: 'error' })).to.equal(
      overloaded,
    );
    expect(delta('xfchat_ack_latency_seconds_count', { outcome: 'ok' })).to.equal(ok);
    expect(delta('xfchat_ack_latency_seconds_count', { outcome: 'error' })).to.equal(0);
    expect(delta('xfchat_messages_persisted_total')).to.equal(ok);
  });

  it('counts the sends refused before the mailbox: RATE_LIMITED and NOT_FOUND as refused', async () => {
    const owner = await newUser(b);
    const { id } = await direct(b, owner);
    const stranger = await newUser(b);
    const socket = await pool.open(b.url, owner);
    const strangerSocket = await pool.open(b.url, stranger);
    const before = await scrape(b.url);
    // A burst of two, then the limit.
    const acks = await Promise.all(Array.from({ length: 4 }, (_, i) => send(socket, id, `fast ${i}`)));
    const limited = acks.filter((ack) => !ack.ok && ack.error.code === 'RATE_LIMITED').length;
    expect(limited).to.be.at.least(1);
    expectAckError(await send(strangerSocket, id, 'let me in'), 'NOT_FOUND');

    const delta = deltas(before, await scrape(b.url));
    expect(delta('xfchat_sends_rejected_total', { code: 'RATE_LIMITED', outcome: 'refused' })).to.equal(
      limited,
    );
    expect(delta('xfchat_sends_rejected_total', { code: 'NOT_FOUND', outcome: 'refused' })).to.equal(1);
    expect(delta('xfchat_sends_rejected_total', { outcome: 'error' })).to.equal(0);
    expect(delta('xfchat_ack_latency_seconds_count', { outcome: 'ok' })).to.equal(acks.length - limited);
  });

  it('counts the sends a draining node refuses (OVERLOADED) as server errors', async () => {
    const owner = await newUser(b);
    const { id } = await direct(b, owner);
    const socket = await pool.open(b.url, owner);
    const before = await scrape(b.url);
    // The first step of shutdown (the last test of this node: it takes no command after).
    expect(await b.services.messaging.drain(5000)).to.equal(true);
    expectAckError(await send(socket, id, 'too late'), 'OVERLOADED');
    const delta = deltas(before, await scrape(b.url));
    expect(delta('xfchat_sends_rejected_total', { code: 'OVERLOADED', outcome: 'error' })).to.equal(1);
  });
});

describe('metrics: a send refused because PostgreSQL does not answer', function () {
  this.timeout(30_000);
  const { node, proxy } = useNodeBehindProxy();
  let socket: ClientSocket | undefined;

  after(() => {
    socket?.close();
  });

  it('is counted in xfchat_sends_rejected_total with the code its client got, DB_UNAVAILABLE (not INTERNAL)', async () => {
    const owner = await newUser(node());
    const { id } = await direct(node(), owner);
    socket = await connectSocket(node().url, owner.token);
    await proxy().stop();
    try {
      // The node has not confirmed the owner in the conversation yet: its membership lookup fails.
      expectAckError(await send(socket, id, 'hello'), 'DB_UNAVAILABLE');
      const samples = await scrape(node().url);
      expect({
        unavailable: sampleSum(samples, 'xfchat_sends_rejected_total', {
          code: 'DB_UNAVAILABLE',
          outcome: 'error',
        }),
        internal: sampleSum(samples, 'xfchat_sends_rejected_total', { code: 'INTERNAL' }),
      }).to.deep.equal({ unavailable: 1, internal: 0 });
    } finally {
      await proxy().start();
    }
  });
});
