import os from 'node:os';
import type { SocketResult, StorageResult } from './loadProtocol.js';
import type { BenchOptions } from './options.js';
import { ratio, type LatencySummary } from './stats.js';

/** One measured load phase. */
export interface PhaseRecord {
  label: string;
  scenario: string;
  description: string;
  socket?: SocketResult;
  storage?: StorageResult;
  /** CPU % of one core over the measured window, per process. */
  cpu: Record<string, number | null>;
  /** What PostgreSQL did per acked message over the whole phase (pg_stat_statements), when available. */
  db?: PhaseDbCost;
  /** Mean ack latency as the server measures it (mailbox to ack, /metrics), over the whole phase. */
  serverAckMeanMs?: number;
}

export interface PhaseDbCost {
  /** pg_notify calls (adapter broadcasts) per acked message. */
  notifyPerMessage: number;
  /** Group-commit transactions in the phase, and acked messages per transaction. */
  transactions: number;
  messagesPerTransaction: number;
  /** Conversation batches per transaction. */
  batchesPerTransaction: number;
  /** Every statement the database ran, per acked message. */
  statementsPerMessage: number;
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

export interface TargetRecord {
  name: string;
  value: number | null;
  target: string;
  met: boolean | null;
  detail: string;
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
  targets: TargetRecord[];
  profile?: {
    file: string;
    totalMs: number;
    top: ProfileEntry[];
    byPackage: Array<{ name: string; selfMs: number; percent: number }>;
  };
  /** Statements with the most database time over the whole run (pg_stat_statements). */
  topStatements?: Array<{ query: string; calls: number; totalMs: number; meanMs: number }>;
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
    targets: [],
    failures: [],
    notes: [],
  };
}

export function findPhase(results: BenchResults, label: string): PhaseRecord | undefined {
  return results.phases.find((p) => p.label === label);
}

/** Evaluates the targets from the phases that ran; a target whose inputs are missing is null. */
export function evaluateTargets(results: BenchResults): TargetRecord[] {
  const e0 = findPhase(results, 'E0')?.socket;
  const b1 = findPhase(results, 'B1')?.storage;
  const xf = findPhase(results, 'XFChat')?.socket;
  const half = findPhase(results, 'XFChat half-peak')?.socket;
  const lightXf = findPhase(results, 'XFChat light')?.socket;
  const lightE0 = findPhase(results, 'E0 light')?.socket;
  const lightB1 = findPhase(results, 'B1 light')?.storage;
  const vsE0 = ratio(xf?.ackRate, e0?.ackRate);
  const vsB1 = ratio(xf?.ackRate, b1?.rowRate);
  const p99Ratio = ratio(half?.ackLatency.p99, b1?.commitLatency.p99);
  const targets: TargetRecord[] = [
    {
      name: 'XFChat / E0 (acked msg/s)',
      value: vsE0,
      target: '>= 0.6',
      met: vsE0 === null ? null : vsE0 >= 0.6,
      detail: `${xf?.ackRate ?? '-'} vs ${e0?.ackRate ?? '-'} msg/s`,
    },
    {
      name: 'XFChat / B1 (acked msg/s vs single-row commits/s)',
      value: vsB1,
      target: '>= 3',
      met: vsB1 === null ? null : vsB1 >= 3,
      detail: `${xf?.ackRate ?? '-'} vs ${b1?.rowRate ?? '-'} /s`,
    },
    {
      name: 'p99 ack at half peak / B1 p99 commit',
      value: p99Ratio,
      target: '<= 4',
      met: p99Ratio === null ? null : p99Ratio <= 4,
      detail: `${half?.ackLatency.p99 ?? '-'} ms vs ${b1?.commitLatency.p99 ?? '-'} ms`,
    },
  ];
  if (lightXf && lightE0 && lightB1) {
    // What XFChat adds beyond the transport and one durable commit: a batching timer would show up here.
    const added =
      Math.round((lightXf.ackLatency.p50 - lightE0.ackLatency.p50 - lightB1.commitLatency.p50) * 100) / 100;
    targets.push({
      name: 'added p50 latency at light load (ms)',
      value: added,
      target: '<= 2 ms (no batching delay)',
      met: added <= 2,
      detail: `XFChat ${lightXf.ackLatency.p50} - E0 ${lightE0.ackLatency.p50} - one commit ${lightB1.commitLatency.p50} ms`,
    });
  }
  return targets;
}

const fmt = (value: number | null | undefined, digits = 1): string =>
  value === null || value === undefined || Number.isNaN(value) ? '-' : value.toFixed(digits);

function latencyCells(l: LatencySummary | undefined): string[] {
  return l ? [fmt(l.p50, 2), fmt(l.p95, 2), fmt(l.p99, 2), fmt(l.p999, 2)] : ['-', '-', '-', '-'];
}

function table(header: string[], rows: string[][]): string {
  return [
    `| ${header.join(' | ')} |`,
    `|${header.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n');
}

/** The Markdown report: headline ratios first, then every phase, then the scenario details. */
export function renderMarkdown(results: BenchResults): string {
  const m = results.machine;
  const out: string[] = [
    `# XFChat benchmark, ${results.startedAt}`,
    '',
    `Machine: ${m.nproc} cores (${m.cpu}), ${m.memoryGiB} GiB, Node ${m.node}, Linux ${m.kernel}, load average at start ${m.loadAvg.join(' ')}.`,
    `PostgreSQL ${results.postgres.server_version ?? '?'} (synchronous_commit ${results.postgres.synchronous_commit ?? '?'}, fsync ${results.postgres.fsync ?? '?'}, shared_buffers ${results.postgres.shared_buffers ?? '?'}).`,
    `Command: \`${results.command}\``,
    '',
    '## Targets',
    '',
    table(
      ['measure', 'value', 'target', 'met', 'from'],
      results.targets.map((t) => [
        t.name,
        fmt(t.value, 2),
        t.target,
        t.met === null ? 'n/a' : t.met ? 'yes' : 'NO',
        t.detail,
      ]),
    ),
    '',
    '## Phases',
    '',
    'Rates are acked messages (or committed rows) per second over the measured window; latencies in ms; CPU in % of one core.',
    '',
  ];
  const rows = results.phases.map((p) => {
    const s = p.socket;
    const st = p.storage;
    const errors = s
      ? Object.entries(s.errors)
          .map(([code, n]) => `${code}:${n}`)
          .concat(s.timeouts ? [`timeouts:${s.timeouts}`] : [])
          .concat(s.duplicateAcks ? [`duplicates:${s.duplicateAcks}`] : [])
      : [];
    return [
      p.label,
      String(s?.ackRate ?? st?.rowRate ?? '-'),
      ...latencyCells(s?.ackLatency ?? st?.commitLatency),
      fmt(s?.delivery.p50, 2),
      fmt(s?.delivery.p99, 2),
      fmt(p.cpu.server),
      fmt(p.cpu.postgres),
      fmt(p.cpu.generator),
      s ? `${s.deliveriesMissing}/${s.deliveriesExpected}` : '-',
      s ? (s.seqGapFree ? 'yes' : 'NO') : '-',
      errors.join(' ') || '-',
    ];
  });
  out.push(
    table(
      [
        'phase',
        'rate/s',
        'p50',
        'p95',
        'p99',
        'p99.9',
        'deliv p50',
        'deliv p99',
        'server CPU',
        'PG CPU',
        'gen CPU',
        'missing deliv',
        'seq gap-free',
        'errors',
      ],
      rows,
    ),
    '',
  );
  for (const p of results.phases) out.push(`- **${p.label}**: ${p.description}`);
  const costed = results.phases.filter((p) => p.db);
  if (costed.length > 0) {
    out.push(
      '',
      'Database work per phase (pg_stat_statements over the whole phase, per acked message):',
      '',
      table(
        [
          'phase',
          'write transactions',
          'msgs / transaction',
          'conversation batches / transaction',
          'pg_notify / msg',
          'statements / msg',
        ],
        costed.map((p) => [
          p.label,
          String(p.db!.transactions),
          fmt(p.db!.messagesPerTransaction, 2),
          fmt(p.db!.batchesPerTransaction, 2),
          fmt(p.db!.notifyPerMessage, 2),
          fmt(p.db!.statementsPerMessage, 2),
          fmt(p.socket?.ackLatency.mean, 2),
          fmt(p.serverAckMeanMs, 2),
        ]),
      ),
    );
  }
  const twoNode = findPhase(results, 'XFChat 2 nodes')?.socket;
  if (twoNode) {
    out.push(
      '',
      `Two nodes: delivery same-node p50/p99 ${fmt(twoNode.deliverySameNode.p50, 2)}/${fmt(twoNode.deliverySameNode.p99, 2)} ms, cross-node ${fmt(twoNode.deliveryCrossNode.p50, 2)}/${fmt(twoNode.deliveryCrossNode.p99, 2)} ms (cpu server2 ${fmt(findPhase(results, 'XFChat 2 nodes')?.cpu.server2)} %).`,
    );
  }
  if (results.sync) {
    const s = results.sync;
    const pass = (name: string, r: SyncPass | { error: string }) =>
      'error' in r
        ? `- ${name}: failed: ${r.error}`
        : `- ${name}: ${r.messages} messages in ${r.pages} pages, ${fmt(r.ms, 0)} ms, ${r.statements ?? 'n/a'} SQL statements, gap-free ${r.gapFree ? 'yes' : 'NO'}`;
    out.push(
      '',
      '## Sync of a long conversation',
      '',
      `Grown to ${s.messages} messages in ${fmt(s.growMs, 0)} ms.`,
      pass('REST `GET .../messages?after=N&limit=200`', s.rest),
      pass('Socket.IO `conversation:subscribe {afterSeq, limit: 200}`', s.socket),
    );
  }
  if (results.exhaustion) {
    const e = results.exhaustion;
    out.push(
      '',
      '## Pool exhaustion',
      '',
      `Pool ${e.poolSize}, acquire timeout ${e.acquireTimeoutMs} ms, every pool connection held by a request blocked on an outside lock.`,
      '',
      table(
        ['probe', 'outcome', 'ms'],
        e.probes.map((p) => [p.what, p.outcome, fmt(p.ms, 0)]),
      ),
      '',
      `Held requests after release: ${e.heldOutcomes.join(', ')}; recovered in ${fmt(e.recoveryMs, 0)} ms; then: ${e.afterRecovery}; first seq after recovery ${e.firstSeqAfterRecovery ?? '-'}.`,
    );
  }
  if (results.poolSweep) {
    out.push(
      '',
      '## Pool size',
      '',
      table(
        ['pool', 'B1 rows/s', 'B1 p99', 'XFChat msg/s', 'XFChat p99', 'XFChat errors'],
        results.poolSweep.map((r) => [
          String(r.poolSize),
          String(r.b1RowRate),
          fmt(r.b1P99, 2),
          String(r.xfchatAckRate),
          fmt(r.xfchatP99, 2),
          String(r.xfchatErrors),
        ]),
      ),
    );
  }
  if (results.profile) {
    out.push(
      '',
      `## CPU profile of the main XFChat node (${results.profile.file})`,
      '',
      table(
        ['function', 'location', 'self ms', '%'],
        results.profile.top.map((e) => [e.functionName, e.location, fmt(e.selfMs, 0), fmt(e.percent, 1)]),
      ),
      '',
      'Self time per package (native frames such as writev charged to their JavaScript caller):',
      '',
      table(
        ['package', 'self ms', '%'],
        results.profile.byPackage.map((p) => [p.name, fmt(p.selfMs, 0), fmt(p.percent, 1)]),
      ),
    );
  }
  if (results.topStatements && results.topStatements.length > 0) {
    out.push(
      '',
      '## Statements with the most database time (whole run)',
      '',
      table(
        ['statement', 'calls', 'total ms', 'mean ms'],
        results.topStatements.map((t) => [
          `\`${t.query.replace(/\|/g, '\\|')}\``,
          String(t.calls),
          String(t.totalMs),
          fmt(t.meanMs, 3),
        ]),
      ),
    );
  }
  if (results.failures.length > 0) {
    out.push(
      '',
      '## Failed scenarios',
      '',
      ...results.failures.map((f) => `- ${f.scenario}: ${f.error.split('\n')[0]}`),
    );
  }
  if (results.notes.length > 0) out.push('', '## Notes', '', ...results.notes.map((n) => `- ${n}`));
  return `${out.join('\n')}\n`;
}
