import { spawn } from 'node:child_process';
import { PROJECT_ROOT, type ChildResult } from './childProcess.js';

export interface DevChild {
  stdout(): string;
  stderr(): string;
  exited: Promise<ChildResult>;
  /** Ctrl-C as a terminal sends it: SIGINT to the whole process group. */
  interrupt(): void;
  kill(): void;
  /** SIGTERM to the started process alone (npm, for `via: 'npm'`), as a process manager stops a service. */
  terminate(): void;
}

/**
 * `npm run dev -- --data-dir DIR` (`via: 'npm'`), or straight `xfchat dev --data-dir DIR`, in a process group
 * of its own, as a shell runs a foreground job, with only PATH/HOME/LANG and `env` from this process.
 */
export function startDev(
  dataDir: string,
  env: Record<string, string>,
  via: 'npm' | 'node' = 'node',
): DevChild {
  const started = performance.now();
  const base: Record<string, string> = {};
  for (const name of ['PATH', 'HOME', 'TMPDIR', 'LANG']) {
    const value = process.env[name];
    if (value !== undefined) base[name] = value;
  }
  const [command, args] =
    via === 'npm'
      ? ['npm', ['run', 'dev', '--', '--data-dir', dataDir]]
      : [process.execPath, ['--import', 'tsx', 'lib/cli.ts', 'dev', '--data-dir', dataDir]];
  const child = spawn(command, args, {
    cwd: PROJECT_ROOT,
    env: { ...base, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<ChildResult>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) =>
      resolve({
        code,
        signal,
        stdout,
        stderr,
        elapsedMs: performance.now() - started,
        sinceFirstOutputMs: undefined,
      }),
    );
  });
  return {
    stdout: () => stdout,
    stderr: () => stderr,
    exited,
    interrupt: () => process.kill(-child.pid!, 'SIGINT'),
    terminate: () => process.kill(child.pid!, 'SIGTERM'),
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) process.kill(-child.pid!, 'SIGKILL');
    },
  };
}

/** The dev server's line once it runs: its URL, and its database's port. */
export const RUNNING =
  /\[dev\] XFChat is running at (http:\/\/\S+) {2}\(database postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:(\d+)\//;
