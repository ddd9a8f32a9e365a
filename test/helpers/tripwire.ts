import net from 'node:net';

/**
 * A TCP proxy in front of PostgreSQL that cuts the connection whose next message (a Query or Parse the node sends)
 * contains an armed pattern, before PostgreSQL sees it: a connection lost at exactly that statement, for the tests of
 * what a request answers when one of its statements fails (test/helpers/proxy.ts cuts every connection at once).
 */
export interface Tripwire {
  urlThrough(url: string): string;
  /** The next upstream chunk matching `pattern` (case-insensitive) is not forwarded: its connection is cut. */
  arm(pattern: string | RegExp, times?: number): void;
  /** How many connections it cut since the last arm(). */
  readonly fired: number;
  /** Every upstream SQL-bearing chunk seen while `log` is on. */
  log: string[] | undefined;
  close(): Promise<void>;
}

export async function startTripwire(target: string): Promise<Tripwire> {
  const { hostname, port } = new URL(target);
  let armed: RegExp | undefined;
  let remaining = 0;
  let fired = 0;
  const open = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect({ host: hostname, port: Number(port || 5432) });
    open.add(client);
    open.add(upstream);
    const destroy = () => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.on('error', destroy).on('close', destroy);
    upstream.on('error', destroy).on('close', destroy);
    client.on('data', (chunk: Buffer) => {
      const text = chunk.toString('latin1');
      if (wire.log && /[A-Za-z]{4,}/.test(text)) wire.log.push(text.replace(/[^\x20-\x7e]+/g, ' '));
      if (armed && remaining > 0 && armed.test(text)) {
        remaining -= 1;
        if (remaining === 0) armed = undefined;
        fired += 1;
        destroy();
        return;
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => client.write(chunk));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const listenPort = (server.address() as net.AddressInfo).port;
  const wire: Tripwire = {
    urlThrough(url) {
      const u = new URL(url);
      u.hostname = '127.0.0.1';
      u.port = String(listenPort);
      return u.toString();
    },
    arm(pattern, times = 1) {
      armed =
        typeof pattern === 'string'
          ? new RegExp(pattern.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'i')
          : pattern;
      remaining = times;
      fired = 0;
    },
    get fired() {
      return fired;
    },
    log: undefined,
    async close() {
      for (const s of open) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return wire;
}
