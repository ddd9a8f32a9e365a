import os from 'node:os';
import type { SocketResult, StorageResult } from './loadProtocol.js';
import type { GoalRecord } from './goals.js';
import type { PgKindCost, PgProcessKind } from './pgProcesses.js';
import type { BenchOptions } from './options.js';
import type { NodeProfile } from './profileSummary.js';
import type { BucketMs, ServerPauses } from './serverMetrics.js';

/** One measured load phase. */
export interface PhaseRecord {
  label: string;
  scenario: string;
  description: string;
  socket?: SocketResult;
  storage?: StorageResult;
  /** CPU % of one core over the measured window, per process. */
  cpu: Record<string, number | null>;
  /** % of the measured window each process's main thread was runnable but waiting for a core (/proc schedstat). */
  wait?: Record<string, number | null>;
  /**
   * Times each process was put on a core over the measured window (/proc schedstat): the main thread of a server or
   * of the generator, every process of PostgreSQL's tree.
   */
  runs?: Record<string, number | null>;
  /**
   * PostgreSQL's wake-ups and CPU over the measured window, split by what each process served (an XFChat phase on
   * a local PostgreSQL; bench/pgProcesses.ts).
   */
  postgresByKind?: Record<PgProcessKind, PgKindCost>;
  /** What PostgreSQL did per acked message over the whole phase (pg_stat_statements), when available. */
  db?: PhaseDbCost;
  /** Mean ack latency as the server measures it (mailbox to ack, /metrics), over the measured window. */
  serverAckMeanMs?: number;
  /** The histogram bucket (ms) the server's ack p99 falls in, over the measured window. */
  serverAckP99?: BucketMs;
  /** The nodes' garbage collection and event-loop delay (/metrics), over the measured window. */
  serverPauses?: ServerPauses;
}

export interface PhaseDbCost {
  /** pg_notify statements (announcements, control events, adapter broadcasts) per acked message. */
  notifyPerMessage: number;
  /** Group-commit transactions in the phase, and acked messages per transaction. */
  transactions: number;
  messagesPerTransaction: number;
  /** Statements inserting into messages per transaction (1 on the writer's one-statement path). */
  insertsPerTransaction: number;
  /** Every statement the database ran, per acked message. */
  statementsPerMessage: number;
  /** WAL bytes the server wrote during the phase, per acked message (absent in results of older benches). */
  walBytesPerMessage?: number;
  /** Full-page images in that WAL, per acked message (absent in results of older benches). */
  fullPageImagesPerMessage?: number;
}

export interface SyncRecord {
  messages: number;
  growMs: number;
  rest: SyncPass | { error: string };
  socket: SyncPass | { error: string };
}

export interface SyncPass {
  ms: number;
  pages: number;
  messages: number;
  /** Statements PostgreSQL executed during the pass (pg_stat_statements), when available. */
  statements: number | null;
  gapFree: boolean;
}

/** The node's memory after one round of the soak, each figure read right after a full collection. */
export interface SoakRound {
  /** 0: before the first round, on the started node. */
  round: number;
  /** Users connected in the round (0 for the reading before the first). */
  users: number;
  acked: number;
  /** Sends that failed or timed out. */
  failed: number;
  /** Deliveries to the other members that never came. */
  missingDeliveries: number;
  heapUsedMB: number;
  rssMB: number;
  /** Buffers outside the V8 heap (sockets' and pg's). */
  externalMB: number;
  /** Conversation actors alive on the node (its xfchat_live_actors), when /metrics answered. */
  liveActors: number | null;
}

export interface SoakRecord {
  /** Users in all; each round connects one of `parts` equal parts, in turn. */
  population: number;
  parts: number;
  roundSeconds: number;
  rounds: SoakRound[];
  /** The last reading, after the node stood idle this long (its idle actors evicted). */
  idleSeconds: number;
  idle: SoakRound | null;
  summary: SoakSummary | null;
}

/** Growth of the live heap once every part has connected once (the caches warm). */
export interface SoakSummary {
  /** The reading growth is measured from: after the round in which the last part first connected. */
  fromRound: number;
  heapFromMB: number;
  heapLastMB: number;
  /** The least-squares slope of the live heap over the rounds from `fromRound` on, in KB a round. */
  heapSlopeKBPerRound: number;
  rssFromMB: number;
  rssLastMB: number;
}

export interface ExhaustionRecord {
  poolSize: number;
  acquireTimeoutMs: number;
  /** Each probe made while the pool was held: what came back and how long it took. */
  probes: Array<{ what: string; outcome: string; ms: number }>;
  /** After the lock holder released: how long the held requests took to finish, and whether they succeeded. */
  heldOutcomes: string[];
  recoveryMs: number;
  afterRecovery: string;
  /** seq of the first message stored after recovery: 1 means the failed sends left no gap. */
  firstSeqAfterRecovery: number | null;
}

export interface PoolSweepRow {
  poolSize: number;
  b1RowRate: number;
  b1P99: number;
  xfchatAckRate: number;
  xfchatP99: number;
  xfchatErrors: number;
}

export interface ProfileEntry {
  functionName: string;
  location: string;
  selfMs: number;
  percent: number;
}

export interface BenchResults {
  startedAt: string;
  command: string;
  machine: { nproc: number; memoryGiB: number; cpu: string; node: string; kernel: string; loadAvg: number[] };
  postgres: Record<string, string>;
  options: BenchOptions;
  phases: PhaseRecord[];
  sync?: SyncRecord;
  exhaustion?: ExhaustionRecord;
  poolSweep?: PoolSweepRow[];
  soak?: SoakRecord;
  /** The performance goals (bench/goals.ts), each met, not met or not measured. */
  goals: GoalRecord[];
  /** With --cpu-prof: a profile per XFChat node, by its label (`main` first), over the node's whole life. */
  profiles?: NodeProfile[];
  /** Statements with the most database time over the whole run (pg_stat_statements). */
  topStatements?: Array<{ query: string; calls: number; totalMs: number; meanMs: number }>;
  /** The vacuums run before the phases (bench/database.ts, vacuumWrittenTables). */
  vacuums: { tables: readonly string[]; count: number; ms: number };
  failures: Array<{ scenario: string; error: string }>;
  notes: string[];
}

/** The skeleton of a run's results: machine facts now, phases as they finish. */
export function newResults(options: BenchOptions, argv: readonly string[]): BenchResults {
  return {
    startedAt: new Date().toISOString(),
    command: ['npm run bench --', ...argv].join(' '),
    machine: {
      nproc: os.availableParallelism(),
      memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
      cpu: os.cpus()[0]?.model ?? 'unknown',
      node: process.version,
      kernel: os.release(),
      loadAvg: os.loadavg().map((l) => Math.round(l * 100) / 100),
    },
    postgres: {},
    options,
    phases: [],
    goals: [],
    vacuums: { tables: [], count: 0, ms: 0 },
    failures: [],
    notes: [],
  };
}

/** The sum, or null if any value is missing. */
export function sumOrNull(values: ReadonlyArray<number | null | undefined>): number | null {
  let total = 0;
  for (const value of values) {
    if (value === null || value === undefined) return null;
    total += value;
  }
  return total;
}

/**
 * The servers' figures of a per-process record (`cpu`, `runs`) summed: server, server2, ...; null if there is none
 * or one is missing.
 */
export function serversTotal(record: Readonly<Record<string, number | null | undefined>>): number | null {
  const names = Object.keys(record).filter((name) => /^server\d*$/.test(name));
  return names.length === 0 ? null : sumOrNull(names.map((name) => record[name]));
}

/** The phase recorded under `label`, if it ran. */
export function findPhase(results: BenchResults, label: string): PhaseRecord | undefined {
  return results.phases.find((p) => p.label === label);
}
