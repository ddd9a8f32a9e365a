/**
 * `npm run bench`: XFChat against its transport ceiling (E0, an echo server) and its storage ceilings (B1 single-row
 * commits, B2 batched inserts), all on one PostgreSQL in one run, then the scenarios of issue 5. Progress on
 * stderr, the Markdown report on stdout, the JSON in bench/results/<timestamp>.json.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createContext, type BenchContext } from './context.js';
import { openBenchDatabase, topStatements } from './database.js';
import { parseOptions, USAGE, type BenchOptions, type ScenarioName } from './options.js';
import { summarizeProfiles } from './profileSummary.js';
import { createProgress } from './progress.js';
import { renderMarkdown } from './markdown.js';
import { compareName, evaluateGoals } from './goals.js';
import { resolveProjectDir } from './nodes.js';
import { newResults, type BenchResults } from './report.js';
import { runB1, runB2, runE0, runE0Split } from './scenarios/baselines.js';
import { runExhaustion } from './scenarios/exhaustion.js';
import { runHistory } from './scenarios/history.js';
import { runGroups, runHalfPeak, runLight, runPoolSweep } from './scenarios/load.js';
import { runSoak } from './scenarios/soak.js';
import { runSync } from './scenarios/sync.js';
import { runTwoNodeAlone, runWindows } from './scenarios/windows.js';

const RUNNERS: Record<ScenarioName, (ctx: BenchContext) => Promise<void>> = {
  e0: runE0,
  e0split: runE0Split,
  b1: runB1,
  b2: runB2,
  // X and N alternate within one step: whichever of the two comes first runs both.
  xfchat: runWindows,
  n: runWindows,
  light: runLight,
  halfpeak: runHalfPeak,
  groups: runGroups,
  sync: runSync,
  // Unless the window phases take it in, between X and N (twoNodeInWindows).
  twonode: runTwoNodeAlone,
  exhaustion: runExhaustion,
  poolsweep: runPoolSweep,
  history: runHistory,
  soak: runSoak,
};

async function runAll(options: BenchOptions, argv: readonly string[]): Promise<BenchResults> {
  const progress = createProgress();
  const results = newResults(options, argv);
  const stamp = results.startedAt.replace(/[:.]/g, '-');
  await mkdir(options.resultsDir, { recursive: true });
  const profileDir = options.cpuProf ? path.resolve(options.resultsDir, `profile-${stamp}`) : undefined;
  if (profileDir) await mkdir(profileDir, { recursive: true });

  const database = await openBenchDatabase(options.databaseUrl, (line) => progress.note(line));
  try {
    results.postgres = database.settings;
    const ctx = createContext(options, database, progress, results, profileDir);
    const interrupted = () => {
      progress.note('interrupted: stopping servers and PostgreSQL');
      void ctx
        .close()
        .then(() => database.close())
        .finally(() => process.exit(130));
    };
    process.once('SIGINT', interrupted);
    try {
      const ran = new Set<(ctx: BenchContext) => Promise<void>>();
      for (const scenario of options.scenarios) {
        const runner = RUNNERS[scenario];
        if (ran.has(runner)) continue;
        ran.add(runner);
        progress.note(`== ${scenario}`);
        try {
          await runner(ctx);
        } catch (err) {
          const message = err instanceof Error ? (err.stack ?? err.message) : String(err);
          results.failures.push({ scenario, error: message });
          progress.note(`${scenario} failed: ${message}`);
        }
      }
    } finally {
      // Stopping the nodes writes their profiles.
      await ctx.close();
      process.off('SIGINT', interrupted);
    }
    results.topStatements = await topStatements(database);
    if (profileDir) results.profiles = await summarizeProfiles(profileDir);
  } finally {
    await database.close();
  }
  results.goals = evaluateGoals({
    phases: results.phases,
    windows: options.windows,
    ...(options.compareDir ? { compareServer: compareName(options.compareDir) } : {}),
  });
  results.notes.push(
    `load average at the end: ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')} (the machine is shared: compare ratios within one run)`,
  );
  await writeFile(path.join(options.resultsDir, `${stamp}.json`), `${JSON.stringify(results, null, 2)}\n`);
  return results;
}

const argv = process.argv.slice(2);
if (argv.includes('--help') || argv.includes('-h')) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
let options: BenchOptions;
try {
  options = parseOptions(argv, process.env);
  // Checked before PostgreSQL starts: a checkout without node_modules fails here, not halfway through the run.
  options = {
    ...options,
    xfchatDir: options.xfchatDir === undefined ? undefined : await resolveProjectDir(options.xfchatDir),
    compareDir: options.compareDir === undefined ? undefined : await resolveProjectDir(options.compareDir),
  };
} catch (err) {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(2);
}
const results = await runAll(options, argv);
process.stdout.write(renderMarkdown(results));
process.exitCode = results.failures.length > 0 ? 1 : 0;
