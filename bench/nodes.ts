import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, readFile, readdir, readlink, realpath } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** One JWT secret per bench run: every node and the seeding code sign and verify with it. */
export const BENCH_JWT_SECRET = randomBytes(32).toString('hex');

/** A server process the bench started: XFChat (lib/main.ts) or the echo server E0. */
export interface NodeProcess {
  readonly url: string;
  readonly pid: number;
  /** What the process printed (warnings and errors at LOG_LEVEL=warn): total bytes and the last few KB. */
  output(): { bytes: number; tail: string };
  /** SIGTERM, then SIGKILL if it has not exited within 15 s. Idempotent. */
  stop(): Promise<void>;
}

/** Socket inodes of a process's open file descriptors. */
async function socketInodes(pid: number): Promise<Set<string>> {
  const inodes = new Set<string>();
  const fds = await readdir(`/proc/${pid}/fd`);
  await Promise.all(
    fds.map(async (fd) => {
      try {
        const match = /^socket:\[(\d+)\]$/.exec(await readlink(`/proc/${pid}/fd/${fd}`));
        if (match?.[1]) inodes.add(match[1]);
      } catch {
        // The descriptor was closed between listing and reading: it cannot be the listener we wait for.
      }
    }),
  );
  return inodes;
}

/** A TCP socket of a process: its local port and its state in /proc/net/tcp (0A is LISTEN, 01 ESTABLISHED). */
export interface TcpSocket {
  localPort: number;
  state: string;
}

/** The TCP sockets among `pid`'s open file descriptors, read from /proc. */
export async function tcpSockets(pid: number): Promise<TcpSocket[]> {
  const inodes = await socketInodes(pid);
  const sockets: TcpSocket[] = [];
  for (const table of ['tcp', 'tcp6']) {
    let text: string;
    try {
      text = await readFile(`/proc/${pid}/net/${table}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      // cols: sl local_address rem_address st ... inode (index 9).
      if (cols[3] !== undefined && cols[9] !== undefined && inodes.has(cols[9])) {
        sockets.push({ localPort: parseInt(cols[1]!.split(':')[1]!, 16), state: cols[3] });
      }
    }
  }
  return sockets;
}

/**
 * The TCP port `pid` listens on, read from /proc: the server runs with PORT=0 and LOG_LEVEL=warn, so it never
 * prints its address. Undefined until it listens.
 */
export async function listeningPort(pid: number): Promise<number | undefined> {
  return (await tcpSockets(pid)).find((socket) => socket.state === '0A')?.localPort;
}

/** Only what a fresh shell needs plus `env`: the bench's own environment never leaks into a server. */
function childEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const base: NodeJS.ProcessEnv = {};
  for (const name of ['PATH', 'HOME', 'TMPDIR', 'LANG']) {
    const value = process.env[name];
    if (value !== undefined) base[name] = value;
  }
  return { ...base, ...env };
}

export interface SpawnOptions {
  /** The working directory, where `--import tsx` is resolved from. @default PROJECT_ROOT */
  cwd?: string;
  /** Extra node flags, e.g. --cpu-prof. */
  nodeFlags?: string[];
  /** Modules imported after tsx, before the entry point (absolute paths; TypeScript allowed). */
  preload?: readonly string[];
  env: Record<string, string>;
  /** Startup (migrations included) may take this long. @default 60000 */
  timeoutMs?: number;
}

async function spawnNode(entry: string, options: SpawnOptions): Promise<NodeProcess> {
  const child: ChildProcess = spawn(
    process.execPath,
    [
      ...(options.nodeFlags ?? []),
      '--import',
      'tsx',
      ...(options.preload ?? []).flatMap((module) => ['--import', module]),
      entry,
    ],
    {
      cwd: options.cwd ?? PROJECT_ROOT,
      env: childEnv(options.env),
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let output = '';
  let outputBytes = 0;
  const keep = (chunk: Buffer) => {
    // Warnings and errors only (LOG_LEVEL=warn); keep the tail for a failure message and the report.
    outputBytes += chunk.length;
    output = (output + chunk.toString('utf8')).slice(-8000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start ${entry}`);

  const deadline = performance.now() + (options.timeoutMs ?? 60_000);
  let port: number | undefined;
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  while (port === undefined) {
    if (gone) throw new Error(`${entry} exited before listening:\n${output}`);
    if (performance.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${entry} did not listen in time:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
    port = await listeningPort(pid).catch(() => undefined);
  }
  const url = `http://127.0.0.1:${port}`;

  let stopping: Promise<void> | undefined;
  return {
    url,
    pid,
    output: () => ({ bytes: outputBytes, tail: output }),
    stop() {
      stopping ??= (async () => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
        await exited;
        clearTimeout(timer);
      })();
      return stopping;
    },
  };
}

export interface XfchatNodeOptions {
  databaseUrl: string;
  poolSize: number;
  /** Extra or overriding server settings (DB_ACQUIRE_TIMEOUT_MS, ...). */
  env?: Record<string, string>;
  /** Write a .cpuprofile into this folder when the node exits. */
  cpuProfileDir?: string;
  /** Node.js or V8 flags put before the entry point (`node FLAGS --import tsx lib/main.ts`). */
  nodeFlags?: readonly string[];
  /** Modules of the bench the node imports before lib/main.ts (bench/memoryProbe.ts), by absolute path. */
  preload?: readonly string[];
  /**
   * What the node is for, as the report names it: with --cpu-prof its profile goes to a folder of this name
   * (`main` for the main phases' node). @default node-1, node-2, ... in the order the bench starts them
   */
  label?: string;
  /** Prepended to NODE_PATH, so ws finds bufferutil/utf-8-validate installed there. */
  nativeWsModules?: string;
  /**
   * The checkout the server runs from (its lib/main.ts, with its own node_modules/tsx): another version of the
   * project to compare with. @default PROJECT_ROOT
   */
  projectDir?: string;
}

/**
 * The real path of a checkout of the project that the bench can start XFChat nodes from: it must have
 * lib/main.ts and its own node_modules with tsx (`npm ci` there). Throws a readable error otherwise.
 */
export async function resolveProjectDir(dir: string): Promise<string> {
  let resolved: string;
  try {
    // The real path: lib/main.ts only starts when process.argv[1] matches its own (symlink-free) URL.
    resolved = await realpath(dir);
  } catch {
    throw new Error(`${dir}: no such directory`);
  }
  for (const [file, hint] of [
    ['lib/main.ts', 'it is not a checkout of XFChat'],
    ['node_modules/tsx/package.json', `run \`npm ci\` in ${resolved} first`],
  ] as const) {
    try {
      await access(path.join(resolved, file));
    } catch {
      throw new Error(`${resolved} has no ${file}: ${hint}`);
    }
  }
  return resolved;
}

/**
 * Starts `node --import tsx lib/main.ts` as production would, with the benchmark settings, from `projectDir`
 * (this checkout by default). MIGRATIONS_DIR points at this checkout's migrations, which the bench has already
 * applied: a server from another checkout then finds nothing to migrate and runs on the current schema.
 */
export function startXfchatNode(options: XfchatNodeOptions): Promise<NodeProcess> {
  const projectDir = options.projectDir ?? PROJECT_ROOT;
  const env: Record<string, string> = {
    DATABASE_URL: options.databaseUrl,
    MIGRATIONS_DIR: path.join(PROJECT_ROOT, 'migrations'),
    JWT_SECRET: BENCH_JWT_SECRET,
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    DB_POOL_SIZE: String(options.poolSize),
    RATE_LIMIT_MESSAGES_PER_SEC: '0',
    RATE_LIMIT_AUTH_PER_MIN: '0',
    MAX_CONNECTIONS_PER_IP: '0',
    MAX_SOCKETS_PER_USER: '0',
    RATE_LIMIT_READS_PER_SEC: '0',
    RATE_LIMIT_LOOKUPS_PER_MIN: '0',
    RATE_LIMIT_CONVERSATIONS_PER_MIN: '0',
    SOCKET_EVENTS_PER_SEC: '0',
    ...options.env,
  };
  if (options.nativeWsModules) env.NODE_PATH = path.resolve(options.nativeWsModules);
  const nodeFlags = [
    ...(options.nodeFlags ?? []),
    ...(options.cpuProfileDir ? ['--cpu-prof', `--cpu-prof-dir=${options.cpuProfileDir}`] : []),
  ];
  return spawnNode(path.join(projectDir, 'lib', 'main.ts'), {
    cwd: projectDir,
    env,
    nodeFlags,
    ...(options.preload ? { preload: options.preload } : {}),
  });
}

/** Starts the echo server E0 (bench/echoServer.ts): Socket.IO only, no database. */
export function startEchoNode(nativeWsModules?: string): Promise<NodeProcess> {
  const env: Record<string, string> = {};
  if (nativeWsModules) env.NODE_PATH = path.resolve(nativeWsModules);
  return spawnNode('bench/echoServer.ts', { env });
}

/** Starts N (bench/naiveServer.ts): one transaction per message on a pg.Pool of `poolSize`. */
export function startNaiveNode(
  databaseUrl: string,
  poolSize: number,
  nativeWsModules?: string,
): Promise<NodeProcess> {
  const env: Record<string, string> = { DATABASE_URL: databaseUrl, DB_POOL_SIZE: String(poolSize) };
  if (nativeWsModules) env.NODE_PATH = path.resolve(nativeWsModules);
  return spawnNode('bench/naiveServer.ts', { env });
}
