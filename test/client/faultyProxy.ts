import net from 'node:net';

/**
 * A TCP proxy on 127.0.0.1 in front of a test node, for the network faults a chat client must survive: bytes
 * held in one direction (a request that never arrives, an ack that never comes back), every connection cut at
 * once, and the listener gone for a while (reconnects refused).
 */
export interface FaultyProxy {
  /** http://127.0.0.1:<port>: what the client uses instead of the node's own URL. */
  readonly url: string;
  /** Holds client->server bytes until release(): requests "never arrive". */
  holdUpstream(): void;
  /** Holds server->client bytes until release() or cut(): acks and events "never come back". */
  holdDownstream(): void;
  /** Forwards whatever was held, in order, and passes everything from now on. */
  release(): void;
  /** Destroys every open connection, both sides, and forgets held bytes (new connections still work). */
  cut(): void;
  /** cut() and stop listening: reconnection attempts are refused until start(). */
  stop(): Promise<void>;
  /** Listens again on the same port. */
  start(): Promise<void>;
  /** Stops for good. Idempotent. */
  close(): Promise<void>;
}

interface Pipe {
  client: net.Socket;
  upstream: net.Socket;
  heldUp: Buffer[];
  heldDown: Buffer[];
}

/** Starts a proxy that forwards 127.0.0.1:<free port> to `target` (http://127.0.0.1:<port> of a node). */
export async function startFaultyProxy(target: string): Promise<FaultyProxy> {
  const { hostname, port: targetPort } = new URL(target);
  const pipes = new Set<Pipe>();
  let holdingUp = false;
  let holdingDown = false;
  let port = 0;
  let server: net.Server | undefined;

  function onConnection(client: net.Socket): void {
    const upstream = net.connect({ host: hostname, port: Number(targetPort) });
    const pipe: Pipe = { client, upstream, heldUp: [], heldDown: [] };
    pipes.add(pipe);
    const destroy = () => {
      pipes.delete(pipe);
      client.destroy();
      upstream.destroy();
    };
    // A failure on either side takes the other down too, as a real network cut would.
    client.on('error', destroy).on('close', destroy);
    upstream.on('error', destroy).on('close', destroy);
    client.on('data', (chunk: Buffer) => (holdingUp ? pipe.heldUp.push(chunk) : upstream.write(chunk)));
    upstream.on('data', (chunk: Buffer) => (holdingDown ? pipe.heldDown.push(chunk) : client.write(chunk)));
  }

  function cut(): void {
    for (const pipe of [...pipes]) {
      pipe.heldUp = [];
      pipe.heldDown = [];
      pipe.client.destroy();
      pipe.upstream.destroy();
    }
    pipes.clear();
    holdingUp = false;
    holdingDown = false;
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
    cut();
    if (!current) return;
    await new Promise<void>((resolve, reject) => current.close((err) => (err ? reject(err) : resolve())));
  }

  await start();
  return {
    get url() {
      return `http://127.0.0.1:${port}`;
    },
    holdUpstream() {
      holdingUp = true;
    },
    holdDownstream() {
      holdingDown = true;
    },
    release() {
      holdingUp = false;
      holdingDown = false;
      for (const pipe of pipes) {
        for (const chunk of pipe.heldUp.splice(0)) pipe.upstream.write(chunk);
        for (const chunk of pipe.heldDown.splice(0)) pipe.client.write(chunk);
      }
    },
    cut,
    stop,
    start,
    close: stop,
  };
}
