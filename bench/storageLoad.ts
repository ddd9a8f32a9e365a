import pg from 'pg';
import type { ChildMessage, StorageJob, StorageResult } from './loadProtocol.js';
import { startPhaseClock } from './phaseClock.js';
import { summarize } from './stats.js';

/**
 * The columns a message needs; ids and created_at come from the table's defaults (the messaging core sets created_at
 * to the conversation's activity time, a column of a row it updates anyway).
 */
const SINGLE_INSERT =
  'INSERT INTO messages (conversation_id, sender_id, seq, client_msg_id, body) VALUES ($1, $2, $3, $4, $5)';
/** One statement per batch, arrays bound as parameters: rows cost no extra round-trips. */
const BATCH_INSERT = `INSERT INTO messages (conversation_id, sender_id, seq, client_msg_id, body)
  SELECT $1::uuid, $2::uuid, s, 'b' || s::text, $4::text FROM unnest($3::bigint[]) AS s`;

const PROGRESS_INTERVAL_MS = 250;

/**
 * B1/B2: the storage baselines. `concurrency` connections each insert into a conversation of their own in a
 * closed loop (or, with `openLoopRate`, on a schedule), every statement in its own implicit transaction, so each
 * statement pays one durable commit: B1 one row per commit (the naive rate), B2 `batchSize` rows per commit
 * (the storage ceiling).
 */
export async function runStorageJob(
  job: StorageJob,
  post: (message: ChildMessage) => void,
): Promise<StorageResult> {
  const clients = job.conversationIds.slice(0, job.concurrency).map((conversationId) => ({
    conversationId,
    client: new pg.Client({ connectionString: job.databaseUrl }),
  }));
  await Promise.all(clients.map(({ client }) => client.connect()));
  try {
    const body = 'x'.repeat(job.bodyBytes);
    const latencies: number[] = [];
    let statements = 0;
    let rows = 0;
    let total = 0;
    const start = performance.now();
    const measureStart = start + job.warmupMs;
    const measureEnd = measureStart + job.durationMs;
    const progress = setInterval(() => {
      post({
        type: 'progress',
        done: total,
        elapsedMs: performance.now() - start,
        totalMs: measureEnd - start,
      });
    }, PROGRESS_INTERVAL_MS);
    const clock = startPhaseClock(post, job.warmupMs, job.durationMs);

    const interval = job.openLoopRate ? 1000 / job.openLoopRate : 0;
    const worker = async ({ conversationId, client }: { conversationId: string; client: pg.Client }) => {
      let seq = 0;
      let next = performance.now();
      while (performance.now() < measureEnd) {
        if (interval > 0) {
          // Open loop: on schedule, idle in between, like a light load of messages.
          next += interval;
          const wait = next - performance.now();
          if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        }
        const t0 = performance.now();
        const count = job.mode === 'single' ? 1 : job.batchSize;
        // A failed insert fails the whole baseline: a baseline with errors would not be a ceiling.
        if (job.mode === 'single') {
          seq++;
          await client.query(SINGLE_INSERT, [conversationId, job.senderId, seq, `s${seq}`, body]);
        } else {
          const batch = Array.from({ length: count }, (_, k) => seq + 1 + k);
          seq += count;
          await client.query(BATCH_INSERT, [conversationId, job.senderId, batch, body]);
        }
        total += count;
        if (t0 >= measureStart && t0 < measureEnd) {
          statements++;
          rows += count;
          latencies.push(performance.now() - t0);
        }
      }
    };
    try {
      await Promise.all(clients.map(worker));
      // The workers stop at the end of the window; the parent's CPU reading must have happened by then.
      await clock.ended;
    } finally {
      clearInterval(progress);
      clock.cancel();
    }
    return {
      kind: 'storage',
      measuredMs: job.durationMs,
      statements,
      rows,
      rowRate: Math.round((rows * 1000) / job.durationMs),
      commitLatency: summarize(latencies),
    };
  } finally {
    await Promise.all(clients.map(({ client }) => client.end()));
  }
}
