import { expect } from 'chai';
import { renderMarkdown } from '../../bench/markdown.js';
import { parseOptions } from '../../bench/options.js';
import type { SocketResult } from '../../bench/loadProtocol.js';
import { newResults, type BenchResults, type PhaseRecord } from '../../bench/report.js';
import { summarize, type LatencySummary } from '../../bench/stats.js';

/** A load phase's result: `acked` messages in one measured second, nothing lost. */
const socketResult = (
  acked: number,
  ackLatency: LatencySummary,
  openLoop?: SocketResult['openLoop'],
): SocketResult => ({
  kind: 'sockets',
  connectMs: 100,
  measuredMs: 1000,
  sent: acked,
  acked,
  measuredAcked: acked,
  ackRate: acked,
  errors: {},
  timeouts: 0,
  ackLatency,
  delivery: ackLatency,
  deliverySameNode: ackLatency,
  deliveryCrossNode: summarize([]),
  deliveriesExpected: acked,
  deliveriesMissing: 0,
  seqGapFree: true,
  duplicateAcks: 0,
  ...(openLoop ? { openLoop } : {}),
});

/** Adds a closed-loop phase of `acked` messages in one measured second, with the readings `extra` gives. */
const pushLoadPhase = (results: BenchResults, label: string, acked: number, extra: Partial<PhaseRecord>) =>
  results.phases.push({
    label,
    scenario: 'twonode',
    description: 'closed loop',
    socket: socketResult(acked, summarize([10, 20])),
    cpu: {},
    wait: {},
    ...extra,
  });

describe('bench report: the header and the open-loop table', () => {
  it('says whether autovacuum ran and how often and how long the bench vacuumed before the phases', () => {
    const results = newResults(parseOptions([], {}), []);
    results.postgres = { server_version: '18.4', autovacuum: 'off' };
    results.vacuums = {
      tables: ['messages', 'conversations', 'conversation_participants'],
      count: 15,
      ms: 12_340,
    };
    const report = renderMarkdown(results);
    expect(report).to.include('autovacuum off).');
    expect(report).to.include(
      'Before each phase: `VACUUM (ANALYZE) messages, conversations, conversation_participants` (15 times, 12.3 s in all).',
    );
  });

  it('claims no vacuum when no phase ran', () => {
    const report = renderMarkdown(newResults(parseOptions([], {}), []));
    expect(report).to.not.include('Before each phase');
  });

  it("gives an open-loop phase's send lateness and its ack p99 from the intended time and from the emit", () => {
    const results = newResults(parseOptions([], {}), []);
    const ackLatency = summarize([10, 20, 30, 400]);
    const socket = (openLoop?: SocketResult['openLoop']) => socketResult(4, ackLatency, openLoop);
    const cpu = {};
    const wait = {};
    results.phases.push({
      label: 'XFChat half-peak',
      scenario: 'halfpeak',
      description: 'open loop',
      socket: socket({ sendLag: summarize([0.5, 1, 1.5, 250]), ackFromSend: summarize([9, 19, 28, 150]) }),
      cpu,
      wait,
    });
    results.phases.push({
      label: 'XFChat w1',
      scenario: 'xfchat',
      description: 'closed loop',
      socket: socket(),
      cpu,
      wait,
    });
    const report = renderMarkdown(results);
    expect(report).to.include('| XFChat half-peak | 1.00 | 250.00 | 250.00 | 400.00 | 150.00 |');
    // A closed loop sends when an ack comes back: it has no intended time to be late for.
    const openLoopTable = report.slice(report.indexOf('Open-loop phases'));
    expect(openLoopTable.slice(0, openLoopTable.indexOf('\n\n', openLoopTable.indexOf('|')))).to.not.include(
      'XFChat w1',
    );
  });

  it('puts the two nodes beside X and N in the window table, with their ratio to N', () => {
    const results = newResults(parseOptions([], {}), []);
    const closedLoop = (label: string, scenario: string, acked: number) => {
      results.phases.push({
        label,
        scenario,
        description: 'closed loop',
        socket: socketResult(acked, summarize([10, 20])),
        cpu: {},
        wait: {},
      });
    };
    for (const [w, x, x2, n] of [
      [1, 4000, 3600, 1000],
      [4, 8000, 6000, 1000],
    ] as const) {
      closedLoop(`XFChat w${w}`, 'xfchat', x);
      closedLoop(`XFChat 2 nodes w${w}`, 'twonode', x2);
      closedLoop(`N w${w}`, 'n', n);
    }
    const report = renderMarkdown(results);
    expect(report).to.include('| XFChat | 4000 (4.00 x N) | 8000 (8.00 x N) | 6000 (6.00 x N) |');
    expect(report).to.include('| XFChat 2 nodes | 3600 (3.60 x N) | 6000 (6.00 x N) | 4800 (4.80 x N) |');
    expect(report).to.include('| N | 1000 | 1000 | 1000 |');
  });

  it('gives the times each process was put on a core per acked message, the nodes together, and leaves out what it could not read', () => {
    const results = newResults(parseOptions([], {}), []);
    const phase = (label: string, acked: number, runs: Record<string, number | null>) =>
      pushLoadPhase(results, label, acked, { runs });
    phase('XFChat 2 nodes w1', 1000, { server: 200, server2: 150, postgres: 600, generator: 140 });
    phase('XFChat w1', 2000, { server: 300, postgres: null, generator: 200 });
    // Nothing acked: nothing to divide by.
    phase('XFChat w4', 0, { server: 10, postgres: 10, generator: 10 });
    // A storage baseline's backends close as its window ends: their counts would be short.
    results.phases.push({
      label: 'B1',
      scenario: 'b1',
      description: 'single-row commits',
      storage: {
        kind: 'storage',
        measuredMs: 1000,
        statements: 500,
        rows: 500,
        rowRate: 500,
        commitLatency: summarize([1, 2]),
      },
      cpu: {},
      wait: {},
      runs: { postgres: 700, generator: 300 },
    });
    const report = renderMarkdown(results);
    expect(report).to.include('| XFChat 2 nodes w1 | 0.350 | 0.600 | 0.140 | 1.090 |');
    expect(report).to.include('| XFChat w1 | 0.150 | - | 0.100 | - |');
    const start = report.indexOf('Times each process was put on a core, per acked message');
    expect(start).to.be.above(-1);
    const section = report.slice(start);
    const table = section.slice(0, section.indexOf('\n\n', section.indexOf('|')));
    expect(table).to.not.include('| XFChat w4 |');
    expect(table).to.not.include('| B1 |');
  });

  it("splits PostgreSQL's wake-ups and CPU by what its processes served, per acked message, where the phase has it", () => {
    const results = newResults(parseOptions([], {}), []);
    const kinds = (pool: number, control: number) => ({
      pool: { runs: pool, cpuMs: pool / 2 },
      control: { runs: control, cpuMs: control / 10 },
      adapter: { runs: 100, cpuMs: 5 },
      background: { runs: 5, cpuMs: 0 },
      other: { runs: 0, cpuMs: 0 },
    });
    const phase = (label: string, acked: number, postgresByKind?: ReturnType<typeof kinds>) =>
      pushLoadPhase(results, label, acked, postgresByKind ? { postgresByKind } : {});
    phase('XFChat 2 nodes w1', 1000, kinds(450, 100));
    phase('XFChat w1', 2000, kinds(200, 0));
    // Nothing acked: nothing to divide by. No split: not in the table.
    phase('XFChat w4', 0, kinds(1, 1));
    phase('N w1', 500);
    const report = renderMarkdown(results);
    const start = report.indexOf("PostgreSQL's processes by what they served");
    expect(start).to.be.above(-1);
    const section = report.slice(start);
    const table = section.slice(0, section.indexOf('\n\n', section.indexOf('|')));
    expect(table).to.include("| phase | nodes' pools | control bus | adapter | background | other |");
    expect(table).to.include(
      '| XFChat 2 nodes w1 | 0.450 / 225 | 0.100 / 10 | 0.100 / 5 | 0.005 / 0 | 0.000 / 0 |',
    );
    expect(table).to.include('| XFChat w1 | 0.100 / 50 | 0.000 / 0 | 0.050 / 3 | 0.003 / 0 | 0.000 / 0 |');
    expect(table).to.not.include('| XFChat w4 |');
    expect(table).to.not.include('| N w1 |');
  });

  it("gives the soak's readings round by round, the idle one last, and the heap's trend once every part has connected", () => {
    const reading = (round: number, heapUsedMB: number, liveActors: number | null) => ({
      round,
      users: round === 0 ? 0 : 100,
      acked: round === 0 ? 0 : 5000,
      failed: 0,
      missingDeliveries: 0,
      heapUsedMB,
      rssMB: 150,
      externalMB: 4.5,
      liveActors,
    });
    const results = newResults(parseOptions(['--scenario', 'soak'], {}), []);
    results.soak = {
      population: 2000,
      parts: 20,
      roundSeconds: 5,
      rounds: [reading(0, 21.8, 0), reading(1, 26.9, 50)],
      idleSeconds: 95,
      idle: { ...reading(1, 26.2, null), users: 0, acked: 0 },
      summary: null,
    };
    let report = renderMarkdown(results);
    expect(report).to.include('## Memory under churn');
    expect(report).to.include('| start | 0 | 0 | 0 | 0 | 21.8 | 150.0 | 4.5 | 0 |');
    expect(report).to.include('| 1 | 100 | 5000 | 0 | 0 | 26.9 | 150.0 | 4.5 | 50 |');
    expect(report).to.include('| idle 95 s | 0 | 0 | 0 | 0 | 26.2 | 150.0 | 4.5 | - |');
    expect(report).to.include('Too few rounds for a trend (it starts at round 20');
    results.soak.summary = {
      fromRound: 20,
      heapFromMB: 27,
      heapLastMB: 28.4,
      heapSlopeKBPerRound: 15.3,
      rssFromMB: 155,
      rssLastMB: 156.3,
    };
    report = renderMarkdown(results);
    expect(report).to.include(
      'Live heap from round 20 (every part connected once) to the last: 27.0 -> 28.4 MB, a least-squares slope of 15.3 KB a round; RSS 155.0 -> 156.3 MB.',
    );
  });
});
