import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { loadDatabaseConfig } from '../lib/config.js';
import { createDatabase, type Database, type Knex } from '../lib/db.js';
import { constraintName, sqlState } from '../lib/errors.js';
import { createLogger } from '../lib/logger.js';
import { createTestDatabase } from './helpers/postgres.js';

interface UserRow {
  id: string;
  username: string;
  password_hash: string;
  display_name: string;
}

interface ConversationRow {
  id: string;
  type: string;
  title: string | null;
  direct_key: string | null;
}

const CHECK_VIOLATION = '23514';
const UNIQUE_VIOLATION = '23505';

/** Awaits `work`, expects PostgreSQL to reject it with `code` (and `constraint` when given). */
async function expectRejected(work: PromiseLike<unknown>, code: string, constraint?: string): Promise<void> {
  let error: unknown;
  try {
    await work;
  } catch (err) {
    error = err;
  }
  expect(error, 'PostgreSQL should have rejected the row').to.be.instanceOf(Error);
  expect(sqlState(error), String(error)).to.equal(code);
  if (constraint !== undefined) expect(constraintName(error), String(error)).to.equal(constraint);
}

describe('schema constraints', function () {
  let db: Database;
  let knex: Knex;

  before(async () => {
    db = createDatabase(
      loadDatabaseConfig({ DATABASE_URL: await createTestDatabase() }),
      createLogger('silent'),
    );
    knex = db.knex;
  });

  after(async () => {
    await db.close();
  });

  async function user(username = `u_${randomUUID().slice(0, 8)}`): Promise<string> {
    const [row] = await knex<UserRow>('users')
      .insert({ username, password_hash: 'x', display_name: username })
      .returning('id');
    return row!.id;
  }

  async function group(): Promise<string> {
    const [row] = await knex<ConversationRow>('conversations')
      .insert({ type: 'group', title: 'g' })
      .returning('id');
    return row!.id;
  }

  function message(conversationId: string, senderId: string | null, seq: number, body = 'hello') {
    return knex('messages').insert({
      conversation_id: conversationId,
      sender_id: senderId,
      seq,
      client_msg_id: randomUUID(),
      body,
    });
  }

  describe('friend_requests', () => {
    it('rejects a request to oneself', async () => {
      const a = await user();
      await expectRejected(
        knex('friend_requests').insert({ from_user_id: a, to_user_id: a }),
        CHECK_VIOLATION,
        'friend_requests_not_self',
      );
    });

    it('rejects a second pending request for the same pair in the opposite direction', async () => {
      const a = await user();
      const b = await user();
      await knex('friend_requests').insert({ from_user_id: a, to_user_id: b });
      await expectRejected(
        knex('friend_requests').insert({ from_user_id: b, to_user_id: a }),
        UNIQUE_VIOLATION,
        'friend_requests_one_pending_per_pair',
      );
      await expectRejected(
        knex('friend_requests').insert({ from_user_id: a, to_user_id: b }),
        UNIQUE_VIOLATION,
        'friend_requests_one_pending_per_pair',
      );
    });

    it('allows a new pending request once the old one is no longer pending', async () => {
      const a = await user();
      const b = await user();
      await knex('friend_requests').insert({ from_user_id: a, to_user_id: b, status: 'declined' });
      await knex('friend_requests').insert({ from_user_id: b, to_user_id: a });
      const rows = (await knex('friend_requests')
        .whereIn('from_user_id', [a, b])
        .pluck('status')) as string[];
      expect(rows.sort()).to.deep.equal(['declined', 'pending']);
    });

    it('rejects an unknown status', async () => {
      const a = await user();
      const b = await user();
      await expectRejected(
        knex('friend_requests').insert({ from_user_id: a, to_user_id: b, status: 'maybe' }),
        CHECK_VIOLATION,
        'friend_requests_status_check',
      );
    });
  });

  describe('conversations', () => {
    it('rejects an unknown conversation type', async () => {
      await expectRejected(
        knex('conversations').insert({ type: 'channel', title: 'c' }),
        CHECK_VIOLATION,
        'conversations_type_check',
      );
    });

    it('rejects a second direct conversation for the same pair (direct_key unique)', async () => {
      const a = await user();
      const b = await user();
      const key = [a, b].sort().join(':');
      await knex('conversations').insert({ type: 'direct', direct_key: key });
      await expectRejected(
        knex('conversations').insert({ type: 'direct', direct_key: key }),
        UNIQUE_VIOLATION,
        'conversations_direct_key_unique',
      );
    });

    it('rejects a direct conversation without a key and a group with one', async () => {
      await expectRejected(
        knex('conversations').insert({ type: 'direct' }),
        CHECK_VIOLATION,
        'conversations_direct_key_check',
      );
      await expectRejected(
        knex('conversations').insert({ type: 'group', title: 'g', direct_key: 'x:y' }),
        CHECK_VIOLATION,
        'conversations_direct_key_check',
      );
    });
  });

  describe('messages', () => {
    let sender: string;
    let conversation: string;
    before(async () => {
      sender = await user();
      conversation = await group();
    });

    it('rejects a duplicate (conversation_id, seq)', async () => {
      const c = await group();
      await message(c, sender, 1);
      await expectRejected(message(c, sender, 1), UNIQUE_VIOLATION, 'messages_conversation_seq_unique');
      // The same seq in another conversation is fine.
      await message(conversation, sender, 1000);
    });

    it('rejects an empty body', async () => {
      await expectRejected(message(conversation, sender, 2, ''), CHECK_VIOLATION, 'messages_body_check');
    });

    it('rejects a whitespace-only body', async () => {
      await expectRejected(
        message(conversation, sender, 3, ' \t\n\r  '),
        CHECK_VIOLATION,
        'messages_body_check',
      );
    });

    it('rejects a body over 4000 code points and accepts exactly 4000 multibyte ones', async () => {
      // U+1F600 is one code point, two UTF-16 units and four UTF-8 bytes: the limit counts code points.
      const grin = '\u{1F600}';
      await expectRejected(
        message(conversation, sender, 4, grin.repeat(4001)),
        CHECK_VIOLATION,
        'messages_body_check',
      );
      await expectRejected(
        message(conversation, sender, 5, 'a'.repeat(4001)),
        CHECK_VIOLATION,
        'messages_body_check',
      );
      await message(conversation, sender, 6, grin.repeat(4000));
      await message(conversation, sender, 7, 'é'.repeat(4000));
      const rows = await knex('messages')
        .where({ conversation_id: conversation })
        .whereIn('seq', [6, 7])
        .orderBy('seq')
        .select<Array<{ n: number; body: string }>>(knex.raw('char_length(body) AS n'), 'body');
      expect(rows.map((r) => r.n)).to.deep.equal([4000, 4000]);
      expect(rows[0]!.body).to.equal(grin.repeat(4000));
    });

    it('rejects a duplicate (conversation_id, sender_id, client_msg_id)', async () => {
      const clientMsgId = randomUUID();
      await knex('messages').insert({
        conversation_id: conversation,
        sender_id: sender,
        seq: 10,
        client_msg_id: clientMsgId,
        body: 'first',
      });
      await expectRejected(
        knex('messages').insert({
          conversation_id: conversation,
          sender_id: sender,
          seq: 11,
          client_msg_id: clientMsgId,
          body: 'second',
        }),
        UNIQUE_VIOLATION,
        'messages_client_msg_unique',
      );
      // Another sender may use the same clientMsgId.
      await knex('messages').insert({
        conversation_id: conversation,
        sender_id: await user(),
        seq: 12,
        client_msg_id: clientMsgId,
        body: 'third',
      });
    });

    it('rejects a seq of 0 and a malformed client_msg_id', async () => {
      await expectRejected(message(conversation, sender, 0), CHECK_VIOLATION, 'messages_seq_check');
      await expectRejected(
        knex('messages').insert({
          conversation_id: conversation,
          sender_id: sender,
          seq: 20,
          client_msg_id: 'has space',
          body: 'x',
        }),
        CHECK_VIOLATION,
        'messages_client_msg_id_check',
      );
    });
  });

  describe('users', () => {
    it('rejects a username that differs only in case', async () => {
      const name = `Alice_${randomUUID().slice(0, 8)}`;
      await user(name);
      await expectRejected(user(name.toLowerCase()), UNIQUE_VIOLATION, 'users_username_lower_unique');
      await expectRejected(user(name.toUpperCase()), UNIQUE_VIOLATION, 'users_username_lower_unique');
    });

    it('stores the username as typed', async () => {
      const name = `MiXeD_${randomUUID().slice(0, 8)}`;
      const id = await user(name);
      const row = await knex<UserRow>('users').where({ id }).first('username');
      expect(row?.username).to.equal(name);
    });

    it('rejects a malformed username', async () => {
      await expectRejected(user('ab'), CHECK_VIOLATION, 'users_username_format');
      await expectRejected(user('has space'), CHECK_VIOLATION, 'users_username_format');
    });
  });
});
