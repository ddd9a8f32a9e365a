import type { GateLimits } from '../../lib/auth/passwords.js';
import type { Logger } from '../../lib/logger.js';
import type { RunningServer } from '../../lib/server.js';
import { createTestDatabase } from './postgres.js';
import { startProxy, type FaultProxy } from './proxy.js';
import { startTestServer } from './server.js';
import { connectSocket, type ClientSocket } from './sockets.js';
import type { TestUser } from './users.js';
import { waitFor } from './waitFor.js';

/**
 * The mocha fixtures of a suite's nodes: real servers on one fresh database, started before the suite and closed
 * after it, and a pool of sockets closed after each test. Call them inside `describe`.
 */

/** Opens sockets and closes every one of them in an after/afterEach hook. */
export class SocketPool {
  private readonly sockets: ClientSocket[] = [];

  async open(url: string, user: TestUser): Promise<ClientSocket> {
    const socket = await connectSocket(url, user.token);
    this.sockets.push(socket);
    return socket;
  }

  /** Closes a socket opened elsewhere with the others. */
  track(socket: ClientSocket): ClientSocket {
    this.sockets.push(socket);
    return socket;
  }

  closeAll(): void {
    for (const socket of this.sockets.splice(0)) socket.close();
  }
}

/** How one node of a fixture runs. */
export interface NodeOptions {
  /** Settings over testEnv()'s (limits are off there): `{ RATE_LIMIT_MESSAGES_PER_SEC: '1' }`. */
  env?: Record<string, string>;
  /** Where the node logs, e.g. a captureLogs() logger; by default a new one at TEST_LOG_LEVEL (silent). */
  logger?: Logger;
  /** How many password checks run and wait at once on the node (lib/auth/passwords.ts's default otherwise). */
  passwordChecks?: GateLimits;
}

export interface UseNodeOptions extends NodeOptions {
  /** Starts a second node on the same database too, with these options (`{}`: the defaults). */
  second?: NodeOptions;
}

/** One node on a fresh database (and a second one on it when asked), and the sockets a test opens. */
export interface OneNode {
  /** The node. Its members read the running server, so it may be destructured in `describe`. */
  readonly server: RunningServer;
  /** The second node of `useNode({ second })`, on the same database; likewise. */
  readonly second: RunningServer;
  /** The suite's database (read it in a hook or a test). */
  readonly databaseUrl: string;
  /** Sockets opened here are closed after each test. */
  readonly pool: SocketPool;
}

/** Two nodes on one fresh database, and the sockets a test opens. */
export interface TwoNodes {
  /** The nodes. Their members read the running servers, so they may be destructured in `describe`. */
  readonly a: RunningServer;
  readonly b: RunningServer;
  /** The suite's database (read it in a hook or a test). */
  readonly databaseUrl: string;
  /** Sockets opened here are closed after each test. */
  readonly pool: SocketPool;
}

/**
 * Registers the hooks of a one-node suite: the node starts before the suite on a new database (with a second
 * node on it when `options.second` says so), the sockets in `pool` close after each test, the nodes after the
 * suite.
 */
export function useNode(options: UseNodeOptions = {}): OneNode {
  const { second, ...first } = options;
  const nodes = useNodes('useNode', [first, second]);
  return {
    server: nodes.node(0),
    second: nodes.node(1),
    get databaseUrl() {
      return nodes.databaseUrl();
    },
    pool: nodes.pool,
  };
}

/**
 * Registers the hooks of a two-node suite: both nodes start before the suite on one new database, with the same
 * `options`; the sockets in `pool` close after each test, the nodes after the suite.
 */
export function useTwoNodes(options: NodeOptions = {}): TwoNodes {
  const nodes = useNodes('useTwoNodes', [options, options]);
  return {
    a: nodes.node(0),
    b: nodes.node(1),
    get databaseUrl() {
      return nodes.databaseUrl();
    },
    pool: nodes.pool,
  };
}

/** The hooks both fixtures share: one database, the nodes whose options are given (in order), one pool. */
function useNodes(fixture: string, options: ReadonlyArray<NodeOptions | undefined>) {
  const pool = new SocketPool();
  const running: Array<RunningServer | undefined> = options.map(() => undefined);
  let databaseUrl: string | undefined;

  before(async () => {
    databaseUrl = await createTestDatabase();
    for (const [i, node] of options.entries()) {
      if (node) {
        running[i] = await startTestServer(databaseUrl, node.env, node.logger, {
          passwordChecks: node.passwordChecks,
        });
      }
    }
    // Every node counts the others before the suite starts: a node that does not yet commits unannounced, and its
    // first writes reach the others only by the catch-up a moment later, which a test would wait for by chance.
    const started = running.filter((node): node is RunningServer => node !== undefined);
    if (started.length > 1) {
      for (const node of started) {
        await waitFor(async () => (await node.services.io.of('/').adapter.serverCount()) === started.length, {
          what: `${fixture}: every node to count the ${started.length} nodes`,
        });
      }
    }
  });
  afterEach(() => pool.closeAll());
  after(async function () {
    // A node's close is bounded by its own deadline (SHUTDOWN_TIMEOUT_MS + DB_STATEMENT_TIMEOUT_MS, 40 s here),
    // above mocha's 30 s: a close that waits for a step until that deadline is slow, not a failure of the suite
    // that used the node. (Seen twice in CI: fetch() had opened connections it never used, which the node's close
    // left open until the deadline; test/shutdownConnections.test.ts has the case.)
    this.timeout(60_000);
    await Promise.all(running.flatMap((node) => (node ? [node.close()] : [])));
  });

  const notYet = () => new Error(`${fixture}: the nodes start in a before hook; use them in hooks and tests`);
  const current = (i: number): RunningServer => {
    if (options[i] === undefined) throw new Error(`${fixture}: no such node was asked for (options.second)`);
    const node = running[i];
    if (!node) throw notYet();
    return node;
  };
  return {
    pool,
    node: (i: number) => lateNode(() => current(i)),
    databaseUrl: (): string => {
      if (databaseUrl === undefined) throw notYet();
      return databaseUrl;
    },
  };
}

/** A RunningServer whose every member reads `current()`, so a suite can hold it before the node starts. */
function lateNode(current: () => RunningServer): RunningServer {
  return {
    get url() {
      return current().url;
    },
    get port() {
      return current().port;
    },
    get services() {
      return current().services;
    },
    close: () => current().close(),
  };
}

/**
 * A node of the enclosing `describe`'s own, whose database connections go through a fault proxy (`proxy().stop()`
 * takes PostgreSQL away), with acquire and connect timeouts of 500 ms, so a missing database shows quickly.
 */
export function useNodeBehindProxy(): { node: () => RunningServer; proxy: () => FaultProxy } {
  let proxy: FaultProxy | undefined;
  let node: RunningServer | undefined;
  before(async () => {
    const databaseUrl = await createTestDatabase();
    proxy = await startProxy(databaseUrl);
    node = await startTestServer(proxy.urlThrough(databaseUrl), {
      DB_ACQUIRE_TIMEOUT_MS: '500',
      DB_CONNECT_TIMEOUT_MS: '500',
    });
  });
  after(async () => {
    await node?.close();
    await proxy?.close();
  });
  const started = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error('the node behind its proxy has not started');
    return value;
  };
  return { node: () => started(node), proxy: () => started(proxy) };
}
