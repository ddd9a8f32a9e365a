import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PROJECT_ROOT } from '../../bench/nodes.js';
import type { SoakRound } from '../../bench/report.js';
import { partOf, probeMemory, summarizeSoak } from '../../bench/scenarios/soak.js';
import type { Seeded } from '../../bench/seed.js';

/** `count` users in conversations of two, as seedConversations makes them: members consecutive. */
function seededPairs(count: number): Seeded {
  return {
    users: Array.from({ length: count }, (_, i) => ({ id: `u${i}`, token: `t${i}` })),
    conversations: Array.from({ length: count / 2 }, (_, i) => ({
      id: `c${i}`,
      members: [2 * i, 2 * i + 1],
    })),
  };
}

const round = (n: number, heapUsedMB: number, rssMB = 100): SoakRound => ({
  round: n,
  users: n === 0 ? 0 : 10,
  acked: 0,
  failed: 0,
  missingDeliveries: 0,
  heapUsedMB,
  rssMB,
  externalMB: 1,
  liveActors: null,
});

describe('bench soak scenario', () => {
  it('takes one part of the users at a time, with their conversations re-indexed to the part', () => {
    const seeded = seededPairs(8);
    expect(partOf(seeded, 1, 2)).to.deep.equal({
      users: seeded.users.slice(4),
      conversations: [
        { id: 'c2', members: [0, 1] },
        { id: 'c3', members: [2, 3] },
      ],
    });
    expect(partOf(seeded, 0, 4).conversations).to.deep.equal([{ id: 'c0', members: [0, 1] }]);
    expect(() => partOf(seeded, 0, 3)).to.throw('8 users do not split into 3 parts');
  });

  it('measures the heap growth from the round in which the last part first connected', () => {
    // Warm-up growth before round 4, then 0.25 MB a round.
    const rounds = [round(0, 20), round(1, 40), round(2, 45), round(3, 48)];
    for (let n = 4; n <= 9; n++) rounds.push(round(n, 50 + 0.25 * (n - 4), 120 + n));
    expect(summarizeSoak(rounds, 4)).to.deep.equal({
      fromRound: 4,
      heapFromMB: 50,
      heapLastMB: 51.25,
      heapSlopeKBPerRound: 256,
      rssFromMB: 124,
      rssLastMB: 129,
    });
    // A flat heap after the warm-up: no growth, whatever came before.
    expect(
      summarizeSoak([round(0, 10), round(1, 30), round(2, 30), round(3, 30)], 1)?.heapSlopeKBPerRound,
    ).to.equal(0);
  });

  it('gives no trend before two rounds after the last part first connected', () => {
    expect(summarizeSoak([round(0, 20), round(1, 40), round(2, 45)], 2)).to.equal(null);
    expect(summarizeSoak([round(0, 20), round(1, 40)], 2)).to.equal(null);
  });

  it("reads a node's memory after a full collection through the probe, and the probe refuses to load without --expose-gc", async function () {
    this.timeout(20_000);
    const file = path.join(os.tmpdir(), `xfchat-probe-test-${randomBytes(6).toString('hex')}.json`);
    const probe = path.join(PROJECT_ROOT, 'bench', 'memoryProbe.ts');
    // The -e script runs after the preloaded probe: its "ready" means the probe listens for SIGUSR2.
    const script =
      'globalThis.kept = Buffer.alloc(1); setInterval(() => {}, 1000); process.stdout.write("ready\\n");';
    const start = (flags: string[]) =>
      spawn(process.execPath, [...flags, '--import', 'tsx', '--import', probe, '-e', script], {
        cwd: PROJECT_ROOT,
        env: { ...process.env, XFCHAT_BENCH_MEMORY_FILE: file },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
    const child = start(['--expose-gc']);
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (chunk: Buffer) => {
          if (chunk.toString('utf8').includes('ready')) resolve();
        });
        child.once('exit', (code) => reject(new Error(`the probed child exited (${code})`)));
      });
      const before = Date.now();
      const reading = await probeMemory(child.pid!, file);
      expect(reading.at).to.be.at.least(before);
      expect(reading.heapUsed).to.be.above(1024 * 1024);
      expect(reading.rss).to.be.above(reading.heapUsed);
      const again = await probeMemory(child.pid!, file);
      expect(again.at).to.be.at.least(reading.at);
    } finally {
      child.kill('SIGKILL');
      await rm(file, { force: true });
    }

    const refused = start([]);
    let stderr = '';
    refused.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    const code = await new Promise<number | null>((resolve) => refused.once('exit', resolve));
    expect(code).to.not.equal(0);
    expect(stderr).to.include('bench/memoryProbe.ts needs node --expose-gc');
  });
});
