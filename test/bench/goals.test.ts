/**
 * The goals of bench/goals.ts against hand-computed values (docs/performance.md, "The goals"): a ratio is compared
 * with its limit unrounded, so one just short of the limit does not meet it though its shown value rounds to it.
 */
import { expect } from 'chai';
import { evaluateGoals, type GoalRecord } from '../../bench/goals.js';
import type { SocketResult, StorageResult } from '../../bench/loadProtocol.js';
import type { PhaseRecord } from '../../bench/report.js';
import { summarize } from '../../bench/stats.js';

function socketPhase(
  label: string,
  acked: number,
  ms: number,
  cpu: Record<string, number | null>,
): PhaseRecord {
  const socket: SocketResult = {
    kind: 'sockets',
    connectMs: 0,
    measuredMs: ms,
    sent: acked,
    acked,
    measuredAcked: acked,
    ackRate: Math.round((acked * 1000) / ms),
    errors: {},
    timeouts: 0,
    ackLatency: summarize([1, 2, 3]),
    delivery: summarize([]),
    deliverySameNode: summarize([]),
    deliveryCrossNode: summarize([]),
    deliveriesExpected: 0,
    deliveriesMissing: 0,
    seqGapFree: true,
    duplicateAcks: 0,
  };
  return { label, scenario: 'x', description: '', socket, cpu };
}

function storagePhase(label: string, rows: number, ms: number, postgres: number): PhaseRecord {
  const storage: StorageResult = {
    kind: 'storage',
    measuredMs: ms,
    statements: rows / 100,
    rows,
    rowRate: Math.round((rows * 1000) / ms),
    commitLatency: summarize([1]),
  };
  return { label, scenario: 'b2', description: '', storage, cpu: { postgres, generator: 10 } };
}

const goal = (goals: GoalRecord[], id: string, measure: string) =>
  goals.find((g) => g.id === id && g.measure.startsWith(measure))!;

describe('bench: goals against hand-computed values', () => {
  it('goal 1 (X / N over the run) is not met when the ratio is below 3, however close', () => {
    // X: 2996 acks in 1 s; N: 1000 acks in 1 s: X / N = 2.996 < 3.
    const goals = evaluateGoals({
      phases: [
        socketPhase('XFChat w1', 2996, 1000, { server: 50, postgres: 50 }),
        socketPhase('N w1', 1000, 1000, { server: 50, postgres: 50 }),
      ],
      windows: [1],
    });
    const overRun = goal(goals, '1', 'X / N over the run');
    expect((overRun.figures.xRate as number) / (overRun.figures.nRate as number)).to.be.below(3);
    expect(overRun.met, `value ${overRun.value}, from ${overRun.from}`).to.equal(false);
  });

  it('goal 4 (PostgreSQL CPU per message / B2 per row) is not met above 3, however close', () => {
    // X: PostgreSQL 60.08 % of a core over 1 s = 600.8 ms for 1000 acks = 0.6008 ms/msg.
    // B2: 100 % over 1 s = 1000 ms for 5000 rows = 0.2 ms/row. Ratio 3.004 > 3.
    const goals = evaluateGoals({
      phases: [
        storagePhase('B2', 5000, 1000, 100),
        socketPhase('XFChat w1', 1000, 1000, { server: 50, postgres: 60.08 }),
      ],
      windows: [1],
    });
    const g4 = goal(goals, '4', 'PostgreSQL CPU');
    expect((g4.figures.xMsPerMessage as number) / (g4.figures.b2MsPerRow as number)).to.be.above(3);
    expect(g4.met, `value ${g4.value}, from ${g4.from}`).to.equal(false);
  });
});
