/**
 * The report's notes about what the XFChat nodes printed. docs/performance.md ("How to reproduce"): "Each
 * XFChat node then warns at startup that autovacuum is off (...), and the report's notes list that warning."
 */
import { expect } from 'chai';
import { createContext } from '../../bench/context.js';
import { openBenchDatabase, type BenchDatabase } from '../../bench/database.js';
import { parseOptions } from '../../bench/options.js';
import type { Progress } from '../../bench/progress.js';
import { newResults } from '../../bench/report.js';

const quiet: Progress = { begin() {}, update() {}, end() {}, note() {} };

describe('bench: the report notes what the XFChat nodes warned', function () {
  this.timeout(90_000);
  let database: BenchDatabase;

  before(async () => {
    // The bench's own embedded PostgreSQL, which runs with autovacuum = off (the test database's server may not).
    database = await openBenchDatabase(undefined, () => {});
    const [row] = await database.query<{ setting: string }>(
      "SELECT setting FROM pg_settings WHERE name = 'autovacuum'",
    );
    expect(row!.setting).to.equal('off');
  });

  after(async () => {
    await database?.close();
  });

  it("lists a node's startup warning that autovacuum is off", async () => {
    const options = parseOptions([], {});
    const results = newResults(options, []);
    const ctx = createContext(options, database, quiet, results, undefined);
    try {
      const node = await ctx.startNode({ poolSize: 4, label: 'notes' });
      // The node did warn: its own output has the line.
      expect(node.output().tail).to.include('autovacuum is off');
    } finally {
      await ctx.close();
    }
    expect(results.notes.join('\n'), results.notes.join('\n')).to.include('autovacuum is off');
  });
});
