import net from 'node:net';

export interface TcpProxy {
  /** The loopback port it listens on; the same one after stop() and start(). */
  readonly port: number;
  /** `databaseUrl` with its host and port replaced by this proxy's. */
  urlThrough(databaseUrl: string): string;
  /** Listens again on the same port after stop(). No-op while listening. */
  start(): Promise<void>;
  /** Closes the listener and destroys every open connection, both sides: the database "goes away". Idempotent. */
  stop(): Promise<void>;
  /** Open client connections right now. */
  connectionCount(): number;
}

export interface TcpProxyOptions {
  targetHost: string;
  targetPort: number;
  /** 0 (the default) picks a free port on the first start. */
  port?: number;
}

/**
 * A TCP proxy on 127.0.0.1 in front of the test PostgreSQL, so a test can cut the database off and bring it
 * back without touching the real server.
 */
export async function startTcpProxy(options: TcpProxyOptions): Promise<TcpProxy> {
  const sockets = new Set<net.Socket>();
  const clients = new Set<net.Socket>();
  let port = options.port ?? 0;
  let server: net.Server | undefined;

  function track(socket: net.Socket): void {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  }

  function onConnection(client: net.Socket): void {
    track(client);
    clients.add(client);
    client.once('close', () => clients.delete(client));
    const upstream = net.connect({ host: options.targetHost, port: options.targetPort });
    track(upstream);
    // Either side failing or closing takes the other down too, as a real network cut would.
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.once('close', () => upstream.destroy());
    upstream.once('close', () => client.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  }

  async function start(): Promise<void> {
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
    for (const socket of sockets) socket.destroy();
    if (!current) return;
    await new Promise<void>((resolve, reject) => current.close((err) => (err ? reject(err) : resolve())));
  }

  await start();
  return {
    get port() {
      return port;
    },
    urlThrough(databaseUrl: string): string {
      const url = new URL(databaseUrl);
      url.hostname = '127.0.0.1';
      url.port = String(port);
      return url.toString();
    },
    start,
    stop,
    connectionCount: () => clients.size,
  };
}
