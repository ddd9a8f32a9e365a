import type { BenchContext } from '../context.js';
import { compareName, NAIVE, TWO_NODES, windowLabel, XFCHAT } from '../goals.js';
import type { SocketJob } from '../loadProtocol.js';
import type { NodeProcess } from '../nodes.js';
import { twoNodeInWindows } from '../options.js';
import { seedConversations, type Seeded } from '../seed.js';
import { runTwoNode, socketPhase, twoNodeServer, type TwoNodeServer } from './load.js';

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

const describeError = (err: unknown) => (err instanceof Error ? (err.stack ?? err.message) : String(err));

/** The two-node scenario's runner: nothing when the window phases take it in. */
export async function runTwoNodeAlone(ctx: BenchContext): Promise<void> {
  if (!twoNodeInWindows(ctx.options)) await runTwoNode(ctx);
}

/**
 * The closed-loop window phases: X (scenario xfchat), N (scenario n), X2 (scenario twonode, see twoNodeInWindows)
 * and, with --compare-dir, the XFChat of another checkout, each at every --windows value, with the main users (100
 * in 50 direct conversations by default; X2 and the compared XFChat have users of their own). The servers
 * alternate, and their order reverses from one window to the next (X N X2 | X2 N X at windows 1 and 4), so a drift
 * of the machine over the run weighs on each server alike. X and X2 never run at once: entering X2 stops X's node
 * (idle, it would parse every announcement of the two), entering X stops X2's two nodes and starts X's again.
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

  const candidates: Array<{
    scenario: WindowServer['scenario'];
    name: string;
    open(): Promise<WindowServer>;
  }> = [];
  if (options.scenarios.includes('xfchat')) {
    candidates.push({
      scenario: 'xfchat',
      name: XFCHAT,
      open: async () => {
        const servers = [await ctx.mainNode(), ...(await extraNodes())];
        return {
          scenario: 'xfchat',
          name: XFCHAT,
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
          scenario: 'n',
          name: NAIVE,
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
      name: TWO_NODES,
      open: async () => {
        const pair = await twoNodeServer(ctx);
        x2 = pair;
        return {
          scenario: 'twonode',
          name: pair.name,
          target: 'xfchat',
          what: pair.what,
          seeded: pair.seeded,
          nodeOf: pair.nodeOf,
          enter: () => pair.start(),
        };
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
          scenario: 'compare',
          name: compareName(compareDir),
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
        running.push(await candidate.open());
      } catch (err) {
        ctx.results.failures.push({ scenario: candidate.scenario, error: describeError(err) });
        ctx.progress.note(`${candidate.name} did not start: ${describeError(err)}`);
      }
    }
    for (const [i, window] of options.windows.entries()) {
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
  } finally {
    // The main node stays up for the later phases (a later mainNode() starts it again if X2 ran last); the rest
    // would only take memory and connections.
    await Promise.all([...owned.map((node) => node.stop()), x2?.stop()]);
  }
}
