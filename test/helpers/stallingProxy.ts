import net from 'node:net';

/** One client connection through a {@link StallingProxy}. */
export interface ProxiedConnection {
  /** From now on nothing the server sends is read: the server's writes pile up, as for a client that stopped reading. */
  stall(): void;
  /** Reads from the server again: the client catches up. */
  resume(): void;
  /** True once the server side of this connection has closed or failed (the server dropped the client). */
  readonly serverClosed: boolean;
}

export interface StallingProxy {
  /** `http://127.0.0.1:<port>`: connect a client here instead of to the server. */
  readonly url: string;
  /** The connections accepted so far, in order. */
  readonly connections: readonly ProxiedConnection[];
  /** Destroys every connection and stops listening. Idempotent. */
  close(): Promise<void>;
}

/**
 * A TCP proxy on 127.0.0.1 in front of a server whose connections can be told to stop reading from the server
 * while still forwarding what the client writes: a real client (socket.io-client, fetch) behind it behaves like
 * one that stopped reading its socket, without reaching into the client library.
 */
export async function startStallingProxy(target: string): Promise<StallingProxy> {
  const { hostname, port } = new URL(target);
  const connections: ProxiedConnection[] = [];
  const sockets = new Set<net.Socket>();

  const server = net.createServer((client) => {
    const upstream = net.connect({ host: hostname, port: Number(port) });
    sockets.add(client);
    sockets.add(upstream);
    let serverClosed = false;
    const onServerGone = () => {
      serverClosed = true;
      client.destroy();
    };
    client.on('error', () => upstream.destroy());
    upstream.on('error', onServerGone);
    upstream.once('close', onServerGone);
    client.once('close', () => {
      sockets.delete(client);
      upstream.destroy();
    });
    upstream.once('close', () => sockets.delete(upstream));
    client.pipe(upstream);
    // Not pipe(): a paused pipe source is resumed when its destination drains.
    upstream.on('data', (chunk: Buffer) => client.write(chunk));
    connections.push({
      stall() {
        upstream.pause();
      },
      resume() {
        upstream.resume();
      },
      get serverClosed() {
        return serverClosed;
      },
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port: ownPort } = server.address() as net.AddressInfo;

  let closing: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${ownPort}`,
    connections,
    close() {
      closing ??= new Promise<void>((resolve, reject) => {
        for (const socket of sockets) socket.destroy();
        server.close((err) => (err ? reject(err) : resolve()));
      });
      return closing;
    },
  };
}
