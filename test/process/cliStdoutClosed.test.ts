import { spawn } from 'node:child_process';
import { expect } from 'chai';
import { PROJECT_ROOT } from '../helpers/childProcess.js';
import { createTestDatabase } from '../helpers/postgres.js';

/**
 * `xfchat migrate status | grep -q pending` (or `| head -1`): the reader goes away before the command has written
 * everything. The command goes on to its end, without an unhandled EPIPE and a Node stack trace on stderr (it died
 * with exit 1 though it did its work, and a deploy script with `set -o pipefail` failed).
 */
describe('xfchat with its stdout closed by the reader', function () {
  this.timeout(60_000);

  let databaseUrl: string;
  before(async () => {
    databaseUrl = await createTestDatabase();
  });

  for (const args of [['migrate', 'status'], ['migrate', 'latest'], ['--help']]) {
    it(`${args.join(' ')}: no unhandled EPIPE, no stack trace`, async () => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'lib/cli.ts', ...args], {
        cwd: PROJECT_ROOT,
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', DATABASE_URL: databaseUrl },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      // The reader is gone before the command writes anything (tsx alone takes far longer to load).
      child.stdout.destroy();
      let stderr = '';
      child.stderr.setEncoding('utf8');
      child.stderr.on('data', (chunk: string) => (stderr += chunk));
      const code = await new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)));
      expect(stderr, `exit ${code}`).not.to.match(/Unhandled 'error' event|EPIPE|\n\s+at /);
      expect(code, stderr).to.equal(0);
    });
  }

  it('migrate rollback (the dry run) with its stderr reader gone keeps its exit code, 2', async () => {
    // Migrated by `migrate latest` above: the dry run writes what it would undo to stderr, and exits 2.
    const child = spawn(process.execPath, ['--import', 'tsx', 'lib/cli.ts', 'migrate', 'rollback'], {
      cwd: PROJECT_ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', DATABASE_URL: databaseUrl },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stderr.destroy();
    let stdout = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => (stdout += chunk));
    const code = await new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)));
    expect(code, stdout).to.equal(2);
  });
});
