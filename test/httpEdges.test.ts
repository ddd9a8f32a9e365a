import net from 'node:net';
import { expect } from 'chai';
import { useNode } from './helpers/nodes.js';

/** Writes `writes` (a number: a pause in ms) on one connection and reads everything until it closes (or `ms`). */
async function exchange(url: string, writes: Array<string | number>, ms = 5000): Promise<string> {
  const { hostname, port } = new URL(url);
  const socket = net.connect({ host: hostname, port: Number(port) });
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  for (const w of writes) {
    if (typeof w === 'number') await new Promise((r) => setTimeout(r, w));
    else if (!socket.destroyed) socket.write(Buffer.from(w, 'latin1'));
  }
  await closed;
  socket.destroy();
  return Buffer.concat(chunks).toString('latin1');
}

/** Writes one upgrade request and reads everything until the connection closes (or 3 s). */
async function upgradeExchange(url: string, target: string): Promise<string> {
  const { hostname, port } = new URL(url);
  const socket = net.connect({ host: hostname, port: Number(port) });
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.on('error', () => undefined);
  const done = new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 3000);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  socket.write(
    `GET ${target} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
      'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
  );
  await done;
  socket.destroy();
  return Buffer.concat(chunks).toString('latin1');
}

/**
 * Answers at the edge of HTTP. A request that arrived whole, followed on its connection by bytes the parser refuses
 * (pipelined, or a wrong Content-Length), lost its answer: the node destroyed the connection at the parser's error,
 * while the request still ran (a signup created its account, its client then got USERNAME_TAKEN on a retry). An
 * HTTP/1.1 request without Host got Node's bare 400, without the envelope or X-Request-Id. An Engine.IO 3 client's
 * WebSocket (socket.io-client 2.x) got a 101 and then an HTTP 400 written into the WebSocket.
 */
describe('HTTP: pipelining ahead of a malformed request, a request without Host', function () {
  const { server } = useNode();
  const host = () => `Host: ${new URL(server.url).host}\r\n`;

  it('answers a complete signup even when bytes the parser refuses follow it on the connection', async () => {
    const username = `pipe_${Date.now().toString(36)}`;
    const body = JSON.stringify({ username, password: 'correct horse battery' });
    const text = await exchange(server.url, [
      `POST /auth/signup HTTP/1.1\r\n${host()}Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
      // Sent while the signup is being answered (argon2 hashing): a malformed next request.
      50,
      'xx\r\n\r\n',
    ]);
    // The signup goes on without its client: wait for its commit, to say what the client was not told.
    let rows = 0;
    for (let i = 0; i < 40 && rows === 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      rows = (await server.services.db.knex('users').where({ username })).length;
    }
    expect(
      text.slice(0, 40),
      `the signup's answer (account created: ${rows === 1}); read: ${JSON.stringify(text)}`,
    ).to.match(/^HTTP\/1\.1 201 /);
  });

  it('answers a GET pipelined ahead of a malformed request before closing', async () => {
    const text = await exchange(server.url, [`GET /readyz HTTP/1.1\r\n${host()}\r\nxx\r\n\r\n`]);
    expect(text.slice(0, 40), JSON.stringify(text)).to.match(/^HTTP\/1\.1 200 /);
  });

  const statusesOf = (text: string) => [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => m[1]);

  for (const [first, second] of [
    ['/readyz', '/healthz'],
    ['/healthz', '/readyz'],
    ['/healthz', '/healthz'],
  ]) {
    it(`answers both of GET ${first} and GET ${second} pipelined ahead of a malformed request, in order`, async () => {
      const text = await exchange(server.url, [
        `GET ${first} HTTP/1.1\r\n${host()}\r\nGET ${second} HTTP/1.1\r\n${host()}\r\nxx\r\n\r\n`,
      ]);
      expect(statusesOf(text), text.slice(0, 300)).to.deep.equal(['200', '200']);
    });
  }

  it('answers both of two signups pipelined ahead of a malformed request', async () => {
    const names = [1, 2].map((i) => `pipe${i}_${Date.now().toString(36)}`);
    const signup = (username: string) => {
      const body = JSON.stringify({ username, password: 'correct horse battery' });
      return `POST /auth/signup HTTP/1.1\r\n${host()}Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    };
    const text = await exchange(server.url, [signup(names[0]!) + signup(names[1]!) + 'xx\r\n\r\n']);
    expect(statusesOf(text), text.slice(0, 300)).to.deep.equal(['201', '201']);
  });

  it('adds no listener for each chunk of refused bytes sent while an earlier answer is pending (a long-poll)', async () => {
    const handshake = await fetch(`${server.url}/socket.io/?EIO=4&transport=polling`);
    const sid = /"sid":"([^"]+)"/.exec(await handshake.text())?.[1];
    expect(sid).to.be.a('string');
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(`${warning.name}: ${warning.message}`);
    process.on('warning', onWarning);
    try {
      const writes: Array<string | number> = [
        `GET /socket.io/?EIO=4&transport=polling&sid=${sid} HTTP/1.1\r\n${host()}\r\nxx\r\n\r\n`,
      ];
      for (let i = 0; i < 15; i++) writes.push(20, 'yy\r\n');
      await exchange(server.url, writes, 1000);
      await new Promise((resolve) => setTimeout(resolve, 50));
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings.filter((warning) => warning.includes('MaxListenersExceeded'))).to.deep.equal([]);
  });

  it('refuses a Socket.IO handshake without Host too, in the engine’s format, with an X-Request-Id', async () => {
    const text = await exchange(server.url, [
      'GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nConnection: close\r\n\r\n',
    ]);
    expect(text, JSON.stringify(text.slice(0, 300))).to.match(/^HTTP\/1\.1 400 /);
    expect(text).to.match(/\r\nx-request-id: /i);
    expect(text).to.include('{"code":3,"message":"Bad request"}');
  });

  it('answers an HTTP/1.1 request without Host with the error envelope and an X-Request-Id', async () => {
    const text = await exchange(server.url, ['GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n']);
    const head = text.slice(0, text.indexOf('\r\n\r\n'));
    const body = text.slice(text.indexOf('\r\n\r\n') + 4);
    expect(head, JSON.stringify(text)).to.match(/^HTTP\/1\.1 400 /);
    expect(head, `no X-Request-Id: ${JSON.stringify(text)}`).to.match(/\r\nx-request-id: /i);
    expect(body, `no error envelope: ${JSON.stringify(text)}`).to.include('"code":"VALIDATION_FAILED"');
  });
});

describe('HTTP: a WebSocket of an Engine.IO revision the node does not speak', function () {
  const { server } = useNode();

  it('refuses an Engine.IO v3 (socket.io-client 2.x) WebSocket before switching protocols, never HTTP text inside the WebSocket', async () => {
    const text = await upgradeExchange(server.url, '/socket.io/?EIO=3&transport=websocket');
    // Either a refusal (4xx) before 101, or a WebSocket that is then closed with a frame: not both a 101 and an
    // HTTP/1.1 response written into the WebSocket stream after it.
    expect(text, JSON.stringify(text)).not.to.match(/^HTTP\/1\.1 101 [\s\S]*\r\n\r\nHTTP\/1\.1 400 /);
    expect(text, JSON.stringify(text)).to.match(/^HTTP\/1\.1 400 [^]*Unsupported protocol version$/);
  });

  for (const target of [
    '/socket.io/?EIO=4&transport=websocket&EIO=3',
    '/socket.io/?transport=polling&EIO=3&transport=websocket',
  ]) {
    it(`reads a repeated name in the query as the engine does (the last wins): ${target}`, async () => {
      const text = await upgradeExchange(server.url, target);
      expect(text, JSON.stringify(text)).to.match(/^HTTP\/1\.1 400 [^]*Unsupported protocol version$/);
    });
  }
});
