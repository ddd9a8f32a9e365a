import { expect } from 'chai';
import type { Knex } from 'knex';
import { loadDatabaseConfig } from '../lib/config.js';
import { createDatabase } from '../lib/db.js';
import { createLogger } from '../lib/logger.js';
import { createMigrator } from '../lib/migrations.js';
import * as unusedOverloads from '../migrations/20261206200000_unused_write_overloads.js';
import { createEmptyDatabase } from './helpers/postgres.js';

/** The write functions the schema holds: each signature with a digest of its whole definition. */
async function writeFunctions(knex: Knex): Promise<string[]> {
  const { rows } = await knex.raw<{ rows: Array<{ line: string }> }>(`
    SELECT p.oid::regprocedure::text || ' ' || md5(pg_get_functiondef(p.oid)) AS line
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = 'public' AND p.proname IN ('xfchat_write', 'xfchat_send_one') ORDER BY 1`);
  return rows.map((r) => r.line);
}

const signatures = (lines: string[]) => lines.map((line) => line.slice(0, line.lastIndexOf(' ')));

describe('migration 20261206200000_unused_write_overloads', function () {
  this.timeout(60_000);

  it('up leaves the functions a node and a 0.2.0 node call; down gives back the old overloads exactly; up again', async () => {
    const config = loadDatabaseConfig({ DATABASE_URL: await createEmptyDatabase() });
    const logger = createLogger('silent');
    const db = createDatabase(config, logger);
    try {
      await createMigrator(db.knex, config, logger).latest();
      const latest = await writeFunctions(db.knex);
      expect(signatures(latest)).to.deep.equal([
        'xfchat_send_one(uuid,uuid,text,text,bigint,boolean,uuid)',
        // 0.2.0's call (twelve arguments) and the node's (fifteen).
        'xfchat_write(uuid[],uuid[],text[],text[],bigint[],smallint[],uuid[],uuid[],bigint[],text[],text,text)',
        'xfchat_write(uuid[],uuid[],text[],text[],bigint[],smallint[],uuid[],uuid[],bigint[],text[],text,text,boolean,uuid[],uuid[])',
      ]);

      await unusedOverloads.down(db.knex);
      const before = await writeFunctions(db.knex);
      expect(signatures(before)).to.deep.equal([
        'xfchat_send_one(uuid,uuid,text,text,bigint,boolean)',
        'xfchat_send_one(uuid,uuid,text,text,bigint,boolean,uuid)',
        'xfchat_write(uuid[],uuid[],text[],text[],bigint[],smallint[],uuid[],uuid[],bigint[],text[],text,text)',
        'xfchat_write(uuid[],uuid[],text[],text[],bigint[],smallint[],uuid[],uuid[],bigint[],text[],text,text,boolean)',
        'xfchat_write(uuid[],uuid[],text[],text[],bigint[],smallint[],uuid[],uuid[],bigint[],text[],text,text,boolean,uuid[],uuid[])',
      ]);
      // The functions that stay are untouched by either direction.
      expect(before).to.include.members(latest);

      await unusedOverloads.up(db.knex);
      expect(await writeFunctions(db.knex)).to.deep.equal(latest);
    } finally {
      await db.close();
    }
  });
});
