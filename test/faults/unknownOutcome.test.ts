import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import { createGroup, friendsOf, newUser, record, rows, subscribe } from '../helpers/chat.js';
import { useTwoNodes } from '../helpers/nodes.js';
import { waitFor } from '../helpers/waitFor.js';

/**
 * A write whose commit outlasts the node's query timeout (a WAL flush that stalls, modelled by a deferred trigger
 * that sleeps at commit, where statement_timeout no longer runs): the node answers DB_UNAVAILABLE, and the
 * transaction commits a moment later. Nobody was told of it: the sender's retry is a duplicate, which delivers
 * nothing, and a sender may never retry. The node settles such a write (lib/messaging/fanout.ts, outcomeUnknown):
 * every subscriber, on either node, gets what it committed.
 */
describe('a write whose outcome the node did not learn (its commit outlasted the query timeout)', function () {
  this.timeout(60_000);
  const { a, b, pool } = useTwoNodes({ env: { DB_STATEMENT_TIMEOUT_MS: '1000' } });
  const SLOW = 'a commit that outlasts the query timeout';

  // Around each test, not the file: the nodes (and their pools) are gone by the file's `after`.
  beforeEach(async () => {
    const knex = a.services.db.knex;
    await knex.raw(`CREATE FUNCTION test_slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.body = '${SLOW}' THEN PERFORM pg_sleep(3.5); END IF; RETURN NULL; END $$`);
    await knex.raw(`CREATE CONSTRAINT TRIGGER test_slow_commit AFTER INSERT OR UPDATE ON messages
      DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_slow_commit()`);
  });

  afterEach(async () => {
    const knex = a.services.db.knex;
    await knex.raw('DROP TRIGGER IF EXISTS test_slow_commit ON messages');
    await knex.raw('DROP FUNCTION IF EXISTS test_slow_commit()');
  });

  async function watchedGroup() {
    const owner = await newUser(a);
    const [alice] = await friendsOf(a, owner, 1);
    const { id } = await createGroup(a.url, owner, [alice!]);
    const onA = await pool.open(a.url, owner);
    const onB = await pool.open(b.url, owner);
    await subscribe(onA, id);
    await subscribe(onB, id);
    const sender = await pool.open(a.url, alice!);
    return { id, onA, onB, sender };
  }

  it('a send: every subscriber gets it without a retry, and the retry (a duplicate) delivers it no second time', async () => {
    const { id, onA, onB, sender } = await watchedGroup();
    const seenA = record(onA, 'message:new');
    const seenB = record(onB, 'message:new');
    const clientMsgId = randomUUID();

    const first = await sender.emitWithAck('message:send', { conversationId: id, clientMsgId, body: SLOW });
    expect(first.ok, 'the first attempt timed out on the node').to.equal(false);
    if (first.ok) return;
    expect(first.error.code).to.equal('DB_UNAVAILABLE');
    await waitFor(() => seenA.length > 0 && seenB.length > 0, {
      what: 'message:new on both nodes',
      timeoutMs: 15_000,
    });
    const stored = await rows<{ seq: number }>(
      a.services.db.knex,
      'SELECT seq FROM messages WHERE conversation_id = ?',
      [id],
    );
    expect(stored.map((r) => r.seq)).to.deep.equal([1]);

    const retry = await sender.emitWithAck('message:send', { conversationId: id, clientMsgId, body: SLOW });
    expect(retry.ok).to.equal(true);
    if (!retry.ok) return;
    expect([retry.duplicate, retry.message.seq]).to.deep.equal([true, 1]);
    // A marker after the retry: whatever the retry delivered came before it.
    const marker = await sender.emitWithAck('message:send', {
      conversationId: id,
      clientMsgId: randomUUID(),
      body: 'marker',
    });
    expect(marker.ok).to.equal(true);
    await waitFor(() => seenA.length >= 2 && seenB.length >= 2, { what: 'the marker on both nodes' });
    expect({ onA: seenA.map((m) => m.seq), onB: seenB.map((m) => m.seq) }).to.deep.equal({
      onA: [1, 2],
      onB: [1, 2],
    });
    expect(seenA[0]!.body).to.equal(SLOW);
  });

  it('an edit: every subscriber gets the new state', async () => {
    const { id, onA, onB, sender } = await watchedGroup();
    const sent = await sender.emitWithAck('message:send', {
      conversationId: id,
      clientMsgId: randomUUID(),
      body: 'before',
    });
    expect(sent.ok).to.equal(true);
    const updatedA = record(onA, 'message:updated');
    const updatedB = record(onB, 'message:updated');

    const edit = await sender.emitWithAck('message:edit', { conversationId: id, seq: 1, body: SLOW });
    expect(edit.ok, 'the edit timed out on the node').to.equal(false);
    await waitFor(() => updatedA.some((m) => m.body === SLOW) && updatedB.some((m) => m.body === SLOW), {
      what: 'message:updated on both nodes',
      timeoutMs: 15_000,
    });
  });
});
