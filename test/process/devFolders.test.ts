import { execFile, spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import pg from 'pg';
import { startEmbeddedPostgres } from '../../lib/dev/embeddedPostgres.js';
import { type DevChild, RUNNING, startDev } from '../helpers/devServer.js';
import { waitFor } from '../helpers/waitFor.js';

const run = promisify(execFile);

/** Pids of the processes whose command line contains `pattern` (pgrep -f). */
async function pidsOf(pattern: string): Promise<number[]> {
  try {
    const { stdout } = await run('pgrep', ['-f', pattern]);
    return stdout
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map(Number);
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false; // ESRCH: gone
  }
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // gone already
  }
}

const exists = (file: string) =>
  stat(file).then(
    () => true,
    () => false,
  );

/** The first process matching `pattern`, polled quickly (initdb and PostgreSQL's start take well under a second). */
async function firstPid(pattern: string): Promise<number> {
  let found: number | undefined;
  await waitFor(
    async () => {
      found = (await pidsOf(pattern))[0];
      return found !== undefined;
    },
    { what: `a process matching ${pattern}`, timeoutMs: 60_000, intervalMs: 10 },
  );
  return found!;
}

/**
 * The development server as a developer kills, interrupts and restarts it, on data folders they already have: it
 * says in one line what is wrong and what to do, and never leaves its PostgreSQL running on its own.
 */
describe('npm run dev: data folders and stops a developer meets', function () {
  this.timeout(180_000);
  let root: string;
  let data: string;
  const children: DevChild[] = [];

  const untilRunning = (dev: DevChild) =>
    waitFor(() => RUNNING.exec(dev.stdout()), {
      timeoutMs: 90_000,
      what: `the dev server to run\n${dev.stdout()}\n${dev.stderr()}`,
    });
  const postmasterPid = async () =>
    Number((await readFile(path.join(data, 'postgres', 'postmaster.pid'), 'utf8')).split('\n')[0]);
  /** The postmaster.pid a machine's restart leaves in the data folder, naming `pid` (since taken by another process). */
  async function staleLockFile(pid: number): Promise<void> {
    const pidFile = path.join(data, 'postgres', 'postmaster.pid');
    const lines = `${pid}\n${path.join(data, 'postgres')}\n1733450000\n5\n/tmp\nlocalhost\n  1234   5678\nready   \n`;
    await writeFile(pidFile, lines);
    if (process.getuid?.() === 0) await run('chown', ['postgres:postgres', pidFile]);
  }
  /** One start that must refuse: its exit code and its one line. */
  async function refusal(dataDir: string): Promise<{ code: number | null; line: string }> {
    const dev = startDev(dataDir, { PORT: '0' });
    children.push(dev);
    const result = await dev.exited;
    const line = result.stderr.trim();
    expect(line.split('\n'), line).to.have.length(1);
    return { code: result.code, line };
  }

  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'xfchat-dev-folders-'));
    await chmod(root, 0o755); // as root, the embedded PostgreSQL runs as the postgres OS user
    data = path.join(root, 'data');
  });

  afterEach(async () => {
    for (const child of children.splice(0)) {
      try {
        child.interrupt();
        await Promise.race([child.exited, new Promise((resolve) => setTimeout(resolve, 20_000))]);
        child.kill();
      } catch {
        // exited already: its process group is gone
      }
    }
    // A PostgreSQL of these tests left running (the defect under test) is stopped, resumed first if held.
    for (const pid of await pidsOf(`postgres -D ${root}`)) {
      signal(pid, 'SIGCONT');
      signal(pid, 'SIGINT');
    }
    for (const pid of await pidsOf(`initdb --pgdata=${root}`)) {
      signal(pid, 'SIGCONT');
      signal(pid, 'SIGKILL');
    }
    await waitFor(async () => (await pidsOf(`postgres -D ${root}`)).length === 0, {
      timeoutMs: 20_000,
      what: "the tests' PostgreSQL to stop",
    });
  });

  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('stops when its terminal closes (SIGHUP to its process group), and its PostgreSQL with it', async () => {
    const dev = startDev(data, { PORT: '0' });
    children.push(dev);
    await untilRunning(dev);
    const pgPid = await postmasterPid();
    expect(alive(pgPid)).to.equal(true);
    const devPid = (await pidsOf(`lib/cli.ts dev --data-dir ${data}`))[0]!;
    process.kill(-devPid, 'SIGHUP');
    expect((await dev.exited).code, 'a stop like Ctrl-C').to.equal(0);
    await waitFor(() => !alive(pgPid), { timeoutMs: 15_000, what: `PostgreSQL (pid ${pgPid}) to stop` });
  });

  it('exits on a second Ctrl-C while PostgreSQL is still starting, says so, and leaves no PostgreSQL running', async () => {
    const dev = startDev(data, { PORT: '0' });
    children.push(dev);
    // PostgreSQL slow to become ready (crash recovery, a slow disk): held here.
    const pgPid = await firstPid(`bin/postgres -D ${data}`);
    process.kill(pgPid, 'SIGSTOP');
    try {
      dev.interrupt();
      await new Promise((resolve) => setTimeout(resolve, 1_500)); // the impatient second one, a second later
      dev.interrupt();
      const result = await dev.exited;
      expect(result.code).to.equal(1);
      expect(result.stderr).to.match(/a second SIGINT while starting: exiting at once/);
    } finally {
      signal(pgPid, 'SIGCONT');
    }
    await waitFor(() => !alive(pgPid), { timeoutMs: 15_000, what: `PostgreSQL (pid ${pgPid}) to stop` });
  });

  it('starts on a folder whose postmaster.pid names the process that launched it (a pid taken again)', async () => {
    // What a machine's or a container's restart leaves: a lock file whose pid is now someone else's, here the
    // process that starts the dev server (this one).
    await staleLockFile(process.pid);
    const dev = startDev(data, { PORT: '0' });
    children.push(dev);
    await untilRunning(dev);
  });

  it('refuses a folder of another PostgreSQL major version in one line naming both and the way out', async () => {
    const versionFile = path.join(data, 'postgres', 'PG_VERSION');
    const version = (await readFile(versionFile, 'utf8')).trim();
    await writeFile(versionFile, '15\n'); // as an older checkout's embedded PostgreSQL left it
    try {
      const { code, line } = await refusal(data);
      expect(code).to.equal(1);
      expect(line).to.include(`is of PostgreSQL 15, and the embedded PostgreSQL is ${version}`);
      expect(line).to.include('--data-dir');
    } finally {
      await writeFile(versionFile, `${version}\n`);
    }
  });

  it('refuses in one line a folder whose first start was cut short after initdb (no password file)', async () => {
    const passwordFile = path.join(data, 'postgres.password');
    await rename(passwordFile, `${passwordFile}.aside`);
    try {
      const { code, line } = await refusal(data);
      expect(code).to.equal(1);
      expect(line).to.include('was left half made (no password file');
      expect(line).to.include(`delete the folder (rm -rf ${path.join(data, 'postgres')})`);
    } finally {
      await rename(`${passwordFile}.aside`, passwordFile);
    }
  });

  it('of two first starts of one folder at once, refuses the second to initialise it and leaves a folder that works', async () => {
    const dataDir = path.join(root, 'twice', 'postgres');
    await mkdir(path.dirname(dataDir), { recursive: true });
    const outcomes = await Promise.allSettled([
      startEmbeddedPostgres({ dataDir, persistent: true }),
      startEmbeddedPostgres({ dataDir, persistent: true }),
    ]);
    const started = outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
    const refusals = outcomes.flatMap((o) => (o.status === 'rejected' ? [String(o.reason)] : []));
    for (const handle of started) await handle.stop();
    // The one whose rename came second is refused (or, started after the first was in place, finds it running).
    expect(started.length, refusals.join('\n')).to.be.at.least(1);
    for (const refusal of refusals)
      expect(refusal).to.match(/another start initialised .* at the same moment|PostgreSQL already runs/);
    expect((await readdir(path.dirname(dataDir))).filter((name) => name.includes('.initdb-'))).to.deep.equal(
      [],
    );
    const next = await startEmbeddedPostgres({ dataDir, persistent: true });
    try {
      const client = new pg.Client({ connectionString: next.adminUrl });
      await client.connect();
      await client.end();
    } finally {
      await next.stop();
    }
  });

  it('starts on a folder whose postmaster.pid names a live process that is not PostgreSQL (a pid taken again)', async () => {
    const sleeper = spawn('sleep', ['60'], { stdio: 'ignore' });
    try {
      await staleLockFile(sleeper.pid!);
      const dev = startDev(data, { PORT: '0' });
      children.push(dev);
      await untilRunning(dev);
      expect(alive(sleeper.pid!), 'the other process is left alone').to.equal(true);
    } finally {
      sleeper.kill();
    }
  });

  it('starts again after a kill -9 during its first initdb (initdb builds beside the folder, renamed in once whole)', async () => {
    const cut = path.join(root, 'cut');
    const first = startDev(cut, { PORT: '0' });
    children.push(first);
    let initdb: number | undefined;
    await waitFor(
      async () => {
        initdb = (await pidsOf(`initdb --pgdata=${cut}`))[0];
        if (initdb === undefined) return false;
        const building = (await readdir(cut)).find((name) => name.startsWith('postgres.initdb-'));
        return building !== undefined && (await exists(path.join(cut, building, 'PG_VERSION')));
      },
      { timeoutMs: 60_000, intervalMs: 5, what: 'initdb to have written PG_VERSION' },
    );
    process.kill(initdb!, 'SIGSTOP');
    first.kill(); // kill -9 of the dev server's process group
    process.kill(initdb!, 'SIGKILL');
    await first.exited;
    expect(await exists(path.join(cut, 'postgres')), 'no half-made data folder').to.equal(false);
    const again = startDev(cut, { PORT: '0' });
    children.push(again);
    await untilRunning(again);
  });

  it('refuses in one line a folder an earlier version left half made (PG_VERSION, no global/pg_control)', async () => {
    const half = path.join(root, 'half');
    await mkdir(path.join(half, 'postgres'), { recursive: true });
    await writeFile(path.join(half, 'postgres', 'PG_VERSION'), '18\n');
    await writeFile(path.join(half, 'postgres.password'), 'x');
    const { code, line } = await refusal(half);
    expect(code).to.equal(1);
    expect(line).to.include('was left half made (no global/pg_control)');
    expect(line).to.include(`delete the folder (rm -rf ${path.join(half, 'postgres')})`);
  });

  it('refuses a --data-dir that is a file in one line', async () => {
    const file = path.join(root, 'a-file');
    await writeFile(file, 'not a folder');
    const { code, line } = await refusal(file);
    expect(code).to.equal(1);
    expect(line).to.include(`the data folder ${file} is not a folder`);
  });
});
