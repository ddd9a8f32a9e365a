import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Knex } from 'knex';
import type { AuthConfig } from '../lib/auth/tokens.js';
import { loadConfig } from '../lib/config.js';
import { createDatabase, type Database } from '../lib/db.js';
import { createLogger } from '../lib/logger.js';
import { vacuumWrittenTables, WRITTEN_TABLES, type BenchDatabase } from './database.js';
import type { SocketJob } from './loadProtocol.js';
import {
  BENCH_JWT_SECRET,
  startEchoNode,
  startNaiveNode,
  startXfchatNode,
  type NodeProcess,
  type XfchatNodeOptions,
} from './nodes.js';
import type { BenchOptions } from './options.js';
import type { MeteredProcess } from './procStats.js';
import type { Progress } from './progress.js';
import type { BenchResults } from './report.js';
import { seedConversations, seedHistory, type Seeded } from './seed.js';

/** What every scenario shares: the options, the one PostgreSQL, lazily started nodes, and the results so far. */
export interface BenchContext {
  readonly options: BenchOptions;
  readonly database: BenchDatabase;
  /** A knex of the bench's own, for seeding (not the servers'). */
  readonly knex: Knex;
  readonly auth: AuthConfig;
  readonly progress: Progress;
  readonly results: BenchResults;
  /** Where --cpu-prof writes, when profiling: a folder per XFChat node, named by its label. */
  readonly profileDir: string | undefined;
  /**
   * Called right before each phase: vacuums and analyzes the tables the phases write (bench/database.ts,
   * vacuumWrittenTables), counted in the results.
   */
  beforePhase(): Promise<void>;
  /** The 100-user set of the main phases, seeded once and shared by E0 and XFChat phases. */
  mainUsers(): Promise<Seeded>;
  /** The XFChat node of the main phases (label `main`), started on first use. */
  mainNode(): Promise<NodeProcess>;
  /**
   * Stops the main node if it runs (a later mainNode() starts a new one). An idle node is not free to others: it
   * LISTENs to every other node's announcements and heartbeats and parses each, so a scenario that measures
   * other XFChat nodes stops it first.
   */
  stopMainNode(): Promise<void>;
  /** The echo server E0, started on first use. */
  echoNode(): Promise<NodeProcess>;
  /** Starts an echo server this scenario owns, apart from E0's; stopped like startNode's. */
  startEchoNode(): Promise<NodeProcess>;
  /**
   * Starts an XFChat node this scenario owns (from --xfchat-dir unless `projectDir` says otherwise); it is also
   * stopped at the end of the run if the scenario forgets. With --cpu-prof every XFChat node is profiled.
   */
  startNode(
    options: Omit<XfchatNodeOptions, 'databaseUrl' | 'nativeWsModules' | 'cpuProfileDir'>,
  ): Promise<NodeProcess>;
  /** Starts the naive server N (bench/naiveServer.ts) with the run's pool size; stopped like startNode's. */
  startNaiveNode(): Promise<NodeProcess>;
  /** PostgreSQL's processes, when local, plus `servers` under the names server, server2, ... */
  metered(servers: readonly NodeProcess[]): MeteredProcess[];
  /** A SocketJob over `seeded` with the run's warm-up, duration, window and body size. */
  socketJob(
    target: SocketJob['target'],
    urls: string[],
    seeded: Seeded,
    nodeOf?: (user: number) => number,
  ): SocketJob;
  /**
   * Stops every server the context started (those still starting once they are up) and notes what each warned;
   * no server starts after it (a scenario still running when Ctrl-C closes the context fails instead of leaving
   * a node behind). Idempotent: the end of the run and a signal's cleanup may both call it.
   */
  close(): Promise<void>;
}

/** Builds the shared context; nodes start on first use and all stop in close(). */
export function createContext(
  options: BenchOptions,
  database: BenchDatabase,
  progress: Progress,
  results: BenchResults,
  profileDir: string | undefined,
): BenchContext {
  const config = loadConfig({ DATABASE_URL: database.url, JWT_SECRET: BENCH_JWT_SECRET });
  const seedDb: Database = createDatabase(config.database, createLogger('warn'));
  const started: NodeProcess[] = [];
  /** Starts under way, each settled once its node is in `started` or has failed. */
  const starting = new Set<Promise<unknown>>();
  let closing: Promise<void> | undefined;
  let main: Promise<NodeProcess> | undefined;
  let echo: Promise<NodeProcess> | undefined;
  let users: Promise<Seeded> | undefined;

  let unnamed = 0;
  /** With --cpu-prof, the node's own folder under profileDir (created here: node writes it only at exit). */
  const profileDirOf = async (label: string): Promise<string | undefined> => {
    if (!profileDir) return undefined;
    const dir = path.join(profileDir, label);
    await mkdir(dir, { recursive: true });
    return dir;
  };

  const track = (start: () => Promise<NodeProcess>): Promise<NodeProcess> => {
    if (closing) return Promise.reject(new Error('the bench is stopping: no server starts now'));
    const node = start().then((running) => {
      started.push(running);
      return running;
    });
    const settled = node.catch(() => undefined);
    starting.add(settled);
    void settled.then(() => starting.delete(settled));
    return node;
  };
  const startEcho = () => track(() => startEchoNode(options.nativeWsModules));

  const context: BenchContext = {
    options,
    database,
    knex: seedDb.knex,
    auth: config.auth,
    progress,
    results,
    profileDir,
    async beforePhase() {
      const ms = await vacuumWrittenTables(database);
      results.vacuums.tables = WRITTEN_TABLES;
      results.vacuums.count += 1;
      results.vacuums.ms += ms;
    },
    mainUsers() {
      users ??= seedConversations(seedDb.knex, config.auth, options.users, options.conversationSize).then(
        async (seeded) => {
          await seedHistory(seedDb.knex, seeded);
          return seeded;
        },
      );
      return users;
    },
    mainNode() {
      main ??= track(() =>
        profileDirOf('main').then((cpuProfileDir) =>
          startXfchatNode({
            databaseUrl: database.url,
            poolSize: options.poolSize,
            label: 'main',
            ...(cpuProfileDir ? { cpuProfileDir } : {}),
            nativeWsModules: options.nativeWsModules,
            env: options.serverEnv,
            nodeFlags: options.nodeFlags,
            projectDir: options.xfchatDir,
          }),
        ),
      );
      return main;
    },
    async stopMainNode() {
      const running = main;
      main = undefined;
      // A main node that failed to start has nothing to stop; its scenario reported the failure.
      const node = await running?.catch(() => undefined);
      await node?.stop();
    },
    echoNode() {
      echo ??= startEcho();
      return echo;
    },
    startEchoNode: startEcho,
    startNode(nodeOptions) {
      const label = nodeOptions.label ?? `node-${++unnamed}`;
      return track(() =>
        profileDirOf(label).then((cpuProfileDir) =>
          startXfchatNode({
            projectDir: options.xfchatDir,
            ...nodeOptions,
            label,
            ...(cpuProfileDir ? { cpuProfileDir } : {}),
            // --server-env is for every XFChat node; the scenario's own settings (exhaustion's) win.
            env: { ...options.serverEnv, ...nodeOptions.env },
            // --node-flag's, then the scenario's own (the soak's --expose-gc).
            nodeFlags: [...options.nodeFlags, ...(nodeOptions.nodeFlags ?? [])],
            databaseUrl: database.url,
            nativeWsModules: options.nativeWsModules,
          }),
        ),
      );
    },
    startNaiveNode() {
      return track(() => startNaiveNode(database.url, options.poolSize, options.nativeWsModules));
    },
    metered(servers) {
      const processes: MeteredProcess[] = servers.map((s, i) => ({
        name: i === 0 ? 'server' : `server${i + 1}`,
        pid: s.pid,
      }));
      if (database.postmasterPid !== undefined) {
        processes.push({ name: 'postgres', pid: database.postmasterPid, tree: true });
      }
      return processes;
    },
    socketJob(target, urls, seeded, nodeOf = () => 0) {
      return {
        kind: 'sockets',
        target,
        nodeUrls: urls,
        users: seeded.users.map((u, i) => ({ ...u, node: nodeOf(i) })),
        conversations: seeded.conversations,
        window: options.window,
        warmupMs: options.warmupSec * 1000,
        durationMs: options.durationSec * 1000,
        bodyBytes: options.bodyBytes,
        ackTimeoutMs: 15_000,
        clientMsgIds: options.clientMsgIds,
      };
    },
    close() {
      closing ??= (async () => {
        // Stop servers first (profiles are written on exit), then the seeding pool.
        await Promise.all(starting);
        await Promise.all(started.map((node) => node.stop()));
        for (const node of started) {
          // The warnings and errors, not the last line: that is a node's "[STARTUP] listening" line unless it
          // warned later, and its startup warnings (autovacuum is off, ...) come before it.
          const { bytes, warnings, moreWarnings } = node.output();
          if (warnings.length === 0) continue;
          const lines = warnings.map(({ line, count }) => (count > 1 ? `${line} (${count} times)` : line));
          if (moreWarnings > 0) lines.push(`${moreWarnings} more`);
          results.notes.push(
            `node ${node.pid} printed ${bytes} bytes; its warnings and errors: ${lines.join('; ')}`,
          );
        }
        await seedDb.close();
      })();
      return closing;
    },
  };
  return context;
}
