import { fork } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type {
  ChildMessage,
  Job,
  JobResult,
  SocketJob,
  SocketResult,
  StorageJob,
  StorageResult,
} from './loadProtocol.js';
import { createCpuMeter, type MeteredProcess, type MeterReading } from './procStats.js';
import type { Progress } from './progress.js';

const GENERATOR_ENTRY = path.join(path.dirname(fileURLToPath(import.meta.url)), 'loadGenerator.ts');
/** Connecting and subscribing before the load, and draining after it, may take this long at most. */
const SETUP_ALLOWANCE_MS = 120_000;

export interface PhaseOutcome<R extends JobResult> {
  result: R;
  /** CPU % of one core over the measured window, per process name (server, postgres, generator, ...). */
  cpu: Record<string, number | null>;
  /** % of the measured window each process's main thread waited for a core (not PostgreSQL's tree). */
  wait: Record<string, number | null>;
  /** Times each process was put on a core over the measured window (PostgreSQL: every process of its tree). */
  runs: Record<string, number | null>;
  /** Each process of PostgreSQL's tree (when it is local): its own CPU and runs over the measured window. */
  trees: MeterReading['trees'];
}

/**
 * Called at the measured window's edges, right after the CPU counters are read: the phase's own readings there
 * (the XFChat nodes' /metrics). The phase's result waits for the end's.
 */
export type WindowEdge = (edge: 'start' | 'end') => Promise<void>;

/**
 * Runs one job in a fresh load-generator process, measuring the CPU of `processes` and of the generator over
 * exactly the measured window (the generator says when it starts and ends). Rejects if the generator fails or
 * overruns, or if `atEdge` rejects; the generator is always ended.
 */
export function runPhase(
  job: SocketJob,
  label: string,
  processes: readonly MeteredProcess[],
  progress: Progress,
  atEdge?: WindowEdge,
): Promise<PhaseOutcome<SocketResult>>;
export function runPhase(
  job: StorageJob,
  label: string,
  processes: readonly MeteredProcess[],
  progress: Progress,
  atEdge?: WindowEdge,
): Promise<PhaseOutcome<StorageResult>>;
export function runPhase(
  job: Job,
  label: string,
  processes: readonly MeteredProcess[],
  progress: Progress,
  atEdge?: WindowEdge,
): Promise<PhaseOutcome<JobResult>> {
  const child = fork(GENERATOR_ENTRY, [], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const meter = createCpuMeter([...processes, { name: 'generator', pid: child.pid ?? -1 }]);
  progress.begin(label);
  return new Promise<PhaseOutcome<JobResult>>((resolve, reject) => {
    let meterStarted: Promise<void> | undefined;
    let measured: Promise<MeterReading> | undefined;
    let settled = false;
    const timer = setTimeout(
      () => fail(new Error(`${label}: the load generator did not finish in time`)),
      job.warmupMs + job.durationMs + SETUP_ALLOWANCE_MS,
    );
    const finish = () => {
      settled = true;
      clearTimeout(timer);
      if (child.connected) child.disconnect();
    };
    const fail = (err: Error) => {
      if (settled) return;
      finish();
      child.kill('SIGKILL');
      progress.end('failed');
      reject(err);
    };
    child.on('error', fail);
    child.on('exit', (code, signal) =>
      fail(new Error(`${label}: the load generator exited (${code ?? signal})`)),
    );
    child.on('message', (message: ChildMessage) => {
      switch (message.type) {
        case 'ready':
          child.send({ type: 'run', job });
          break;
        case 'measure-start':
          meterStarted = meter.start().then(() => atEdge?.('start'));
          // Its failure reaches `fail` through the end's reading (below); until then it is not unhandled.
          meterStarted.catch(() => undefined);
          break;
        case 'measure-end':
          measured = (meterStarted ?? Promise.resolve()).then(async () => {
            const reading = await meter.stop();
            await atEdge?.('end');
            return reading;
          });
          break;
        case 'progress':
          progress.update(message.done, message.elapsedMs, message.totalMs);
          break;
        case 'failed':
          fail(new Error(`${label}: ${message.message}`));
          break;
        case 'result':
          (measured ?? Promise.resolve({ cpu: {}, wait: {}, runs: {}, trees: {} })).then(
            ({ cpu, wait, runs, trees }) => {
              if (settled) return;
              finish();
              resolve({ result: message.result, cpu, wait, runs, trees });
            },
            (err: unknown) => fail(err instanceof Error ? err : new Error(String(err))),
          );
          break;
      }
    });
  });
}
