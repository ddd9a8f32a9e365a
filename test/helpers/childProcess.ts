import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';

/** The repository root: the child runs `lib/main.ts` from there, as `npm start` would. */
export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface ChildResult {
  /** Exit code, or null when a signal ended the process. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** From spawn to exit. */
  elapsedMs: number;
  /**
   * From its first output on stdout to exit (undefined if it printed nothing): without Node's and tsx's start,
   * which takes seconds on a loaded machine.
   */
  sinceFirstOutputMs: number | undefined;
}

export interface RunOptions {
  /** The child is killed (SIGKILL) and the promise rejects after this long. @default 20000 */
  timeoutMs?: number;
  /** runMain only: send SIGTERM as soon as stdout matches this, e.g. to stop a node in the middle of starting. */
  sigtermWhen?: RegExp;
  /** startMain only: node options before the script, e.g. `['--import', hook]`. */
  nodeArgs?: readonly string[];
}

export interface RunningChild {
  /** http://host:port from the "[STARTUP] listening on" line. */
  readonly url: string;
  readonly pid: number;
  /** Everything written so far. */
  stdout(): string;
  stderr(): string;
  /** Sends `signal` (SIGTERM by default) and resolves when the process has exited. Idempotent. */
  kill(signal?: NodeJS.Signals): Promise<ChildResult>;
  /** Resolves when the process exits on its own or after kill(). */
  readonly exited: Promise<ChildResult>;
}

/**
 * Only what a fresh shell would need, plus `env`: the parent's DATABASE_URL, JWT_SECRET, TEST_* and
 * NODE_OPTIONS never leak into the child, so every test states exactly what the server sees.
 */
function childEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const base: NodeJS.ProcessEnv = {};
  for (const name of ['PATH', 'HOME', 'TMPDIR', 'LANG']) {
    const value = process.env[name];
    if (value !== undefined) base[name] = value;
  }
  return { ...base, ...env };
}

interface Spawned {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  exited: Promise<ChildResult>;
  onStdout(listener: () => void): void;
}

function spawnMain(env: Record<string, string>, script: readonly string[] = ['lib/main.ts']): Spawned {
  const started = performance.now();
  const child = spawn(process.execPath, ['--import', 'tsx', ...script], {
    cwd: PROJECT_ROOT,
    env: childEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let firstOutputAt: number | undefined;
  const stdoutListeners: Array<() => void> = [];
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    firstOutputAt ??= performance.now();
    stdout += chunk;
    for (const listener of stdoutListeners) listener();
  });
  child.stderr.on('data', (chunk: string) => {
    stderr += chunk;
  });
  const exited = new Promise<ChildResult>((resolve, reject) => {
    child.once('error', reject);
    // 'close' (not 'exit') so that stdout and stderr are complete.
    child.once('close', (code, signal) => {
      const now = performance.now();
      const sinceFirstOutputMs = firstOutputAt === undefined ? undefined : now - firstOutputAt;
      resolve({ code, signal, stdout, stderr, elapsedMs: now - started, sinceFirstOutputMs });
    });
  });
  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    exited,
    onStdout: (listener) => stdoutListeners.push(listener),
  };
}

/** Rejects after `timeoutMs` unless `promise` settles first; kills the child on timeout. */
async function withTimeout<T>(
  spawned: Spawned,
  promise: Promise<T>,
  timeoutMs: number,
  what: string,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      spawned.child.kill('SIGKILL');
      // Wait for the kill to land so no process outlives the test, then report what it printed.
      void spawned.exited.then(
        (result) =>
          reject(
            new Error(
              `child did not ${what} within ${timeoutMs} ms\nstdout:\n${result.stdout}\nstderr:\n${result.stderr}`,
            ),
          ),
        (err: unknown) => reject(err instanceof Error ? err : new Error(String(err))),
      );
    }, timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Runs `node --import tsx lib/cli.ts ...args` (`xfchat migrate status`, say) with exactly `env` until it exits. */
export async function runCli(
  args: readonly string[],
  env: Record<string, string>,
  options: { timeoutMs?: number } = {},
): Promise<ChildResult> {
  const spawned = spawnMain(env, ['lib/cli.ts', ...args]);
  return withTimeout(spawned, spawned.exited, options.timeoutMs ?? 20_000, 'exit');
}

/** Runs `node --import tsx lib/main.ts` with exactly `env` (plus PATH/HOME) until it exits. */
export async function runMain(env: Record<string, string>, options: RunOptions = {}): Promise<ChildResult> {
  const spawned = spawnMain(env);
  const { sigtermWhen } = options;
  if (sigtermWhen) {
    let sent = false;
    spawned.onStdout(() => {
      if (!sent && sigtermWhen.test(spawned.stdout())) {
        sent = true;
        spawned.child.kill('SIGTERM');
      }
    });
  }
  return withTimeout(spawned, spawned.exited, options.timeoutMs ?? 20_000, 'exit');
}

const LISTENING = /\[STARTUP\] listening on (http:\/\/[^\s"]+)/;

/**
 * Starts the real entry point and resolves once it prints "[STARTUP] listening on <url>". Rejects (with the
 * output) if the process exits first or does not get there in time. Always call kill() in an after hook.
 */
export async function startMain(
  env: Record<string, string>,
  options: RunOptions = {},
): Promise<RunningChild> {
  const spawned = spawnMain(env, [...(options.nodeArgs ?? []), 'lib/main.ts']);
  const listening = new Promise<string>((resolve, reject) => {
    const check = () => {
      const match = LISTENING.exec(spawned.stdout());
      if (match?.[1] !== undefined) resolve(match[1]);
    };
    spawned.onStdout(check);
    spawned.exited.then(
      (result) =>
        reject(
          new Error(
            `child exited (code ${result.code}, signal ${result.signal}) before listening\nstdout:\n${result.stdout}\nstderr:\n${result.stderr}`,
          ),
        ),
      reject,
    );
  });
  const url = await withTimeout(spawned, listening, options.timeoutMs ?? 20_000, 'listen');

  let killing: Promise<ChildResult> | undefined;
  return {
    url,
    pid: spawned.child.pid!,
    stdout: () => spawned.stdout(),
    stderr: () => spawned.stderr(),
    exited: spawned.exited,
    kill(signal: NodeJS.Signals = 'SIGTERM') {
      killing ??= (async () => {
        if (spawned.child.exitCode === null && spawned.child.signalCode === null) spawned.child.kill(signal);
        return withTimeout(spawned, spawned.exited, options.timeoutMs ?? 20_000, 'exit after a signal');
      })();
      return killing;
    },
  };
}

/** A failed start or command: non-zero, exactly one stderr line, nothing bound. Returns that line. */
export function expectOneLineFailure(result: ChildResult): string {
  const lines = result.stderr.split('\n').filter((l) => l.trim() !== '');
  expect(result.code, `exit code; stderr: ${result.stderr}`).to.be.a('number').and.not.equal(0);
  expect(lines, `stderr: ${result.stderr}`).to.have.length(1);
  expect(result.stdout).not.to.include('[STARTUP] listening');
  return lines[0]!;
}
