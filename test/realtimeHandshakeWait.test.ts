import { createServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { Server } from 'socket.io';
import WebSocket from 'ws';
import { createLogger } from '../lib/logger.js';
import type { AppServer } from '../lib/realtime/io.js';
import { createWaitingTransports } from '../lib/realtime/limits.js';
import { guardTransports } from '../lib/realtime/transportGuard.js';
import { useNode } from './helpers/nodes.js';

/** Socket.IO's connect timeout and the guard's, shortened from the node's 10 s (io.ts) for these tests. */
const CONNECT_TIMEOUT_MS = 300;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** An engine.io polling handshake, as anyone may send it, that never sends a CONNECT: its session id. */
async function openPolling(url: string): Promise<string> {
  const text = await (await fetch(`${url}/socket.io/?EIO=4&transport=polling`)).text();
  // `0{"sid":...}`: the open packet.
  return (JSON.parse(text.slice(1)) as { sid: string }).sid;
}

/**
 * A Socket.IO server wired as io.ts wires the node's (the connect timeout, the per-address cap on transports waiting
 * for their handshake in allowRequest, and, unless left out, the transport guard), with a short connect timeout.
 */
async function startRealtime(options: { perIp: number; guard: boolean }) {
  const http: HttpServer = createServer();
  const logger = createLogger('silent');
  const waiting = createWaitingTransports({ perIp: options.perIp, trustProxy: 0, logger });
  const io: AppServer = new Server(http, {
    connectTimeout: CONNECT_TIMEOUT_MS,
    allowRequest: (req, callback) => {
      waiting.makeRoom(req);
      callback(null, true);
    },
  });
  waiting.watch(io);
  if (options.guard)
    guardTransports(io, { eventsPerSecond: 20, connectTimeoutMs: CONNECT_TIMEOUT_MS, logger });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  return {
    io,
    url: `http://127.0.0.1:${(http.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => void io.close(() => resolve())),
  };
}

describe('realtime: transports that never connect a socket', function () {
  this.timeout(20_000);

  it('ends a long-polling transport at the connect timeout, not engine.io’s 30 s polling close timeout after it', async () => {
    const realtime = await startRealtime({ perIp: 0, guard: true });
    try {
      for (let i = 0; i < 5; i++) await openPolling(realtime.url);
      expect(realtime.io.engine.clientsCount).to.equal(5);
      // Socket.IO's own close at the connect timeout leaves a polling transport without a poll waiting "closing"
      // until its client polls again; the guard's end at the same time must end it all the same.
      await sleep(CONNECT_TIMEOUT_MS + 700);
      expect(realtime.io.engine.clientsCount).to.equal(0);
    } finally {
      await realtime.close();
    }
  });

  it('ends the oldest waiting transport of an address at its cap also once Socket.IO has begun closing it', async () => {
    // No guard here: the transports of the first batch are left as Socket.IO's connect timeout leaves them.
    const realtime = await startRealtime({ perIp: 5, guard: false });
    try {
      for (let i = 0; i < 5; i++) await openPolling(realtime.url);
      await sleep(CONNECT_TIMEOUT_MS + 200);
      for (let i = 0; i < 5; i++) await openPolling(realtime.url);
      expect(realtime.io.engine.clientsCount, 'engine transports open from one address').to.equal(5);
    } finally {
      await realtime.close();
    }
  });
});

describe('realtime: transports that never connect a socket, on a node (docs/security.md: ended after 10 s)', function () {
  this.timeout(30_000);
  const { server } = useNode({ env: { MAX_CONNECTIONS_PER_IP: '50' } });

  it('ends long-polling and WebSocket transports without a handshake 10 s after they open', async () => {
    const engine = server.services.io.engine;
    const ws = new WebSocket(`${server.url.replace(/^http/, 'ws')}/socket.io/?EIO=4&transport=websocket`);
    const wsClosed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
    await new Promise<void>((resolve, reject) => {
      ws.once('message', () => resolve());
      ws.once('error', reject);
    });
    for (let i = 0; i < 5; i++) await openPolling(server.url);
    expect(engine.clientsCount).to.equal(6);
    // The node's connect timeout (10 s), and a margin.
    await sleep(11_500);
    expect(engine.clientsCount, 'transports still open').to.equal(0);
    await wsClosed;
  });
});
