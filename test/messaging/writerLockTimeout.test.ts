import { expect } from 'chai';
import {
  createGroupCommitWriter,
  type WriteOutcome,
  type TransactionReport,
} from '../../lib/messaging/writer.js';
import { loadDatabaseConfig } from '../../lib/config.js';
import type { AppError } from '../../lib/errors.js';
import { createDatabase, type Database } from '../../lib/db.js';
import { createLogger } from '../../lib/logger.js';
import { adminQuery, createTestDatabase } from '../helpers/postgres.js';
import { testConfig } from '../helpers/server.js';
import { insertUser } from '../helpers/users.js';
import { seqState } from '../helpers/chat.js';
import { holdConversations, insertGroup, letGo, lockWaitSeen, sender } from '../helpers/writer.js';

const logger = createLogger('silent');

function outcomeOf(o: WriteOutcome | undefined): string {
  if (!o) return 'none';
  return o.ok ? `seq ${o.value.message.seq}` : (o.error as AppError).code;
}

/**
 * A lock wait over several held conversations ended by an operator's `lock_timeout` (55P03, answered
 * DB_UNAVAILABLE) is taken as one ended by the statement timeout: one of them is held that long, not necessarily
 * all, so each is tried again alone, and only those still held fail (docs/messaging.md). Nothing was written, and
 * the writer knows it: no conversation is reported of unknown outcome.
 */
describe('messaging/writer: a lock wait over several held conversations ended by lock_timeout', function () {
  this.timeout(60_000);
  let url: string;
  let db: Database;
  let alice: string;
  let bob: string;

  before(async () => {
    url = await createTestDatabase();
    const name = new URL(url).pathname.slice(1);
    await adminQuery(`ALTER DATABASE "${name}" SET lock_timeout = '1500ms'`);
    db = createDatabase(loadDatabaseConfig({ DATABASE_URL: url }), logger);
    const config = testConfig(url);
    alice = (await insertUser(db.knex, config)).id;
    bob = (await insertUser(db.knex, config)).id;
  });
  after(async () => {
    await db?.close();
  });

  const conversation = () => insertGroup(db.knex, alice, bob);

  it('writes the conversation held only for a moment; only the one still held fails (as for the statement timeout)', async () => {
    const [free, stuck, brief] = [await conversation(), await conversation(), await conversation()];
    const reports: TransactionReport[] = [];
    const unknown: string[] = [];
    const w = createGroupCommitWriter({
      connections: db.connections,
      logger,
      maxConcurrency: 1,
      onTransaction: (r) => reports.push(r),
      onOutcomeUnknown: (ids) => unknown.push(...ids),
    });
    const sendTo = sender(w, alice);
    const holdStuck = await holdConversations(db.knex, stuck);
    const holdBrief = await holdConversations(db.knex, brief);
    try {
      const [toFree, toStuck, toBrief] = [sendTo(free, 'f'), sendTo(stuck, 's'), sendTo(brief, 'b')];
      expect(outcomeOf((await toFree)[0])).to.equal('seq 1');
      await lockWaitSeen(db.knex);
      expect(reports.map((r) => r.busy)).to.deep.equal([0, 2]);
      await holdBrief.commit();
      const [b, s] = [outcomeOf((await toBrief)[0]), outcomeOf((await toStuck)[0])];
      expect({ brief: b, stuck: s }).to.deep.equal({ brief: 'seq 1', stuck: 'DB_UNAVAILABLE' });
    } finally {
      await letGo(holdStuck, holdBrief);
      await w.close();
    }
    expect(await seqState(db.knex, brief)).to.deep.equal({ lastSeq: 1, seqs: [1] });
    expect(await seqState(db.knex, stuck)).to.deep.equal({ lastSeq: 0, seqs: [] });
    expect(unknown, 'conversations reported of unknown outcome').to.deep.equal([]);
  });
});
