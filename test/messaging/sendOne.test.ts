import { expect } from 'chai';
import pg from 'pg';
import { loadDatabaseConfig } from '../../lib/config.js';
import { createDatabase, type Database } from '../../lib/db.js';
import { createLogger } from '../../lib/logger.js';
import { createTestDatabase, untilAStatementWaitsForALock } from '../helpers/postgres.js';
import { testConfig } from '../helpers/server.js';
import { rows } from '../helpers/chat.js';
import { insertSession, insertUser } from '../helpers/users.js';

/**
 * `xfchat_send_one()` (migrations/20261201000000_send_one.ts) answers a lone send exactly as `xfchat_write()`
 * answers a call holding only that send: every status, and the same seq, version and read marker afterwards. Each
 * case is set up twice, the same way, in two direct conversations of fresh users; one function writes in each.
 * Both as the node calls them, with the send's session (migrations/20261203130000_session_checked_under_lock.ts).
 */

interface Send {
  sender: 'a' | 'b' | 'outsider';
  clientMsgId: string;
  body: string;
  replyTo?: number | null;
  /** The sender's own session (the default), or none (a write of no session: not checked). */
  session?: 'own' | 'none';
}

interface Answer {
  status: number;
  seq: number | null;
  version: number | null;
  /** The stored message answered (a replay), without what differs between the two conversations. */
  message: Record<string, unknown> | null;
  /** The conversation's state after the call, and the sender's read marker. */
  lastSeq: number;
  conversationVersion: number;
  lastRead: number | null;
}

interface Row {
  r_ord: number;
  r_status: number;
  r_seq: string | null;
  r_version: string | null;
  r_created_ms: string | null;
  r_id: string | null;
  r_message: Record<string, unknown> | null;
}

type Fn = 'xfchat_write' | 'xfchat_send_one';

describe('messaging: xfchat_send_one answers a lone send as xfchat_write does (PostgreSQL)', function () {
  let db: Database;
  let client: pg.Client;
  let holder: pg.Client;
  let databaseUrl: string;

  before(async () => {
    databaseUrl = await createTestDatabase();
    db = createDatabase(loadDatabaseConfig({ DATABASE_URL: databaseUrl }), createLogger('silent'));
    client = new pg.Client({ connectionString: databaseUrl });
    holder = new pg.Client({ connectionString: databaseUrl });
    await Promise.all([client.connect(), holder.connect()]);
  });

  after(async () => {
    await Promise.all([client.end(), holder.end()]);
    await db.close();
  });

  interface Conversation {
    id: string;
    users: Record<Send['sender'], string>;
    sessions: Record<Send['sender'], string>;
  }

  async function conversation(): Promise<Conversation> {
    const config = testConfig(databaseUrl);
    const [a, b, outsider] = await Promise.all([1, 2, 3].map(() => insertUser(db.knex, config)));
    const [row] = await rows<{ id: string }>(
      db.knex,
      `INSERT INTO conversations (type, created_by, direct_key) VALUES ('direct', ?, ?) RETURNING id`,
      [a!.id, `${a!.id}:${b!.id}`],
    );
    await db.knex('conversation_participants').insert([
      { conversation_id: row!.id, user_id: a!.id },
      { conversation_id: row!.id, user_id: b!.id },
    ]);
    return {
      id: row!.id,
      users: { a: a!.id, b: b!.id, outsider: outsider!.id },
      sessions: { a: a!.sessionId, b: b!.sessionId, outsider: outsider!.sessionId },
    };
  }

  async function call(
    fn: Fn,
    conversationId: string,
    senderId: string,
    send: Send,
    wait: boolean,
    sessionId: string | null,
  ): Promise<Row> {
    const replyTo = send.replyTo ?? null;
    const result =
      fn === 'xfchat_write'
        ? await client.query<Row>(
            `SELECT * FROM xfchat_write($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::bigint[],
               '{}', '{}', '{}', '{}', '{}', NULL, NULL, $6, $7::uuid[], '{}')`,
            [[conversationId], [senderId], [send.clientMsgId], [send.body], [replyTo], wait, [sessionId]],
          )
        : await client.query<Row>(
            'SELECT * FROM xfchat_send_one($1::uuid, $2::uuid, $3::text, $4::text, $5::bigint, $6, $7::uuid)',
            [conversationId, senderId, send.clientMsgId, send.body, replyTo, wait, sessionId],
          );
    expect(result.rows).to.have.length(1);
    const [row] = result.rows;
    expect(row!.r_ord).to.equal(1);
    return row!;
  }

  async function answer(fn: Fn, c: Conversation, send: Send, wait: boolean): Promise<Answer> {
    const senderId = c.users[send.sender];
    const row = await call(fn, c.id, senderId, send, wait, sessionOf(c, send));
    if (row.r_status === 0) {
      expect(row.r_id).to.be.a('string');
      expect(Number(row.r_created_ms)).to.be.closeTo(Date.now(), 60_000);
    }
    const [state] = await rows<{ last_seq: string; version: string; last_read_seq: string | null }>(
      db.knex,
      `SELECT c.last_seq, c.version, p.last_read_seq FROM conversations c
       LEFT JOIN conversation_participants p ON p.conversation_id = c.id AND p.user_id = ?
       WHERE c.id = ?`,
      [senderId, c.id],
    );
    if (state === undefined) throw new Error(`conversation ${c.id} is gone`);
    const message = row.r_message === null ? null : { ...row.r_message };
    if (message)
      for (const key of ['id', 'conversationId', 'senderId', 'createdAt', 'editedAt']) delete message[key];
    return {
      status: row.r_status,
      seq: row.r_seq === null ? null : Number(row.r_seq),
      version: row.r_version === null ? null : Number(row.r_version),
      message,
      lastSeq: Number(state.last_seq),
      conversationVersion: Number(state.version),
      lastRead: state.last_read_seq === null ? null : Number(state.last_read_seq),
    };
  }

  /**
   * Sets up two conversations with `prepare`, sends `send` in each (one through each function, skipping a held
   * conversation as a node alone does), checks both answers are the same and returns it.
   */
  async function both(
    send: Send,
    prepare: (c: Conversation, fn: Fn) => Promise<void> = async () => {},
  ): Promise<Answer> {
    const answers: Answer[] = [];
    for (const fn of ['xfchat_write', 'xfchat_send_one'] as const) {
      const c = await conversation();
      await prepare(c, fn);
      answers.push(await answer(fn, c, send, false));
    }
    expect(answers[1], 'xfchat_send_one against xfchat_write').to.deep.equal(answers[0]);
    return answers[0]!;
  }

  const sessionOf = (c: Conversation, send: Send): string | null =>
    send.session === 'none' ? null : c.sessions[send.sender];

  /** Earlier sends, each through the function under test. */
  const sent =
    (...sends: Send[]) =>
    async (c: Conversation, fn: Fn) => {
      for (const send of sends)
        expect(
          (await call(fn, c.id, c.users[send.sender], send, false, sessionOf(c, send))).r_status,
        ).to.equal(0);
    };

  it('a new message: the next seq and version, and the sender’s read marker moves to it', async () => {
    const answer = await both(
      { sender: 'a', clientMsgId: 'm2', body: 'second' },
      sent({ sender: 'b', clientMsgId: 'm1', body: 'first' }),
    );
    expect(answer).to.include({
      status: 0,
      seq: 2,
      version: 2,
      lastSeq: 2,
      conversationVersion: 2,
      lastRead: 2,
    });
  });

  it('a replay of a stored message: status 1 with the stored message; nothing moves', async () => {
    const answer = await both(
      { sender: 'a', clientMsgId: 'm1', body: 'first' },
      sent({ sender: 'a', clientMsgId: 'm1', body: 'first' }),
    );
    expect(answer).to.include({ status: 1, seq: null, lastSeq: 1, conversationVersion: 1 });
    expect(answer.message).to.include({ seq: 1, body: 'first', clientMsgId: 'm1', version: 1 });
  });

  it('the same clientMsgId with another body: status 2; after an edit, any body is a replay', async () => {
    const conflict = await both(
      { sender: 'a', clientMsgId: 'm1', body: 'other' },
      sent({ sender: 'a', clientMsgId: 'm1', body: 'first' }),
    );
    expect(conflict).to.include({ status: 2, lastSeq: 1 });
    const edited = await both({ sender: 'a', clientMsgId: 'm1', body: 'other' }, async (c, fn) => {
      await sent({ sender: 'a', clientMsgId: 'm1', body: 'first' })(c, fn);
      await db
        .knex('messages')
        .where({ conversation_id: c.id, seq: 1 })
        .update({ body: 'edited', edited_at: db.knex.fn.now() });
    });
    expect(edited).to.include({ status: 1, lastSeq: 1 });
    expect(edited.message).to.include({ body: 'edited' });
  });

  it('a sender who is not a participant: status 3', async () => {
    expect(await both({ sender: 'outsider', clientMsgId: 'x', body: 'hello' })).to.include({
      status: 3,
      lastSeq: 0,
    });
  });

  it('a block either way: status 4, but a replay is still answered', async () => {
    const block = (from: 'a' | 'b', to: 'a' | 'b') => async (c: Conversation) => {
      await db.knex('blocks').insert({ blocker_id: c.users[from], blocked_id: c.users[to] });
    };
    expect(await both({ sender: 'a', clientMsgId: 'x', body: 'hello' }, block('a', 'b'))).to.include({
      status: 4,
      lastSeq: 0,
    });
    expect(await both({ sender: 'a', clientMsgId: 'x', body: 'hello' }, block('b', 'a'))).to.include({
      status: 4,
      lastSeq: 0,
    });
    const replay = await both({ sender: 'a', clientMsgId: 'm1', body: 'first' }, async (c, fn) => {
      await sent({ sender: 'a', clientMsgId: 'm1', body: 'first' })(c, fn);
      await block('b', 'a')(c);
    });
    expect(replay).to.include({ status: 1, lastSeq: 1 });
    const conflict = await both({ sender: 'a', clientMsgId: 'm1', body: 'other' }, async (c, fn) => {
      await sent({ sender: 'a', clientMsgId: 'm1', body: 'first' })(c, fn);
      await block('b', 'a')(c);
    });
    expect(conflict).to.include({ status: 4, lastSeq: 1 });
  });

  it('a session that has ended: status 10 before anything else, and nothing moves; no session is not checked', async () => {
    const ended =
      (...senders: Array<Send['sender']>) =>
      async (c: Conversation) => {
        await db
          .knex('sessions')
          .whereIn(
            'id',
            senders.map((s) => c.sessions[s]),
          )
          .delete();
      };
    expect(await both({ sender: 'a', clientMsgId: 'x', body: 'hello' }, ended('a'))).to.deep.include({
      status: 10,
      seq: null,
      message: null,
      lastSeq: 0,
      conversationVersion: 0,
      lastRead: 0,
    });
    // Not a participant, a replay, a conflict, a block: the ended session is still what is answered.
    expect(await both({ sender: 'outsider', clientMsgId: 'x', body: 'hello' }, ended('outsider'))).to.include(
      {
        status: 10,
      },
    );
    for (const body of ['first', 'other']) {
      const again = await both({ sender: 'a', clientMsgId: 'm1', body }, async (c, fn) => {
        await sent({ sender: 'a', clientMsgId: 'm1', body: 'first' })(c, fn);
        await db.knex('blocks').insert({ blocker_id: c.users.b, blocked_id: c.users.a });
        await ended('a')(c);
      });
      expect(again).to.deep.include({ status: 10, message: null, lastSeq: 1, conversationVersion: 1 });
    }
    // The other user's session ending changes nothing for this one.
    expect(await both({ sender: 'a', clientMsgId: 'x', body: 'hello' }, ended('b'))).to.include({
      status: 0,
      seq: 1,
    });
    // Another user's session is not the sender's: refused like an ended one.
    for (const fn of ['xfchat_write', 'xfchat_send_one'] as const) {
      const c = await conversation();
      const row = await call(
        fn,
        c.id,
        c.users.a,
        { sender: 'a', clientMsgId: 'x', body: 'hi' },
        false,
        c.sessions.b,
      );
      expect(row.r_status, fn).to.equal(10);
    }
    // A write of no session (null) is not checked.
    expect(
      await both({ sender: 'a', clientMsgId: 'x', body: 'hello', session: 'none' }, ended('a')),
    ).to.include({ status: 0, seq: 1 });
  });

  it('xfchat_write: in one call, an ended session’s sends take no seq, and a reply cannot name the seq they would have had', async () => {
    const c = await conversation();
    const other = await insertSession(db.knex, c.users.a);
    await db.knex('sessions').where({ id: c.sessions.a }).delete();
    const result = await client.query<Row>(
      `SELECT * FROM xfchat_write($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::bigint[],
         '{}', '{}', '{}', '{}', '{}', NULL, NULL, true, $6::uuid[], '{}')`,
      [
        [c.id, c.id, c.id, c.id],
        [c.users.a, c.users.a, c.users.b, c.users.a],
        ['ended', 'live', 'reply', 'reply2'],
        ['from the ended session', 'from the live one', 'answers seq 2', 'answers seq 1'],
        [null, null, 2, 1],
        [c.sessions.a, other, c.sessions.b, c.sessions.a],
      ],
    );
    expect(result.rows.map((r) => [r.r_status, r.r_seq === null ? null : Number(r.r_seq)])).to.deep.equal([
      [10, null],
      [0, 1],
      [7, null],
      [10, null],
    ]);
    const stored = await rows<{ seq: string; client_msg_id: string }>(
      db.knex,
      'SELECT seq, client_msg_id FROM messages WHERE conversation_id = ? ORDER BY seq',
      [c.id],
    );
    expect(stored.map((m) => [Number(m.seq), m.client_msg_id])).to.deep.equal([[1, 'live']]);
  });

  it('replyToSeq: an earlier seq is stored, anything else is status 7 and moves nothing', async () => {
    const first = sent({ sender: 'b', clientMsgId: 'm1', body: 'first' });
    const reply = await both({ sender: 'a', clientMsgId: 'r', body: 'answer', replyTo: 1 }, first);
    expect(reply).to.include({ status: 0, seq: 2 });
    for (const replyTo of [0, 2, -1]) {
      expect(await both({ sender: 'a', clientMsgId: 'r', body: 'answer', replyTo }, first)).to.include({
        status: 7,
        lastSeq: 1,
        conversationVersion: 1,
        lastRead: 0,
      });
    }
  });

  it('a conversation another transaction holds: status 8 without waiting; with waiting, written once it is released', async () => {
    const hold = async (c: Conversation) => {
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM conversations WHERE id = $1 FOR NO KEY UPDATE', [c.id]);
    };
    try {
      expect(await both({ sender: 'a', clientMsgId: 'x', body: 'hello' }, hold)).to.include({
        status: 8,
        lastSeq: 0,
      });
    } finally {
      await holder.query('ROLLBACK');
    }
    for (const fn of ['xfchat_write', 'xfchat_send_one'] as const) {
      const c = await conversation();
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM conversations WHERE id = $1 FOR NO KEY UPDATE', [c.id]);
      const waiting = call(
        fn,
        c.id,
        c.users.a,
        { sender: 'a', clientMsgId: 'x', body: 'hello' },
        true,
        c.sessions.a,
      );
      let settled = false;
      void waiting.finally(() => (settled = true));
      // Seen waiting in PostgreSQL (after a fixed 100 ms, a call not yet started on a slow machine passed too).
      await untilAStatementWaitsForALock(db.knex, `${fn} to wait for the lock`);
      expect(settled, `${fn} waited for the lock`).to.equal(false);
      await holder.query('COMMIT');
      expect((await waiting).r_status, fn).to.equal(0);
    }
  });

  it('no such conversation: status 8 without waiting (the waiting retry finds it gone), 3 with waiting', async () => {
    const gone = { id: '00000000-0000-4000-8000-000000000000', users: { a: '', b: '', outsider: '' } };
    for (const [wait, status] of [
      [false, 8],
      [true, 3],
    ] as const) {
      const c = await conversation();
      const answers = [];
      for (const fn of ['xfchat_write', 'xfchat_send_one'] as const)
        answers.push(
          (
            await call(
              fn,
              gone.id,
              c.users.a,
              { sender: 'a', clientMsgId: 'x', body: 'hello' },
              wait,
              c.sessions.a,
            )
          ).r_status,
        );
      expect(answers).to.deep.equal([status, status]);
    }
  });
});
