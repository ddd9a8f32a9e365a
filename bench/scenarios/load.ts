import type { BenchContext } from '../context.js';
import { runPhase, type WindowEdge } from '../generator.js';
import type { SocketJob, SocketResult } from '../loadProtocol.js';
import type { NodeProcess } from '../nodes.js';
import { statementCounters } from '../database.js';
import { xfchatPeak } from '../goals.js';
import { connectionPorts, costByKind, readPgActivity } from '../pgProcesses.js';
import { findPhase, type PhaseRecord, type PoolSweepRow } from '../report.js';
import { seedConversations } from '../seed.js';
import { ackP99Bucket, betweenScrapes, scrapeNodes, type MetricsScrape } from '../serverMetrics.js';
import { runStorage } from './baselines.js';

/** Sends of a load phase that failed (an error ack) or timed out. */
export function failedSends(result: SocketResult): number {
  return Object.values(result.errors).reduce((a, b) => a + b, 0) + result.timeouts;
}

/** Runs one Socket.IO load phase against `servers` and records it (unless `record` is false). */
export async function socketPhase(
  ctx: BenchContext,
  label: string,
  scenario: string,
  description: string,
  job: SocketJob,
  servers: readonly NodeProcess[],
  record = true,
): Promise<PhaseRecord> {
  await ctx.beforePhase();
  const before = await statementCounters(ctx.database);
  const urls = servers.map((server) => server.url);
  // The XFChat nodes' /metrics at the measured window's edges, after the CPU counters: one request each.
  const scrapes: { start?: MetricsScrape[]; end?: MetricsScrape[] } = {};
  const atEdge: WindowEdge | undefined =
    job.target === 'xfchat'
      ? async (edge) => {
          scrapes[edge] = await scrapeNodes(urls);
        }
      : undefined;
  const { result, cpu, wait, runs, trees } = await runPhase(
    job,
    label,
    ctx.metered(servers),
    ctx.progress,
    atEdge,
  );
  const after = await statementCounters(ctx.database);
  const postmasterPid = ctx.database.postmasterPid;
  const postgresProcesses = trees.postgres;
  // Read right after the window: the nodes' connections outlive it (a process gone by now counts as other).
  const postgresByKind =
    job.target === 'xfchat' && postmasterPid !== undefined && postgresProcesses
      ? costByKind(
          postgresProcesses,
          await readPgActivity(ctx.database),
          postmasterPid,
          await connectionPorts(servers.map((server) => server.pid)),
        )
      : undefined;
  const failures = failedSends(result);
  ctx.progress.end(
    `${result.ackRate} acked/s, p50 ${result.ackLatency.p50} ms, p99 ${result.ackLatency.p99} ms${failures ? `, ${failures} failed sends` : ''}`,
  );
  const phase: PhaseRecord = {
    label,
    scenario,
    description,
    socket: result,
    cpu,
    wait,
    runs,
    postgresByKind,
  };
  if (scrapes.start && scrapes.end) {
    // The server's own view: from a send entering a mailbox to its ack. The rest of the client's latency is
    // outside the actor (socket I/O, the event loop, the handler before the mailbox).
    const { ackMeanMs, pauses } = betweenScrapes(scrapes.start, scrapes.end);
    phase.serverAckMeanMs = ackMeanMs;
    phase.serverAckP99 = ackP99Bucket(scrapes.start, scrapes.end);
    phase.serverPauses = pauses;
  }
  if (before && after && job.target !== 'echo' && result.acked > 0) {
    const transactions = after.commit - before.commit;
    const round = (value: number) => Math.round(value * 100) / 100;
    phase.db = {
      notifyPerMessage: round((after.notify - before.notify) / result.acked),
      transactions,
      messagesPerTransaction: transactions > 0 ? round(result.acked / transactions) : 0,
      insertsPerTransaction: transactions > 0 ? round((after.insert - before.insert) / transactions) : 0,
      statementsPerMessage: round((after.total - before.total) / result.acked),
      walBytesPerMessage: Math.round((after.walBytes - before.walBytes) / result.acked),
      fullPageImagesPerMessage: round((after.fullPageImages - before.fullPageImages) / result.acked),
    };
  }
  if (record) ctx.results.phases.push(phase);
  return phase;
}

/** Light load: an open loop of 20 sends/s on E0 and XFChat, and of 20 single-row commits/s on one connection. */
export async function runLight(ctx: BenchContext): Promise<void> {
  const [seeded, echo, node] = await Promise.all([ctx.mainUsers(), ctx.echoNode(), ctx.mainNode()]);
  const timing = { warmupMs: 1000, durationMs: 4000 };
  const light = (target: SocketJob['target'], url: string): SocketJob => ({
    ...ctx.socketJob(target, [url], seeded),
    ...timing,
    openLoopRate: 20,
  });
  const what = 'open loop, 20 sends/s in total';
  await socketPhase(ctx, 'E0 light', 'light', `echo server, ${what}`, light('echo', echo.url), [echo]);
  await socketPhase(ctx, 'XFChat light', 'light', `XFChat, ${what}`, light('xfchat', node.url), [node]);
  // The same pace: a commit after 50 ms idle wakes PostgreSQL as a light load's message does.
  await runStorage(ctx, 'B1 light', 'single', 1, timing, true, 20);
  const phase = findPhase(ctx.results, 'B1 light');
  if (phase)
    phase.description =
      'one connection, 20 single-row commits/s on schedule: the cost of one durable commit at light load';
}

/**
 * An open loop at half of X's peak: the best rate of the XFChat window phases, or of a short closed loop at
 * --window if they did not run.
 */
export async function runHalfPeak(ctx: BenchContext): Promise<void> {
  const [seeded, node] = await Promise.all([ctx.mainUsers(), ctx.mainNode()]);
  const measuredPeak = xfchatPeak(ctx.results.phases);
  let peak = measuredPeak?.rate;
  let peakFrom = measuredPeak?.label;
  if (peak === undefined) {
    const probe = await socketPhase(
      ctx,
      'XFChat peak probe',
      'halfpeak',
      'closed loop to find the peak',
      { ...ctx.socketJob('xfchat', [node.url], seeded), warmupMs: 1000, durationMs: 4000 },
      [node],
      false,
    );
    peak = probe.socket?.ackRate ?? 0;
    peakFrom = `a probe at window ${ctx.options.window}`;
  }
  const rate = Math.max(1, Math.round(peak / 2));
  await socketPhase(
    ctx,
    'XFChat half-peak',
    'halfpeak',
    `open loop at ${rate} sends/s (half of X's peak, ${peak}/s in ${peakFrom}); latency from the intended send time`,
    { ...ctx.socketJob('xfchat', [node.url], seeded), openLoopRate: rate },
    [node],
  );
}

/** Fan-out: the same number of users in groups of --group-size, on E0 and XFChat. */
export async function runGroups(ctx: BenchContext): Promise<void> {
  const size = ctx.options.groupSize;
  const users = Math.max(size, Math.floor(ctx.options.users / size) * size);
  const seeded = await seedConversations(ctx.knex, ctx.auth, users, size);
  const [echo, node] = await Promise.all([ctx.echoNode(), ctx.mainNode()]);
  const what = `${users} users in groups of ${size} (${size - 1} deliveries per message), closed loop, window ${ctx.options.window}`;
  await socketPhase(
    ctx,
    'E0 groups',
    'groups',
    `echo server, ${what}`,
    ctx.socketJob('echo', [echo.url], seeded),
    [echo],
  );
  await socketPhase(ctx, 'XFChat groups', 'groups', what, ctx.socketJob('xfchat', [node.url], seeded), [
    node,
  ]);
}

/** B1 and XFChat at pool sizes 5, 10, 25 and 50, half-length phases: the data behind the pool guidance. */
export async function runPoolSweep(ctx: BenchContext): Promise<void> {
  const seeded = await ctx.mainUsers();
  const timing = {
    warmupMs: (ctx.options.warmupSec * 1000) / 2,
    durationMs: Math.max(2000, (ctx.options.durationSec * 1000) / 2),
  };
  const rows: PoolSweepRow[] = [];
  for (const poolSize of [5, 10, 25, 50]) {
    const b1 = await runStorage(ctx, `B1 pool ${poolSize}`, 'single', poolSize, timing, false);
    const node = await ctx.startNode({ poolSize, label: `pool-${poolSize}` });
    try {
      const xf = await socketPhase(
        ctx,
        `XFChat pool ${poolSize}`,
        'poolsweep',
        `main load at DB_POOL_SIZE=${poolSize}`,
        { ...ctx.socketJob('xfchat', [node.url], seeded), ...timing },
        [node],
        false,
      );
      const s = xf.socket!;
      rows.push({
        poolSize,
        b1RowRate: b1.storage!.rowRate,
        b1P99: b1.storage!.commitLatency.p99,
        xfchatAckRate: s.ackRate,
        xfchatP99: s.ackLatency.p99,
        xfchatErrors: failedSends(s),
      });
    } finally {
      await node.stop();
    }
  }
  ctx.results.poolSweep = rows;
}
