import { readdirSync, readFileSync } from 'node:fs';

/**
 * CPU time of processes from /proc (Linux only): utime + stime, in milliseconds. The bench measures the server,
 * PostgreSQL and the load generator as separate processes, so each one's share of the 2 cores is visible.
 *
 * The reads happen at the two edges of a measured window, while the load runs, on the same cores: they are
 * synchronous and touch only the processes measured (a tree through /proc/<pid>/task/<tid>/children), about
 * 0.3 ms. Reading every process's stat asynchronously took 8-12 ms of the bench process's CPU on an idle machine
 * and 15-50 ms under load, right at the start of each measured window.
 */

/** USER_HZ: the unit of the /proc/<pid>/stat times. 100 on every mainstream Linux build. */
const CLOCK_TICKS_PER_SECOND = 100;

interface ProcStat {
  pid: number;
  ppid: number;
  /** utime + stime of the process itself, ms. */
  ownMs: number;
  /** cutime + cstime: children that exited and were waited for, ms. */
  reapedChildrenMs: number;
}

function readStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    // The process has exited between listing and reading: it simply is no longer counted.
    return undefined;
  }
  // The command name may contain spaces and parentheses: the fields start after the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state) of proc(5); utime is field 14, so index 11.
  const num = (index: number) => Number(fields[index] ?? 0);
  const toMs = (ticks: number) => (ticks * 1000) / CLOCK_TICKS_PER_SECOND;
  return {
    pid,
    ppid: num(1),
    ownMs: toMs(num(11) + num(12)),
    reapedChildrenMs: toMs(num(13) + num(14)),
  };
}

/** CPU ms of one process (its own threads only). Undefined if it is gone. */
export function processCpuMs(pid: number): number | undefined {
  return readStat(pid)?.ownMs;
}

/**
 * CPU ms of a process tree such as PostgreSQL's: the postmaster, its live children (backends, walwriter,
 * checkpointer, ...) and the children that already exited (the postmaster's cutime/cstime), so a backend that
 * disconnects mid-run is still counted.
 */
export function processTreeCpuMs(rootPid: number): number | undefined {
  return readTree(rootPid)?.cpuMs;
}

/** One reading of a process, or of a tree: its CPU ms, and the times each process was put on a core, by pid. */
interface Sample {
  cpuMs: number;
  runs: Map<number, number>;
  /** A tree's every live process's own CPU ms, by pid (the root's included). */
  ownMs?: Map<number, number>;
}

/** A tree's CPU (processTreeCpuMs) and every live process's runs (readSchedstat), in one walk of the tree. */
function readTree(rootPid: number): Sample | undefined {
  // A child reaped between reading the root and reading the children would be in neither: retry until the
  // root's reaped-children time is the same before and after the scan (a zombie still shows in /proc).
  for (let attempt = 0; ; attempt++) {
    const before = readStat(rootPid);
    if (!before) return undefined;
    let descendantsMs = 0;
    const runs = new Map<number, number>();
    const ownMs = new Map<number, number>([[rootPid, before.ownMs]]);
    for (const pid of [rootPid, ...descendantsOf(rootPid)]) {
      if (pid !== rootPid) {
        const own = readStat(pid)?.ownMs;
        if (own !== undefined) ownMs.set(pid, own);
        descendantsMs += own ?? 0;
      }
      const count = readSchedstat(pid)?.runs;
      if (count !== undefined) runs.set(pid, count);
    }
    const after = readStat(rootPid);
    if (!after) return undefined;
    if (after.reapedChildrenMs === before.reapedChildrenMs || attempt >= 10) {
      return { cpuMs: after.ownMs + after.reapedChildrenMs + descendantsMs, runs, ownMs };
    }
  }
}

/**
 * The children of `pid` from /proc/<pid>/task/<tid>/children, or undefined where the kernel does not offer those
 * files (or the process ended while they were read). A child forked during the read may be missed; it has spent
 * next to no CPU yet.
 */
function childrenFromFiles(pid: number): number[] | undefined {
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  const children: number[] = [];
  let read = false;
  for (const task of tasks) {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8');
    } catch {
      // Without CONFIG_PROC_CHILDREN there is no such file; a thread that just ended has none either.
      continue;
    }
    read = true;
    for (const child of text.split(' ')) if (child.trim() !== '') children.push(Number(child));
  }
  return read ? children : undefined;
}

/**
 * How to list the children of the processes under `rootPid`: the kernel's children files, or, without them, one
 * scan of every process's stat, grouped by parent (the slow way).
 */
function childLister(rootPid: number): (pid: number) => number[] {
  if (childrenFromFiles(rootPid) !== undefined) return (pid) => childrenFromFiles(pid) ?? [];
  const byParent = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readStat(Number(entry));
    if (stat) byParent.set(stat.ppid, [...(byParent.get(stat.ppid) ?? []), stat.pid]);
  }
  return (pid) => byParent.get(pid) ?? [];
}

/** Every live process under `rootPid` (not the root itself). */
function descendantsOf(rootPid: number): number[] {
  const childrenOf = childLister(rootPid);
  const found: number[] = [];
  const queue = [...childrenOf(rootPid)];
  for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
    found.push(next);
    queue.push(...childrenOf(next));
  }
  return found;
}

/**
 * The main thread's /proc/<pid>/schedstat: nanoseconds runnable but waiting for a core (a busy machine's
 * scheduling delay, which a Node.js process pays on its event loop), and how many times it was put on a core (each
 * wake-up, and each return after being preempted). Undefined if the process is gone or the kernel keeps no
 * schedstat.
 */
function readSchedstat(pid: number): { waitNs: number; runs: number } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/schedstat`, 'utf8');
  } catch {
    return undefined;
  }
  const [, waited, runs] = text.trim().split(' ').map(Number);
  return Number.isFinite(waited) && Number.isFinite(runs)
    ? { waitNs: waited ?? 0, runs: runs ?? 0 }
    : undefined;
}

/**
 * Runs between two readings of the same processes: each process's own difference (one started meanwhile counts
 * from 0, one that ended meanwhile is left out), or null if either reading failed.
 */
export function runsBetween(
  start: ReadonlyMap<number, number> | undefined,
  end: ReadonlyMap<number, number> | undefined,
): number | null {
  if (start === undefined || end === undefined) return null;
  let total = 0;
  for (const [pid, runs] of end) total += runs - (start.get(pid) ?? 0);
  return total;
}

/** One process of a tree over a meter's interval: its own CPU ms and the times it was put on a core. */
export interface TreeProcessReading {
  pid: number;
  cpuMs: number;
  runs: number;
}

/**
 * A tree's processes over an interval, each from its own two readings: one started meanwhile counts from 0, one
 * that ended meanwhile is left out (its CPU is still in the tree's total, through the root's reaped children).
 */
export function treeProcessesBetween(start: Partial<Sample>, end: Partial<Sample>): TreeProcessReading[] {
  if (!end.runs || !end.ownMs) return [];
  const pids = new Set([...end.runs.keys(), ...end.ownMs.keys()]);
  return [...pids].map((pid) => ({
    pid,
    cpuMs: (end.ownMs?.get(pid) ?? 0) - (start.ownMs?.get(pid) ?? 0),
    runs: (end.runs?.get(pid) ?? 0) - (start.runs?.get(pid) ?? 0),
  }));
}

/** What a meter measured over its interval, per process name. */
export interface MeterReading {
  /** Percent of one core; null for processes that vanished. */
  cpu: Record<string, number | null>;
  /**
   * Percent of the interval the main thread waited for a core (single processes only, not trees); null where it
   * could not be read.
   */
  wait: Record<string, number | null>;
  /**
   * Times each process was put on a core over the interval: its main thread, or a tree's every process (each
   * wake-up, and each return after being preempted; /proc/<pid>/schedstat); null where it could not be read.
   */
  runs: Record<string, number | null>;
  /** Each process of a tree (PostgreSQL's), by the tree's name: its own CPU and runs over the interval. */
  trees: Record<string, TreeProcessReading[]>;
}

/** A CPU meter over a set of named processes: start(), then stop() gives each one's CPU % of one core. */
export interface CpuMeter {
  start(): Promise<void>;
  /** Over the interval since start(). */
  stop(): Promise<MeterReading>;
}

export interface MeteredProcess {
  name: string;
  pid: number;
  /** Count the whole process tree (PostgreSQL) rather than the process alone. */
  tree?: boolean;
}

/** Builds a meter over `processes`; nothing is read until start(). */
export function createCpuMeter(processes: readonly MeteredProcess[]): CpuMeter {
  /**
   * Everything the meter reads of a process, in one pass: its CPU, its main thread's wait (not for a tree), and
   * its runs (a tree's every process's). Each part undefined where it could not be read.
   */
  const read = (p: MeteredProcess): Partial<Sample> & { waitNs?: number } => {
    if (p.tree) return readTree(p.pid) ?? {};
    const sched = readSchedstat(p.pid);
    return {
      cpuMs: processCpuMs(p.pid),
      waitNs: sched?.waitNs,
      runs: sched && new Map([[p.pid, sched.runs]]),
    };
  };
  let startedAt = 0;
  let before: Array<ReturnType<typeof read>> = [];
  /** `(after - before) / elapsed` in percent with one decimal, or null. */
  const percent = (after: number | undefined, start: number | undefined, elapsed: number): number | null =>
    after === undefined || start === undefined || elapsed <= 0
      ? null
      : Math.round(((after - start) / elapsed) * 1000) / 10;
  return {
    start() {
      before = processes.map(read);
      startedAt = performance.now();
      return Promise.resolve();
    },
    stop() {
      const after = processes.map(read);
      const elapsedMs = performance.now() - startedAt;
      const cpu: Record<string, number | null> = {};
      const wait: Record<string, number | null> = {};
      const runs: Record<string, number | null> = {};
      const trees: Record<string, TreeProcessReading[]> = {};
      processes.forEach((p, i) => {
        const [start, end] = [before[i], after[i]];
        cpu[p.name] = percent(end?.cpuMs, start?.cpuMs, elapsedMs);
        if (!p.tree) wait[p.name] = percent(end?.waitNs, start?.waitNs, elapsedMs * 1e6);
        else trees[p.name] = treeProcessesBetween(start ?? {}, end ?? {});
        runs[p.name] = runsBetween(start?.runs, end?.runs);
      });
      return Promise.resolve({ cpu, wait, runs, trees });
    },
  };
}
