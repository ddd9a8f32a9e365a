/**
 * docs/performance.md, "How to reproduce": the two-node scenario alternates with X and N in the window phases
 * (X1 N1 X2-1 | X2-4 N4 X4); entering X2 stops X's node, entering X stops the two nodes and starts X's node again.
 * So X runs each window on a freshly started node, and X2 runs both on the same two nodes: four XFChat nodes over
 * the window phases. Each warns at startup that autovacuum is off, and the report's notes list each node's warning.
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { BenchResults } from '../../bench/report.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');

describe('bench: the nodes of X and X2 as they alternate', function () {
  this.timeout(120_000);
  let resultsDir: string;

  before(async () => {
    resultsDir = await mkdtemp(path.join(os.tmpdir(), 'bench-test-fresh-'));
  });
  after(() => rmSync(resultsDir, { recursive: true, force: true }));

  it('runs each X window on a node of its own and both X2 windows on the same two nodes', async () => {
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        'bench/run.ts',
        '--scenario',
        'xfchat,twonode',
        '--windows',
        '1,4',
        '--duration',
        '1',
        '--warmup',
        '0',
        '--users',
        '10',
        '--results',
        resultsDir,
      ],
      { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(code, stderr).to.equal(0);
    const file = readdirSync(resultsDir).find((f) => f.endsWith('.json'))!;
    const results = JSON.parse(readFileSync(path.join(resultsDir, file), 'utf8')) as BenchResults;
    expect(results.phases.map((p) => p.label)).to.deep.equal([
      'XFChat w1',
      'XFChat 2 nodes w1',
      'XFChat 2 nodes w4',
      'XFChat w4',
    ]);
    const warnedNodes = new Set(
      results.notes.flatMap((note) => {
        const match = /^node (\d+) printed .*autovacuum is off/.exec(note);
        return match ? [match[1]] : [];
      }),
    );
    expect(warnedNodes.size, results.notes.join('\n')).to.equal(4);
  });
});
