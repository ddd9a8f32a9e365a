import type { BenchContext } from '../context.js';
import { compareName, NAIVE, TWO_NODES, windowLabel, XFCHAT } from '../goals.js';
import type { SocketJob } from '../loadProtocol.js';
import type { NodeProcess } from '../nodes.js';
import { twoNodeInWindows, type BenchOptions } from '../options.js';
import { seedConversations, seedHistory, type Seeded } from '../seed.js';
import { socketPhase } from './load.js';

/**
 * One server under closed-loop load at each window: X (XFChat), N (the naive server), the --compare-dir one, or
 * X2 (the two nodes).
 */
interface WindowServer {
  /** Recorded as the phases' scenario. */
  scenario: 'xfchat' | 'n' | 'compare' | 'twonode';
  /** The phases are labelled "<name> w<window>". */
  name: string;
  target: SocketJob['target'];
  what: string;
  seeded: Seeded;
  /** The node of each user, among the nodes enter() gave. @default user % nodes */
  nodeOf?: (user: number) => number;
  /** Before each of its phases: the nodes to load, started if they are not running. */
  enter(): Promise<NodeProcess[]>;
}

/** A window server as it starts: named and counted as its scenario before that. */
type OpenedServer = Omit<WindowServer, 'scenario' | 'name'>;

const describeError = (err: unknown) => (err instanceof Error ? (err.stack ?? err.message) : String(err));

/** The two-node phases' name: `XFChat 2 nodes`, or `XFChat 2 nodes, members together` with --members together. */
const twoNodeName = (options: BenchOptions): string =>
  options.members === 'together' ? `${TWO_NODES}, members together` : TWO_NODES;

/** X2 as a server of the window phases, with a way to stop its two nodes. */
type TwoNodeServer = OpenedServer & {
  /** Stops the two nodes if they run; a later enter() starts new ones. */
  stop: () => Promise<void>;
};

/**
 * Two nodes on one database (X2), closed loop at every --windows value ("XFChat 2 nodes w1", ...): the two members
 * of every conversation are on different nodes, so every delivery crosses from one node to the other. With
 * `--members together` both members of a conversation are on one node and the conversations are split between
 * the nodes ("XFChat 2 nodes, members together w1", ...): nothing crosses, which leaves what two nodes sharing
 * the same cores and database cost by themselves. Goal 3 reads only the first. Users of its own, direct
 * conversations with the main phases' seeded history.
 */
async function twoNodeServer(ctx: BenchContext): Promise<TwoNodeServer> {
  const seeded = await seedConversations(ctx.knex, ctx.auth, ctx.options.users, 2);
  await seedHistory(ctx.knex, seeded);
  const together = ctx.options.members === 'together';
  const placement = together
    ? 'the two members of each on the same node, the conversations split between the nodes'
    : 'the two members of each on different nodes';
  let running: Promise<NodeProcess[]> | undefined;
  const startPair = async () => {
    await ctx.stopMainNode();
    const label = together ? 'two-nodes-together' : 'two-nodes';
    const poolSize = ctx.options.poolSize;
    return [
      await ctx.startNode({ poolSize, label: `${label}-1` }),
      await ctx.startNode({ poolSize, label: `${label}-2` }),
    ];
  };
  return {
    target: 'xfchat',
    what: `${seeded.users.length} users in direct conversations on 2 nodes sharing the database, ${placement}, closed loop`,
    seeded,
    // A conversation's members are consecutive users, 2k and 2k + 1.
    nodeOf: together ? (user) => Math.floor(user / 2) % 2 : (user) => user % 2,
    // Stops the main node first: idle, it would LISTEN to the two nodes' announcements and parse each on the same
    // cores.
    enter: () => {
      running ??= startPair();
      return running;
    },
    stop: async () => {
      const pair = running;
      running = undefined;
      // A pair that failed to start has nothing to stop; its phase reported the failure.
      const nodes = await pair?.catch(() => []);
      await Promise.all((nodes ?? []).map((node) => node.stop()));
    },
  };
}

/**
 * Each server at every --windows value, one phase each, their order reversed from one window to the next. A phase
 * that fails is recorded and the others run.
 */
async function alternate(ctx: BenchContext, running: readonly WindowServer[]): Promise<void> {
  for (const [i, window] of ctx.options.windows.entries()) {
    for (const server of i % 2 === 0 ? running : [...running].reverse()) {
      const label = windowLabel(server.name, window);
      try {
        const servers = await server.enter();
        await socketPhase(
          ctx,
          label,
          server.scenario,
          `${server.what}, window ${window}`,
          {
            ...ctx.socketJob(
              server.target,
              servers.map((s) => s.url),
              server.seeded,
              server.nodeOf ?? ((user) => user % servers.length),
            ),
            window,
          },
          servers,
        );
      } catch (err) {
        ctx.results.failures.push({ scenario: server.scenario, error: `${label}: ${describeError(err)}` });
        ctx.progress.note(`${label} failed: ${describeError(err)}`);
      }
    }
  }
}

/**
 * The two-node scenario's runner: nothing when the window phases take it in (twoNodeInWindows), else X2 at every
 * window, one after the other.
 */
export async function runTwoNodeAlone(ctx: BenchContext): Promise<void> {
  if (twoNodeInWindows(ctx.options)) return;
  const pair = await twoNodeServer(ctx);
  try {
    await alternate(ctx, [{ scenario: 'twonode', name: twoNodeName(ctx.options), ...pair }]);
  } finally {
    await pair.stop();
  }
}

/**
 * The closed-loop window phases: X (scenario xfchat), N (scenario n), X2 (scenario twonode, see twoNodeInWindows)
 * and, with --compare-dir, the XFChat of another checkout, each at every --windows value, with the main users (100
 * in 50 direct conversations by default; X2 and the compared XFChat have users of their own). The servers
 * alternate, and their order reverses from one window to the next (X N X2 | X2 N X at windows 1 and 4), so a drift
 * of the machine over the run weighs on each server alike. X and X2 never run at once: entering X2 stops X's node
 * (idle, it would parse every announcement of the two), entering X stops X2's two nodes and starts X's again. So
 * each X window runs on a freshly started node, and X2's second window on the two nodes of its first
 * (docs/performance.md says so).
 */
export async function runWindows(ctx: BenchContext): Promise<void> {
  const { options } = ctx;
  const { users, conversationSize, nodes, poolSize } = options;
  const shape = `${users} users in conversations of ${conversationSize}, closed loop`;
  const owned: NodeProcess[] = [];
  const extraNodes = async (projectDir?: string) => {
    const extra: NodeProcess[] = [];
    for (let i = 1; i < nodes; i++) {
      const label = `${projectDir ? 'compare' : 'main'}-${i + 1}`;
      const node = await ctx.startNode(projectDir ? { poolSize, projectDir, label } : { poolSize, label });
      owned.push(node);
      extra.push(node);
    }
    return extra;
  };
  let x2: TwoNodeServer | undefined;

  const candidates: Array<Pick<WindowServer, 'scenario' | 'name'> & { open(): Promise<OpenedServer> }> = [];
  if (options.scenarios.includes('xfchat')) {
    candidates.push({
      scenario: 'xfchat',
      name: XFCHAT,
      open: async () => {
        const servers = [await ctx.mainNode(), ...(await extraNodes())];
        return {
          target: 'xfchat',
          what: `XFChat${options.xfchatDir ? ` from ${options.xfchatDir}` : ''}, ${nodes} node(s), pool ${poolSize}, ${shape}`,
          seeded: await ctx.mainUsers(),
          enter: async () => {
            await x2?.stop();
            servers[0] = await ctx.mainNode();
            return servers;
          },
        };
      },
    });
  }
  if (options.scenarios.includes('n')) {
    candidates.push({
      scenario: 'n',
      name: NAIVE,
      open: async () => {
        const node = await ctx.startNaiveNode();
        owned.push(node);
        return {
          target: 'naive',
          what: `the naive server (one transaction per message, pg.Pool of ${poolSize}), ${shape}`,
          // The same users and conversations as X: both write the same rows of the same tables.
          seeded: await ctx.mainUsers(),
          enter: () => Promise.resolve([node]),
        };
      },
    });
  }
  if (twoNodeInWindows(options)) {
    candidates.push({
      scenario: 'twonode',
      name: twoNodeName(options),
      open: async () => {
        x2 = await twoNodeServer(ctx);
        return x2;
      },
    });
  }
  const compareDir = options.compareDir;
  if (compareDir) {
    candidates.push({
      scenario: 'compare',
      name: compareName(compareDir),
      open: async () => {
        const first = await ctx.startNode({ poolSize, projectDir: compareDir, label: 'compare' });
        owned.push(first);
        const servers = [first, ...(await extraNodes(compareDir))];
        return {
          target: 'xfchat',
          what: `XFChat from ${compareDir}, ${nodes} node(s), pool ${poolSize}, ${shape}`,
          // Users of its own: another version's actors may keep state about the conversations they serve.
          seeded: await seedConversations(ctx.knex, ctx.auth, users, conversationSize),
          enter: () => Promise.resolve(servers),
        };
      },
    });
  }

  try {
    const running: WindowServer[] = [];
    for (const candidate of candidates) {
      try {
        running.push({ scenario: candidate.scenario, name: candidate.name, ...(await candidate.open()) });
      } catch (err) {
        ctx.results.failures.push({ scenario: candidate.scenario, error: describeError(err) });
        ctx.progress.note(`${candidate.name} did not start: ${describeError(err)}`);
      }
    }
    await alternate(ctx, running);
  } finally {
    // The main node stays up for the later phases (a later mainNode() starts it again if X2 ran last); the rest
    // would only take memory and connections.
    await Promise.all([...owned.map((node) => node.stop()), x2?.stop()]);
  }
}
