/**
 * The performance goals, each a ratio of two phases of the same run (docs/performance.md). A goal whose phases
 * did not run (or whose figures were not available, e.g. PostgreSQL CPU on an external database) is reported as
 * not measured, with what it lacked.
 */
import { serversTotal, type PhaseRecord } from './report.js';

/** One goal as measured in one run. */
export interface GoalRecord {
  /** The goal's number in docs/performance.md (goal 1 has two rows: over the run and at window 1). */
  id: string;
  measure: string;
  /** The condition, e.g. ">= 3". */
  goal: string;
  /** The measured ratio (or, for goal 6, the added latency in ms); null when not measured. */
  value: number | null;
  /** null: not measured. */
  met: boolean | null;
  status: 'met' | 'not met' | 'not measured';
  /** The figures it was computed from, in words; or what was missing. */
  from: string;
  /** The same figures, machine-readable (rates per second, CPU ms, latencies ms). */
  figures: Record<string, number | string | null>;
}

/** The label of a closed-loop window phase: "XFChat w1", "N w4", "XFChat (baseline) w1". */
export const windowLabel = (server: string, window: number): string => `${server} w${window}`;

/** The phase-name prefixes of the window phases. */
export const XFCHAT = 'XFChat';
export const NAIVE = 'N';
export const E0 = 'E0';
/** E0's load on two echo servers (the split control, scenario e0split); no goal reads it. */
export const E0_SPLIT = 'E0 2 processes';
export const TWO_NODES = 'XFChat 2 nodes';
/** The name of the --compare-dir server's window phases, from the folder's name. */
export const compareName = (dir: string): string =>
  `XFChat (${dir.split('/').filter(Boolean).at(-1) ?? dir})`;

/** Messages, measured time and CPU of one or more load phases, summed. */
interface LoadFigures {
  labels: string[];
  messages: number;
  ms: number;
  /** CPU ms of every server process (server, server2, ...), or null if one was not measured. */
  serverCpuMs: number | null;
  postgresCpuMs: number | null;
}

const round = (value: number, digits = 2): number => {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
};

/** CPU ms from a phase's CPU % of one core over its measured window. */
const cpuMs = (percent: number | null | undefined, ms: number): number | null =>
  percent === null || percent === undefined ? null : (percent / 100) * ms;

function figuresOf(phase: PhaseRecord | undefined): LoadFigures | undefined {
  if (!phase) return undefined;
  const ms = phase.socket?.measuredMs ?? phase.storage?.measuredMs ?? 0;
  const messages = phase.socket ? phase.socket.measuredAcked : (phase.storage?.rows ?? 0);
  if (ms <= 0) return undefined;
  return {
    labels: [phase.label],
    messages,
    ms,
    serverCpuMs: cpuMs(serversTotal(phase.cpu), ms),
    postgresCpuMs: cpuMs(phase.cpu.postgres, ms),
  };
}

function sum(parts: readonly LoadFigures[]): LoadFigures | undefined {
  if (parts.length === 0) return undefined;
  const add = (a: number | null, b: number | null) => (a === null || b === null ? null : a + b);
  return parts.reduce((a, b) => ({
    labels: [...a.labels, ...b.labels],
    messages: a.messages + b.messages,
    ms: a.ms + b.ms,
    serverCpuMs: add(a.serverCpuMs, b.serverCpuMs),
    postgresCpuMs: add(a.postgresCpuMs, b.postgresCpuMs),
  }));
}

const rateOf = (f: LoadFigures): number => (f.messages * 1000) / f.ms;
const fmtRate = (f: LoadFigures): string =>
  `${f.messages} msgs in ${round(f.ms / 1000, 1)} s (${f.labels.join(' + ')}) = ${Math.round(rateOf(f))}/s`;
const perMessage = (cpu: number | null, f: LoadFigures): number | null =>
  cpu === null || f.messages === 0 ? null : cpu / f.messages;

const statusOf = (met: boolean | null): GoalRecord['status'] =>
  met === null ? 'not measured' : met ? 'met' : 'not met';

function notMeasured(
  id: string,
  measure: string,
  goal: string,
  missing: readonly string[],
  figures: Record<string, number | string | null> = {},
): GoalRecord {
  return {
    id,
    measure,
    goal,
    value: null,
    met: null,
    status: 'not measured',
    from: `not measured: ${missing.join('; ')}`,
    figures,
  };
}

/**
 * A ratio goal: met when `a / b <op> limit`, compared unrounded (2.996 does not meet ">= 3"); the value shown is
 * a / b rounded to 2 decimals.
 */
function ratioGoal(
  id: string,
  measure: string,
  op: '>=' | '<=',
  limit: number,
  a: number,
  b: number,
  from: string,
  figures: Record<string, number | string | null>,
): GoalRecord {
  const ratio = b > 0 ? a / b : null;
  const met = ratio === null ? null : op === '>=' ? ratio >= limit : ratio <= limit;
  const value = ratio === null ? null : round(ratio);
  return {
    id,
    measure,
    goal: `${op} ${limit}`,
    value,
    met,
    status: statusOf(met),
    from,
    figures: { ...figures, ratio: value },
  };
}

export interface GoalInputs {
  phases: readonly PhaseRecord[];
  /** The windows of the X, N, E0 and X2 closed-loop phases (--windows). */
  windows: readonly number[];
  /** The name of the --compare-dir server's phases, when it ran. */
  compareServer?: string;
}

/** X / N over the windows both ran (goal 1), for X = `server`. */
function xOverN(inputs: GoalInputs, server: string, idSuffix = ''): GoalRecord[] {
  const find = (name: string, w: number) => inputs.phases.find((p) => p.label === windowLabel(name, w));
  const who = server === XFCHAT ? 'X' : server;
  const both = inputs.windows.filter((w) => find(server, w)?.socket && find(NAIVE, w)?.socket);
  const rows: GoalRecord[] = [];
  const overRun = `${who} / N over the run (every window both ran)`;
  if (both.length === 0) {
    rows.push(
      notMeasured(`1${idSuffix}`, overRun, '>= 3', [
        `needs ${server} and N window phases (scenarios xfchat and n)`,
      ]),
    );
  } else {
    const x = sum(both.map((w) => figuresOf(find(server, w))!))!;
    const n = sum(both.map((w) => figuresOf(find(NAIVE, w))!))!;
    rows.push(
      ratioGoal(
        `1${idSuffix}`,
        overRun,
        '>=',
        3,
        rateOf(x),
        rateOf(n),
        `${who}: ${fmtRate(x)}; N: ${fmtRate(n)}`,
        {
          xMessages: x.messages,
          xMs: x.ms,
          xRate: round(rateOf(x)),
          nMessages: n.messages,
          nMs: n.ms,
          nRate: round(rateOf(n)),
          windows: both.join(','),
        },
      ),
    );
  }
  const atOne = `${who} / N at window 1`;
  const x1 = figuresOf(find(server, 1));
  const n1 = figuresOf(find(NAIVE, 1));
  if (!x1 || !n1) {
    rows.push(
      notMeasured(`1${idSuffix}`, atOne, '>= 2', [
        `needs ${windowLabel(server, 1)} and ${windowLabel(NAIVE, 1)} (1 in --windows, scenarios xfchat and n)`,
      ]),
    );
  } else {
    rows.push(
      ratioGoal(
        `1${idSuffix}`,
        atOne,
        '>=',
        2,
        rateOf(x1),
        rateOf(n1),
        `${who}: ${fmtRate(x1)}; N: ${fmtRate(n1)}`,
        { xRate: round(rateOf(x1)), nRate: round(rateOf(n1)) },
      ),
    );
  }
  return rows;
}

/**
 * Two servers' figures summed over the windows at which both ran ("over the run"), for a ratio of the two; the
 * windows missing from either are named in `missing`.
 */
function overTheRun(
  inputs: GoalInputs,
  a: string,
  b: string,
): { a: LoadFigures; b: LoadFigures; windows: number[] } | { missing: string } {
  const find = (name: string, w: number) =>
    figuresOf(inputs.phases.find((p) => p.label === windowLabel(name, w)));
  const windows = inputs.windows.filter((w) => find(a, w) && find(b, w));
  if (windows.length === 0)
    return { missing: `needs ${a} and ${b} at a common window (--windows ${inputs.windows.join(',')})` };
  return {
    a: sum(windows.map((w) => find(a, w)!))!,
    b: sum(windows.map((w) => find(b, w)!))!,
    windows,
  };
}

/** Evaluates every goal from the phases that ran. */
export function evaluateGoals(inputs: GoalInputs): GoalRecord[] {
  const byLabel = (label: string) => inputs.phases.find((p) => p.label === label);
  const b2 = figuresOf(byLabel('B2'));
  const goals: GoalRecord[] = [...xOverN(inputs, XFCHAT)];

  // 2: X / C over the run, C = 1 / (1/E0 + 1/B2): the transport and the storage ceilings in series.
  {
    const measure = 'X / C over the run, C = 1 / (1/E0 + 1/B2), E0 at the same windows';
    const run = overTheRun(inputs, XFCHAT, E0);
    if ('missing' in run || !b2 || rateOf(run.b) === 0 || rateOf(b2) === 0) {
      goals.push(
        notMeasured('2', measure, '>= 0.5', [
          ...('missing' in run ? [`${run.missing} (scenarios xfchat and e0)`] : []),
          ...(b2 ? [] : ['needs B2 (scenario b2)']),
          ...('missing' in run || !b2 ? [] : ['E0 or B2 measured nothing']),
        ]),
      );
    } else {
      const c = 1 / (1 / rateOf(run.b) + 1 / rateOf(b2));
      goals.push(
        ratioGoal(
          '2',
          measure,
          '>=',
          0.5,
          rateOf(run.a),
          c,
          `X: ${fmtRate(run.a)}; E0: ${fmtRate(run.b)}; C = 1 / (1/${Math.round(rateOf(run.b))} + 1/${Math.round(rateOf(b2))}) = ${Math.round(c)}/s (B2 rows/s)`,
          {
            xRate: round(rateOf(run.a)),
            e0Rate: round(rateOf(run.b)),
            b2RowRate: round(rateOf(b2)),
            c: round(c),
            windows: run.windows.join(','),
          },
        ),
      );
    }
  }

  // 3: X2 / X over the same windows.
  {
    const measure = 'X2 / X over the run, every conversation across the 2 nodes';
    const run = overTheRun(inputs, TWO_NODES, XFCHAT);
    if ('missing' in run) {
      goals.push(notMeasured('3', measure, '>= 0.9', [`${run.missing} (scenarios twonode and xfchat)`]));
    } else {
      goals.push(
        ratioGoal(
          '3',
          measure,
          '>=',
          0.9,
          rateOf(run.a),
          rateOf(run.b),
          `X2: ${fmtRate(run.a)}; X: ${fmtRate(run.b)}`,
          { x2Rate: round(rateOf(run.a)), xRate: round(rateOf(run.b)), windows: run.windows.join(',') },
        ),
      );
    }
  }

  // 4: PostgreSQL CPU per message over every X window phase, against B2's per row.
  {
    const measure = 'PostgreSQL CPU per message: X (over the run) / B2 per row';
    const xPhases = inputs.windows
      .map((win) => figuresOf(byLabel(windowLabel(XFCHAT, win))))
      .filter((f): f is LoadFigures => f !== undefined);
    const x = sum(xPhases);
    const xPer = x ? perMessage(x.postgresCpuMs, x) : null;
    const b2Per = b2 ? perMessage(b2.postgresCpuMs, b2) : null;
    if (!x || !b2 || xPer === null || b2Per === null || b2Per === 0) {
      goals.push(
        notMeasured('4', measure, '<= 3', [
          ...(x ? [] : ['needs the XFChat window phases (scenario xfchat)']),
          ...(b2 ? [] : ['needs B2 (scenario b2)']),
          ...(x && b2 && (xPer === null || b2Per === null)
            ? ['no PostgreSQL CPU (an external database, BENCH_DATABASE_URL)']
            : []),
        ]),
      );
    } else {
      goals.push(
        ratioGoal(
          '4',
          measure,
          '<=',
          3,
          xPer,
          b2Per,
          `X ${round(xPer, 4)} ms/msg (${Math.round(x.postgresCpuMs!)} ms / ${x.messages} msgs, ${x.labels.join(' + ')}); B2 ${round(b2Per, 4)} ms/row (${Math.round(b2.postgresCpuMs!)} ms / ${b2.messages} rows)`,
          {
            xPostgresCpuMs: round(x.postgresCpuMs!),
            xMessages: x.messages,
            xMsPerMessage: round(xPer, 4),
            b2PostgresCpuMs: round(b2.postgresCpuMs!),
            b2Rows: b2.messages,
            b2MsPerRow: round(b2Per, 4),
          },
        ),
      );
    }
  }

  // 5: the server process's CPU per message, X against E0 over the same windows.
  {
    const measure = 'server CPU per message over the run: X / E0';
    const run = overTheRun(inputs, XFCHAT, E0);
    const xPer = 'missing' in run ? null : perMessage(run.a.serverCpuMs, run.a);
    const e0Per = 'missing' in run ? null : perMessage(run.b.serverCpuMs, run.b);
    if ('missing' in run || xPer === null || e0Per === null || e0Per === 0) {
      goals.push(
        notMeasured('5', measure, '<= 2.5', [
          'missing' in run ? `${run.missing} (scenarios xfchat and e0)` : 'a server process CPU was not read',
        ]),
      );
    } else {
      goals.push(
        ratioGoal(
          '5',
          measure,
          '<=',
          2.5,
          xPer,
          e0Per,
          `X ${round(xPer, 4)} ms/msg (${Math.round(run.a.serverCpuMs!)} ms / ${run.a.messages}); E0 ${round(e0Per, 4)} ms/msg (${Math.round(run.b.serverCpuMs!)} ms / ${run.b.messages})`,
          {
            xServerCpuMs: round(run.a.serverCpuMs!),
            xMessages: run.a.messages,
            xMsPerMessage: round(xPer, 4),
            e0ServerCpuMs: round(run.b.serverCpuMs!),
            e0Messages: run.b.messages,
            e0MsPerMessage: round(e0Per, 4),
            windows: run.windows.join(','),
          },
        ),
      );
    }
  }

  // 6: what XFChat adds to the transport at light load, against one durable commit plus 1 ms.
  {
    const measure = 'light load (20/s): X ack p50 - E0 ack p50 (ms)';
    const lightX = byLabel('XFChat light')?.socket;
    const lightE0 = byLabel('E0 light')?.socket;
    const lightB1 = byLabel('B1 light')?.storage;
    if (!lightX || !lightE0 || !lightB1) {
      goals.push(
        notMeasured('6', measure, '<= B1-light p50 + 1 ms', [
          'needs XFChat light, E0 light, B1 light (scenario light)',
        ]),
      );
    } else {
      const added = round(lightX.ackLatency.p50 - lightE0.ackLatency.p50);
      const limit = round(lightB1.commitLatency.p50 + 1);
      const met = Number.isFinite(added) && Number.isFinite(limit) ? added <= limit : null;
      goals.push({
        id: '6',
        measure,
        goal: `<= B1-light p50 + 1 ms = ${limit} ms`,
        value: Number.isFinite(added) ? added : null,
        met,
        status: statusOf(met),
        from: `X ${lightX.ackLatency.p50} - E0 ${lightE0.ackLatency.p50} ms; B1 light p50 ${lightB1.commitLatency.p50} ms`,
        figures: {
          xP50: lightX.ackLatency.p50,
          e0P50: lightE0.ackLatency.p50,
          b1LightP50: lightB1.commitLatency.p50,
          addedMs: added,
          limitMs: limit,
        },
      });
    }
  }

  // 7: p99 at half of X's peak against B1's p99 commit.
  {
    const measure = "p99 ack at half of X's peak / B1 p99 commit";
    const half = byLabel('XFChat half-peak');
    const b1 = byLabel('B1')?.storage;
    if (!half?.socket || !b1) {
      goals.push(
        notMeasured('7', measure, '<= 4', [
          ...(half?.socket ? [] : ['needs XFChat half-peak (scenario halfpeak)']),
          ...(b1 ? [] : ['needs B1 (scenario b1)']),
        ]),
      );
    } else {
      goals.push(
        ratioGoal(
          '7',
          measure,
          '<=',
          4,
          half.socket.ackLatency.p99,
          b1.commitLatency.p99,
          `${half.socket.ackLatency.p99} ms at ${half.socket.ackRate}/s vs ${b1.commitLatency.p99} ms`,
          {
            halfPeakRate: half.socket.ackRate,
            halfPeakP99: half.socket.ackLatency.p99,
            b1P99: b1.commitLatency.p99,
          },
        ),
      );
    }
  }

  if (inputs.compareServer) goals.push(...xOverN(inputs, inputs.compareServer, ' (compare)'));
  return goals;
}

/** X's peak: the highest closed-loop rate among the XFChat window phases, with its label. */
export function xfchatPeak(phases: readonly PhaseRecord[]): { rate: number; label: string } | undefined {
  let best: { rate: number; label: string } | undefined;
  for (const phase of phases) {
    if (phase.scenario !== 'xfchat' || !phase.socket) continue;
    if (!best || phase.socket.ackRate > best.rate) best = { rate: phase.socket.ackRate, label: phase.label };
  }
  return best;
}
