import net from 'node:net';
import { expect } from 'chai';
import { openPolling, startBareRealtime } from './helpers/bareRealtime.js';

// Long enough for the probe to be made before the guard ends the transport, on a loaded machine too.
const CONNECT_TIMEOUT_MS = 1500;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A masked client text frame. */
function frame(text: string): Buffer {
  const payload = Buffer.from(text);
  const mask = Buffer.from([1, 2, 3, 4]);
  const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!));
  return Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked]);
}

/**
 * A WebSocket upgrade probe of a polling transport, from a client that then reads nothing more and never answers a
 * close frame (a raw TCP socket). Resolves once "3probe" came back; `closed` tells when the server ended the TCP socket.
 */
async function probeUpgrade(port: number, sid: string) {
  const socket = net.connect(port, '127.0.0.1');
  let closed = false;
  socket.on('close', () => (closed = true));
  socket.on('error', () => undefined);
  let received = '';
  const gotProbe = new Promise<void>((resolve, reject) => {
    socket.on('data', (d) => {
      received += d.toString('latin1');
      if (received.includes('3probe')) resolve();
    });
    socket.on('close', () =>
      reject(new Error(`the probe ended before its answer: ${JSON.stringify(received)}`)),
    );
  });
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  socket.write(
    `GET /socket.io/?EIO=4&transport=websocket&sid=${sid} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
      'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n' +
      'Sec-WebSocket-Version: 13\r\n\r\n',
  );
  await sleep(50);
  socket.write(frame('2probe'));
  await gotProbe;
  return { socket, isClosed: () => closed };
}

/**
 * A transport ended (by the guard at the connect timeout, or by the per-address cap) while a WebSocket of the same
 * client waited to take over from its long polling: engine.io closed that WebSocket gracefully, and ws waited 30 s
 * for a close frame a client that reads nothing never sends, each such probe an open connection no cap counted (REV2).
 */
describe('realtime: a long-polling transport ended while a WebSocket upgrade probe of it waits', function () {
  this.timeout(20_000);

  it('ends the probing WebSocket with it (the guard at the connect timeout), not 30 s later', async () => {
    const realtime = await startBareRealtime({ perIp: 0, guard: true, connectTimeoutMs: CONNECT_TIMEOUT_MS });
    try {
      const sid = await openPolling(realtime.url);
      const probe = await probeUpgrade(realtime.port, sid);
      await sleep(CONNECT_TIMEOUT_MS + 2000);
      expect(realtime.io.engine.clientsCount, 'engine transports').to.equal(0);
      const closed = probe.isClosed();
      probe.socket.destroy();
      expect(closed, 'the probing WebSocket TCP connection is still open').to.equal(true);
    } finally {
      await realtime.close();
    }
  });

  it('ends the probing WebSocket with the transport the per-address cap ends', async () => {
    const realtime = await startBareRealtime({
      perIp: 1,
      guard: false,
      connectTimeoutMs: CONNECT_TIMEOUT_MS,
    });
    try {
      const sid = await openPolling(realtime.url);
      const probe = await probeUpgrade(realtime.port, sid);
      await openPolling(realtime.url); // ends the first one (cap of 1)
      await sleep(1000);
      expect(realtime.io.engine.clientsCount, 'engine transports').to.be.at.most(1);
      const closed = probe.isClosed();
      probe.socket.destroy();
      expect(closed, 'the probing WebSocket TCP connection is still open').to.equal(true);
    } finally {
      await realtime.close();
    }
  });
});
