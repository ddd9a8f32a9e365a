import { expect } from 'chai';
import pg from 'pg';
import { MIGRATION_LOCK_KEY } from '../../lib/migrations.js';
import { runCli } from '../helpers/childProcess.js';
import { createEmptyDatabase } from '../helpers/postgres.js';
import { waitFor } from '../helpers/waitFor.js';

/**
 * `xfchat migrate latest` (and `rollback --yes`) wait for the migration lock as long as a node or another
 * `xfchat migrate` holds it, and say so on stderr, as a node logs it (docs/operations.md). The CLI logs warnings
 * only: the node's info line was dropped, and the operator saw a command that hung with no output at all.
 */
describe('xfchat migrate waiting for the migration lock', function () {
  this.timeout(60_000);

  for (const args of [
    ['migrate', 'latest'],
    ['migrate', 'rollback', '--yes'],
  ]) {
    it(`${args.join(' ')} says it waits for the migration lock another holder has`, async () => {
      const url = await createEmptyDatabase();
      if (args[1] === 'rollback') {
        const first = await runCli(['migrate', 'latest'], { DATABASE_URL: url });
        expect(first.code, first.stderr).to.equal(0);
      }
      const holder = new pg.Client({ connectionString: url });
      await holder.connect();
      try {
        await holder.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
        const running = runCli(args, { DATABASE_URL: url });
        const database = new URL(url).pathname.slice(1);
        await waitFor(
          async () =>
            (
              await holder.query<{ n: number }>(
                `SELECT count(*)::int AS n FROM pg_stat_activity
                 WHERE datname = $1 AND wait_event_type = 'Lock' AND wait_event = 'advisory'`,
                [database],
              )
            ).rows[0]!.n > 0,
          { what: 'the command to wait for the lock' },
        );
        await holder.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]);
        const result = await running;
        expect(result.code, result.stderr).to.equal(0);
        // The line is written before the wait begins: whatever it printed by then is in its output now.
        expect(result.stderr).to.include('xfchat migrate: waiting for the migration lock');
      } finally {
        await holder.end();
      }
    });
  }
});
