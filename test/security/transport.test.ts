import { expect } from 'chai';
import WebSocket from 'ws';
import { FAR_PAST, PACKETS_BEFORE_CONNECT } from '../../lib/realtime/transportGuard.js';
import { newUser } from '../helpers/chat.js';
import { captureLogs } from '../helpers/logCapture.js';
import { useNode } from '../helpers/nodes.js';
import { connectSocket } from '../helpers/sockets.js';
import { waitFor } from '../helpers/waitFor.js';

/** A raw engine.io transport over WebSocket, as a hostile client writes it: frames, not the client library. */
async function rawTransport(baseUrl: string) {
  const ws = new WebSocket(`${baseUrl.replace(/^http/, 'ws')}/socket.io/?EIO=4&transport=websocket`);
  const received: string[] = [];
  let pongs = 0;
  ws.on('message', (data: Buffer) => received.push(data.toString()));
  ws.on('pong', () => (pongs += 1));
  const closed = new Promise<number>((resolve) => ws.once('close', (code: number) => resolve(code)));
  // engine.io's OPEN packet comes first.
  await new Promise<void>((resolve, reject) => {
    ws.once('message', () => resolve());
    ws.once('error', reject);
  });
  return {
    ws,
    received,
    closed,
    pongs: () => pongs,
    /** One Socket.IO packet in one engine.io message packet (`4` + the Socket.IO packet). */
    send: (packet: string) => ws.send(`4${packet}`),
  };
}

/** Whether `promise` settles within `ms`. */
const settlesWithin = (promise: Promise<unknown>, ms: number) =>
  Promise.race([promise.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]);

describe('transports: what a client may send before and after its socket connects', function () {
  this.timeout(20_000);
  const { server, pool } = useNode({ env: { SOCKET_EVENTS_PER_SEC: '5' } });

  it('answers no WebSocket ping frames (they queued without bound for a client that reads nothing)', async () => {
    const transport = await rawTransport(server.url);
    try {
      for (let i = 0; i < 20; i++) transport.ws.ping();
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(transport.pongs()).to.equal(0);
      // The transport is unharmed: a handshake on it still connects.
      const user = await newUser(server);
      transport.send(`0${JSON.stringify({ token: user.token })}`);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(transport.received.some((m) => m.startsWith('40{"sid"'))).to.equal(true);
    } finally {
      transport.ws.terminate();
    }
  });

  it('ends the transport with its socket: a second handshake on one transport is not possible', async () => {
    const user = await newUser(server);
    const engine = server.services.io.engine;
    const transport = await rawTransport(server.url);
    try {
      transport.send(`0${JSON.stringify({ token: user.token })}`);
      await waitFor(() => transport.received.some((m) => m.startsWith('40{"sid"')), { what: 'the socket' });
      expect(engine.clientsCount).to.equal(1);
      // The client's DISCONNECT of its socket, then a CONNECT again, as socket.io-client never sends: every such
      // handshake added listeners and wrappers to the transport, and thousands of them crashed the node.
      transport.send('1');
      const closed = await settlesWithin(transport.closed, 2000);
      if (!closed) {
        transport.send(`0${JSON.stringify({ token: user.token })}`);
        await settlesWithin(transport.closed, 1000);
      }
      expect(
        transport.received.filter((m) => m.startsWith('40{"sid"')),
        'sockets',
      ).to.have.length(1);
      expect(closed, 'closed by the server').to.equal(true);
      await waitFor(() => engine.clientsCount === 0, { what: 'no transport left on the node' });
    } finally {
      transport.ws.terminate();
    }
  });

  it(`ends a transport that sends more than ${PACKETS_BEFORE_CONNECT} packets before a socket connects`, async () => {
    const transport = await rawTransport(server.url);
    // CONNECTs of namespaces that do not exist: each is answered with an error, none connects.
    for (let i = 0; i <= PACKETS_BEFORE_CONNECT; i++) transport.send(`0/nope-${i},`);
    expect(await settlesWithin(transport.closed, 2000), 'closed by the server').to.equal(true);
    // Up to the limit, a transport is kept: a client retrying its handshake is not cut off.
    const patient = await rawTransport(server.url);
    try {
      for (let i = 0; i < PACKETS_BEFORE_CONNECT - 1; i++) patient.send(`0/nope-${i},`);
      const user = await newUser(server);
      patient.send(`0${JSON.stringify({ token: user.token })}`);
      expect(await settlesWithin(patient.closed, 500), 'still open').to.equal(false);
      expect(patient.received.some((m) => m.startsWith('40{"sid"'))).to.equal(true);
      patient.send('2["typing",{}]');
      expect(await settlesWithin(patient.closed, 300), 'a connected transport is not counted so').to.equal(
        false,
      );
    } finally {
      patient.ws.terminate();
    }
  });

  it('ends a connected transport that keeps sending far past SOCKET_EVENTS_PER_SEC; others of the user stay', async () => {
    const user = await newUser(server);
    const bystander = await pool.open(server.url, user);
    const transport = await rawTransport(server.url);
    transport.send(`0${JSON.stringify({ token: user.token })}`);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(transport.received.some((m) => m.startsWith('40{"sid"'))).to.equal(true);
    // Events without an ack: the socket guard drops them silently; sent by the thousand, they end the transport.
    for (let i = 0; i < 5 * FAR_PAST * 4; i++) transport.send('2["typing",{}]');
    expect(await settlesWithin(transport.closed, 3000), 'closed by the server').to.equal(true);
    expect(bystander.connected).to.equal(true);
    // At the allowed rate, a socket keeps its transport.
    const steady = await connectSocket(server.url, user.token);
    try {
      for (let i = 0; i < 8; i++) {
        steady.emit('typing', { conversationId: '00000000-0000-4000-8000-000000000000' }, () => undefined);
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      expect(steady.connected).to.equal(true);
    } finally {
      steady.close();
    }
  });
});

describe('transports: the ends of hostile transports in the log', function () {
  this.timeout(20_000);
  const logs = captureLogs('info');
  const { server } = useNode({ env: { SOCKET_EVENTS_PER_SEC: '5', LOG_LEVEL: 'info' }, logger: logs.logger });

  it('are logged once per reason every 10 s (with the address and reason), not once per transport', async () => {
    const TRANSPORTS = 12;
    for (let t = 0; t < TRANSPORTS; t++) {
      const transport = await rawTransport(server.url);
      for (let i = 0; i <= PACKETS_BEFORE_CONNECT; i++) transport.send(`0/nope-${i},`);
      expect(await settlesWithin(transport.closed, 2000), `transport ${t} closed by the server`).to.equal(
        true,
      );
    }
    const lines = logs.entries().filter((l) => l.msg === 'closing a transport');
    // Before: one warn per transport, hundreds a second from one client.
    expect(lines).to.have.length(1);
    expect(lines[0]).to.include({
      level: 40,
      reason: 'too many packets before a socket connected',
      suppressed: 0,
    });
    expect(lines[0]!.address).to.be.a('string');
  });
});
