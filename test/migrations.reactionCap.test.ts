import { expect } from 'chai';
import type { Knex } from 'knex';
import { loadDatabaseConfig } from '../lib/config.js';
import { createDatabase } from '../lib/db.js';
import { createLogger } from '../lib/logger.js';
import { createMigrator } from '../lib/migrations.js';
import * as repliesWithin from '../migrations/20261202100000_replies_within_a_commit.js';
import * as reactionCap from '../migrations/20261202200000_reaction_cap.js';
import * as unusedOverloads from '../migrations/20261206200000_unused_write_overloads.js';
import { createEmptyDatabase } from './helpers/postgres.js';

/** The body of `xfchat_write()` as a migration's SQL gives it (between the `$fn$` quotes). */
function bodyOf(sql: string): string {
  const [, body] = sql.split('$fn$');
  if (body === undefined) throw new Error('no $fn$ body');
  return body;
}

/**
 * The body of `xfchat_write()` with thirteen arguments, the function this migration replaced (not release 0.2.0's
 * call of it, migrations/20261203000000_upgrade_from_0_2_0.ts, nor the later overloads).
 */
async function storedBody(knex: Knex): Promise<string> {
  const { rows } = await knex.raw<{ rows: Array<{ src: string }> }>(
    "SELECT prosrc AS src FROM pg_proc WHERE proname = 'xfchat_write' AND pronargs = 13",
  );
  expect(rows).to.have.length(1);
  return rows[0]!.src;
}

describe('migration 20261202200000_reaction_cap', function () {
  this.timeout(60_000);

  it('up caps reactions in xfchat_write(); down gives back the previous function exactly; up again', async () => {
    const config = loadDatabaseConfig({ DATABASE_URL: await createEmptyDatabase() });
    const logger = createLogger('silent');
    const db = createDatabase(config, logger);
    try {
      await createMigrator(db.knex, config, logger).latest();
      // The thirteen-argument overload is dropped by a later migration; its down() brings it back as it was.
      await unusedOverloads.down(db.knex);
      const capped = bodyOf(reactionCap.WRITE_WITH_REACTION_CAP);
      expect(capped).to.include('r_status := 9');
      expect(await storedBody(db.knex)).to.equal(capped);

      await reactionCap.down(db.knex);
      const previous = bodyOf(repliesWithin.WRITE_WITH_REPLIES_WITHIN);
      expect(previous).to.not.include('r_status := 9');
      expect(await storedBody(db.knex)).to.equal(previous);

      await reactionCap.up(db.knex);
      expect(await storedBody(db.knex)).to.equal(capped);
    } finally {
      await db.close();
    }
  });
});
