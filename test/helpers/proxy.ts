import net from 'node:net';

/**
 * A TCP proxy on 127.0.0.1 in front of a test node or the test PostgreSQL, for the network faults the code
 * must survive, with the real client library behind it and nothing reached into:
 *
 * - the network cut: `cut()` every open connection, or `stop()` listening until `start()` (the database or the
 *   node "goes away" and comes back on the same port);
 * - bytes held: `hold('upstream')` (requests never arrive) or `hold('downstream')` (acks and events never come
 *   back) until `release()`;
 * - a peer that stops reading: `connections[i].stall('downstream')` stops reading what the target sends on one
 *   connection, so the target's writes pile up in the target, as for a client that stopped reading its socket.
 */

/** Which way bytes flow: `upstream` from the client to the target, `downstream` from the target to the client. */
export type Direction = 'upstream' | 'downstream';

/** One client connection through the proxy. */
export interface ProxiedConnection {
  /**
   * Stops reading the bytes that flow `direction`: they stay with their sender (in its socket buffers, then in
   * the sender itself), as when the receiving peer stops reading.
   */
  stall(direction: Direction): void;
  /** Reads the bytes that flow `direction` again: the receiving peer catches up. */
  resume(direction: Direction): void;
  /**
   * True once the target closed or failed its side of the connection (say, the node dropped the client); not
   * when the client or the proxy ended it.
   */
  readonly targetClosed: boolean;
}

export interface FaultProxy {
  /** The loopback port it listens on; the same one after stop() and start(). */
  readonly port: number;
  /** `http://127.0.0.1:<port>`: what a client uses instead of the target node's own URL. */
  readonly url: string;
  /** `url` (any scheme: `postgres://`, `http://`) with its host and port replaced by this proxy's. */
  urlThrough(url: string): string;
  /** Every connection accepted so far, in order, open or not. */
  readonly connections: readonly ProxiedConnection[];
  /** How many connections are open right now. */
  connectionCount(): number;
  /** Keeps the bytes that flow `direction`, on every connection and on new ones, until release() or cut(). */
  hold(direction: Direction): void;
  /** Forwards whatever was held, in order, and passes everything from now on. */
  release(): void;
  /** Destroys every open connection, both sides, and forgets held bytes and holds; new connections still work. */
  cut(): void;
  /** cut() and stop listening: connections are refused until start(). Idempotent. */
  stop(): Promise<void>;
  /** Listens again, on the same port. No-op while listening. */
  start(): Promise<void>;
  /** Stops for good. Idempotent. */
  close(): Promise<void>;
}

const DEFAULT_PORTS: Readonly<Record<string, number>> = {
  'http:': 80,
  'https:': 443,
  'postgres:': 5432,
  'postgresql:': 5432,
};

/** One way of one connection: what `from` sends is written to `to`, or held, or left unread. */
class Flow {
  private readonly held: Buffer[] = [];
  private stalled = false;
  /** `to` has more buffered than it wants: `from` waits for its drain, as pipe() would. */
  private congested = false;

  constructor(
    private readonly from: net.Socket,
    private readonly to: net.Socket,
    holding: () => boolean,
  ) {
    from.on('data', (chunk: Buffer) => (holding() ? this.held.push(chunk) : this.write(chunk)));
    to.on('drain', () => {
      this.congested = false;
      this.update();
    });
  }

  stall(stalled: boolean): void {
    this.stalled = stalled;
    this.update();
  }

  /** Writes what was held, in order. */
  flush(): void {
    for (const chunk of this.held.splice(0)) this.write(chunk);
  }

  private write(chunk: Buffer): void {
    if (!this.to.write(chunk)) {
      this.congested = true;
      this.update();
    }
  }

  private update(): void {
    if (this.stalled || this.congested) this.from.pause();
    else this.from.resume();
  }
}

interface Link extends ProxiedConnection {
  readonly up: Flow;
  readonly down: Flow;
  destroy(): void;
}

/** Starts a proxy from 127.0.0.1:<free port> to `target`, a URL (`http://127.0.0.1:<port>`, `postgres://...`). */
export async function startProxy(target: string): Promise<FaultProxy> {
  const { hostname, port: targetPort, protocol } = new URL(target);
  const host = hostname.replace(/^\[(.*)\]$/, '$1');
  const defaultPort = DEFAULT_PORTS[protocol];
  if (targetPort === '' && defaultPort === undefined) throw new Error(`startProxy: no port in ${target}`);
  const portNumber: number = targetPort === '' ? (defaultPort ?? 0) : Number(targetPort);

  const connections: Link[] = [];
  const open = new Set<Link>();
  const holding: Record<Direction, boolean> = { upstream: false, downstream: false };
  let port = 0;
  let server: net.Server | undefined;
  let closed = false;

  function onConnection(client: net.Socket): void {
    const upstream = net.connect({ host, port: portNumber });
    let ending = false;
    let targetClosed = false;
    // Either side failing or closing takes the other down too, as a real network cut would.
    const destroy = () => {
      if (ending) return;
      ending = true;
      open.delete(link);
      client.destroy();
      upstream.destroy();
    };
    const targetGone = () => {
      if (!ending) targetClosed = true;
      destroy();
    };
    client.on('error', destroy).once('close', destroy);
    upstream.on('error', targetGone).once('close', targetGone);
    const flows = {
      upstream: new Flow(client, upstream, () => holding.upstream),
      downstream: new Flow(upstream, client, () => holding.downstream),
    };
    const link: Link = {
      up: flows.upstream,
      down: flows.downstream,
      destroy,
      stall: (direction) => flows[direction].stall(true),
      resume: (direction) => flows[direction].stall(false),
      get targetClosed() {
        return targetClosed;
      },
    };
    connections.push(link);
    open.add(link);
  }

  function cut(): void {
    for (const link of [...open]) link.destroy();
    holding.upstream = false;
    holding.downstream = false;
  }

  async function start(): Promise<void> {
    if (closed) throw new Error('startProxy: the proxy is closed');
    if (server) return;
    const next = net.createServer(onConnection);
    await new Promise<void>((resolve, reject) => {
      next.once('error', reject);
      next.listen(port, '127.0.0.1', () => {
        next.off('error', reject);
        resolve();
      });
    });
    port = (next.address() as net.AddressInfo).port;
    server = next;
  }

  async function stop(): Promise<void> {
    const current = server;
    server = undefined;
    cut();
    if (!current) return;
    await new Promise<void>((resolve, reject) => current.close((err) => (err ? reject(err) : resolve())));
  }

  await start();
  return {
    get port() {
      return port;
    },
    get url() {
      return `http://127.0.0.1:${port}`;
    },
    urlThrough(url: string): string {
      const through = new URL(url);
      through.hostname = '127.0.0.1';
      through.port = String(port);
      return through.toString();
    },
    connections,
    connectionCount: () => open.size,
    hold(direction) {
      holding[direction] = true;
    },
    release() {
      holding.upstream = false;
      holding.downstream = false;
      for (const link of open) {
        link.up.flush();
        link.down.flush();
      }
    },
    cut,
    stop,
    start,
    close() {
      closed = true;
      return stop();
    },
  };
}

/**
 * Registers an afterEach hook that closes every proxy a test started with `start(target)`. Call it inside
 * `describe`.
 */
export function useProxies(): { start(target: string): Promise<FaultProxy> } {
  const started: FaultProxy[] = [];
  afterEach(async () => {
    await Promise.all(started.splice(0).map((proxy) => proxy.close()));
  });
  return {
    async start(target) {
      const proxy = await startProxy(target);
      started.push(proxy);
      return proxy;
    },
  };
}
