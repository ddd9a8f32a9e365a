/**
 * The load generator's process: forked by the bench with an IPC channel, so its CPU is measured apart from
 * the server's and PostgreSQL's. It runs one job per 'run' message and reports through process.send.
 */
import type { ChildMessage, ParentMessage } from './loadProtocol.js';
import { runSocketJob } from './socketLoad.js';
import { runStorageJob } from './storageLoad.js';

function post(message: ChildMessage): void {
  process.send?.(message);
}

process.on('message', (message: ParentMessage) => {
  if (message.type !== 'run') return;
  const { job } = message;
  const running = job.kind === 'sockets' ? runSocketJob(job, post) : runStorageJob(job, post);
  running.then(
    (result) => post({ type: 'result', result }),
    (err: unknown) =>
      post({ type: 'failed', message: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
  );
});

// The parent going away (Ctrl-C, crash) ends the generator too: no orphaned load.
process.on('disconnect', () => process.exit(0));
post({ type: 'ready' });
