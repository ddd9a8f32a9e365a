import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { useNode } from '../helpers/nodes.js';
import { waitFor } from '../helpers/waitFor.js';
import { directPair, useClientPool } from './fixtures.js';

/**
 * A reverse proxy that serves the node under `prefix` (as `location /chat/ { proxy_pass http://node/; }` does):
 * requests and WebSocket upgrades outside it get 404, the prefix is stripped from the rest.
 */
async function subPathProxy(target: string, prefix: string): Promise<{ url: string; close: () => void }> {
  const { hostname, port } = new URL(target);
  const strip = (url: string | undefined): string | undefined =>
    url?.startsWith(`${prefix}/`) ? url.slice(prefix.length) : undefined;
  const server = http.createServer((req, res) => {
    const path = strip(req.url);
    if (path === undefined) {
      res.writeHead(404).end();
      return;
    }
    const upstream = http.request(
      { hostname, port, path, method: req.method, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    const path = strip(req.url);
    if (path === undefined) {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
      return;
    }
    const upstream = net.connect(Number(port), hostname, () => {
      const lines = [`${req.method} ${path} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2)
        lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      upstream.write(`${lines.join('\r\n')}\r\n\r\n`);
      upstream.write(head);
      upstream.pipe(socket).pipe(upstream);
    });
    upstream.on('error', () => socket.destroy());
    socket.on('error', () => upstream.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}${prefix}`,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

describe('client SDK: a server behind a proxy at a sub-path', function () {
  const { server } = useNode();
  const pool = useClientPool();

  it('takes a baseUrl with a path: REST under it, and the socket at its /socket.io/', async () => {
    const proxy = await subPathProxy(server.url, '/chat');
    try {
      const { alice, conversationId } = await directPair(server, pool);
      const client = pool.open(`${proxy.url}/`, { token: alice.token });
      expect((await client.me()).id).to.equal(alice.id);
      await client.connect();
      expect(client.state).to.equal('connected');
      const received: number[] = [];
      const subscription = client.subscribe(conversationId, (m) => received.push(m.seq));
      await subscription.whenReady();
      const stored = await client.send(conversationId, 'through the proxy');
      await waitFor(() => received.includes(stored.seq), { what: 'the message through the proxy' });
      expect(received).to.deep.equal([stored.seq]);
    } finally {
      proxy.close();
    }
  });
});
