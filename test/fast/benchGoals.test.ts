import { expect } from 'chai';
import { evaluateGoals, type GoalRecord } from '../../bench/goals.js';
import type { SocketResult, StorageResult } from '../../bench/loadProtocol.js';
import type { PhaseRecord } from '../../bench/report.js';

const latency = { count: 1, mean: 1, p50: 1, p95: 1, p99: 1, p999: 1, max: 1 };

/** A closed-loop phase: `acked` messages over `seconds`, with the given CPU % per process. */
function socketPhase(
  label: string,
  acked: number,
  seconds: number,
  cpu: Record<string, number>,
): PhaseRecord {
  const socket: SocketResult = {
    kind: 'sockets',
    connectMs: 0,
    measuredMs: seconds * 1000,
    sent: acked,
    acked,
    measuredAcked: acked,
    ackRate: acked / seconds,
    errors: {},
    timeouts: 0,
    ackLatency: latency,
    delivery: latency,
    deliverySameNode: latency,
    deliveryCrossNode: latency,
    deliveriesExpected: acked,
    deliveriesMissing: 0,
    seqGapFree: true,
    duplicateAcks: 0,
  };
  return { label, scenario: 'test', description: '', socket, cpu };
}

function b2(rows: number, seconds: number, postgresPercent: number): PhaseRecord {
  const storage: StorageResult = {
    kind: 'storage',
    measuredMs: seconds * 1000,
    statements: rows / 100,
    rows,
    rowRate: rows / seconds,
    commitLatency: latency,
  };
  return { label: 'B2', scenario: 'b2', description: '', storage, cpu: { postgres: postgresPercent } };
}

const goal = (goals: GoalRecord[], id: string) => goals.find((g) => g.id === id)!;

describe('bench goals: ratios over the run', () => {
  // X: 3000/s at w1 and 9000/s at w4 over 5 s each: 6000/s over the run.
  const phases = [
    socketPhase('XFChat w1', 15_000, 5, { server: 40, postgres: 50 }),
    socketPhase('XFChat w4', 45_000, 5, { server: 80, postgres: 90 }),
    socketPhase('E0 w1', 100_000, 5, { server: 100 }),
    socketPhase('E0 w4', 140_000, 5, { server: 100 }),
    socketPhase('XFChat 2 nodes w1', 15_000, 5, { server: 30, server2: 30 }),
    socketPhase('XFChat 2 nodes w4', 30_000, 5, { server: 40, server2: 40 }),
    b2(500_000, 5, 150),
  ];

  it('goal 2 compares X and E0 summed over the same windows', () => {
    const g = goal(evaluateGoals({ phases, windows: [1, 4] }), '2');
    // E0 over the run: 240000 / 10 s = 24000/s; B2 100000 rows/s; C = 1 / (1/24000 + 1/100000) = 19355/s.
    expect(g.figures.e0Rate).to.equal(24_000);
    expect(g.figures.c).to.be.closeTo(19_354.84, 0.01);
    expect(g.value).to.equal(0.31);
    expect(g.status).to.equal('not met');
    expect(g.figures.windows).to.equal('1,4');
  });

  it('goal 3 is X2 over the run / X over the run', () => {
    const g = goal(evaluateGoals({ phases, windows: [1, 4] }), '3');
    expect(g.value).to.equal(0.75);
    expect(g.met).to.equal(false);
  });

  it('goal 5 compares server CPU per message over the run', () => {
    const g = goal(evaluateGoals({ phases, windows: [1, 4] }), '5');
    // X: (0.4 + 0.8) x 5000 ms / 60000 = 0.1 ms; E0: 10000 ms / 240000 = 0.0417 ms.
    expect(g.figures.xMsPerMessage).to.equal(0.1);
    expect(g.value).to.equal(2.4);
    expect(g.status).to.equal('met');
  });

  it('uses only the windows both sides ran, and says what is missing', () => {
    const onlyW1 = phases.filter((p) => p.label !== 'E0 w4' && p.label !== 'XFChat 2 nodes w1');
    const goals = evaluateGoals({ phases: onlyW1, windows: [1, 4] });
    expect(goal(goals, '2').figures.windows).to.equal('1');
    expect(goal(goals, '2').figures.xRate).to.equal(3000);
    expect(goal(goals, '3').figures.windows).to.equal('4');
    const none = evaluateGoals({ phases: phases.filter((p) => !p.label.startsWith('E0')), windows: [1, 4] });
    expect(goal(none, '2').status).to.equal('not measured');
    expect(goal(none, '2').from).to.match(/needs XFChat and E0 at a common window/);
  });
});
