import { runPhase } from '../generator.js';
import type { BenchContext } from '../context.js';
import { E0, windowLabel } from '../goals.js';
import type { StorageJob } from '../loadProtocol.js';
import type { PhaseRecord } from '../report.js';

/**
 * E0: the same Socket.IO load against the echo server, which has no database: the transport ceiling. It runs at
 * every --windows value ("E0 w1", "E0 w4"), so the goals compare X and E0 over the same windows.
 */
export async function runE0(ctx: BenchContext): Promise<void> {
  const [echo, seeded] = await Promise.all([ctx.echoNode(), ctx.mainUsers()]);
  for (const window of ctx.options.windows) {
    const label = windowLabel(E0, window);
    await ctx.beforePhase();
    const { result, cpu, wait } = await runPhase(
      { ...ctx.socketJob('echo', [echo.url], seeded), window },
      label,
      ctx.metered([echo]),
      ctx.progress,
    );
    ctx.progress.end(`${result.ackRate} acked/s, p99 ${result.ackLatency.p99} ms`);
    ctx.results.phases.push({
      label,
      scenario: 'e0',
      description: `echo server (Socket.IO, no database), ${seeded.users.length} users in conversations of ${ctx.options.conversationSize}, window ${window}`,
      socket: result,
      cpu,
      wait,
    });
  }
}

/** One sender and `count` group conversations of its own, for the storage baselines (one per connection). */
export async function seedStorageConversations(
  ctx: BenchContext,
  count: number,
): Promise<{ senderId: string; conversationIds: string[] }> {
  const [sender] = await ctx
    .knex('users')
    .insert({
      username: `bs_${Date.now().toString(36)}_${Math.floor(Math.random() * 1e6)}`,
      display_name: 'baseline',
      password_hash: 'bench-user-no-password',
    })
    .returning<Array<{ id: string }>>(['id']);
  const rows = await ctx
    .knex('conversations')
    .insert(
      Array.from({ length: count }, (_, i) => ({
        type: 'group',
        title: `baseline ${i}`,
        created_by: sender!.id,
      })),
    )
    .returning<Array<{ id: string }>>(['id']);
  return { senderId: sender!.id, conversationIds: rows.map((r) => r.id) };
}

/** Runs B1 (`single`) or B2 (`batch`) against the real messages table and records it under `label`. */
export async function runStorage(
  ctx: BenchContext,
  label: string,
  mode: StorageJob['mode'],
  concurrency: number,
  timing: { warmupMs: number; durationMs: number },
  record = true,
  openLoopRate?: number,
): Promise<PhaseRecord> {
  const { senderId, conversationIds } = await seedStorageConversations(ctx, concurrency);
  const job: StorageJob = {
    kind: 'storage',
    databaseUrl: ctx.database.url,
    mode,
    concurrency,
    batchSize: ctx.options.batchSize,
    conversationIds,
    senderId,
    ...timing,
    bodyBytes: ctx.options.bodyBytes,
    ...(openLoopRate ? { openLoopRate } : {}),
  };
  await ctx.beforePhase();
  const { result, cpu, wait } = await runPhase(job, label, ctx.metered([]), ctx.progress);
  ctx.progress.end(`${result.rowRate} rows/s, p99 commit ${result.commitLatency.p99} ms`);
  const phase: PhaseRecord = {
    label,
    scenario: mode === 'single' ? 'b1' : 'b2',
    description:
      mode === 'single'
        ? `single-row INSERT, each its own commit, ${concurrency} connections in a closed loop`
        : `INSERT of ${ctx.options.batchSize} rows per statement and commit, ${concurrency} connections`,
    storage: result,
    cpu,
    wait,
  };
  if (record) ctx.results.phases.push(phase);
  return phase;
}

const fullTiming = (ctx: BenchContext) => ({
  warmupMs: ctx.options.warmupSec * 1000,
  durationMs: ctx.options.durationSec * 1000,
});

/** B1 at the pool size: the rate of durable single-message commits that XFChat must beat threefold. */
export async function runB1(ctx: BenchContext): Promise<void> {
  await runStorage(ctx, 'B1', 'single', ctx.options.poolSize, fullTiming(ctx));
}

/** B2 is the ceiling, not a latency measure: half the duration is enough to see its rate. */
export async function runB2(ctx: BenchContext): Promise<void> {
  const timing = fullTiming(ctx);
  await runStorage(ctx, 'B2', 'batch', ctx.options.poolSize, {
    warmupMs: timing.warmupMs / 2,
    durationMs: Math.max(2000, timing.durationMs / 2),
  });
}
