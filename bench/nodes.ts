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
  /** What the process printed: total bytes, the last few KB, and its warnings and errors (see NodeOutput). */
  output(): NodeOutput;
  /** SIGTERM, then SIGKILL if it has not exited within 15 s. Idempotent. */
  stop(): Promise<void>;
}

/** What a server printed. XFChat at LOG_LEVEL=warn still prints its `[STARTUP]` lines (level 30). */
export interface NodeOutput {
  bytes: number;
  /** The last few KB, for a failure message. */
  tail: string;
  /**
   * Its warning and error lines, as the report's notes show them: JSON log lines of level 40 (warn) or above, by
   * their `msg`, and every line that is not JSON (a crash's stack, a Node.js warning). The first
   * MAX_WARNING_LINES distinct ones, each with how often it came; the tail would keep only the last lines, and a
   * node's startup warnings (autovacuum is off, ...) come first.
   */
  warnings: Array<{ line: string; count: number }>;
  /** Warning lines beyond the distinct ones kept. */
  moreWarnings: number;
}

const MAX_WARNING_LINES = 10;
const MAX_WARNING_CHARS = 300;

const LEVEL_NAMES: Record<number, string> = { 40: 'warn', 50: 'error', 60: 'fatal' };

/** A printed line as the notes show it, or undefined for a JSON log line below warn. */
function warningLine(line: string): string | undefined {
  if (line.trim() === '') return undefined;
  let entry: unknown;
  try {
    entry = JSON.parse(line);
  } catch {
    return line.trim().slice(0, MAX_WARNING_CHARS);
  }
  if (typeof entry !== 'object' || entry === null) return line.trim().slice(0, MAX_WARNING_CHARS);
  const { level, msg, err } = entry as { level?: unknown; msg?: unknown; err?: { message?: unknown } };
  if (typeof level !== 'number') return line.trim().slice(0, MAX_WARNING_CHARS);
  if (level < 40) return undefined;
  const cause = typeof err?.message === 'string' ? ` (${err.message})` : '';
  return `${LEVEL_NAMES[level] ?? `level ${level}`}: ${String(msg)}${cause}`.slice(0, MAX_WARNING_CHARS);
}

/**
 * Every server child still running. The bench stops each one itself (stop(), at the end of its scenario or of the
 * run); this is for the exits that skip that (an uncaught error, process.exit), so that no node outlives the
 * bench and holds PostgreSQL's connections. Killed outright: nothing reads its output or its profile anymore.
 */
const runningChildren = new Set<ChildProcess>();
let killOnExit: (() => void) | undefined;

function trackChild(child: ChildProcess): void {
  if (!killOnExit) {
    killOnExit = () => {
      for (const running of runningChildren) running.kill('SIGKILL');
    };
    process.on('exit', killOnExit);
  }
  runningChildren.add(child);
  child.once('exit', () => runningChildren.delete(child));
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
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start ${entry}`);
  trackChild(child);
  let output = '';
  let outputBytes = 0;
  const warnings = new Map<string, number>();
  let moreWarnings = 0;
  // Per stream: a line may arrive in two chunks. Bounded: a line without its end is cut at 64 kB.
  const lineReader = () => {
    let partial = '';
    return (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      outputBytes += chunk.length;
      output = (output + text).slice(-8000);
      const lines = (partial + text).split('\n');
      partial = lines.pop()!.slice(0, 65_536);
      for (const line of lines) {
        const shown = warningLine(line);
        if (shown === undefined) continue;
        const count = warnings.get(shown);
        if (count !== undefined) warnings.set(shown, count + 1);
        else if (warnings.size < MAX_WARNING_LINES) warnings.set(shown, 1);
        else moreWarnings += 1;
      }
    };
  };
  child.stdout?.on('data', lineReader());
  child.stderr?.on('data', lineReader());

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
    output: () => ({
      bytes: outputBytes,
      tail: output,
      warnings: [...warnings].map(([line, count]) => ({ line, count })),
      moreWarnings,
    }),
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
