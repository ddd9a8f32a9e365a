import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { createCpuMeter, processCpuMs, processTreeCpuMs } from '../../bench/procStats.js';

/** A child that spends `busyMs` of CPU, then says so on stdout and waits until it is killed. */
async function busyChild(busyMs: number): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    [
      '-e',
      `const end = Date.now() + ${busyMs}; while (Date.now() < end); console.log('done'); setInterval(() => {}, 1000);`,
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
    expect(childMs).to.be.at.least(200);
    const own = processCpuMs(process.pid)!;
    const running = processTreeCpuMs(process.pid)!;
    expect(running - own).to.be.at.least(childMs);

    child.kill('SIGKILL');
    await once(child, 'exit');
    // Reaped: it is gone from /proc, and its time moved to this process's cutime.
    expect(processCpuMs(child.pid!)).to.equal(undefined);
    const reaped = processTreeCpuMs(process.pid)!;
    expect(reaped - processCpuMs(process.pid)!).to.be.at.least(childMs);
  });

  it('meters a named process over an interval as percent of one core, and a vanished one as null', async () => {
    const child = await busyChild(0);
    const meter = createCpuMeter([
      { name: 'self', pid: process.pid },
      { name: 'gone', pid: child.pid! },
    ]);
    await meter.start();
    const end = Date.now() + 200;
    while (Date.now() < end); // this process busy for 200 ms
    child.kill('SIGKILL');
    await once(child, 'exit');
    const cpu = await meter.stop();
    expect(cpu.self).to.be.within(50, 110);
    expect(cpu.gone).to.equal(null);
  });
});
