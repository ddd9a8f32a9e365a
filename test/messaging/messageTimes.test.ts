import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import type { Knex } from 'knex';
import { commitUnannounced, createGroup, friendsOf, newUser, putMessage, rows } from '../helpers/chat.js';
import { request } from '../helpers/http.js';
import { useNode } from '../helpers/nodes.js';
import { untilAStatementWaitsForALock } from '../helpers/postgres.js';
import { scrape, sampleValue } from '../helpers/prometheus.js';
import { waitFor } from '../helpers/waitFor.js';

/**
 * A message's createdAt is the time its write holds the conversation (migrations/20261206300000_message_times_under_lock),
 * not its transaction's start (`now()`, before): a group commit that waited for one conversation's lock while another
 * writer (another node) committed in a second conversation of the same group gave that second conversation a later
 * seq with an earlier createdAt, and the history read out of time order.
 */
describe('messages: createdAt follows seq within a conversation', function () {
  this.timeout(60_000);
  const { server } = useNode();

  const lock = async (knex: Knex, id: string): Promise<Knex.Transaction> => {
    const trx = await knex.transaction();
    await trx.raw('SELECT 1 FROM conversations WHERE id = ? FOR NO KEY UPDATE', [id]);
    return trx;
  };
  const busyTotal = async () => sampleValue(await scrape(server.url), 'xfchat_write_busy_total') ?? 0;

  it('a later seq never has an earlier createdAt than the seq before it', async () => {
    const { knex } = server.services.db;
    const alice = await newUser(server);
    const [bob] = await friendsOf(server, alice, 1);
    const z = await createGroup(server.url, alice, [bob!], 'z');
    const g1 = await createGroup(server.url, alice, [bob!], 'one');
    const g2 = await createGroup(server.url, alice, [bob!], 'two');
    const [lo, hi] = [g1.id, g2.id].sort();

    // Keep the node's lock-waiting transaction busy on z, so that lo's and hi's skipped batches wait together.
    const holdZ = await lock(knex, z.id);
    const holdLo = await lock(knex, lo!);
    const holdHi = await lock(knex, hi!);
    const before = await busyTotal();
    const sentZ = putMessage(server.url, alice, z.id, randomUUID(), { body: 'z' });
    await untilAStatementWaitsForALock(knex, 'the write to wait for z');
    const sentLo = putMessage(server.url, alice, lo!, randomUUID(), { body: 'alice in lo' });
    const sentHi = putMessage(server.url, alice, hi!, randomUUID(), { body: 'alice in hi' });
    await waitFor(async () => (await busyTotal()) >= before + 3, { what: 'z, lo and hi skipped once' });
    await holdZ.commit();
    expect((await sentZ).status).to.equal(201);
    // The waiting transaction with lo and hi has started and waits for lo (locked first, by id).
    await untilAStatementWaitsForALock(knex, 'the write of lo and hi to wait for lo');
    await holdHi.commit();
    // (The wait lasts as long as the lock is held; 300 ms makes the step back plain to see.)
    await new Promise((resolve) => setTimeout(resolve, 300));
    // Another writer (as another node would) commits bob's message in hi meanwhile.
    const [bobs] = await commitUnannounced(server.services.db, hi!, [
      { kind: 'send', senderId: bob!.id, clientMsgId: randomUUID(), body: 'bob in hi', replyToSeq: null },
    ]);
    expect(bobs!.seq).to.equal(1);
    await holdLo.commit();
    const [resLo, resHi] = await Promise.all([sentLo, sentHi]);
    expect(resLo.status).to.equal(201);
    expect(resHi.status).to.equal(201);
    expect(resHi.body.message.seq).to.equal(2);

    const stored = await rows<{ seq: number; created_at: Date }>(
      knex,
      'SELECT seq::int AS seq, created_at FROM messages WHERE conversation_id = ? ORDER BY seq',
      [hi!],
    );
    expect(stored.map((m) => m.seq)).to.deep.equal([1, 2]);
    const [first, second] = stored;
    // Seq 2 was written after seq 1 committed: its time is not before seq 1's.
    expect(second!.created_at.getTime(), 'createdAt of seq 2 vs seq 1 (ms)').to.be.at.least(
      first!.created_at.getTime(),
    );
    expect(Date.parse(resHi.body.message.createdAt)).to.be.at.least(Date.parse(bobs!.createdAt));
  });

  it('never dates an edit or a deletion before the message’s creation (a clock stepped back since)', async () => {
    const { knex } = server.services.db;
    const alice = await newUser(server);
    const [bob] = await friendsOf(server, alice, 1);
    const group = await createGroup(server.url, alice, [bob!], 'steps');
    // The database's clock was an hour ahead at the last write, and has been set right since.
    await knex.raw(
      "UPDATE conversations SET last_activity_at = clock_timestamp() + interval '1 hour' WHERE id = ?",
      [group.id],
    );
    const sent = await putMessage(server.url, alice, group.id, randomUUID(), { body: 'first' });
    const other = await putMessage(server.url, alice, group.id, randomUUID(), { body: 'second' });
    expect([sent.status, other.status]).to.deep.equal([201, 201]);
    const created = Date.parse(sent.body.message.createdAt);
    const edited = await request<{ message: { editedAt: string } }>(
      server.url,
      'PATCH',
      `/conversations/${group.id}/messages/${sent.body.message.seq}`,
      { token: alice.token, body: { body: 'first, edited' } },
    );
    expect(edited.status).to.equal(200);
    expect(Date.parse(edited.body.message.editedAt), 'editedAt vs createdAt (ms)').to.be.at.least(created);
    const deleted = await request(
      server.url,
      'DELETE',
      `/conversations/${group.id}/messages/${other.body.message.seq}`,
      { token: alice.token },
    );
    expect(deleted.status).to.equal(204);
    const [row] = await rows<{ created_at: Date; deleted_at: Date }>(
      knex,
      'SELECT created_at, deleted_at FROM messages WHERE conversation_id = ? AND seq = ?',
      [group.id, other.body.message.seq],
    );
    expect(row!.deleted_at.getTime(), 'deleted_at vs created_at (ms)').to.be.at.least(
      row!.created_at.getTime(),
    );
  });
});
