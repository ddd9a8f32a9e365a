/**
 * `npm run bench`: XFChat against its transport ceiling (E0, an echo server) and its storage ceilings (B1 single-row
 * commits, B2 batched inserts), all on one PostgreSQL in one run, then the scenarios of issue 5. Progress on
 * stderr, the Markdown report on stdout, the JSON in bench/results/<timestamp>.json.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createContext, type BenchContext } from './context.js';
import { openBenchDatabase, topStatements, type BenchDatabase } from './database.js';
import { parseOptions, USAGE, type BenchOptions, type ScenarioName } from './options.js';
import { summarizeProfiles } from './profileSummary.js';
import { createProgress, type Progress } from './progress.js';
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

/** How the run stops on a signal (stopOnSignals). */
interface StopSignals {
  /** Whether a signal came: the run then starts nothing more and waits for the cleanup to end the process. */
  readonly requested: boolean;
  /** Called once the run has closed PostgreSQL itself: a signal then takes its default course. */
  remove(): void;
}

/**
 * Ctrl-C (SIGINT) and SIGTERM (kill, a CI job's timeout) from the start of the run to PostgreSQL's close: the
 * cleanup stops the servers and PostgreSQL and removes its temporary folder, then the process exits (130, 143).
 * Handled with process.on, not once: a second signal during the cleanup would otherwise take the default course,
 * which exits at once and leaves the folder behind; and one comes often, from a second Ctrl-C or from npm, which
 * sends its script the terminal's Ctrl-C again. A second signal only says to wait.
 *
 * `npm run bench` runs `node --import tsx`, not tsx's CLI: the CLI relays a signal to its child and, when the child
 * has not told it within 60 ms that it got it (a busy machine), kills it with SIGKILL, in the middle of this cleanup.
 */
function stopOnSignals(progress: Progress, cleanUp: () => Promise<void>): StopSignals {
  let requested = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (requested) {
      progress.note(`${signal}: cleaning up, please wait`);
      return;
    }
    requested = true;
    progress.note(`interrupted (${signal}): stopping servers and PostgreSQL`);
    void cleanUp()
      .catch((err: unknown) =>
        progress.note(`cleanup failed: ${err instanceof Error ? err.message : String(err)}`),
      )
      .finally(() => process.exit(128 + os.constants.signals[signal]));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    get requested() {
      return requested;
    },
    remove() {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}

/** Once a signal came: the cleanup ends the process, so the run waits for it instead of going on. */
const untilExit = (): Promise<never> => new Promise<never>(() => undefined);

async function runAll(options: BenchOptions, argv: readonly string[]): Promise<BenchResults> {
  const progress = createProgress();
  const results = newResults(options, argv);
  const stamp = results.startedAt.replace(/[:.]/g, '-');
  await mkdir(options.resultsDir, { recursive: true });
  const profileDir = options.cpuProf ? path.resolve(options.resultsDir, `profile-${stamp}`) : undefined;
  if (profileDir) await mkdir(profileDir, { recursive: true });

  const opening = openBenchDatabase(options.databaseUrl, (line) => progress.note(line));
  let ctx: BenchContext | undefined;
  // From here on: PostgreSQL starts and is migrated before any scenario. A database that fails to open has
  // stopped its server and removed its folder itself; one still opening is closed once it is open.
  const stop = stopOnSignals(progress, async () => {
    const database = await opening.catch(() => undefined);
    await ctx?.close();
    await database?.close();
  });
  let database: BenchDatabase;
  try {
    database = await opening;
  } catch (err) {
    if (stop.requested) return untilExit();
    throw err;
  }
  if (stop.requested) return untilExit();
  try {
    results.postgres = database.settings;
    ctx = createContext(options, database, progress, results, profileDir);
    try {
      const ran = new Set<(ctx: BenchContext) => Promise<void>>();
      for (const scenario of options.scenarios) {
        if (stop.requested) return await untilExit();
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
    }
    if (stop.requested) return await untilExit();
    results.topStatements = await topStatements(database);
    if (profileDir) results.profiles = await summarizeProfiles(profileDir);
  } catch (err) {
    // Whatever failed because the cleanup stopped it (a query on a PostgreSQL shutting down).
    if (stop.requested) return await untilExit();
    throw err;
  } finally {
    // A signal's cleanup may close it meanwhile: the same close, it is idempotent.
    await database.close();
  }
  stop.remove();
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
