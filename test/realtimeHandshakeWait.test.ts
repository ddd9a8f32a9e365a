import { expect } from 'chai';
import WebSocket from 'ws';
import { openPolling, startBareRealtime } from './helpers/bareRealtime.js';
import { useNode } from './helpers/nodes.js';
import { waitFor } from './helpers/waitFor.js';

/** Socket.IO's connect timeout and the guard's, shortened from the node's 10 s (io.ts) for these tests. */
const CONNECT_TIMEOUT_MS = 300;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('realtime: transports that never connect a socket', function () {
  this.timeout(20_000);

  it('ends a long-polling transport at the connect timeout, not engine.io’s 30 s polling close timeout after it', async () => {
    const realtime = await startBareRealtime({ perIp: 0, guard: true, connectTimeoutMs: CONNECT_TIMEOUT_MS });
    try {
      for (let i = 0; i < 5; i++) await openPolling(realtime.url);
      expect(realtime.io.engine.clientsCount).to.equal(5);
      // Socket.IO's own close at the connect timeout leaves a polling transport without a poll waiting "closing"
      // until its client polls again; the guard's end at the same time must end it all the same.
      // Within seconds on a busy machine too, where engine.io's own close would take 30 s more.
      await waitFor(() => realtime.io.engine.clientsCount === 0, {
        what: 'the transports ended',
        timeoutMs: CONNECT_TIMEOUT_MS + 5000,
      });
    } finally {
      await realtime.close();
    }
  });

  it('ends the oldest waiting transport of an address at its cap also once Socket.IO has begun closing it', async () => {
    // No guard here: the transports of the first batch are left as Socket.IO's connect timeout leaves them.
    const realtime = await startBareRealtime({
      perIp: 5,
      guard: false,
      connectTimeoutMs: CONNECT_TIMEOUT_MS,
    });
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
    const opened = Date.now();
    expect(engine.clientsCount).to.equal(6);
    // The node's connect timeout (10 s), and on a busy machine a margin; engine.io alone would keep them 30 s or more.
    await waitFor(() => engine.clientsCount === 0, {
      what: 'the transports ended',
      timeoutMs: 18_000,
      intervalMs: 100,
    });
    expect(Date.now() - opened, 'ms from the last open to the end of them all').to.be.at.least(9000);
    await wsClosed;
  });
});
