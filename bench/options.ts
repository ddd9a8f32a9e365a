import { parseArgs } from 'node:util';
import type { ClientMsgIdKind } from './loadProtocol.js';

/** Every scenario the bench knows, in the order a full run executes them. */
export const SCENARIOS = [
  'e0',
  'e0split',
  'b1',
  'b2',
  'xfchat',
  'n',
  'light',
  'halfpeak',
  'groups',
  'sync',
  'twonode',
  'exhaustion',
  'poolsweep',
  'history',
  'soak',
] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

/**
 * The default run: everything but the pool-size sweep, the split echo control, the large-history phase and the
 * memory soak, about two minutes on a 2-core machine.
 */
const DEFAULT_SCENARIOS: readonly ScenarioName[] = SCENARIOS.filter(
  (s) => s !== 'poolsweep' && s !== 'e0split' && s !== 'history' && s !== 'soak',
);

export interface BenchOptions {
  /** Users in the main load phases. @default 100 */
  users: number;
  /** Participants per conversation in the main phases (2 = direct conversations). @default 2 */
  conversationSize: number;
  /** Group size of the fan-out scenario. @default 10 */
  groupSize: number;
  /** Unacknowledged sends each user may have at once in the closed loops of E0, groups, 2 nodes, pool sweep. @default 1 */
  window: number;
  /** The windows of the XFChat, N, E0 and two-node closed-loop phases, ascending. @default [1, 4] */
  windows: number[];
  /** Measured seconds of each load phase (after the warm-up). @default 6 */
  durationSec: number;
  /** Unmeasured seconds at the start of each load phase. @default 2 */
  warmupSec: number;
  /** XFChat nodes in the XFChat (and --compare-dir) window phases (the two-node scenario always uses 2). @default 1 */
  nodes: number;
  /**
   * Where the two members of a conversation connect in the two-node scenario: `apart` (one on each node, so every
   * delivery and every conversation crosses between the nodes: goal 3) or `together` (both on one node, the
   * conversations split between the nodes: what two nodes on the same cores cost when nothing crosses).
   * @default 'apart'
   */
  members: 'apart' | 'together';
  scenarios: readonly ScenarioName[];
  /** Connections of B1/B2 and the server's DB_POOL_SIZE. @default 25 */
  poolSize: number;
  /** Rows per statement in B2. @default 100 */
  batchSize: number;
  /** Message body size in bytes. @default 64 */
  bodyBytes: number;
  /** Messages the sync scenario grows its conversation to. @default 1200 */
  syncMessages: number;
  /** Messages the history scenario prefills its conversations with. @default 3000000 */
  historyMessages: number;
  /**
   * The message ids of the history scenario: `time`, the schema's (time-ordered), or `random`, the schema before
   * time-ordered ids (the scenario takes that migration back for its prefill and phase). @default 'time'
   */
  historyIds: 'time' | 'random';
  /**
   * How the load generator makes clientMsgIds (and the history scenario its prefill's): `counter` (each sender's in
   * order), `uuid4` (random) or `uuid7` (time-ordered, the SDK's). @default 'counter'
   */
  clientMsgIds: ClientMsgIdKind;
  /** Rounds of the memory soak, each one twentieth of its 20 x --users users. @default 40 */
  soakRounds: number;
  /** Pass `--cpu-prof` to every XFChat node and summarize each node's profile. */
  cpuProf: boolean;
  /** A node_modules folder with bufferutil/utf-8-validate, put on the server's NODE_PATH (ws loads them). */
  nativeWsModules: string | undefined;
  /** Extra settings for every XFChat node, e.g. DB_WRITE_CONCURRENCY=8 (from --server-env, repeatable). */
  serverEnv: Record<string, string>;
  /**
   * Flags for the `node` of every XFChat node (from --node-flag, repeatable), e.g. a V8 flag that NODE_OPTIONS
   * does not accept, such as --single-threaded-gc.
   */
  nodeFlags: string[];
  /**
   * A checkout of the project whose lib/main.ts every XFChat node of the run is started from (with that
   * checkout's node_modules); undefined for this tree. The database is still migrated with this tree's migrations.
   */
  xfchatDir: string | undefined;
  /** A second checkout whose XFChat runs the window phases as well, beside this run's XFChat. */
  compareDir: string | undefined;
  /** An existing database to use instead of an embedded PostgreSQL (it is migrated and written to). */
  databaseUrl: string | undefined;
  /** Folder of the JSON results. @default bench/results */
  resultsDir: string;
}

export const USAGE = `npm run bench -- [options]
  --scenario LIST          comma-separated: ${SCENARIOS.join(', ')}, default, all (default: default,
                           every scenario but poolsweep, e0split, history and soak); xfchat (XFChat) and n
                           (the naive server N) run together, alternating, at each --windows, and twonode (X2)
                           with them when it runs (unless --nodes is above 1 or --compare-dir is given); e0split
                           is E0's load on two echo servers; history writes on a large messages table right
                           after a checkpoint; soak reads one node's memory while 20 x --users users come and
                           go in rounds
  --users N                users in the main phases (100)
  --conversation-size N    participants per conversation in the main phases (2)
  --group-size N           participants per group in the fan-out scenario (10)
  --window N               in-flight sends per user in the closed loops of groups and the pool sweep (1)
  --windows LIST           comma-separated windows of the XFChat, N, E0 and 2-node closed loops (1,4)
  --duration S             measured seconds per load phase (6)
  --warmup S               unmeasured warm-up seconds per load phase (2)
  --nodes N                XFChat nodes in the XFChat window phases (1)
  --members apart|together the two-node scenario's members of a conversation: on different nodes (apart, the
                           default, goal 3) or on the same node, the conversations split between the nodes
                           (together: phases "XFChat 2 nodes, members together wN", nothing crosses)
  --pool-size N            DB_POOL_SIZE and B1/B2 connections (25)
  --batch-size N           rows per statement in B2 (100)
  --body-bytes N           message body size (64)
  --sync-messages N        size of the conversation the sync scenario pages through (1200)
  --history-messages N     messages the history scenario prefills (3000000)
  --history-ids time|random
                           the history scenario's message ids: the schema's time-ordered ones (time), or random
                           ones, as before migration 20261202000000 (random)
  --client-msg-ids counter|uuid4|uuid7
                           the generator's clientMsgIds, and the history prefill's: "<run>-<user>-<n>" (counter),
                           random UUIDs (uuid4), or time-ordered ones from the SDK's generator (uuid7)
  --soak-rounds N          rounds of the soak scenario, each a twentieth of its users for 5 s (40)
  --cpu-prof               profile every XFChat node (node --cpu-prof), a summary per node
  --server-env K=V         an extra setting for every XFChat node (repeatable), e.g. DB_WRITE_CONCURRENCY=8
  --node-flag FLAG         a flag for the node of every XFChat node (repeatable), e.g. --node-flag=--single-threaded-gc
  --native-ws DIR          put DIR (a node_modules with bufferutil) on the server's NODE_PATH
  --xfchat-dir DIR         start every XFChat node (the 2-node phase's too) from DIR/lib/main.ts, another
                           checkout with its own node_modules; the database keeps this tree's migrations
  --compare-dir DIR        also run the XFChat window phases from DIR, as "XFChat (<name of DIR>) wN"
  --results DIR            where the JSON goes (bench/results)
Environment: BENCH_DATABASE_URL uses that database instead of an embedded PostgreSQL.`;

function positiveInt(name: string, value: string | undefined, fallback: number, max: number): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > max) {
    throw new Error(`--${name} must be a whole number from 1 to ${max} (got "${value}")`);
  }
  return Number(value);
}

/** One of `allowed` (the first when the flag is absent), or an error naming them all. */
function choice<T extends string>(name: string, value: string | undefined, allowed: readonly [T, ...T[]]): T {
  if (value === undefined) return allowed[0];
  const found = allowed.find((option) => option === value);
  if (found !== undefined) return found;
  const names = `${allowed.slice(0, -1).join(', ')} or ${allowed.at(-1)!}`;
  throw new Error(`--${name} must be ${names} (got "${value}")`);
}

function parseWindows(value: string | undefined): number[] {
  if (value === undefined) return [1, 4];
  const windows = value.split(',').map((w) => positiveInt('windows', w.trim(), 1, 10_000));
  return [...new Set(windows)].sort((a, b) => a - b);
}

/** `default` and `all` anywhere in the list (`default,poolsweep`), each standing for its scenarios. */
function parseScenarios(value: string | undefined): ScenarioName[] {
  const names = new Set<string>();
  for (const name of (value ?? 'default').split(',').map((s) => s.trim())) {
    if (name === 'default') DEFAULT_SCENARIOS.forEach((s) => names.add(s));
    else if (name === 'all') SCENARIOS.forEach((s) => names.add(s));
    else if ((SCENARIOS as readonly string[]).includes(name)) names.add(name);
    else throw new Error(`unknown scenario "${name}": use ${SCENARIOS.join(', ')}, default or all`);
  }
  // Keep the canonical order: baselines first, so ratios are available when the XFChat phases report.
  return SCENARIOS.filter((s) => names.has(s));
}

/**
 * Whether the window phases take the two-node scenario in, so that X2 alternates with X and N as they alternate
 * with each other. Not beside other XFChat nodes that stay up through the window phases (--nodes above 1,
 * --compare-dir): the two nodes would count them as peers and announce every commit to them. Then the two-node
 * scenario runs on its own, after the window phases, as it does when neither X nor N runs.
 */
export const twoNodeInWindows = (options: BenchOptions): boolean =>
  options.scenarios.includes('twonode') &&
  (options.scenarios.includes('xfchat') || options.scenarios.includes('n')) &&
  options.nodes === 1 &&
  options.compareDir === undefined;

/**
 * Parses the command line. The bench is a tool, not the server: it reads its one environment variable
 * (BENCH_DATABASE_URL) here, beside its flags, and passes the server its settings explicitly.
 */
export function parseOptions(argv: readonly string[], env: NodeJS.ProcessEnv): BenchOptions {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      scenario: { type: 'string' },
      users: { type: 'string' },
      'conversation-size': { type: 'string' },
      'group-size': { type: 'string' },
      window: { type: 'string' },
      windows: { type: 'string' },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      nodes: { type: 'string' },
      members: { type: 'string' },
      'pool-size': { type: 'string' },
      'batch-size': { type: 'string' },
      'body-bytes': { type: 'string' },
      'sync-messages': { type: 'string' },
      'history-messages': { type: 'string' },
      'history-ids': { type: 'string' },
      'client-msg-ids': { type: 'string' },
      'soak-rounds': { type: 'string' },
      'cpu-prof': { type: 'boolean' },
      'native-ws': { type: 'string' },
      'server-env': { type: 'string', multiple: true },
      'node-flag': { type: 'string', multiple: true },
      'xfchat-dir': { type: 'string' },
      'compare-dir': { type: 'string' },
      results: { type: 'string' },
    },
    strict: true,
  });
  const users = positiveInt('users', values.users, 100, 100_000);
  const conversationSize = positiveInt('conversation-size', values['conversation-size'], 2, 1000);
  if (conversationSize < 2 || users % conversationSize !== 0) {
    throw new Error('--conversation-size must be at least 2 and divide --users');
  }
  const serverEnv: Record<string, string> = {};
  for (const pair of values['server-env'] ?? []) {
    const match = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(pair);
    if (!match) throw new Error(`--server-env must look like NAME=value (got "${pair}")`);
    serverEnv[match[1]!] = match[2]!;
  }
  const nodeFlags = values['node-flag'] ?? [];
  for (const flag of nodeFlags) {
    if (!/^--[a-z0-9][a-z0-9_-]*(=\S+)?$/.test(flag))
      throw new Error(`--node-flag must be one flag such as --single-threaded-gc (got "${flag}")`);
  }
  const members = choice('members', values.members, ['apart', 'together']);
  const historyIds = choice('history-ids', values['history-ids'], ['time', 'random']);
  const clientMsgIds = choice('client-msg-ids', values['client-msg-ids'], ['counter', 'uuid4', 'uuid7']);
  const warmup = values.warmup === undefined ? 2 : Number(values.warmup);
  if (!Number.isFinite(warmup) || warmup < 0 || warmup > 600)
    throw new Error('--warmup must be 0 to 600 seconds');
  return {
    users,
    conversationSize,
    groupSize: positiveInt('group-size', values['group-size'], 10, 1000),
    window: positiveInt('window', values.window, 1, 10_000),
    windows: parseWindows(values.windows),
    durationSec: positiveInt('duration', values.duration, 6, 3600),
    warmupSec: warmup,
    nodes: positiveInt('nodes', values.nodes, 1, 8),
    members,
    scenarios: parseScenarios(values.scenario),
    poolSize: positiveInt('pool-size', values['pool-size'], 25, 500),
    batchSize: positiveInt('batch-size', values['batch-size'], 100, 10_000),
    bodyBytes: positiveInt('body-bytes', values['body-bytes'], 64, 4000),
    syncMessages: positiveInt('sync-messages', values['sync-messages'], 1200, 1_000_000),
    historyMessages: positiveInt('history-messages', values['history-messages'], 3_000_000, 100_000_000),
    historyIds,
    clientMsgIds,
    soakRounds: positiveInt('soak-rounds', values['soak-rounds'], 40, 10_000),
    cpuProf: values['cpu-prof'] ?? false,
    nativeWsModules: values['native-ws'],
    serverEnv,
    nodeFlags,
    xfchatDir: values['xfchat-dir'],
    compareDir: values['compare-dir'],
    databaseUrl: env.BENCH_DATABASE_URL === '' ? undefined : env.BENCH_DATABASE_URL,
    resultsDir: values.results ?? 'bench/results',
  };
}
