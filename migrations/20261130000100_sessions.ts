import type { Knex } from 'knex';

/**
 * Sessions (one per signup or login: one device), their rotating refresh tokens, deletable accounts, and the
 * shared counters of the login limits.
 *
 * - `sessions`: an access token names its session (claim `sid`); every request and handshake checks the row, so
 *   deleting it revokes that session's tokens on every node at once. `last_used_at` moves at login and at each
 *   refresh; a session unused for REFRESH_TTL_DAYS is over.
 * - `refresh_tokens`: only an HMAC of each token is stored. A token is used once (`used_at`); a used one that
 *   comes back is a theft signal and ends its session. Rows go with their session (CASCADE).
 * - `users`: a deleted account keeps its row, so message history and conversation rows stay whole, but loses its
 *   username (NULL: the unique index on lower(username) allows any number of NULLs, and the name is free again),
 *   its password hash and its display name ("Deleted user"). The token version is gone: sessions revoke tokens.
 * - `auth_rate_limits`: the table of rate-limiter-flexible's RateLimiterPostgres, made here (the limiter is
 *   told `tableCreated: true`) so the server never runs DDL at run time and the role needs no CREATE right then.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('sessions', (t) => {
    t.uuid('id').primary().defaultTo(knex.raw('gen_random_uuid()'));
    t.uuid('user_id').notNullable().references('id').inTable('users').onDelete('CASCADE');
    t.text('user_agent');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('last_used_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.index(['user_id'], 'sessions_user_idx');
  });
  await knex.raw(
    'ALTER TABLE sessions ADD CONSTRAINT sessions_user_agent_length CHECK (char_length(user_agent) <= 512)',
  );

  await knex.schema.createTable('refresh_tokens', (t) => {
    // HMAC-SHA256 of the token: 32 bytes.
    t.binary('token_hash').primary();
    t.uuid('session_id').notNullable().references('id').inTable('sessions').onDelete('CASCADE');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('used_at', { useTz: true });
    t.index(['session_id'], 'refresh_tokens_session_idx');
  });
  await knex.raw(
    'ALTER TABLE refresh_tokens ADD CONSTRAINT refresh_tokens_hash_length CHECK (octet_length(token_hash) = 32)',
  );

  await knex.raw(`ALTER TABLE users
    ADD COLUMN deleted_at timestamptz,
    ALTER COLUMN username DROP NOT NULL,
    ALTER COLUMN password_hash DROP NOT NULL,
    DROP COLUMN token_version,
    ADD CONSTRAINT users_deleted_shape CHECK (
      CASE WHEN deleted_at IS NULL THEN username IS NOT NULL AND password_hash IS NOT NULL
           ELSE username IS NULL AND password_hash IS NULL END
    )`);

  // rate-limiter-flexible's own layout (RateLimiterPostgres._getCreateTableStmt), plus an index for the sweep.
  await knex.schema.createTable('auth_rate_limits', (t) => {
    t.string('key', 255).primary();
    t.integer('points').notNullable().defaultTo(0);
    t.bigInteger('expire');
    t.index(['expire'], 'auth_rate_limits_expire_idx');
  });
}

/**
 * Back to version 1. A deleted account becomes what version 1 made of one: its row goes, its messages keep
 * sender_id NULL and its conversations created_by NULL (the foreign keys' SET NULL). Every token issued since is
 * refused afterwards (no `ver` claim), so everyone logs in again.
 */
export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('auth_rate_limits');
  await knex('users').whereNotNull('deleted_at').delete();
  await knex.raw(`ALTER TABLE users
    DROP CONSTRAINT users_deleted_shape,
    ADD COLUMN token_version integer NOT NULL DEFAULT 0,
    ALTER COLUMN password_hash SET NOT NULL,
    ALTER COLUMN username SET NOT NULL,
    DROP COLUMN deleted_at`);
  await knex.schema.dropTable('refresh_tokens');
  await knex.schema.dropTable('sessions');
}
