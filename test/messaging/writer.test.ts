import { expect } from 'chai';
import type { Knex } from 'knex';
import pg from 'pg';
import {
  createGroupCommitWriter,
  type GroupCommitWriter,
  type WriteOutcome,
  type TransactionReport,
  type Written,
} from '../../lib/messaging/writer.js';
import { MESSAGES_CHANNEL, type Announce } from '../../lib/messaging/statements.js';
import type { MessageCommand, Stored } from '../../lib/messaging/types.js';
import { ConversationActor } from '../../actors/ConversationActor.js';
import { loadDatabaseConfig } from '../../lib/config.js';
import type { AppError } from '../../lib/errors.js';
import { createDatabase, type Database, type PoolConnections } from '../../lib/db.js';
import { createLogger } from '../../lib/logger.js';
import { createTestDatabase } from '../helpers/postgres.js';
import { testConfig } from '../helpers/server.js';
import { startProxy } from '../helpers/proxy.js';
import { insertUser } from '../helpers/users.js';
import { rows, seqState } from '../helpers/chat.js';
import { waitFor } from '../helpers/waitFor.js';
import {
  holdConversations,
  insertGroup,
  letGo,
  lockWaitSeen as lockWaitSeenIn,
  sender,
} from '../helpers/writer.js';

const logger = createLogger('silent');
const POISON = 'poison: the trigger refuses this body';

function ok(outcome: WriteOutcome | undefined) {
  if (!outcome?.ok) throw new Error(`expected a stored message, got ${JSON.stringify(outcome)}`);
  return outcome.value;
}

function errorCode(outcome: WriteOutcome | undefined): string {
  if (!outcome || outcome.ok) throw new Error(`expected an error, got ${JSON.stringify(outcome)}`);
  return (outcome.error as AppError).code;
}

describe('messaging/writer: the group-commit writer (PostgreSQL)', function () {
  let databaseUrl: string;
  let db: Database;
  let alice: string;
  let bob: string;
  const writers: GroupCommitWriter[] = [];

  before(async () => {
    databaseUrl = await createTestDatabase();
    db = createDatabase(loadDatabaseConfig({ DATABASE_URL: databaseUrl }), logger);
    const config = testConfig(databaseUrl);
    alice = (await insertUser(db.knex, config)).id;
    bob = (await insertUser(db.knex, config)).id;
    await db.knex.raw(`CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.body = '${POISON}' THEN RAISE EXCEPTION 'poisoned message'; END IF;
        RETURN NEW;
      END $$`);
    await db.knex.raw(
      'CREATE TRIGGER refuse_poison BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION refuse_poison()',
    );
  });

  afterEach(async () => {
    await Promise.all(writers.splice(0).map((w) => w.close()));
  });

  after(async () => {
    await db.close();
  });

  function writer(
    database: Database,
    concurrency: number,
    reports: TransactionReport[] = [],
  ): GroupCommitWriter {
    const w = createGroupCommitWriter({
      connections: database.connections,
      logger,
      maxConcurrency: concurrency,
      onTransaction: (r) => reports.push(r),
    });
    writers.push(w);
    return w;
  }

  /**
   * A writer (of one transaction at a time unless told) whose first transaction waits for `gate()` before it
   * gets its connection, so the batches written meanwhile wait for a slot. `acquired()` counts the transactions
   * started. With `warmUpMs`, the first transaction waits that long for its connection and commits, so the writer
   * knows a usual transaction's time (it counts one as held up when it has run three times that), and the second is
   * the held one.
   */
  function writerWithHeldFirstTransaction(reports?: TransactionReport[], maxConcurrency = 1, warmUpMs = 0) {
    const pool = db.connections;
    let gate!: () => void;
    const held = new Promise<void>((resolve) => (gate = resolve));
    let acquired = 0;
    const heldOne = warmUpMs > 0 ? 2 : 1;
    const w = createGroupCommitWriter({
      connections: {
        acquire: async () => {
          acquired += 1;
          if (acquired === heldOne) await held;
          else if (acquired === 1) await new Promise((resolve) => setTimeout(resolve, warmUpMs));
          return pool.acquire();
        },
        release: (client) => pool.release(client),
        observed: (client) => pool.observed(client),
      },
      logger,
      maxConcurrency,
      ...(reports ? { onTransaction: (r: TransactionReport) => reports.push(r) } : {}),
    });
    writers.push(w);
    return { w, gate: () => gate(), acquired: () => acquired };
  }

  const conversation = () => insertGroup(db.knex, alice, bob);

  const state = (id: string) => seqState(db.knex, id);

  /** A writer of one transaction at a time that announces in the commit (MESSAGE_ANNOUNCE=commit). */
  function announcingInCommit(): GroupCommitWriter {
    const w = createGroupCommitWriter({
      connections: db.connections,
      logger,
      maxConcurrency: 1,
      announce: () => Promise.resolve({ node: 'test-node', inCommit: true }),
    });
    writers.push(w);
    return w;
  }

  /** A connection LISTENing to the announcements channel, and the payloads it heard. */
  async function listenToAnnouncements(): Promise<{ listener: pg.Client; heard: string[] }> {
    const listener = new pg.Client({ connectionString: databaseUrl });
    await listener.connect();
    const heard: string[] = [];
    listener.on('notification', (n) => heard.push(n.payload ?? ''));
    await listener.query(`LISTEN ${MESSAGES_CHANNEL}`);
    return { listener, heard };
  }

  const lockWaitSeen = () => lockWaitSeenIn(db.knex);

  it('moves a conversation’s activity time forward only, through either write function', async () => {
    const id = await conversation();
    const w = writer(db, 1);
    const activity = async () =>
      (
        await rows<{ last_activity_at: Date }>(
          db.knex,
          'SELECT last_activity_at FROM conversations WHERE id = ?',
          [id],
        )
      )[0]!.last_activity_at.getTime();
    const send = (clientMsgId: string): MessageCommand => ({
      kind: 'send',
      senderId: alice,
      clientMsgId,
      body: clientMsgId,
      replyToSeq: null,
    });
    // A later activity than any write's (as when a writer that started earlier commits after another): kept, by
    // a lone send (xfchat_send_one) and by a batch (xfchat_write) alike.
    const ahead = new Date(Date.now() + 3_600_000);
    await db.knex('conversations').where({ id }).update({ last_activity_at: ahead });
    const lone = ok((await w.write({ conversationId: id, commands: [send('lone')] }))[0]);
    expect(await activity(), 'after a lone send').to.equal(ahead.getTime());
    const batch = await w.write({ conversationId: id, commands: [send('b1'), send('b2')] });
    expect(await activity(), 'after a batch').to.equal(ahead.getTime());
    // A message takes its conversation's activity time (20261206300000_message_times_under_lock): its createdAt
    // never goes back as seq grows.
    expect(Date.parse(lone.message.createdAt), 'a lone send’s createdAt').to.equal(ahead.getTime());
    for (const outcome of batch)
      expect(Date.parse(ok(outcome).message.createdAt), 'a batch’s createdAt').to.equal(ahead.getTime());
    // From an earlier one, it moves to the time of the write.
    await db
      .knex('conversations')
      .where({ id })
      .update({ last_activity_at: new Date(0) });
    const [clock] = await rows<{ before: Date }>(db.knex, 'SELECT clock_timestamp() AS before');
    ok((await w.write({ conversationId: id, commands: [send('later')] }))[0]);
    expect(await activity()).to.be.at.least(clock!.before.getTime());
  });

  it('times an edit and a deletion when the write holds the conversation, not at its transaction’s start', async () => {
    const id = await conversation();
    const w = writer(db, 1);
    const sent = ok(
      (
        await w.write({
          conversationId: id,
          commands: [
            { kind: 'send', senderId: alice, clientMsgId: 'e1', body: 'one', replyToSeq: null },
            { kind: 'send', senderId: alice, clientMsgId: 'e2', body: 'two', replyToSeq: null },
          ],
        })
      )[0],
    );
    expect(sent.message.seq).to.equal(1);
    // Held: the changes are skipped, then wait for the lock in a transaction that starts now.
    const lock = await holdConversations(db.knex, id);
    try {
      const changed = w.write({
        conversationId: id,
        commands: [
          { kind: 'edit', userId: alice, seq: 1, body: 'one, edited' },
          { kind: 'delete', userId: alice, seq: 2 },
        ],
      });
      await lockWaitSeen();
      await new Promise((resolve) => setTimeout(resolve, 300));
      const [clock] = await rows<{ at: Date }>(db.knex, 'SELECT clock_timestamp() AS at');
      await lock.commit();
      const [edited, deleted] = await changed;
      expect(Date.parse(ok(edited).message.editedAt ?? ''), 'editedAt').to.be.at.least(clock!.at.getTime());
      expect(Date.parse(ok(deleted).message.deletedAt ?? ''), 'deletedAt').to.be.at.least(
        clock!.at.getTime(),
      );
    } finally {
      await letGo(lock);
    }
  });

  it('gives gap-free seqs, answers replays from the stored row without consuming a seq', async () => {
    const id = await conversation();
    const w = writer(db, 2);
    const first = await w.write({
      conversationId: id,
      commands: [
        { kind: 'send', senderId: alice, clientMsgId: 'a1', body: 'one', replyToSeq: null },
        { kind: 'send', senderId: bob, clientMsgId: 'b1', body: 'two', replyToSeq: null },
        // The same clientMsgId twice in one batch is one message.
        { kind: 'send', senderId: alice, clientMsgId: 'a1', body: 'one', replyToSeq: null },
      ],
    });
    expect(first.map((o) => ok(o).message.seq)).to.deep.equal([1, 2, 1]);
    expect(first.map((o) => ok(o).duplicate)).to.deep.equal([false, false, true]);
    const second = await w.write({
      conversationId: id,
      commands: [
        { kind: 'send', senderId: alice, clientMsgId: 'a1', body: 'one', replyToSeq: null },
        { kind: 'send', senderId: alice, clientMsgId: 'a2', body: 'three', replyToSeq: null },
        { kind: 'send', senderId: bob, clientMsgId: 'b1', body: 'a different body', replyToSeq: null },
        // Another sender may reuse a clientMsgId: idempotency is per sender.
        { kind: 'send', senderId: bob, clientMsgId: 'a1', body: 'four', replyToSeq: null },
      ],
    });
    expect(ok(second[0]).duplicate).to.equal(true);
    expect(ok(second[0]).message).to.deep.equal(ok(first[0]).message);
    expect(ok(second[1]).message.seq).to.equal(3);
    expect(errorCode(second[2])).to.equal('IDEMPOTENCY_CONFLICT');
    expect(ok(second[3]).message.seq).to.equal(4);
    expect(await state(id)).to.deep.equal({ lastSeq: 4, seqs: [1, 2, 3, 4] });
    const readMarkers = await rows<{ user_id: string; last_read_seq: number }>(
      db.knex,
      'SELECT user_id, last_read_seq FROM conversation_participants WHERE conversation_id = ?',
      [id],
    );
    expect(Object.fromEntries(readMarkers.map((r) => [r.user_id, r.last_read_seq]))).to.deep.equal({
      [alice]: 3,
      [bob]: 4,
    });
  });

  it('takes a reply to a seq given earlier in the same call, checking the sends in their order', async () => {
    const id = await conversation();
    const w = writer(db, 2);
    const send = (senderId: string, clientMsgId: string, replyToSeq: number | null = null) =>
      ({ kind: 'send', senderId, clientMsgId, body: `body ${clientMsgId}`, replyToSeq }) as const;
    const outcomes = (answers: Awaited<ReturnType<typeof w.write>>) =>
      answers.map((o) => (o.ok ? ok(o).message.seq : errorCode(o)));
    const first = await w.write({
      conversationId: id,
      commands: [
        send(alice, 'x'),
        send(alice, 'a'),
        // A's seq, given in this call: taken.
        send(bob, 'b', 2),
        // Its own seq: refused.
        send(bob, 'c', 4),
        // B's seq: B is a reply within the call, stored: taken.
        send(alice, 'd', 3),
      ],
    });
    expect(outcomes(first)).to.deep.equal([1, 2, 3, 'VALIDATION_FAILED', 4]);
    expect(ok(first[2]).message.replyToSeq).to.equal(2);
    const second = await w.write({
      conversationId: id,
      commands: [
        send(alice, 'e', 99),
        // The seq E would have had: E is refused, so it is G's: refused (not a failed CHECK).
        send(bob, 'f', 5),
        // A repeat takes no seq and does not count.
        send(alice, 'x'),
        send(alice, 'g'),
        send(bob, 'h', 5),
      ],
    });
    expect(outcomes(second)).to.deep.equal(['VALIDATION_FAILED', 'VALIDATION_FAILED', 1, 5, 6]);
    expect(ok(second[2]).duplicate).to.equal(true);
    expect(ok(second[4]).message.replyToSeq).to.equal(5);
    // A reply within the call before a plain send moves that send's seq up; a reply to it names the seq it took.
    const third = await w.write({
      conversationId: id,
      commands: [
        send(alice, 'i'),
        send(bob, 'j', 7),
        send(alice, 'k'),
        send(bob, 'l', 9),
        send(alice, 'm', 8),
      ],
    });
    expect(outcomes(third)).to.deep.equal([7, 8, 9, 10, 11]);
    expect(await state(id)).to.deep.equal({ lastSeq: 11, seqs: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11] });
    const replies = await rows<{ seq: number; reply_to_seq: number | null }>(
      db.knex,
      'SELECT seq, reply_to_seq FROM messages WHERE conversation_id = ? ORDER BY seq',
      [id],
    );
    expect(replies.map((r) => r.reply_to_seq)).to.deep.equal([
      null,
      null,
      2,
      3,
      null,
      5,
      null,
      7,
      null,
      9,
      8,
    ]);
  });

  it('numbers a group commit over many conversations: every answer is the stored row, seqs gap-free in input order', async () => {
    const ids = await Promise.all(Array.from({ length: 40 }, () => conversation()));
    const reports: TransactionReport[] = [];
    // The first transaction is held, so the 40 batches below go together in the next one.
    const { w, gate, acquired } = writerWithHeldFirstTransaction(reports);
    const held = w.write({
      conversationId: ids[0]!,
      commands: [{ kind: 'send', senderId: alice, clientMsgId: 'held', body: 'held', replyToSeq: null }],
    });
    await waitFor(() => acquired() === 1, { what: 'the first transaction to start' });
    const send = (senderId: string, clientMsgId: string, replyToSeq: number | null = null) =>
      ({ kind: 'send', senderId, clientMsgId, body: `body ${clientMsgId}`, replyToSeq }) as const;
    const batches = ids.map((id, i) => ({
      conversationId: id,
      commands: [
        send(alice, `a${i}`),
        send(bob, `b${i}`),
        // In every fourth conversation a reply to a seq that does not exist yet: refused, and no seq taken.
        i % 4 === 0 ? send(bob, `r${i}`, 9) : send(alice, `c${i}`),
        send(bob, `d${i}`),
        // A reply to the message the held transaction committed.
        ...(i === 0 ? [send(alice, 'reply', 1)] : []),
      ],
    }));
    const answered = batches.map((batch) => w.write(batch));
    gate();
    await held;
    const outcomes = await Promise.all(answered);
    expect(reports.map((r) => r.batches)).to.deep.equal([1, 40]);
    for (const [i, batch] of batches.entries()) {
      const answers = outcomes[i]!;
      // The held transaction wrote seq 1 of the first conversation.
      const base = i === 0 ? 1 : 0;
      if (i % 4 === 0) expect(errorCode(answers[2])).to.equal('VALIDATION_FAILED');
      const accepted = answers.filter((o) => o.ok).map((o) => ok(o).message.seq);
      expect(accepted).to.deep.equal(
        Array.from({ length: batch.commands.length - (i % 4 === 0 ? 1 : 0) }, (_, k) => base + 1 + k),
      );
      const stored = await rows<{
        id: string;
        seq: number;
        version: number;
        sender_id: string;
        client_msg_id: string;
        body: string;
        reply_to_seq: number | null;
        created_ms: number;
      }>(
        db.knex,
        `SELECT id, seq, version, sender_id, client_msg_id, body, reply_to_seq,
           floor(extract(epoch FROM created_at) * 1000)::bigint AS created_ms
         FROM messages WHERE conversation_id = ? AND seq > ? ORDER BY seq`,
        [batch.conversationId, base],
      );
      const answeredMessages = answers.filter((o) => o.ok).map((o) => ok(o).message);
      expect(
        answeredMessages.map((m) => ({
          id: m.id,
          seq: m.seq,
          version: m.version,
          sender_id: m.senderId,
          client_msg_id: m.clientMsgId,
          body: m.body,
          reply_to_seq: m.replyToSeq,
          created_ms: Date.parse(m.createdAt),
        })),
      ).to.deep.equal(stored);
      const last = stored.at(-1)!.seq;
      expect(await state(batch.conversationId)).to.deep.equal({
        lastSeq: last,
        seqs: Array.from({ length: last }, (_, k) => k + 1),
      });
    }
  });

  it('refuses a sender who stopped being a participant after the send was accepted: NOT_FOUND, no seq', async () => {
    const id = await conversation();
    const w = writer(db, 1);
    ok(
      (
        await w.write({
          conversationId: id,
          commands: [{ kind: 'send', senderId: bob, clientMsgId: 'before', body: 'hi', replyToSeq: null }],
        })
      )[0],
    );
    // The removal commits (on any node) between the actor's membership check and the transaction.
    await db.knex('conversation_participants').where({ conversation_id: id, user_id: bob }).delete();
    const outcomes = await w.write({
      conversationId: id,
      commands: [
        { kind: 'send', senderId: bob, clientMsgId: 'after', body: 'still here?', replyToSeq: null },
        // A retry of a message stored while still a member is refused too: former members read nothing.
        { kind: 'send', senderId: bob, clientMsgId: 'before', body: 'hi', replyToSeq: null },
        { kind: 'send', senderId: alice, clientMsgId: 'a', body: 'alice is still in', replyToSeq: null },
      ],
    });
    expect(errorCode(outcomes[0])).to.equal('NOT_FOUND');
    expect(errorCode(outcomes[1])).to.equal('NOT_FOUND');
    expect(ok(outcomes[2]).message.seq).to.equal(2);
    expect(await state(id)).to.deep.equal({ lastSeq: 2, seqs: [1, 2] });
  });

  it('skips a conversation another transaction holds: other conversations commit meanwhile, the held one after', async () => {
    const held = await conversation();
    const free = await conversation();
    const reports: TransactionReport[] = [];
    const w = writer(db, 2, reports);
    // Another node's group commit (or a membership change) holding the conversation.
    const lock = await holdConversations(db.knex, held);
    let heldDone = false;
    try {
      const waiting = w
        .write({
          conversationId: held,
          commands: [
            { kind: 'send', senderId: alice, clientMsgId: 'h1', body: 'one', replyToSeq: null },
            { kind: 'send', senderId: bob, clientMsgId: 'h2', body: 'two', replyToSeq: null },
          ],
        })
        .finally(() => (heldDone = true));
      // Skipped, then waiting for the lock in a transaction of its own.
      await lockWaitSeen();
      const other = await w.write({
        conversationId: free,
        commands: [
          { kind: 'send', senderId: alice, clientMsgId: 'f1', body: 'not held up', replyToSeq: null },
        ],
      });
      expect(ok(other[0]).message.seq).to.equal(1);
      expect(heldDone).to.equal(false);
      await lock.commit();
      expect((await waiting).map((o) => ok(o).message.seq)).to.deep.equal([1, 2]);
    } finally {
      await letGo(lock);
    }
    expect(await state(held)).to.deep.equal({ lastSeq: 2, seqs: [1, 2] });
    expect(reports.map((r) => r.busy)).to.deep.equal([1, 0, 0]);
    expect(reports.map((r) => r.persisted)).to.deep.equal([0, 1, 2]);
  });

  it('waits for held conversations beside the ordinary transactions, one at a time at first: a free conversation still commits', async () => {
    const [first, second, free] = [await conversation(), await conversation(), await conversation()];
    const reports: TransactionReport[] = [];
    const w = writer(db, 1, reports);
    const sendTo = sender(w, alice);
    const lock = await holdConversations(db.knex, first, second);
    const done = new Set<string>();
    try {
      const heldFirst = sendTo(first, 'held-1').finally(() => done.add('held-1'));
      await lockWaitSeen();
      // Skipped by an ordinary transaction, then in line behind the transaction that waits for the first.
      const heldSecond = sendTo(second, 'held-2').finally(() => done.add('held-2'));
      await waitFor(() => reports.filter((r) => r.busy > 0).length === 2, {
        what: 'the second held conversation skipped',
      });
      const other = await sendTo(free, 'free-1');
      expect(ok(other[0]).message.seq).to.equal(1);
      expect([...done]).to.deep.equal([]);
      await lock.commit();
      expect(ok((await heldFirst)[0]).message.seq).to.equal(1);
      expect(ok((await heldSecond)[0]).message.seq).to.equal(1);
    } finally {
      await letGo(lock);
    }
    expect(w.concurrency).to.equal(1);
  });

  it('answers the held conversations one wait took together each alone when the wait outlasts the statement timeout', async () => {
    const timed = createDatabase(
      loadDatabaseConfig({ DATABASE_URL: databaseUrl, DB_STATEMENT_TIMEOUT_MS: '1500' }),
      logger,
    );
    const [free, stuck, brief] = [await conversation(), await conversation(), await conversation()];
    const reports: TransactionReport[] = [];
    const w = writer(timed, 1, reports);
    const sendTo = sender(w, alice);
    // `stuck` held past the statement timeout (a stuck transaction), `brief` for a moment (a membership change).
    const holdStuck = await holdConversations(db.knex, stuck);
    const holdBrief = await holdConversations(db.knex, brief);
    try {
      // The free conversation's transaction first: the two held ones wait for the next, which skips both, and
      // then wait for both their locks in one transaction.
      const [toFree, toStuck, toBrief] = [sendTo(free, 'f'), sendTo(stuck, 's'), sendTo(brief, 'b')];
      expect(ok((await toFree)[0]).message.seq).to.equal(1);
      await lockWaitSeen();
      expect(reports.map((r) => r.busy)).to.deep.equal([0, 2]);
      await holdBrief.commit();
      expect(ok((await toBrief)[0]).message.seq, 'the send to the conversation held for a moment').to.equal(
        1,
      );
      expect(errorCode((await toStuck)[0])).to.equal('DB_UNAVAILABLE');
    } finally {
      await letGo(holdStuck, holdBrief);
      await w.close();
      await timed.close();
    }
    expect(await state(brief)).to.deep.equal({ lastSeq: 1, seqs: [1] });
    expect(await state(stuck)).to.deep.equal({ lastSeq: 0, seqs: [] });
  });

  it('writes a conversation held for a moment about a second after a stuck one’s wait began, not at its statement timeout', async () => {
    const STATEMENT_TIMEOUT_MS = 8000;
    const timed = createDatabase(
      loadDatabaseConfig({
        DATABASE_URL: databaseUrl,
        DB_STATEMENT_TIMEOUT_MS: String(STATEMENT_TIMEOUT_MS),
      }),
      logger,
    );
    const [stuck, brief] = [await conversation(), await conversation()];
    const reports: TransactionReport[] = [];
    const w = writer(timed, 2, reports);
    const sendTo = sender(w, alice);
    const holdStuck = await holdConversations(db.knex, stuck);
    let holdBrief: Knex.Transaction | undefined;
    try {
      // Skipped, then waiting for its lock in the lock-waiting transaction.
      const toStuck = sendTo(stuck, 's');
      await lockWaitSeen();
      // Another conversation held for a moment (a membership change): its send is skipped after that wait began.
      holdBrief = await holdConversations(db.knex, brief);
      const waitBegan = performance.now();
      const toBrief = sendTo(brief, 'b');
      await waitFor(() => reports.filter((r) => r.busy > 0).length === 2, { what: 'the brief one skipped' });
      await holdBrief.commit();
      expect(ok((await toBrief)[0]).message.seq).to.equal(1);
      expect(
        performance.now() - waitBegan,
        'ms to the answer of the conversation held for a moment',
      ).to.be.below(STATEMENT_TIMEOUT_MS / 2);
      expect(errorCode((await toStuck)[0]), 'the stuck one, at the statement timeout').to.equal(
        'DB_UNAVAILABLE',
      );
    } finally {
      await letGo(holdStuck, holdBrief);
      await w.close();
      await timed.close();
    }
    expect(await state(brief)).to.deep.equal({ lastSeq: 1, seqs: [1] });
    expect(await state(stuck)).to.deep.equal({ lastSeq: 0, seqs: [] });
  });

  it('announces a large commit in several NOTIFYs under 8000 bytes, a conversation with a very long message by its range', async () => {
    const { listener, heard } = await listenToAnnouncements();
    try {
      const small = await Promise.all(Array.from({ length: 12 }, () => conversation()));
      const long = await conversation();
      const w = announcingInCommit();
      // Held, so every batch below queues and all go into the one transaction after it.
      const lock = await holdConversations(db.knex, long);
      const first = w.write({
        conversationId: long,
        commands: [{ kind: 'send', senderId: alice, clientMsgId: 'l0', body: 'first', replyToSeq: null }],
      });
      await lockWaitSeen();
      const body = (i: number) => `message ${i} `.padEnd(300, 'x');
      const writes = small.map((id, c) =>
        w.write({
          conversationId: id,
          commands: Array.from({ length: 5 }, (_, i) => ({
            kind: 'send' as const,
            senderId: alice,
            clientMsgId: `s${i}`,
            body: body(c * 5 + i),
            replyToSeq: null,
          })),
        }),
      );
      await lock.commit();
      await first;
      const longWrite = w.write({
        conversationId: long,
        commands: [
          { kind: 'send', senderId: alice, clientMsgId: 'l1', body: 'short', replyToSeq: null },
          { kind: 'send', senderId: bob, clientMsgId: 'l2', body: 'y'.repeat(3900), replyToSeq: null },
        ],
      });
      for (const outcomes of await Promise.all(writes)) expect(outcomes.every((o) => o.ok)).to.equal(true);
      expect((await longWrite).map((o) => ok(o).message.seq)).to.deep.equal([2, 3]);
      await waitFor(() => heard.some((p) => p.includes('"r"')), { what: 'the range announcement' });
      const announcements = heard.map(
        (p) => JSON.parse(p) as { n: string; m?: unknown[][]; r?: unknown[][] },
      );
      for (const payload of heard) expect(Buffer.byteLength(payload)).to.be.below(8000);
      // The first message of the long conversation came in an announcement of its own, before.
      const messages = announcements.flatMap((a) => a.m ?? []).filter((m) => m[0] !== long);
      // 60 messages of 300 bytes: more than one NOTIFY holds, each conversation's in seq order.
      expect(announcements.filter((a) => a.m).length).to.be.above(1);
      expect(messages).to.have.length(60);
      for (const id of small) {
        expect(messages.filter((m) => m[0] === id).map((m) => m[1])).to.deep.equal([1, 2, 3, 4, 5]);
      }
      expect(announcements.flatMap((a) => a.r ?? [])).to.deep.equal([[long, 2, 3]]);
      expect(announcements.every((a) => a.n === 'test-node')).to.equal(true);
    } finally {
      await listener.end();
    }
  });

  it('announces in the commit by range exactly the conversations whose messages do not go whole (their JSON)', async () => {
    const { listener, heard } = await listenToAnnouncements();
    try {
      const escaped = await conversation();
      const fits = await conversation();
      const w = announcingInCommit();
      const send = (conversationId: string, body: string) =>
        w.write({
          conversationId,
          commands: [{ kind: 'send', senderId: alice, clientMsgId: 'c1', body, replyToSeq: null }],
        });
      // 1701 bytes of body, over 3400 as JSON (each quote escaped): too big to go whole, so by its range.
      expect(ok((await send(escaped, `x${'"'.repeat(1700)}`))[0]).message.seq).to.equal(1);
      // 3100 bytes that JSON leaves as they are: whole, and only whole.
      expect(ok((await send(fits, 'y'.repeat(3100)))[0]).message.seq).to.equal(1);
      await waitFor(() => heard.length >= 2, { what: 'an announcement of each commit' });
      await new Promise((resolve) => setTimeout(resolve, 100));
      const announcements = heard.map((p) => JSON.parse(p) as { m?: unknown[][]; r?: unknown[][] });
      expect(announcements.flatMap((a) => a.r ?? [])).to.deep.equal([[escaped, 1, 1]]);
      expect(announcements.flatMap((a) => a.m ?? []).map((m) => m[0])).to.deep.equal([fits]);
    } finally {
      await listener.end();
    }
  });

  it('announces nothing in the transaction when the node announces after the commit, and hands it what committed', async () => {
    const { listener, heard } = await listenToAnnouncements();
    try {
      const id = await conversation();
      const committed: Array<{ written: Written[]; announce: Announce | undefined }> = [];
      const w = createGroupCommitWriter({
        connections: db.connections,
        logger,
        maxConcurrency: 1,
        announce: () => Promise.resolve({ node: 'test-node', inCommit: false }),
        onCommitted: (written, announce) => committed.push({ written: [...written], announce }),
      });
      writers.push(w);
      const outcomes = await w.write({
        conversationId: id,
        commands: [
          { kind: 'send', senderId: alice, clientMsgId: 'a1', body: 'one', replyToSeq: null },
          { kind: 'send', senderId: alice, clientMsgId: 'a1', body: 'one', replyToSeq: null },
        ],
      });
      expect(outcomes.map((o) => ok(o).message.seq)).to.deep.equal([1, 1]);
      expect(committed).to.have.length(1);
      expect(committed[0]!.announce).to.deep.equal({ node: 'test-node', inCommit: false });
      expect(committed[0]!.written.map((x) => x.batch.conversationId)).to.deep.equal([id]);
      expect(committed[0]!.written[0]!.outcomes).to.deep.equal(outcomes);
      // A NOTIFY sent now would have reached the listener before this round trip's answer.
      await listener.query('SELECT 1');
      expect(heard).to.deep.equal([]);
    } finally {
      await listener.end();
    }
  });

  it('takes a conversation’s batch when its transaction starts: what the actor queued while it waited goes along', async () => {
    const first = await conversation();
    const later = await conversation();
    const reports: TransactionReport[] = [];
    // The first transaction's connection is held back, so the second conversation's batch waits for a slot.
    const { w, gate, acquired } = writerWithHeldFirstTransaction(reports);
    const actor = (id: string) =>
      new ConversationActor<MessageCommand, Stored>({
        conversationId: id,
        write: (conversationId, next) => w.write({ conversationId, next }),
        logger,
        mailboxCapacity: 100,
      });
    const send = (clientMsgId: string) =>
      ({ kind: 'send', senderId: alice, clientMsgId, body: clientMsgId, replyToSeq: null }) as const;
    const a = actor(first);
    const b = actor(later);
    const one = a.submit(send('a1'));
    await waitFor(() => acquired() === 1, { what: 'the first transaction to start' });
    // The second conversation's batch is handed to the writer with one command; two more queue behind it.
    const sent = [b.submit(send('b1')), b.submit(send('b2')), b.submit(send('b3'))];
    gate();
    expect((await one).message.seq).to.equal(1);
    expect((await Promise.all(sent)).map((s) => s.message.seq)).to.deep.equal([1, 2, 3]);
    expect(reports.map((r) => r.sends)).to.deep.equal([1, 3]);
  });

  it('starts the next transaction before answering the senders of the last: PostgreSQL writes while they are answered', async () => {
    const first = await conversation();
    const second = await conversation();
    const { w, gate, acquired } = writerWithHeldFirstTransaction();
    const send = (clientMsgId: string) =>
      ({ kind: 'send', senderId: alice, clientMsgId, body: clientMsgId, replyToSeq: null }) as const;
    const answeredFirst = w.write({ conversationId: first, commands: [send('f1')] }).then((outcomes) => ({
      outcomes,
      // How many transactions had started when the first one's sender was answered.
      started: acquired(),
    }));
    await waitFor(() => acquired() === 1, { what: 'the first transaction to start' });
    const answeredSecond = w.write({ conversationId: second, commands: [send('s1')] });
    gate();
    const { outcomes, started } = await answeredFirst;
    expect(ok(outcomes[0]).message.seq).to.equal(1);
    expect(started, 'the second transaction had started').to.equal(2);
    expect(ok((await answeredSecond)[0]).message.seq).to.equal(1);
  });

  it('starts a transaction beside one that is held up (a stalled flush), instead of after it', async () => {
    const held = await conversation();
    const other = await conversation();
    const reports: TransactionReport[] = [];
    const { w, gate, acquired } = writerWithHeldFirstTransaction(reports, 2);
    const send = (clientMsgId: string) =>
      ({ kind: 'send', senderId: alice, clientMsgId, body: clientMsgId, replyToSeq: null }) as const;
    let heldAnswered = false;
    const answeredHeld = w.write({ conversationId: held, commands: [send('h1')] }).then((outcomes) => {
      heldAnswered = true;
      return outcomes;
    });
    try {
      await waitFor(() => acquired() === 1, { what: 'the first transaction to start' });
      // Far longer than the 5 ms a transaction may take before it counts as held up (no commit timed yet).
      await new Promise((resolve) => setTimeout(resolve, 50));
      const answeredOther = w.write({ conversationId: other, commands: [send('o1')] });
      const first = await Promise.race([
        answeredOther.then(() => 'the other conversation'),
        new Promise((resolve) => setTimeout(() => resolve('nothing within 5 s'), 5000)),
      ]);
      expect(first).to.equal('the other conversation');
      expect(heldAnswered, 'the held transaction is still held').to.equal(false);
      expect(ok((await answeredOther)[0]).message.seq).to.equal(1);
    } finally {
      gate();
    }
    expect(ok((await answeredHeld)[0]).message.seq).to.equal(1);
    expect(reports.map((r) => [r.sends, r.heldUp])).to.deep.equal([
      [1, true],
      [1, false],
    ]);
  });

  it('splits a pile of sends that waited for a slot into parallel transactions, every seq in order', async () => {
    const warmUp = await conversation();
    const held = await conversation();
    const piled = await Promise.all(Array.from({ length: 10 }, () => conversation()));
    const reports: TransactionReport[] = [];
    // A first transaction of 300 ms: with no commit timed yet, a transaction would count as held up after 5 ms, so a
    // pause of this process between two of the writes below (a loaded machine) started part of the pile beside the
    // held one, and the test failed. After this one, that takes three times the warm-up's time.
    const { w, gate, acquired } = writerWithHeldFirstTransaction(reports, 3, 300);
    const send = (clientMsgId: string) =>
      ({ kind: 'send', senderId: alice, clientMsgId, body: clientMsgId, replyToSeq: null }) as const;
    const warmUpStarted = performance.now();
    expect(ok((await w.write({ conversationId: warmUp, commands: [send('w1')] }))[0]).message.seq).to.equal(
      1,
    );
    const warmUpMs = performance.now() - warmUpStarted;
    reports.length = 0;
    const answeredHeld = w.write({ conversationId: held, commands: [send('h1')] });
    try {
      await waitFor(() => acquired() === 2, { what: 'the held transaction to start' });
      // Past three times the usual transaction's time (at most the warm-up's, as this test timed it), the held one
      // counts as held up.
      await new Promise((resolve) => setTimeout(resolve, 3 * warmUpMs + 200));
      // The first batch starts a transaction beside the held one; the other nine (135 sends) pile up behind it,
      // and go in two transactions once it is done, while the held one still holds its slot.
      const batches = piled.map((conversationId, c) =>
        w.write({
          conversationId,
          commands: Array.from({ length: 15 }, (_, i) => send(`p${c}-${i}`)),
        }),
      );
      const answered = await Promise.all(batches);
      answered.forEach((outcomes) =>
        expect(outcomes.map((o) => ok(o).message.seq)).to.deep.equal(
          Array.from({ length: 15 }, (_, i) => i + 1),
        ),
      );
      expect(reports[0]?.sends, 'the transaction beside the held one').to.equal(15);
      const piles = reports
        .slice(1)
        .map((r) => r.sends)
        .sort((a, b) => a - b);
      expect(piles, 'the 135 sends that waited, in two transactions').to.deep.equal([60, 75]);
    } finally {
      gate();
    }
    expect(ok((await answeredHeld)[0]).message.seq).to.equal(1);
  });

  it('rolls back a failing batch alone: the other conversation in the same transaction commits', async () => {
    const first = await conversation();
    const poisoned = await conversation();
    const healthy = await conversation();
    const reports: TransactionReport[] = [];
    // One transaction at a time, whose first waits for its connection: the two batches queued behind it share
    // the next transaction.
    const { w, gate } = writerWithHeldFirstTransaction(reports);
    const earlier = w.write({
      conversationId: first,
      commands: [{ kind: 'send', senderId: alice, clientMsgId: 'x', body: 'x', replyToSeq: null }],
    });
    const failing = w.write({
      conversationId: poisoned,
      commands: [
        { kind: 'send', senderId: alice, clientMsgId: 'p1', body: 'fine', replyToSeq: null },
        { kind: 'send', senderId: bob, clientMsgId: 'p2', body: POISON, replyToSeq: null },
        { kind: 'send', senderId: alice, clientMsgId: 'p3', body: 'fine too', replyToSeq: null },
      ],
    });
    const passing = w.write({
      conversationId: healthy,
      commands: [
        { kind: 'send', senderId: alice, clientMsgId: 'h1', body: 'hello', replyToSeq: null },
        { kind: 'send', senderId: bob, clientMsgId: 'h2', body: 'world', replyToSeq: null },
      ],
    });
    expect(w.waiting).to.equal(2);
    gate();
    expect(ok((await earlier)[0]).message.seq).to.equal(1);
    const failed = await failing;
    const passed = await passing;
    expect(failed.map(errorCode)).to.deep.equal(['INTERNAL', 'INTERNAL', 'INTERNAL']);
    expect(passed.map((o) => ok(o).message.seq)).to.deep.equal([1, 2]);
    expect(reports).to.deep.equal([
      { batches: 1, sends: 1, persisted: 1, busy: 0, committed: true, heldUp: false },
      { batches: 2, sends: 5, persisted: 2, busy: 0, committed: true, heldUp: false },
    ]);
    expect(await state(poisoned)).to.deep.equal({ lastSeq: 0, seqs: [] });
    expect(await state(healthy)).to.deep.equal({ lastSeq: 2, seqs: [1, 2] });
    // The poisoned conversation works again for the next batch, from seq 1.
    const next = await w.write({
      conversationId: poisoned,
      commands: [{ kind: 'send', senderId: alice, clientMsgId: 'p1', body: 'fine', replyToSeq: null }],
    });
    expect(ok(next[0]).message.seq).to.equal(1);
    expect(ok(next[0]).duplicate).to.equal(false);
  });

  it('keeps the batches committed alone when an outage ends the calls one by one: only the rest fail', async () => {
    const [first, second, third, fourth] = [
      await conversation(),
      await conversation(),
      await conversation(),
      await conversation(),
    ];
    // The call with the three last batches fails for one batch's sake, so each is written alone; the second's call
    // meets an outage (its connection reset) after the first's has committed.
    const faulty: PoolConnections = {
      acquire: () => db.connections.acquire(),
      release: (client) => db.connections.release(client),
      observed: (client) => {
        const target = db.connections.observed(client);
        return {
          query: (statement) => {
            const values = JSON.stringify(statement.values);
            if (values.includes(second) && values.includes(third))
              return Promise.reject(new Error('new row violates check constraint (one batch at fault)'));
            if (values.includes(third))
              return Promise.reject(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }));
            return target.query(statement);
          },
        };
      },
    };
    const unknown: string[] = [];
    const w = createGroupCommitWriter({
      connections: faulty,
      logger,
      maxConcurrency: 1,
      onOutcomeUnknown: (ids) => unknown.push(...ids),
    });
    writers.push(w);
    const send = (conversationId: string, clientMsgId: string) =>
      w.write({
        conversationId,
        commands: [{ kind: 'send', senderId: alice, clientMsgId, body: clientMsgId, replyToSeq: null }],
      });
    // The first write runs alone; the three sent meanwhile share the next call.
    const answers = await Promise.all([
      send(first, 'f'),
      send(second, 's'),
      send(third, 't'),
      send(fourth, 'u'),
    ]);
    expect(ok(answers[0][0]).message.seq).to.equal(1);
    const committedAlone = ok(answers[1][0]);
    expect(committedAlone.message.seq).to.equal(1);
    expect(committedAlone.duplicate).to.equal(false);
    expect(errorCode(answers[2][0])).to.equal('DB_UNAVAILABLE');
    expect(errorCode(answers[3][0]), 'not tried after the outage').to.equal('DB_UNAVAILABLE');
    expect(await state(second)).to.deep.equal({ lastSeq: 1, seqs: [1] });
    expect(await state(third)).to.deep.equal({ lastSeq: 0, seqs: [] });
    expect(await state(fourth)).to.deep.equal({ lastSeq: 0, seqs: [] });
    // Only the call that met the outage may have committed unseen: the one refused for a batch's sake did not,
    // and the last batch was never sent.
    expect(unknown).to.deep.equal([third]);
  });

  it('answers DB_UNAVAILABLE while the database is unreachable, and writes again once it is back', async () => {
    const id = await conversation();
    const proxy = await startProxy(databaseUrl);
    const cut = createDatabase(
      loadDatabaseConfig({
        DATABASE_URL: proxy.urlThrough(databaseUrl),
        DB_ACQUIRE_TIMEOUT_MS: '1000',
        DB_CONNECT_TIMEOUT_MS: '500',
      }),
      logger,
    );
    try {
      const w = writer(cut, 2);
      expect(
        ok(
          (
            await w.write({
              conversationId: id,
              commands: [{ kind: 'send', senderId: alice, clientMsgId: 'u1', body: 'a', replyToSeq: null }],
            })
          )[0],
        ).message.seq,
      ).to.equal(1);
      await proxy.stop();
      const started = Date.now();
      const down = await w.write({
        conversationId: id,
        commands: [{ kind: 'send', senderId: alice, clientMsgId: 'u2', body: 'b', replyToSeq: null }],
      });
      expect(errorCode(down[0])).to.equal('DB_UNAVAILABLE');
      expect(Date.now() - started).to.be.below(5000);
      await proxy.start();
      const back = await waitFor(async () => {
        const [outcome] = await w.write({
          conversationId: id,
          commands: [{ kind: 'send', senderId: alice, clientMsgId: 'u2', body: 'b', replyToSeq: null }],
        });
        return outcome?.ok ? outcome.value : undefined;
      });
      expect(back.message.seq).to.equal(2);
      expect(await state(id)).to.deep.equal({ lastSeq: 2, seqs: [1, 2] });
    } finally {
      await Promise.all(writers.splice(0).map((x) => x.close()));
      await cut.close();
      await proxy.close();
    }
  });
});
