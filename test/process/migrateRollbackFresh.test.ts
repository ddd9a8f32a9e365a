import { expect } from 'chai';
import pg from 'pg';
import { runCli } from '../helpers/childProcess.js';
import { createEmptyDatabase } from '../helpers/postgres.js';

/**
 * On a database nothing was migrated on, `xfchat migrate rollback --yes` answers "nothing to roll back" (exit 0),
 * as the dry run does, and writes nothing, as the dry run and `status` do (Knex's rollback created its two tables on
 * the way).
 */
describe('xfchat migrate rollback --yes on a database nothing migrated', function () {
  this.timeout(60_000);

  it('answers nothing to roll back and creates no table', async () => {
    const url = await createEmptyDatabase();
    const result = await runCli(['migrate', 'rollback', '--yes'], { DATABASE_URL: url });
    expect(result.code, result.stderr).to.equal(0);
    expect(result.stdout).to.equal('nothing to roll back\n');
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      const { rows } = await client.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'");
      expect(rows.map((row: { tablename: string }) => row.tablename)).to.deep.equal([]);
    } finally {
      await client.end();
    }
  });
});
