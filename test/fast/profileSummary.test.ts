import { expect } from 'chai';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { summarizeProfile, summarizeProfiles } from '../../bench/profileSummary.js';

/**
 * A .cpuprofile as node --cpu-prof writes it: (root) > work (in `url`) > writev (native), plus idle, sampled every
 * `stepUs`: `work` samples of work's own code, `native` of writev under it, `idle` idle ones.
 */
function profile(url: string, counts: { work: number; native: number; idle: number }, stepUs = 1000) {
  const nodes = [
    { id: 1, callFrame: { functionName: '(root)', url: '', lineNumber: -1 }, children: [2, 4] },
    { id: 2, callFrame: { functionName: 'work', url, lineNumber: 9 }, children: [3] },
    { id: 3, callFrame: { functionName: 'writev', url: '', lineNumber: -1 } },
    { id: 4, callFrame: { functionName: '(idle)', url: '', lineNumber: -1 } },
  ];
  const samples = [
    ...Array<number>(counts.work).fill(2),
    ...Array<number>(counts.native).fill(3),
    ...Array<number>(counts.idle).fill(4),
  ];
  return { nodes, samples, timeDeltas: samples.map(() => stepUs) };
}

describe('bench CPU profiles (--cpu-prof)', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'xfchat-profiles-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('sums self time per function and charges a native frame to its JavaScript caller', () => {
    const url = `file://${process.cwd()}/lib/messaging/writer.ts`;
    const summary = summarizeProfile(profile(url, { work: 30, native: 10, idle: 60 }));
    expect(summary.busyMs).to.equal(40);
    expect(summary.idleMs).to.equal(60);
    expect(summary.top.map((e) => [e.functionName, e.location, e.selfMs, e.percent])).to.deep.equal([
      ['work', 'lib/messaging/writer.ts:10', 30, 75],
      ['writev', '', 10, 25],
    ]);
    // writev has no URL of its own: it counts for work's folder.
    expect(summary.byPackage).to.deep.equal([{ name: 'lib', selfMs: 40, percent: 100 }]);
  });

  it("summarizes every node's folder by its label, main first, from the largest profile of each", async () => {
    const write = async (label: string, name: string, body: unknown) => {
      await mkdir(path.join(dir, label), { recursive: true });
      await writeFile(path.join(dir, label, name), JSON.stringify(body));
    };
    const url = `file://${process.cwd()}/lib/server.ts`;
    await write('two-nodes-2', 'CPU.1.0.001.cpuprofile', profile(url, { work: 5, native: 0, idle: 1 }));
    await write('main', 'CPU.2.0.001.cpuprofile', profile(url, { work: 200, native: 50, idle: 10 }));
    // The loader thread's profile beside the main thread's: smaller, not the one summarized.
    await write('main', 'CPU.2.1.002.cpuprofile', profile(url, { work: 1, native: 0, idle: 0 }));
    await write('two-nodes-1', 'CPU.3.0.001.cpuprofile', profile(url, { work: 7, native: 3, idle: 2 }));
    // A node killed before it could write its profile leaves an empty folder.
    await mkdir(path.join(dir, 'exhaustion'));

    const profiles = await summarizeProfiles(dir);
    expect(profiles.map((p) => [p.label, p.busyMs, p.idleMs])).to.deep.equal([
      ['main', 250, 10],
      ['two-nodes-1', 10, 2],
      ['two-nodes-2', 5, 1],
    ]);
    expect(profiles[0]?.file).to.equal(
      path.relative(process.cwd(), path.join(dir, 'main', 'CPU.2.0.001.cpuprofile')),
    );
  });
});
