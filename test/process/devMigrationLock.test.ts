import { spawn } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { PROJECT_ROOT } from '../helpers/childProcess.js';
import { waitFor } from '../helpers/waitFor.js';

/**
 * docs/operations.md, Migrations and rollback: "A node waits for the migration lock as long as another holds it (and
 * logs `waiting for the migration lock`; a SIGTERM or SIGINT then stops it at once, with exit 1 and `stopped by a
 * signal while waiting for the migration lock`, without binding a port)". README: "Ctrl-C stops the server, then the
 * database". `xfchat dev` runs a node too: a Ctrl-C while it waits for the lock (held here by another session, as a
 * concurrent `xfchat migrate` would) stops it at once, and the embedded PostgreSQL with it.
 */
describe('xfchat dev stopped while it waits for the migration lock', function () {
  this.timeout(120_000);
  let root: string;
  let pid: number | undefined;

  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'xfchat-devlock-'));
    await chmod(root, 0o755);
  });

  after(async () => {
    if (pid !== undefined) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    // The embedded PostgreSQL runs in a process group of its own and outlives a SIGKILL of the dev process: stop it.
    const pidFile = path.join(root, 'data', 'postgres', 'postmaster.pid');
    const pgPid = Number((await readFile(pidFile, 'utf8').catch(() => '')).split('\n')[0]);
    if (Number.isInteger(pgPid) && pgPid > 0) {
      try {
        process.kill(pgPid, 'SIGINT');
      } catch {
        // gone
      }
      await waitFor(
        async () =>
          await readFile(pidFile).then(
            () => false,
            () => true,
          ),
        {
          timeoutMs: 20_000,
          what: 'the embedded PostgreSQL to stop',
        },
      ).catch(() => undefined);
    }
    await rm(root, { recursive: true, force: true });
  });

  it('a Ctrl-C (SIGINT) while another session holds the migration lock stops it at once, exit 1, one line', async () => {
    const base: Record<string, string> = {};
    for (const name of ['PATH', 'HOME', 'TMPDIR', 'LANG']) {
      const value = process.env[name];
      if (value !== undefined) base[name] = value;
    }
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        '--import',
        './test/fixtures/migrationLockHolder.ts',
        'lib/cli.ts',
        'dev',
        '--data-dir',
        path.join(root, 'data'),
      ],
      { cwd: PROJECT_ROOT, env: { ...base, PORT: '0' }, stdio: ['ignore', 'pipe', 'pipe'], detached: true },
    );
    pid = child.pid;
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const exited = new Promise<{ code: number | null; at: number }>((resolve) =>
      child.once('close', (code) => resolve({ code, at: performance.now() })),
    );
    await waitFor(() => stdout.includes('waiting for the migration lock'), {
      timeoutMs: 90_000,
      what: `dev to wait for the migration lock\n${stdout}\n${stderr}`,
    });
    const sent = performance.now();
    process.kill(-pid!, 'SIGINT');
    const result = await Promise.race([
      exited,
      new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 15_000)),
    ]);
    expect(
      result,
      `still running 15 s after the SIGINT\nstdout:\n${stdout}\nstderr:\n${stderr}`,
    ).not.to.equal(undefined);
    expect(result!.code).to.equal(1);
    expect(result!.at - sent).to.be.below(15_000);
    expect(stderr.trim()).to.match(/stopped by a signal while waiting for the migration lock/);
    expect(stdout).not.to.include('XFChat is running');
  });
});
