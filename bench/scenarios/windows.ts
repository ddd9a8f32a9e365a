import type { BenchContext } from '../context.js';
import { compareName, NAIVE, windowLabel, XFCHAT } from '../goals.js';
import type { SocketJob } from '../loadProtocol.js';
import type { NodeProcess } from '../nodes.js';
import { seedConversations, type Seeded } from '../seed.js';
import { socketPhase } from './load.js';

/** One server under closed-loop load at each window: X (XFChat), N (the naive server) or the --compare-dir one. */
interface WindowServer {
  /** Recorded as the phases' scenario. */
  scenario: 'xfchat' | 'n' | 'compare';
  /** The phases are labelled "<name> w<window>". */
  name: string;
  target: SocketJob['target'];
  what: string;
  start(): Promise<{ servers: NodeProcess[]; seeded: Seeded }>;
}

const describeError = (err: unknown) => (err instanceof Error ? (err.stack ?? err.message) : String(err));

/**
 * The closed-loop window phases: X (scenario xfchat), N (scenario n) and, with --compare-dir, the XFChat of
 * another checkout, each at every --windows value, with the main users (100 in 50 direct conversations by
 * default). The servers alternate, and their order reverses from one window to the next (X N | N X at windows
 * 1 and 4), so a drift of the machine over the run weighs on each server alike.
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

  const candidates: WindowServer[] = [];
  if (options.scenarios.includes('xfchat')) {
    candidates.push({
      scenario: 'xfchat',
      name: XFCHAT,
      target: 'xfchat',
      what: `XFChat${options.xfchatDir ? ` from ${options.xfchatDir}` : ''}, ${nodes} node(s), pool ${poolSize}`,
      start: async () => ({
        servers: [await ctx.mainNode(), ...(await extraNodes())],
        seeded: await ctx.mainUsers(),
      }),
    });
  }
  if (options.scenarios.includes('n')) {
    candidates.push({
      scenario: 'n',
      name: NAIVE,
      target: 'naive',
      what: `the naive server (one transaction per message, pg.Pool of ${poolSize})`,
      start: async () => {
        const node = await ctx.startNaiveNode();
        owned.push(node);
        // The same users and conversations as X: both write the same rows of the same tables.
        return { servers: [node], seeded: await ctx.mainUsers() };
      },
    });
  }
  const compareDir = options.compareDir;
  if (compareDir) {
    candidates.push({
      scenario: 'compare',
      name: compareName(compareDir),
      target: 'xfchat',
      what: `XFChat from ${compareDir}, ${nodes} node(s), pool ${poolSize}`,
      start: async () => {
        const first = await ctx.startNode({ poolSize, projectDir: compareDir, label: 'compare' });
        owned.push(first);
        // Users of its own: another version's actors may keep state about the conversations they serve.
        const seeded = await seedConversations(ctx.knex, ctx.auth, users, conversationSize);
        return { servers: [first, ...(await extraNodes(compareDir))], seeded };
      },
    });
  }

  try {
    const running: Array<WindowServer & { servers: NodeProcess[]; seeded: Seeded }> = [];
    for (const candidate of candidates) {
      try {
        running.push({ ...candidate, ...(await candidate.start()) });
      } catch (err) {
        ctx.results.failures.push({ scenario: candidate.scenario, error: describeError(err) });
        ctx.progress.note(`${candidate.name} did not start: ${describeError(err)}`);
      }
    }
    for (const [i, window] of options.windows.entries()) {
      for (const server of i % 2 === 0 ? running : [...running].reverse()) {
        const label = windowLabel(server.name, window);
        try {
          await socketPhase(
            ctx,
            label,
            server.scenario,
            `${server.what}, ${shape}, window ${window}`,
            {
              ...ctx.socketJob(
                server.target,
                server.servers.map((s) => s.url),
                server.seeded,
                (user) => user % server.servers.length,
              ),
              window,
            },
            server.servers,
          );
        } catch (err) {
          ctx.results.failures.push({ scenario: server.scenario, error: `${label}: ${describeError(err)}` });
          ctx.progress.note(`${label} failed: ${describeError(err)}`);
        }
      }
    }
  } finally {
    // The main node stays up for the later phases; the rest would only take memory and connections.
    await Promise.all(owned.map((node) => node.stop()));
  }
}
