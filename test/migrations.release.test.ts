import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import type { Knex } from 'knex';
import pg from 'pg';
import { BUNDLED_MIGRATIONS_DIR, knexCliMigrations } from '../lib/migrations.js';
import { groupOfOne, openMigrated, type Opened } from './helpers/migrations.js';
import { createEmptyDatabase } from './helpers/postgres.js';
import { waitFor } from './helpers/waitFor.js';

/**
 * A database created by an earlier release and migrated by this one must end up with the schema a fresh database
 * gets: Knex never runs an applied migration again, so a migration edited after a release shipped it leaves that
 * release's databases behind. `test/fixtures/releases/<version>/migrations` holds each release's migrations as it
 * shipped them (copied from its tag; never edit them).
 */
const here = path.dirname(fileURLToPath(import.meta.url));
const RELEASE_0_2_0 = path.join(here, 'fixtures', 'releases', '0.2.0', 'migrations');
const RELEASE_0_2_0_NAMES = [
  '20261126000000_initial_schema',
  '20261130000050_message_writes',
  '20261130000100_sessions',
  '20261130000300_users_username_prefix',
];

/** Everything of the public schema a node or a release relies on, as comparable text. */
async function schemaOf(knex: Knex): Promise<Record<string, string[]>> {
  const lines = async (sql: string): Promise<string[]> =>
    ((await knex.raw<{ rows: Array<{ line: string }> }>(sql)).rows ?? []).map((r) => r.line);
  return {
    // Each column's place among its table's columns, not its ordinal_position: a column dropped by a rollback keeps
    // its number, so the same column added again comes one further than on a fresh database.
    columns: await lines(`
      SELECT concat_ws(' ', table_name,
        row_number() OVER (PARTITION BY table_name ORDER BY ordinal_position),
        column_name, data_type, is_nullable, column_default) AS line
      FROM information_schema.columns WHERE table_schema = 'public' ORDER BY table_name, ordinal_position`),
    relations: await lines(`
      SELECT concat_ws(' ', c.relname, c.relkind, c.reloptions::text) AS line
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'public' ORDER BY c.relname`),
    constraints: await lines(`
      SELECT concat_ws(' ', c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)) AS line
      FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
      WHERE n.nspname = 'public' ORDER BY 1`),
    indexes: await lines(
      `SELECT indexdef AS line FROM pg_indexes WHERE schemaname = 'public' ORDER BY indexname`,
    ),
    triggers: await lines(`
      SELECT pg_get_triggerdef(t.oid) AS line
      FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'public' AND NOT t.tgisinternal ORDER BY 1`),
    // Whole definitions are long: each function by its signature and a digest of its definition.
    functions: await lines(`
      SELECT concat_ws(' ', p.proname, '(' || pg_get_function_identity_arguments(p.oid) || ')',
        md5(pg_get_functiondef(p.oid))) AS line
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
      WHERE n.nspname = 'public' ORDER BY 1`),
  };
}

interface Answer {
  r_ord: number;
  r_status: number;
  r_seq: number | null;
}

/**
 * One call as a 0.2.0 node makes it (its named statement `xfchat_write_v1`, lib/messaging/statements.ts of that
 * release): sends, then changes (kind 3 adds a reaction); announced in the transaction when `announce` is given,
 * as 0.2.0 does when other nodes run.
 */
async function releaseWrite(
  knex: Knex,
  sends: Array<{ conversationId: string; senderId: string; clientMsgId: string; body: string }>,
  changes: Array<{ kind: number; conversationId: string; userId: string; seq: number; text: string }> = [],
  announce: { channel: string; node: string } | null = null,
): Promise<Answer[]> {
  const { rows } = await knex.raw<{ rows: Answer[] }>(
    `SELECT r_ord, r_status, r_seq
     FROM xfchat_write(?::uuid[], ?::uuid[], ?::text[], ?::text[], ?::bigint[],
                       ?::smallint[], ?::uuid[], ?::uuid[], ?::bigint[], ?::text[], ?::text, ?::text)`,
    [
      sends.map((s) => s.conversationId),
      sends.map((s) => s.senderId),
      sends.map((s) => s.clientMsgId),
      sends.map((s) => s.body),
      `{${sends.map(() => 'NULL').join(',')}}`, // no replies
      changes.map((c) => c.kind),
      changes.map((c) => c.conversationId),
      changes.map((c) => c.userId),
      changes.map((c) => c.seq),
      changes.map((c) => c.text),
      announce?.channel ?? null,
      announce?.node ?? null,
    ],
  );
  return rows.map((r) => ({ r_ord: r.r_ord, r_status: r.r_status, r_seq: r.r_seq }));
}

/** Kind 3 (add a reaction) of `emoji` to `seq`. */
function react(conversationId: string, userId: string, seq: number, emoji: string) {
  return { kind: 3, conversationId, userId, seq, text: emoji };
}

describe('upgrading a release database', function () {
  this.timeout(60_000);
  const opened: Opened[] = [];
  after(async () => {
    await Promise.all(opened.map((db) => db.close()));
  });
  function track(db: Opened): Opened {
    opened.push(db);
    return db;
  }

  let freshSchema: Record<string, string[]>;
  before(async () => {
    const fresh = track(openMigrated(await createEmptyDatabase()));
    await fresh.migrations.latest();
    freshSchema = await schemaOf(fresh.knex);
  });

  /** A database migrated by 0.2.0 with a group and one message written by 0.2.0's own function. */
  async function release020Database(): Promise<{ url: string; userId: string; conversationId: string }> {
    const url = await createEmptyDatabase();
    const old = track(openMigrated(url, RELEASE_0_2_0));
    const first = await old.migrations.latest();
    expect(first.newlyApplied).to.deep.equal(RELEASE_0_2_0_NAMES);
    const { userId, conversationId } = await groupOfOne(old.knex, { lastSeq: 0, version: 0 });
    const send = { conversationId, senderId: userId, clientMsgId: 'before', body: 'written by 0.2.0' };
    expect(await releaseWrite(old.knex, [send], [react(conversationId, userId, 1, '👍')])).to.deep.equal([
      { r_ord: 1, r_status: 0, r_seq: 1 },
      { r_ord: 2, r_status: 0, r_seq: null },
    ]);
    return { url, userId, conversationId };
  }

  it('0.2.0 then latest gives the schema of a fresh database, with 0.2.0 data in place', async () => {
    const { url, conversationId } = await release020Database();
    const db = track(openMigrated(url));
    await db.migrations.latest();
    expect(await schemaOf(db.knex)).to.deep.equal(freshSchema);
    const rows = await db
      .knex<{ conversation_id: string; seq: number; body: string }>('messages')
      .where({ conversation_id: conversationId })
      .select('seq', 'body');
    expect(rows).to.deep.equal([{ seq: 1, body: 'written by 0.2.0' }]);
  });

  it("0.2.0's write call keeps working on the latest schema (a rolling upgrade) and keeps this release's rules", async () => {
    const { url, userId, conversationId } = await release020Database();
    const db = track(openMigrated(url));
    await db.migrations.latest();
    const send = (clientMsgId: string, body: string) => ({
      conversationId,
      senderId: userId,
      clientMsgId,
      body,
    });

    expect(await releaseWrite(db.knex, [send('during', 'written during the upgrade')])).to.deep.equal([
      { r_ord: 1, r_status: 0, r_seq: 2 },
    ]);
    // The same clientMsgId again: answered as stored, nothing new written.
    expect(await releaseWrite(db.knex, [send('before', 'written by 0.2.0')])).to.deep.equal([
      { r_ord: 1, r_status: 1, r_seq: null },
    ]);
    // The message has one emoji: nineteen more fill it, and the twenty-first different one is refused with the
    // status 0.2.0 knows as forbidden (5), not the cap's own (9), which it does not.
    const nineteen = Array.from({ length: 19 }, (_, i) => react(conversationId, userId, 1, `e${i}`));
    const answers = await releaseWrite(
      db.knex,
      [],
      [...nineteen, react(conversationId, userId, 1, 'one-too-many')],
    );
    expect(answers.map((a) => a.r_status)).to.deep.equal([...nineteen.map(() => 0), 5]);
    const { rows } = await db.knex.raw<{ rows: Array<{ n: number }> }>(
      'SELECT count(DISTINCT emoji)::int AS n FROM message_reactions',
    );
    expect(rows).to.deep.equal([{ n: 20 }]);
  });

  it("0.2.0's writes on the latest schema are announced by their item's size, and never move the activity back", async () => {
    const { url, userId, conversationId } = await release020Database();
    const db = track(openMigrated(url));
    await db.migrations.latest();
    const listener = new pg.Client({ connectionString: url });
    await listener.connect();
    try {
      const heard: string[] = [];
      listener.on('notification', (n) => heard.push(n.payload ?? ''));
      await listener.query('LISTEN xfchat_messages');
      const announce = { channel: 'xfchat_messages', node: 'a-0.2.0-node' };
      // 1700 bytes, under the 3000 that 0.2.0 announced by range; 3400 as JSON, over what a NOTIFY item may be.
      const send = { conversationId, senderId: userId, clientMsgId: 'quotes', body: '"'.repeat(1700) };
      expect(await releaseWrite(db.knex, [send], [], announce)).to.deep.equal([
        { r_ord: 1, r_status: 0, r_seq: 2 },
      ]);
      const covers = (payload: string) => {
        const p = JSON.parse(payload) as { m?: unknown[][]; r?: Array<[string, number, number]> };
        return (
          (p.m ?? []).some((item) => item[0] === conversationId && item[1] === 2) ||
          (p.r ?? []).some(([c, lo, hi]) => c === conversationId && lo <= 2 && 2 <= hi)
        );
      };
      await waitFor(() => heard.some(covers), { what: 'the announcement of seq 2, whole or by range' });
    } finally {
      await listener.end();
    }

    // An activity time ahead of the write's clock (a writer that took the lock later committed first, or the clock
    // stepped back): it stays.
    const ahead = new Date(Date.now() + 3_600_000);
    await db.knex('conversations').where({ id: conversationId }).update({ last_activity_at: ahead });
    const later = { conversationId, senderId: userId, clientMsgId: 'later', body: 'hello' };
    expect(await releaseWrite(db.knex, [later])).to.deep.equal([{ r_ord: 1, r_status: 0, r_seq: 3 }]);
    const [row] = await db
      .knex('conversations')
      .where({ id: conversationId })
      .select<Array<{ at: Date }>>('last_activity_at as at');
    expect(row?.at.getTime()).to.equal(ahead.getTime());
  });

  it('rolls back a database that only 0.2.0 migrated, and migrates it again to the fresh schema', async () => {
    const { url } = await release020Database();
    const db = track(openMigrated(url));
    await db.migrations.rollback();
    expect((await db.migrations.status()).applied).to.deep.equal([]);
    await db.migrations.latest();
    expect(await schemaOf(db.knex)).to.deep.equal(freshSchema);
  });

  it('the first node of this release migrates while 0.2.0 nodes write: no deadlock, no write lost', async () => {
    const { url, userId, conversationId } = await release020Database();
    // Eight 0.2.0 writers, each on a connection of its own: sends, and reactions to the first message.
    const writers = Array.from({ length: 8 }, () => track(openMigrated(url, RELEASE_0_2_0)));
    let writing = true;
    let written = 0;
    const failures: string[] = [];
    const write = async (db: Opened, n: number) => {
      for (let i = 0; writing; i += 1) {
        try {
          const sends = [{ conversationId, senderId: userId, clientMsgId: `w${n}-${i}`, body: 'during' }];
          await releaseWrite(db.knex, sends, [react(conversationId, userId, 1, `e${i % 5}`)]);
          written += 1;
        } catch (err) {
          failures.push(String((err as { code?: string }).code ?? err));
        }
      }
    };
    const running = writers.map(write);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const db = track(openMigrated(url));
    let migrated: unknown;
    try {
      await db.migrations.latest();
    } catch (err) {
      migrated = err;
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
    writing = false;
    await Promise.all(running);
    expect({
      migration: migrated === undefined ? 'ok' : (migrated as Error).message,
      failures,
    }).to.deep.equal({
      migration: 'ok',
      failures: [],
    });
    expect(written).to.be.above(0);
    expect(await schemaOf(db.knex)).to.deep.equal(freshSchema);
  });

  it('rolled back to 0.2.0 migrations, 0.2.0 still writes; latest again gives the fresh schema', async () => {
    const { url, userId, conversationId } = await release020Database();
    const db = track(openMigrated(url));
    await db.migrations.latest();
    await db.migrations.rollback();
    expect((await db.migrations.status()).applied).to.deep.equal(RELEASE_0_2_0_NAMES);

    const send = { conversationId, senderId: userId, clientMsgId: 'after-rollback', body: 'written after' };
    expect(await releaseWrite(db.knex, [send])).to.deep.equal([{ r_ord: 1, r_status: 0, r_seq: 2 }]);

    await db.migrations.latest();
    expect(await schemaOf(db.knex)).to.deep.equal(freshSchema);
  });

  it('a database migrated by this release, rolled back to 0.2.0 migrations, has the call 0.2.0 makes', async () => {
    // This release's files of the names 0.2.0 has, applied in a batch of their own, so that one rollback
    // undoes exactly what came after them.
    const firstFour = await mkdtemp(path.join(tmpdir(), 'xfchat-migrations-'));
    for (const name of RELEASE_0_2_0_NAMES) {
      await copyFile(path.join(BUNDLED_MIGRATIONS_DIR, `${name}.ts`), path.join(firstFour, `${name}.ts`));
    }
    const url = await createEmptyDatabase();
    try {
      await track(openMigrated(url, firstFour)).migrations.latest();
    } finally {
      await rm(firstFour, { recursive: true, force: true });
    }
    const db = track(openMigrated(url));
    await db.migrations.latest();
    expect(await schemaOf(db.knex)).to.deep.equal(freshSchema);
    await db.migrations.rollback();
    expect((await db.migrations.status()).applied).to.deep.equal(RELEASE_0_2_0_NAMES);

    const { userId, conversationId } = await groupOfOne(db.knex, { lastSeq: 0, version: 0 });
    const send = { conversationId, senderId: userId, clientMsgId: 'rolled-back', body: 'hello' };
    expect(await releaseWrite(db.knex, [send])).to.deep.equal([{ r_ord: 1, r_status: 0, r_seq: 1 }]);
  });

  it('a database migrated by a newer release: this release still starts on it, and leaves that batch to its own rollback', async () => {
    const db = track(openMigrated(await createEmptyDatabase()));
    await db.migrations.latest();
    // What a newer release's node leaves behind: a batch of a migration this release does not have.
    const future = '29991231000000_of_a_newer_release';
    await db.knex('knex_migrations').insert({ name: future, batch: 99, migration_time: new Date() });

    const again = await db.migrations.latest();
    expect(again.newlyApplied).to.deep.equal([]);
    expect(again.status.newer).to.deep.equal([future]);
    expect(again.status.pending).to.deep.equal([]);
    let refused: unknown;
    try {
      await db.migrations.rollback();
    } catch (err) {
      refused = err;
    }
    expect(String(refused)).to.include('roll them back with the release that applied them');
    // The knex CLI's configuration (knexfile.ts) refuses it too, with the reason (it crashed on the unknown name).
    let refusedByKnex: unknown;
    try {
      await db.knex.migrate.rollback(knexCliMigrations(BUNDLED_MIGRATIONS_DIR));
    } catch (err) {
      refusedByKnex = err;
    }
    expect(String(refusedByKnex)).to.include('roll them back with the release that applied them');
    expect((await db.migrations.status()).applied).to.include(future);
  });
});
