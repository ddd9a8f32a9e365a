import { expect } from 'chai';
import { runCli } from '../helpers/childProcess.js';
import { holdMigrationLock } from '../helpers/migrations.js';
import { createEmptyDatabase } from '../helpers/postgres.js';

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
      const lock = await holdMigrationLock(url);
      try {
        const running = runCli(args, { DATABASE_URL: url });
        await lock.waiterSeen('the command to wait for the lock');
        await lock.release();
        const result = await running;
        expect(result.code, result.stderr).to.equal(0);
        // The line is written before the wait begins: whatever it printed by then is in its output now.
        expect(result.stderr).to.include('xfchat migrate: waiting for the migration lock');
      } finally {
        await lock.end();
      }
    });
  }
});
