import type { Knex } from 'knex';

/**
 * The whole v1 schema. gen_random_uuid() is built into PostgreSQL 13+, so no extension (and no superuser) is needed.
 *
 * ON DELETE rules, deliberately:
 * - deleting a user removes their participations, requests, friendships and blocks (CASCADE), keeps the messages
 *   they sent with sender_id NULL (SET NULL: the other participants' history stays whole), and keeps conversations
 *   they created with created_by NULL;
 * - deleting a conversation removes its participants and messages (CASCADE).
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('users', (t) => {
    t.uuid('id').primary().defaultTo(knex.raw('gen_random_uuid()'));
    t.text('username').notNullable();
    t.text('password_hash').notNullable();
    t.text('display_name').notNullable();
    t.integer('token_version').notNullable().defaultTo(0);
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  await knex.raw(`ALTER TABLE users
    ADD CONSTRAINT users_username_format CHECK (username ~ '^[A-Za-z0-9_.-]{3,32}$'),
    ADD CONSTRAINT users_display_name_length CHECK (char_length(display_name) BETWEEN 1 AND 64)`);
  await knex.raw('CREATE UNIQUE INDEX users_username_lower_unique ON users (lower(username))');

  await knex.schema.createTable('conversations', (t) => {
    t.uuid('id').primary().defaultTo(knex.raw('gen_random_uuid()'));
    t.text('type').notNullable();
    t.text('title');
    t.uuid('created_by').references('id').inTable('users').onDelete('SET NULL');
    // "<lower uuid>:<higher uuid>" for direct conversations, NULL for groups: one direct conversation per pair.
    t.text('direct_key').unique();
    t.bigInteger('last_seq').notNullable().defaultTo(0);
    t.timestamp('last_activity_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  await knex.raw(`ALTER TABLE conversations
    ADD CONSTRAINT conversations_type_check CHECK (type IN ('direct', 'group')),
    ADD CONSTRAINT conversations_direct_key_check CHECK ((type = 'direct') = (direct_key IS NOT NULL)),
    ADD CONSTRAINT conversations_title_check CHECK (title IS NULL OR char_length(title) BETWEEN 1 AND 100),
    ADD CONSTRAINT conversations_last_seq_check CHECK (last_seq >= 0)`);

  await knex.schema.createTable('conversation_participants', (t) => {
    t.uuid('conversation_id').notNullable().references('id').inTable('conversations').onDelete('CASCADE');
    t.uuid('user_id').notNullable().references('id').inTable('users').onDelete('CASCADE');
    t.text('role').notNullable().defaultTo('member');
    t.bigInteger('last_read_seq').notNullable().defaultTo(0);
    t.timestamp('joined_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(['conversation_id', 'user_id']);
    // "My conversations".
    t.index(['user_id', 'conversation_id'], 'conversation_participants_user_idx');
  });
  await knex.raw(`ALTER TABLE conversation_participants
    ADD CONSTRAINT conversation_participants_role_check CHECK (role IN ('owner', 'member')),
    ADD CONSTRAINT conversation_participants_last_read_check CHECK (last_read_seq >= 0)`);

  await knex.schema.createTable('messages', (t) => {
    t.uuid('id').primary().defaultTo(knex.raw('gen_random_uuid()'));
    t.uuid('conversation_id').notNullable().references('id').inTable('conversations').onDelete('CASCADE');
    t.uuid('sender_id').references('id').inTable('users').onDelete('SET NULL');
    t.bigInteger('seq').notNullable();
    t.text('client_msg_id').notNullable();
    t.text('body').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    // History by (conversation_id, seq), both directions, is served by this unique index.
    t.unique(['conversation_id', 'seq'], { indexName: 'messages_conversation_seq_unique' });
    t.unique(['conversation_id', 'sender_id', 'client_msg_id'], { indexName: 'messages_client_msg_unique' });
  });
  await knex.raw(`ALTER TABLE messages
    ADD CONSTRAINT messages_seq_check CHECK (seq > 0),
    ADD CONSTRAINT messages_client_msg_id_check CHECK (client_msg_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    ADD CONSTRAINT messages_body_check CHECK (char_length(body) BETWEEN 1 AND 4000 AND body ~ '[^[:space:]]')`);

  await knex.schema.createTable('friend_requests', (t) => {
    t.uuid('id').primary().defaultTo(knex.raw('gen_random_uuid()'));
    t.uuid('from_user_id').notNullable().references('id').inTable('users').onDelete('CASCADE');
    t.uuid('to_user_id').notNullable().references('id').inTable('users').onDelete('CASCADE');
    t.text('status').notNullable().defaultTo('pending');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('responded_at', { useTz: true });
  });
  await knex.raw(`ALTER TABLE friend_requests
    ADD CONSTRAINT friend_requests_not_self CHECK (from_user_id <> to_user_id),
    ADD CONSTRAINT friend_requests_status_check CHECK (status IN ('pending', 'accepted', 'declined', 'cancelled'))`);
  // At most one pending request per pair, whichever direction.
  await knex.raw(`CREATE UNIQUE INDEX friend_requests_one_pending_per_pair ON friend_requests
    (LEAST(from_user_id, to_user_id), GREATEST(from_user_id, to_user_id)) WHERE status = 'pending'`);
  await knex.raw(`CREATE INDEX friend_requests_incoming_pending_idx ON friend_requests (to_user_id, created_at)
    WHERE status = 'pending'`);
  await knex.raw(`CREATE INDEX friend_requests_outgoing_pending_idx ON friend_requests (from_user_id, created_at)
    WHERE status = 'pending'`);

  // One row per friendship, the pair in canonical order, so a race cannot make two.
  await knex.schema.createTable('friendships', (t) => {
    t.uuid('user_low').notNullable().references('id').inTable('users').onDelete('CASCADE');
    t.uuid('user_high').notNullable().references('id').inTable('users').onDelete('CASCADE');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(['user_low', 'user_high']);
    t.index(['user_high'], 'friendships_user_high_idx');
  });
  await knex.raw('ALTER TABLE friendships ADD CONSTRAINT friendships_ordered CHECK (user_low < user_high)');

  await knex.schema.createTable('blocks', (t) => {
    t.uuid('blocker_id').notNullable().references('id').inTable('users').onDelete('CASCADE');
    t.uuid('blocked_id').notNullable().references('id').inTable('users').onDelete('CASCADE');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(['blocker_id', 'blocked_id']);
    t.index(['blocked_id'], 'blocks_blocked_idx');
  });
  await knex.raw('ALTER TABLE blocks ADD CONSTRAINT blocks_not_self CHECK (blocker_id <> blocked_id)');

  // The table @socket.io/postgres-adapter uses for payloads over NOTIFY's 8000-byte limit.
  await knex.schema.createTable('socket_io_attachments', (t) => {
    t.bigIncrements('id').primary();
    t.timestamp('created_at', { useTz: true }).defaultTo(knex.fn.now());
    t.binary('payload');
    t.index(['created_at'], 'socket_io_attachments_created_at_idx');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('socket_io_attachments');
  await knex.schema.dropTable('blocks');
  await knex.schema.dropTable('friendships');
  await knex.schema.dropTable('friend_requests');
  await knex.schema.dropTable('messages');
  await knex.schema.dropTable('conversation_participants');
  await knex.schema.dropTable('conversations');
  await knex.schema.dropTable('users');
}
