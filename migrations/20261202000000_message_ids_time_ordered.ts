import type { Knex } from 'knex';

/**
 * Time-ordered message ids (UUID version 7, RFC 9562) instead of random ones (version 4).
 *
 * `messages.id` is the table's primary key. A random id puts every new message on a random page of that index:
 * once the index outgrows the cache, each insert may read a page from disk, and after every checkpoint the first
 * change to each page writes the whole 8 kB page to the WAL. On a 4-million-row table, in the first 240,000 rows
 * after a checkpoint, random ids wrote 3.4 times the WAL per row of time-ordered ones (685-716 bytes against 203:
 * a full-page image every twelve rows), and the 40-row inserts ran about 30 % slower (docs/performance.md, "Message ids
 * in time order"). Time-ordered ids go to the right-hand edge of the index, like the other indexes' keys, which
 * lead with the conversation.
 *
 * The ids stay UUIDs of the same format; only new messages get version-7 ids (existing ones keep theirs, and both
 * kinds coexist in the index). A version-7 id carries its creation time to the millisecond, which the message's
 * `createdAt` already says.
 *
 * PostgreSQL 18 has `uuidv7()`, monotonic within a session. Before 18, the function below builds the same layout:
 * 48 bits of Unix milliseconds, the version, 12 bits of the fraction of the millisecond (so that the ids of one
 * statement stay in order, and the index's pages fill as with increasing keys), then the variant and random bits
 * of a version-4 UUID. PL/pgSQL, because the clock must be read once for both parts.
 */
const NATIVE_UUID_V7 = `
  CREATE FUNCTION xfchat_uuid_v7() RETURNS uuid LANGUAGE sql VOLATILE PARALLEL SAFE AS $$ SELECT uuidv7() $$`;

export const PORTABLE_UUID_V7 = `
  CREATE FUNCTION xfchat_uuid_v7() RETURNS uuid LANGUAGE plpgsql VOLATILE PARALLEL SAFE AS $$
  DECLARE
    us bigint := floor(extract(epoch FROM clock_timestamp()) * 1000000);
  BEGIN
    -- 28672 = 0x7000: the version nibble, followed by the fraction of the millisecond in 1/4096ths.
    RETURN encode(
      substring(int8send(us / 1000) FROM 3)
        || int2send((28672 + (us % 1000) * 4096 / 1000)::smallint)
        || substring(uuid_send(gen_random_uuid()) FROM 9),
      'hex')::uuid;
  END
  $$`;

/**
 * Changing a column's default takes a moment's exclusive lock on `messages`, which waits for every transaction
 * that has touched the table (a long report, a `pg_dump`), and every write queues behind the wait. So the
 * migration (one transaction, as Knex runs each) gives up after a few seconds instead, and the node that ran it
 * exits with the cause; starting it again later retries.
 */
const LOCK_TIMEOUT = '3s';

export async function limitLockWait(knex: Knex): Promise<void> {
  await knex.raw("SELECT set_config('lock_timeout', ?, true)", [LOCK_TIMEOUT]);
}

/**
 * The tables every write touches, locked in the order writes lock them: a write locks its conversation's row,
 * then inserts into `messages` and `message_reactions`. Knex runs a batch of migrations in one transaction: a
 * batch that took `messages` (here) and then `conversations` (20261204000000) deadlocked with the writes of 0.2.0
 * nodes during a rolling upgrade, the migration and some of their writes cancelled. So each migration that changes
 * one of these tables takes all three first (a later one in the same batch holds them already), with the same
 * limit on the wait. (Outside a transaction, as a test may call a migration, there is no batch to order.)
 */
export async function lockWriteTables(knex: Knex): Promise<void> {
  await limitLockWait(knex);
  if (!knex.isTransaction) return;
  await knex.raw('LOCK TABLE conversations, messages, message_reactions IN ACCESS EXCLUSIVE MODE');
}

export async function up(knex: Knex): Promise<void> {
  await lockWriteTables(knex);
  const { rows } = await knex.raw<{ rows: Array<{ version: number }> }>(
    "SELECT current_setting('server_version_num')::int AS version",
  );
  await knex.raw(rows[0]!.version >= 180000 ? NATIVE_UUID_V7 : PORTABLE_UUID_V7);
  await knex.raw('ALTER TABLE messages ALTER COLUMN id SET DEFAULT xfchat_uuid_v7()');
}

export async function down(knex: Knex): Promise<void> {
  await lockWriteTables(knex);
  await knex.raw('ALTER TABLE messages ALTER COLUMN id SET DEFAULT gen_random_uuid()');
  await knex.raw('DROP FUNCTION xfchat_uuid_v7()');
}
