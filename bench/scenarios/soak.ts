import { randomBytes } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { BenchContext } from '../context.js';
import type { ProbeReading } from '../memoryProbe.js';
import { PROJECT_ROOT } from '../nodes.js';
import { parseMetrics, sampleValue } from '../prometheus.js';
import type { SoakRecord, SoakRound, SoakSummary } from '../report.js';
import { seedConversations, type Seeded } from '../seed.js';
import { failedSends, socketPhase } from './load.js';

/**
 * Each round connects one of this many equal parts of the soak's users. With rounds of about 7 s, a part comes back
 * after 140 s, when the actors of its conversations have been evicted (idle 60 s, looked for every 30 s): every
 * round spawns actors and the sweeper evicts others.
 */
const SOAK_PARTS = 20;
const ROUND_WARMUP_MS = 1000;
const ROUND_MEASURED_MS = 4000;
/** Long enough for the node's idle actors to be evicted (idle 60 s, looked for every 30 s) before the last reading. */
const IDLE_MS = 95_000;
/** How long the probe may take to answer a signal. */
const PROBE_TIMEOUT_MS = 10_000;

/** What a round did, beside the memory read after it. */
type RoundCounts = Pick<SoakRound, 'users' | 'acked' | 'failed' | 'missingDeliveries'>;

const mb = (bytes: number): number => Math.round((bytes / 2 ** 20) * 10) / 10;

/**
 * Part `part` of `parts` equal parts of `seeded`'s users, with the conversations whose members are all in it,
 * re-indexed to the part. Parts follow the seeding order, in which a conversation's members are consecutive, so a
 * part whose size is a multiple of the conversation size keeps its conversations whole.
 */
export function partOf(seeded: Seeded, part: number, parts: number): Seeded {
  if (seeded.users.length % parts !== 0)
    throw new Error(`${seeded.users.length} users do not split into ${parts} parts`);
  const size = seeded.users.length / parts;
  const from = part * size;
  const to = from + size;
  return {
    users: seeded.users.slice(from, to),
    conversations: seeded.conversations
      .filter((c) => c.members.every((m) => m >= from && m < to))
      .map((c) => ({ id: c.id, members: c.members.map((m) => m - from) })),
  };
}

/**
 * Growth of the live heap from the reading after the round in which the last part first connected (every part's
 * users, sockets and conversations have been seen once, so caches are as warm as they get) to the last round: the
 * two readings and the least-squares slope over every round in between. Null with fewer than two such rounds.
 */
export function summarizeSoak(rounds: readonly SoakRound[], parts: number): SoakSummary | null {
  const from = rounds.findIndex((r) => r.round === parts);
  if (from < 0 || rounds.length - from < 2) return null;
  const tail = rounds.slice(from);
  const n = tail.length;
  const meanX = tail.reduce((a, r) => a + r.round, 0) / n;
  const meanY = tail.reduce((a, r) => a + r.heapUsedMB, 0) / n;
  let cov = 0;
  let varX = 0;
  for (const r of tail) {
    cov += (r.round - meanX) * (r.heapUsedMB - meanY);
    varX += (r.round - meanX) ** 2;
  }
  const first = tail[0]!;
  const last = tail[n - 1]!;
  return {
    fromRound: first.round,
    heapFromMB: first.heapUsedMB,
    heapLastMB: last.heapUsedMB,
    heapSlopeKBPerRound: Math.round((cov / varX) * 1024 * 10) / 10,
    rssFromMB: first.rssMB,
    rssLastMB: last.rssMB,
  };
}

/**
 * Asks the node's probe (bench/memoryProbe.ts) for its memory after a full collection: signals it, then waits for a
 * reading written after the signal.
 */
export async function probeMemory(pid: number, file: string): Promise<ProbeReading> {
  const asked = Date.now();
  process.kill(pid, 'SIGUSR2');
  const deadline = performance.now() + PROBE_TIMEOUT_MS;
  for (;;) {
    const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    const reading = text === undefined ? undefined : (JSON.parse(text) as ProbeReading);
    if (reading !== undefined && reading.at >= asked) return reading;
    if (performance.now() > deadline) throw new Error(`the memory probe of node ${pid} did not answer`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The node's live actors from its /metrics; null if it does not answer. */
async function liveActors(url: string): Promise<number | null> {
  const response = await fetch(`${url}/metrics`).catch(() => undefined);
  if (response?.status !== 200) return null;
  return sampleValue(parseMetrics(await response.text()), 'xfchat_live_actors') ?? null;
}

/**
 * Memory under churn (not in the default run): 20 x --users users in conversations of --conversation-size come and
 * go in rounds on one XFChat node. Each round one twentieth of them, in turn, connects, subscribes, sends in a closed
 * loop at --window for 5 s and disconnects; the conversations of earlier rounds fall idle and their actors are
 * evicted after a minute. After each round the node's probe (bench/memoryProbe.ts, started with --expose-gc)
 * collects all garbage and reports the live heap and the RSS; a last reading follows after 95 s idle. Whatever the
 * node keeps per user, socket, conversation or message and never lets go shows as a heap that keeps growing.
 */
export async function runSoak(ctx: BenchContext): Promise<void> {
  const { soakRounds: roundCount, users, conversationSize } = ctx.options;
  // Nodes that stay up would hear this node's announcements and count as its peers.
  await ctx.stopMainNode();
  const population = users * SOAK_PARTS;
  const seeded = await seedConversations(ctx.knex, ctx.auth, population, conversationSize);
  const file = path.join(os.tmpdir(), `xfchat-soak-${randomBytes(6).toString('hex')}.json`);
  const node = await ctx.startNode({
    label: 'soak',
    poolSize: ctx.options.poolSize,
    env: { XFCHAT_BENCH_MEMORY_FILE: file },
    nodeFlags: ['--expose-gc'],
    preload: [path.join(PROJECT_ROOT, 'bench', 'memoryProbe.ts')],
  });
  const reading = async (round: number, counts: RoundCounts): Promise<SoakRound> => {
    const memory = await probeMemory(node.pid, file);
    return {
      round,
      ...counts,
      heapUsedMB: mb(memory.heapUsed),
      rssMB: mb(memory.rss),
      externalMB: mb(memory.external),
      liveActors: await liveActors(node.url),
    };
  };
  const record: SoakRecord = {
    population,
    parts: SOAK_PARTS,
    roundSeconds: (ROUND_WARMUP_MS + ROUND_MEASURED_MS) / 1000,
    rounds: [],
    idleSeconds: IDLE_MS / 1000,
    idle: null,
    summary: null,
  };
  ctx.results.soak = record;
  const none: RoundCounts = { users: 0, acked: 0, failed: 0, missingDeliveries: 0 };
  try {
    record.rounds.push(await reading(0, none));
    for (let round = 1; round <= roundCount; round++) {
      const part = partOf(seeded, (round - 1) % SOAK_PARTS, SOAK_PARTS);
      const phase = await socketPhase(
        ctx,
        `XFChat soak ${round}/${roundCount}`,
        'soak',
        `one of ${SOAK_PARTS} parts of ${population} users, closed loop at window ${ctx.options.window}`,
        {
          ...ctx.socketJob('xfchat', [node.url], part),
          warmupMs: ROUND_WARMUP_MS,
          durationMs: ROUND_MEASURED_MS,
        },
        [node],
        false,
      );
      const result = phase.socket;
      record.rounds.push(
        await reading(round, {
          users: part.users.length,
          acked: result?.acked ?? 0,
          failed: result ? failedSends(result) : 0,
          missingDeliveries: result?.deliveriesMissing ?? 0,
        }),
      );
      record.summary = summarizeSoak(record.rounds, SOAK_PARTS);
    }
    ctx.progress.note(`soak: idle for ${IDLE_MS / 1000} s before the last reading`);
    await new Promise((resolve) => setTimeout(resolve, IDLE_MS));
    record.idle = await reading(roundCount, none);
  } finally {
    await node.stop();
    await rm(file, { force: true });
  }
}
