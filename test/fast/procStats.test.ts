import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import {
  createCpuMeter,
  processCpuMs,
  processTreeCpuMs,
  runsBetween,
  treeProcessesBetween,
} from '../../bench/procStats.js';

/** A child that spends `busyMs` of CPU (its own clock, not the wall's), says so on stdout, then idles until killed. */
async function busyChild(busyMs: number): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    [
      '-e',
      `const used = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
       while (used() < ${busyMs}); console.log('done'); setInterval(() => {}, 1000);`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await once(child.stdout, 'data');
  return child;
}

describe('bench CPU readings (/proc)', function () {
  this.timeout(10_000);

  before(function () {
    // The bench reads CPU from Linux's /proc; elsewhere there is nothing to read.
    if (!existsSync('/proc/self/stat')) this.skip();
  });

  it("counts a child's CPU in its parent's tree, while it runs and after it was reaped", async () => {
    const child = await busyChild(300);
    const childMs = processCpuMs(child.pid!)!;
    // /proc counts in ticks of 10 ms.
    expect(childMs).to.be.at.least(290);
    const own = processCpuMs(process.pid)!;
    const running = processTreeCpuMs(process.pid)!;
    expect(running - own).to.be.at.least(childMs);

    child.kill('SIGKILL');
    await once(child, 'exit');
    // Reaped: it is gone from /proc, and its time moved to this process's cutime.
    expect(processCpuMs(child.pid!)).to.equal(undefined);
    // This process's own time read first, as above: read after the tree, it could have passed another 10 ms tick.
    const ownNow = processCpuMs(process.pid)!;
    const reaped = processTreeCpuMs(process.pid)!;
    expect(reaped - ownNow).to.be.at.least(childMs);
  });

  it('meters a named process over an interval as percent of one core, and a vanished one as null', async () => {
    const child = await busyChild(0);
    const meter = createCpuMeter([
      { name: 'self', pid: process.pid },
      { name: 'gone', pid: child.pid! },
    ]);
    // /proc counts utime and stime in ticks of 10 ms, each rounded down: a reading of the interval can be up to 20 ms
    // short or long. Over 1000 ms of CPU that is 2 points of the percent (over 200 ms, as this test once was, it was
    // 10, and a loaded CI run read 101.8 against 112.8).
    const cpuBefore = process.cpuUsage();
    const startedAt = performance.now();
    await meter.start();
    child.kill('SIGKILL'); // gone by the end of the interval
    await once(child, 'exit');
    const spentMs = () => {
      const used = process.cpuUsage(cpuBefore);
      return (used.user + used.system) / 1000;
    };
    while (spentMs() < 1000); // this process busy for 1000 ms of its own CPU, however loaded the machine is
    const { cpu, wait, runs } = await meter.stop();
    const expected = (spentMs() / (performance.now() - startedAt)) * 100;
    expect(cpu.self).to.be.closeTo(expected, 10);
    expect(cpu.gone).to.equal(null);
    expect(wait.self).to.be.within(0, 100);
    expect(wait.gone).to.equal(null);
    expect(runs.gone).to.equal(null);
  });

  it('reads how long main threads waited for a core: one more busy process than cores makes them wait', async () => {
    // Each child spins from the moment it says so until it is killed.
    const spinners = await Promise.all(
      Array.from({ length: availableParallelism() + 1 }, async () => {
        const child = spawn(process.execPath, ['-e', "console.log('spinning'); for (;;);"], {
          stdio: ['ignore', 'pipe', 'inherit'],
        });
        await once(child.stdout, 'data');
        return child;
      }),
    );
    try {
      const meter = createCpuMeter([
        ...spinners.map((child, i) => ({ name: `spinner${i}`, pid: child.pid! })),
        { name: 'tree', pid: process.pid, tree: true },
      ]);
      await meter.start();
      await new Promise((resolve) => setTimeout(resolve, 600));
      const { wait } = await meter.stop();
      const waits = spinners.map((_, i) => wait[`spinner${i}`]!);
      // N + 1 spinners on N cores: together they wait about one spinner's time; the scheduler shares it out.
      const total = waits.reduce((a, b) => a + b, 0);
      expect(total).to.be.above(50);
      // Percents of the interval, not nanoseconds or ms: about a third each here. Not capped at 100: the kernel adds
      // a wait to schedstat when it ends, so a wait begun before start() counts whole, and on a loaded machine (more
      // runnable processes than these) a spinner's waits came to 104-116% of the 600 ms.
      for (const each of waits) expect(each).to.be.within(0, 200);
      // Not read for a process tree.
      expect(wait).not.to.have.property('tree');
    } finally {
      for (const child of spinners) child.kill('SIGKILL');
    }
  });

  it("counts the times a process was put on a core: each wake-up of a sleeping one, and in a tree its children's", async () => {
    // Once told to (a line on stdin), sleeps between 40 timer ticks, so it is woken at least 40 times, then says
    // so and idles.
    const child = spawn(
      process.execPath,
      [
        '-e',
        `console.log('ready');
         process.stdin.once('data', () => {
           let ticks = 0;
           const timer = setInterval(() => { if (++ticks === 40) { clearInterval(timer); console.log('done'); } }, 3);
         });
         setInterval(() => {}, 1000);`,
      ],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    );
    try {
      await once(child.stdout, 'data');
      const meter = createCpuMeter([
        { name: 'child', pid: child.pid! },
        { name: 'tree', pid: process.pid, tree: true },
      ]);
      const output: string[] = [];
      child.stdout.on('data', (chunk: Buffer) => output.push(chunk.toString()));
      await meter.start();
      child.stdin.write('go\n');
      while (!output.join('').includes('done')) await new Promise((resolve) => setTimeout(resolve, 10));
      const { runs, trees } = await meter.stop();
      expect(runs.child).to.be.at.least(40);
      expect(runs.tree).to.be.at.least(runs.child!);
      // The tree's processes one by one: the child among them, with its own runs.
      const inTree = trees.tree?.find((p) => p.pid === child.pid);
      expect(inTree?.runs).to.be.at.least(40);
      expect(inTree?.cpuMs).to.be.at.least(0);
      expect(trees).not.to.have.property('child');
    } finally {
      child.kill('SIGKILL');
    }
  });

  it("gives a tree's processes one by one between two readings: one started meanwhile from 0, one that ended not at all", () => {
    const start = {
      runs: new Map([
        [1, 100],
        [2, 50],
      ]),
      ownMs: new Map([
        [1, 1000],
        [2, 40],
      ]),
    };
    const end = {
      runs: new Map([
        [1, 130],
        [3, 7],
      ]),
      ownMs: new Map([
        [1, 1250],
        [3, 20],
      ]),
    };
    expect(treeProcessesBetween(start, end)).to.deep.equal([
      { pid: 1, runs: 30, cpuMs: 250 },
      { pid: 3, runs: 7, cpuMs: 20 },
    ]);
    // Without a reading at the end there is nothing to give.
    expect(treeProcessesBetween(start, {})).to.deep.equal([]);
  });

  it('counts runs between two readings process by process: one started meanwhile from 0, one that ended not at all', () => {
    const start = new Map([
      [1, 100],
      [2, 50],
    ]);
    const end = new Map([
      [1, 130],
      [3, 7],
    ]);
    expect(runsBetween(start, end)).to.equal(37);
    expect(runsBetween(undefined, end)).to.equal(null);
    expect(runsBetween(start, undefined)).to.equal(null);
  });
});
