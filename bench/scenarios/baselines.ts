import { runPhase } from '../generator.js';
import type { BenchContext } from '../context.js';
import { E0, E0_SPLIT, windowLabel } from '../goals.js';
import type { StorageJob } from '../loadProtocol.js';
import type { NodeProcess } from '../nodes.js';
import type { PhaseRecord } from '../report.js';
import type { Seeded } from '../seed.js';

/**
 * E0: the same Socket.IO load against the echo server, which has no database: the transport ceiling. It runs at
 * every --windows value ("E0 w1", "E0 w4"), so the goals compare X and E0 over the same windows.
 */
export async function runE0(ctx: BenchContext): Promise<void> {
  const [echo, seeded] = await Promise.all([ctx.echoNode(), ctx.mainUsers()]);
  await echoPhases(ctx, E0, 'e0', [echo], seeded, () => 0, 'echo server (Socket.IO, no database),');
}

/**
 * The split control (not in the default run): E0's load on two echo servers, each member of a conversation on the
 * server of its conversation (the placement of `--members together`), at every --windows value ("E0 2 processes
 * w1", ...). Nothing crosses between two echo servers, so this measures what splitting the same Socket.IO work
 * into two processes costs on the same cores, with no database; run it beside `e0` (docs/performance.md, goal 3).
 */
export async function runE0Split(ctx: BenchContext): Promise<void> {
  const seeded = await ctx.mainUsers();
  const servers = [await ctx.startEchoNode(), await ctx.startEchoNode()];
  // A conversation's members are consecutive users.
  const nodeOf = (user: number) => Math.floor(user / ctx.options.conversationSize) % 2;
  try {
    await echoPhases(
      ctx,
      E0_SPLIT,
      'e0split',
      servers,
      seeded,
      nodeOf,
      "two echo servers (Socket.IO, no database), each conversation's members on one, the conversations split between them,",
    );
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
  }
}

/** One closed-loop phase of echo servers at each --windows value, recorded as `name wN`. */
async function echoPhases(
  ctx: BenchContext,
  name: string,
  scenario: string,
  servers: NodeProcess[],
  seeded: Seeded,
  nodeOf: (user: number) => number,
  what: string,
): Promise<void> {
  for (const window of ctx.options.windows) {
    const label = windowLabel(name, window);
    await ctx.beforePhase();
    const { result, cpu, wait, runs } = await runPhase(
      {
        ...ctx.socketJob(
          'echo',
          servers.map((s) => s.url),
          seeded,
          nodeOf,
        ),
        window,
      },
      label,
      ctx.metered(servers),
      ctx.progress,
    );
    ctx.progress.end(`${result.ackRate} acked/s, p99 ${result.ackLatency.p99} ms`);
    ctx.results.phases.push({
      label,
      scenario,
      description: `${what} ${seeded.users.length} users in conversations of ${ctx.options.conversationSize}, window ${window}`,
      socket: result,
      cpu,
      wait,
      runs,
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
  const { result, cpu, wait, runs } = await runPhase(job, label, ctx.metered([]), ctx.progress);
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
    runs,
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
