/** The Markdown report of a run: headline ratios first, then every phase, then the scenario details. */
import { compareName, NAIVE, TWO_NODES, windowLabel, XFCHAT } from './goals.js';
import { PG_PROCESS_KIND_TITLES, PG_PROCESS_KINDS } from './pgProcesses.js';
import {
  findPhase,
  serversTotal,
  sumOrNull,
  type PhaseRecord,
  type BenchResults,
  type SoakRecord,
  type SoakRound,
  type SyncPass,
} from './report.js';
import type { LatencySummary } from './stats.js';
import type { BucketMs } from './serverMetrics.js';

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

/** The soak: the node's memory after each round, and how the live heap grew once every part had connected. */
function soakSection(soak: SoakRecord): string[] {
  const row = (label: string, r: SoakRound): string[] => [
    label,
    String(r.users),
    String(r.acked),
    String(r.failed),
    String(r.missingDeliveries),
    fmt(r.heapUsedMB),
    fmt(r.rssMB),
    fmt(r.externalMB),
    r.liveActors === null ? '-' : String(r.liveActors),
  ];
  const s = soak.summary;
  return [
    '',
    '## Memory under churn',
    '',
    `${soak.population} users; each round one of ${soak.parts} parts, in turn, connects, subscribes, sends for ${soak.roundSeconds} s and disconnects. Memory read right after a full collection in the node (bench/memoryProbe.ts).`,
    '',
    table(
      [
        'round',
        'users',
        'acked',
        'failed',
        'missing deliv',
        'heap used MB',
        'RSS MB',
        'external MB',
        'live actors',
      ],
      [
        ...soak.rounds.map((r) => row(r.round === 0 ? 'start' : String(r.round), r)),
        ...(soak.idle ? [row(`idle ${soak.idleSeconds} s`, soak.idle)] : []),
      ],
    ),
    '',
    s
      ? `Live heap from round ${s.fromRound} (every part connected once) to the last: ${fmt(s.heapFromMB)} -> ${fmt(s.heapLastMB)} MB, a least-squares slope of ${fmt(s.heapSlopeKBPerRound)} KB a round; RSS ${fmt(s.rssFromMB)} -> ${fmt(s.rssLastMB)} MB.`
      : `Too few rounds for a trend (it starts at round ${soak.parts}, once every part has connected).`,
  ];
}

/** The closed-loop window phases side by side: each server's rate per window and over the run. */
function windowComparison(results: BenchResults): string[] {
  const windows = results.options.windows;
  const phase = (server: string, w: number) => findPhase(results, windowLabel(server, w))?.socket;
  const servers = [
    XFCHAT,
    ...(results.options.compareDir ? [compareName(results.options.compareDir)] : []),
    TWO_NODES,
    NAIVE,
  ].filter((server) => windows.some((w) => phase(server, w)));
  if (servers.length === 0) return [];
  const rate = (server: string, ws: readonly number[]) => {
    const found = ws.map((w) => phase(server, w));
    if (found.some((s) => s === undefined)) return undefined;
    const messages = found.reduce((a, s) => a + s!.measuredAcked, 0);
    const ms = found.reduce((a, s) => a + s!.measuredMs, 0);
    return ms > 0 ? (messages * 1000) / ms : undefined;
  };
  const columns = [...windows.map((w) => [w]), windows];
  const rows = servers.map((server) => [
    server,
    ...columns.map((ws) => {
      const r = rate(server, ws);
      const n = rate(NAIVE, ws);
      if (r === undefined) return '-';
      return server === NAIVE || n === undefined ? fmt(r, 0) : `${fmt(r, 0)} (${fmt(r / n, 2)} x N)`;
    }),
  ]);
  return [
    'Closed-loop window phases, acked msg/s over the measured time (and the ratio to N at the same windows):',
    '',
    table(['server', ...windows.map((w) => `window ${w}`), 'over the run'], rows),
    '',
  ];
}

/** A histogram bucket in ms: `25-50`, or `> 10000` past the last bound. */
const bucketRange = (bucket: BucketMs | undefined): string =>
  bucket === undefined
    ? '-'
    : Number.isFinite(bucket.toMs)
      ? `${bucket.fromMs}-${bucket.toMs}`
      : `> ${bucket.fromMs}`;

/** The Markdown report: headline ratios first, then every phase, then the scenario details. */
export function renderMarkdown(results: BenchResults): string {
  const m = results.machine;
  const out: string[] = [
    `# XFChat benchmark, ${results.startedAt}`,
    '',
    `Machine: ${m.nproc} cores (${m.cpu}), ${m.memoryGiB} GiB, Node ${m.node}, Linux ${m.kernel}, load average at start ${m.loadAvg.join(' ')}.`,
    `PostgreSQL ${results.postgres.server_version ?? '?'} (synchronous_commit ${results.postgres.synchronous_commit ?? '?'}, fsync ${results.postgres.fsync ?? '?'}, shared_buffers ${results.postgres.shared_buffers ?? '?'}, autovacuum ${results.postgres.autovacuum ?? '?'}).`,
    ...(results.vacuums.count > 0
      ? [
          `Before each phase: \`VACUUM (ANALYZE) ${results.vacuums.tables.join(', ')}\` (${results.vacuums.count} times, ${fmt(results.vacuums.ms / 1000, 1)} s in all).`,
        ]
      : []),
    `Command: \`${results.command}\``,
    ...(results.options.xfchatDir ? [`Every XFChat node ran from ${results.options.xfchatDir}.`] : []),
    '',
    '## Goals',
    '',
    `Ratios within this run (docs/performance.md). X = XFChat, N = the naive server, X2 = two XFChat nodes; "over the run" sums the window phases (${results.options.windows.map((w) => `w${w}`).join(', ')}) both sides ran.`,
    '',
    table(
      ['#', 'measure', 'value', 'goal', 'met', 'from'],
      results.goals.map((g) => [
        g.id,
        g.measure,
        fmt(g.value, 2),
        g.goal,
        g.status === 'not met' ? '**not met**' : g.status,
        g.from.replace(/\|/g, '\\|'),
      ]),
    ),
    '',
    ...windowComparison(results),
    '## Phases',
    '',
    'Rates are acked messages (or committed rows) per second over the measured window; latencies in ms; CPU in % of one core; wait: % of the window the main thread was ready to run but waiting for a core (/proc/<pid>/schedstat).',
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
      fmt(p.wait?.server),
      fmt(p.wait?.generator),
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
        'server wait',
        'gen wait',
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
      'Database work per phase (pg_stat_statements over the whole phase, per acked message; the two ack means over the measured window):',
      '',
      table(
        [
          'phase',
          'write transactions',
          'msgs / transaction',
          'insert statements / transaction',
          'pg_notify / msg',
          'statements / msg',
          'WAL bytes / msg',
          'full-page images / msg',
          'ack mean ms (client)',
          'ack mean ms (server)',
          'ack p99 ms (server, its histogram bucket)',
        ],
        costed.map((p) => [
          p.label,
          String(p.db!.transactions),
          fmt(p.db!.messagesPerTransaction, 2),
          fmt(p.db!.insertsPerTransaction, 2),
          fmt(p.db!.notifyPerMessage, 2),
          fmt(p.db!.statementsPerMessage, 2),
          fmt(p.db!.walBytesPerMessage, 0),
          fmt(p.db!.fullPageImagesPerMessage, 2),
          fmt(p.socket?.ackLatency.mean, 2),
          fmt(p.serverAckMeanMs, 2),
          bucketRange(p.serverAckP99),
        ]),
      ),
    );
  }
  // Socket phases only: the storage baselines' connections (PostgreSQL backends) close as their window ends, and a
  // process that is gone at the window's end leaves its count out.
  const scheduled = results.phases.filter((p) => p.runs && (p.socket?.measuredAcked ?? 0) > 0);
  if (scheduled.length > 0) {
    out.push(
      '',
      'Times each process was put on a core, per acked message, over the measured window (/proc/<pid>/schedstat: the main threads of the servers and of the generator, and every PostgreSQL process); each is a wake-up, or a return after the process was preempted:',
      '',
      table(
        ['phase', 'server(s)', 'PostgreSQL', 'generator', 'all'],
        scheduled.map((p) => {
          const runs = p.runs!;
          const perUnit = (count: number | null | undefined) =>
            count === null || count === undefined ? undefined : count / p.socket!.measuredAcked;
          return [
            p.label,
            fmt(perUnit(serversTotal(runs)), 3),
            fmt(perUnit(runs.postgres), 3),
            fmt(perUnit(runs.generator), 3),
            fmt(perUnit(sumOrNull(Object.values(runs))), 3),
          ];
        }),
      ),
    );
  }
  const split = results.phases.filter((p) => p.postgresByKind && (p.socket?.measuredAcked ?? 0) > 0);
  if (split.length > 0) {
    out.push(
      '',
      "PostgreSQL's processes by what they served, per acked message over the measured window: times put on a core / CPU µs (an XFChat node's connections by their application_name: its Knex pool, with the write calls, announcements and reads; its control bus's LISTEN connection; its Socket.IO adapter's pool. Background: the postmaster, WAL writer, checkpointer and the like. Other: the bench's connections, and processes gone before pg_stat_activity was read):",
      '',
      table(
        ['phase', ...PG_PROCESS_KINDS.map((kind) => PG_PROCESS_KIND_TITLES[kind])],
        split.map((p) => {
          const acked = p.socket!.measuredAcked;
          return [
            p.label,
            ...PG_PROCESS_KINDS.map((kind) => {
              const cost = p.postgresByKind![kind];
              return `${fmt(cost.runs / acked, 3)} / ${fmt((cost.cpuMs * 1000) / acked, 0)}`;
            }),
          ];
        }),
      ),
    );
  }
  const paused = results.phases.filter((p) => p.serverPauses);
  if (paused.length > 0) {
    out.push(
      '',
      "XFChat nodes' pauses per phase (their /metrics at the measured window's edges; the event loop's delay is how late prom-client's 10 ms timer ran, the worst node's):",
      '',
      table(
        ['phase', 'GC % of a core', 'major GCs', 'event-loop delay p99 ms', 'event-loop delay max ms'],
        paused.map((p) => [
          p.label,
          fmt(p.serverPauses!.gcPercent, 1),
          String(p.serverPauses!.majorGcs),
          fmt(p.serverPauses!.loopLagP99Ms, 1),
          fmt(p.serverPauses!.loopLagMaxMs, 1),
        ]),
      ),
    );
  }
  const openLoops = results.phases.filter((p) => p.socket?.openLoop);
  if (openLoops.length > 0) {
    out.push(
      '',
      "Open-loop phases: the generator's own part (how late it sent, from each send's intended time to its emit; and each ack from the emit, which leaves that lateness out):",
      '',
      table(
        [
          'phase',
          'send late p50 ms',
          'send late p99 ms',
          'send late max ms',
          'ack p99 ms (from the intended time)',
          'ack p99 ms (from the emit)',
        ],
        openLoops.map((p) => {
          const { sendLag, ackFromSend } = p.socket!.openLoop!;
          return [
            p.label,
            fmt(sendLag.p50, 2),
            fmt(sendLag.p99, 2),
            fmt(sendLag.max, 2),
            fmt(p.socket!.ackLatency.p99, 2),
            fmt(ackFromSend.p99, 2),
          ];
        }),
      ),
    );
  }
  const twoNodePhases = results.options.windows
    .map((w) => findPhase(results, windowLabel(TWO_NODES, w)))
    .filter(
      (p): p is PhaseRecord & { socket: NonNullable<PhaseRecord['socket']> } => p?.socket !== undefined,
    );
  for (const phase of twoNodePhases) {
    const twoNode = phase.socket;
    const kinds = [
      ['same-node', twoNode.deliverySameNode],
      ['cross-node', twoNode.deliveryCrossNode],
    ] as const;
    const delivery = kinds
      .filter(([, l]) => l.count > 0)
      .map(([kind, l]) => `${kind} p50/p99 ${fmt(l.p50, 2)}/${fmt(l.p99, 2)} ms`)
      .join(', ');
    out.push(
      '',
      `${phase.label}: delivery ${delivery || 'none'} (cpu server2 ${fmt(phase.cpu.server2)} %, wait server2 ${fmt(phase.wait?.server2)} %).`,
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
  if (results.soak) out.push(...soakSection(results.soak));
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
  for (const profile of results.profiles ?? []) {
    out.push(
      '',
      `## CPU profile of XFChat node ${profile.label} (${profile.file})`,
      '',
      `${fmt(profile.busyMs, 0)} ms busy, ${fmt(profile.idleMs, 0)} ms idle over the node's life. The profiler samples ` +
        'by the clock: a node waiting for a core keeps being charged to the function it was in (often a write that ' +
        'woke another process), so compare nodes by the CPU columns of the phases, and use this for where a node ' +
        'spends its time.',
      '',
      table(
        ['function', 'location', 'self ms', '%'],
        profile.top.map((e) => [e.functionName, e.location, fmt(e.selfMs, 0), fmt(e.percent, 1)]),
      ),
      '',
      'Self time per package (native frames such as writev charged to their JavaScript caller):',
      '',
      table(
        ['package', 'self ms', '%'],
        profile.byPackage.map((p) => [p.name, fmt(p.selfMs, 0), fmt(p.percent, 1)]),
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
