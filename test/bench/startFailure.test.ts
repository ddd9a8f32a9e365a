/**
 * A bench run that fails after its embedded PostgreSQL started (here: a migration that fails, as one being
 * written in a working tree does) must not leave the temporary folder behind (bench/database.ts: "Starts an
 * embedded PostgreSQL in a temporary folder (removed at close)").
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '..', '..');

describe('bench: a failure while the bench database is prepared', function () {
  this.timeout(120_000);
  let scratch: string;
  let dataRoot: string | undefined;

  before(async () => {
    scratch = await mkdtemp(path.join(os.tmpdir(), 'bench-test-fail-'));
  });

  after(() => {
    rmSync(scratch, { recursive: true, force: true });
    if (dataRoot && existsSync(dataRoot)) rmSync(dataRoot, { recursive: true, force: true });
  });

  it('removes the temporary PostgreSQL folder when a migration fails', async () => {
    // Loaded before bench/run.ts: the first migration statement that creates a table fails, as a broken migration
    // would. Nothing else changes.
    const preload = path.join(scratch, 'failing-migration.mjs');
    writeFileSync(
      preload,
      `import { createRequire } from 'node:module';
const pg = createRequire(${JSON.stringify(path.join(ROOT, 'package.json'))})('pg');
const query = pg.Client.prototype.query;
let failed = false;
pg.Client.prototype.query = function (config, ...rest) {
  const text = typeof config === 'string' ? config : config?.text;
  if (!failed && typeof text === 'string' && /create table/i.test(text)) {
    failed = true;
    throw new Error('a migration that fails (test)');
  }
  return query.call(this, config, ...rest);
};
`,
    );
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', '--import', preload, 'bench/run.ts', '--scenario', 'b1', '--results', scratch],
      { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    dataRoot = /starting embedded PostgreSQL in (\S+)\/data/.exec(stderr)?.[1];
    expect(stderr, 'the run failed on the migration').to.include('a migration that fails (test)');
    expect(code).to.not.equal(0);
    expect(dataRoot, stderr).to.be.a('string');
    // PostgreSQL itself is gone (the start's exit hook stops it); give its shutdown a moment.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(existsSync(dataRoot!), `${dataRoot} left behind after the failed run`).to.equal(false);
  });
});
