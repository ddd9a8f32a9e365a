import { expect } from 'chai';
import pg from 'pg';
import { loadDatabaseConfig } from '../../lib/config.js';
import { createDatabase, type Database } from '../../lib/db.js';
import { createLogger } from '../../lib/logger.js';
import { createTestDatabase } from '../helpers/postgres.js';
import { testConfig } from '../helpers/server.js';
import { insertUser } from '../helpers/users.js';
import { rows } from '../helpers/chat.js';

/**
 * Property: one call of xfchat_write() with many sends (several conversations, non-members, replays, conflicts,
 * replies within the commit) answers what the same sends written one at a time, in order, answer.
 */
describe('xfchat_write(): replies within one call answer as the same sends written one at a time', function () {
  let url: string;
  let db: Database;
  let client: pg.Client;
  let users: string[];

  before(async () => {
    url = await createTestDatabase();
    db = createDatabase(loadDatabaseConfig({ DATABASE_URL: url }), createLogger('silent'));
    const config = testConfig(url);
    users = [];
    for (let i = 0; i < 3; i++) users.push((await insertUser(db.knex, config)).id);
    client = new pg.Client({ connectionString: url });
    await client.connect();
  });
  after(async () => {
    await client.end();
    await db.close();
  });

  let seed = 12345;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };

  async function conversation(members: string[]): Promise<string> {
    const [row] = await rows<{ id: string }>(
      db.knex,
      "INSERT INTO conversations (type, title) VALUES ('group', 't') RETURNING id",
    );
    await db
      .knex('conversation_participants')
      .insert(
        members.map((u, i) => ({ conversation_id: row!.id, user_id: u, role: i === 0 ? 'owner' : 'member' })),
      );
    return row!.id;
  }

  interface Send {
    c: string;
    s: string;
    id: string;
    body: string;
    reply: number | null;
  }

  async function call(sends: Send[]) {
    const r = await client.query<{ r_ord: number; r_status: number; r_seq: string | null }>(
      `SELECT r_ord, r_status, r_seq FROM xfchat_write($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::bigint[],
        '{}'::smallint[], '{}'::uuid[], '{}'::uuid[], '{}'::bigint[], '{}'::text[], NULL, NULL, true,
        $6::uuid[], '{}'::uuid[])`,
      [
        sends.map((x) => x.c),
        sends.map((x) => x.s),
        sends.map((x) => x.id),
        sends.map((x) => x.body),
        sends.map((x) => x.reply),
        sends.map(() => null),
      ],
    );
    return r.rows.map((x) => `${x.r_status}:${x.r_seq ?? '-'}`);
  }

  it('answers 300 random commits as the sends written one at a time would be', async () => {
    const mismatches: string[] = [];
    for (let trial = 0; trial < 300; trial++) {
      // Two copies of the same world: one written in one call, the other one send at a time.
      const worlds: Array<{ convs: string[] }> = [];
      for (let w = 0; w < 2; w++) {
        const a = await conversation([users[0]!, users[1]!]);
        const b = await conversation([users[0]!, users[1]!]);
        worlds.push({ convs: [a, b] });
        // Two stored messages each.
        await call([
          { c: a, s: users[0]!, id: 'p1', body: 'p1', reply: null },
          { c: a, s: users[1]!, id: 'p2', body: 'p2', reply: null },
          { c: b, s: users[0]!, id: 'p1', body: 'p1', reply: null },
          { c: b, s: users[1]!, id: 'p2', body: 'p2', reply: null },
        ]);
      }
      const n = 3 + rnd(8);
      const plan: Array<{ conv: number; s: string; id: string; body: string; reply: number | null }> = [];
      // First, the cases a set-wise check got wrong: a reply within the call before a plain send moved that send's
      // seq, so a reply to it was refused and a reply to the reply taken.
      const fixed: Array<Array<number | null>> = [
        [null, 3, null, 5, 4],
        [null, 3, null, 5, null, 7, 6],
        [99, null, 3, 4],
      ];
      for (const [i, reply] of (fixed[trial] ?? []).entries()) {
        plan.push({ conv: 0, s: users[i % 2]!, id: `f${i}`, body: `f${i}`, reply });
      }
      const used = new Set<string>();
      for (let i = 0; i < (trial < fixed.length ? 0 : n); i++) {
        const conv = rnd(2);
        const s = users[rnd(10) === 0 ? 2 : rnd(2)]!;
        let id = `m${i}`;
        let body = `b${i}`;
        const k = rnd(10);
        if (k === 0) {
          id = 'p1';
          body = 'p1';
        } // a replay (if the sender is users[0])
        else if (k === 1) {
          id = 'p2';
          body = 'other';
        } // a conflict (if users[1])
        const key = `${conv}|${s}|${id}`;
        if (used.has(key)) continue; // the SDK's batches never repeat a clientMsgId (statements.ts dedupes)
        used.add(key);
        const r = rnd(3);
        // Any number around the conversation's seqs, or one this call may have given (3 and up) just before.
        const reply = r === 0 ? null : rnd(2) === 0 ? rnd(12) - 1 : 3 + rnd(Math.max(1, Math.ceil(i / 2)));
        plan.push({ conv, s, id, body, reply });
      }
      const toSends = (w: number) =>
        plan.map((p) => ({ c: worlds[w]!.convs[p.conv]!, s: p.s, id: p.id, body: p.body, reply: p.reply }));
      const together = await call(toSends(0));
      const alone: string[] = [];
      for (const s of toSends(1)) alone.push(...(await call([s])));
      // ords differ: compare status:seq only
      const t = together.map((x) => x);
      if (JSON.stringify(t) !== JSON.stringify(alone)) {
        mismatches.push(
          `${JSON.stringify(plan.map((p) => [p.conv, users.indexOf(p.s), p.id, p.reply]))}\n  together ${t.join(' ')}\n  alone    ${alone.join(' ')}`,
        );
      }
    }
    expect(mismatches.slice(0, 5).join('\n')).to.equal('');
  });
});
