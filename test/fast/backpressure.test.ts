import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type Server as HttpServer } from 'node:http';
import { connect as connectTcp, type AddressInfo, type Socket } from 'node:net';
import { expect } from 'chai';
import { Server } from 'socket.io';
import {
  COUNTED_TRANSPORT_OPTIONS,
  createBackpressure,
  type Backpressure,
} from '../../lib/realtime/backpressure.js';
import type { AppServer, AppSocket } from '../../lib/realtime/io.js';
import { endTransportAtDisconnect } from '../../lib/realtime/transportEnd.js';
import type { PublicMessage } from '../../lib/protocol/index.js';
import { captureLogs } from '../helpers/logCapture.js';
import { connectSocket, type ClientSocket } from '../helpers/sockets.js';
import { startProxy, type FaultProxy } from '../helpers/proxy.js';
import { waitFor } from '../helpers/waitFor.js';

const MiB = 1024 * 1024;

/**
 * A message whose body is `bytes` of ASCII: the packet is that big, give or take the JSON around it. `random`: base64
 * of random bytes, which compression takes a quarter off at most (`x` repeated would shrink to nothing).
 */
function bigMessage(bytes: number, random = false): PublicMessage {
  return {
    id: randomUUID(),
    conversationId: randomUUID(),
    seq: 1,
    senderId: randomUUID(),
    clientMsgId: 'big',
    body: random ? randomBytes((bytes / 4) * 3).toString('base64') : 'x'.repeat(bytes),
    createdAt: new Date().toISOString(),
    replyToSeq: null,
    editedAt: null,
    deletedAt: null,
    reactions: [],
    version: 1,
  };
}

/**
 * The backpressure module on a bare Socket.IO server (no database: nothing else is involved), with real clients,
 * one of them behind a proxy that stops reading.
 */
describe('socket backpressure (SOCKET_MAX_BUFFERED_BYTES)', function () {
  this.timeout(30_000);
  let http: HttpServer;
  let io: AppServer;
  let url: string;
  let backpressure: Backpressure;
  let proxy: FaultProxy;
  const logs = captureLogs('warn');
  const clients: ClientSocket[] = [];
  const serverSockets = new Map<string, AppSocket>();

  async function start(
    options: { maxBufferedBytes: number; stallMs: number },
    transports: Array<'websocket' | 'polling'> = ['websocket'],
  ): Promise<void> {
    http = createServer();
    io = new Server(http, { transports, ...COUNTED_TRANSPORT_OPTIONS });
    backpressure = createBackpressure({ ...options, sweepMs: 50, logger: logs.logger });
    io.use((socket, next) => {
      socket.data = { userId: 'u', sessionId: 's', expiresAt: Date.now() + 60_000 };
      next();
    });
    io.on('connection', (socket) => {
      // As io.ts does.
      endTransportAtDisconnect(socket, backpressure.watch(socket));
      serverSockets.set(String((socket.handshake.auth as { token?: unknown }).token), socket);
    });
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
    proxy = await startProxy(url);
  }

  afterEach(async () => {
    for (const client of clients.splice(0)) client.close();
    serverSockets.clear();
    backpressure.close();
    await proxy.close();
    await io.close();
  });

  /** A client (direct, or through the proxy and then stalled) and its socket on the server. */
  async function open(name: string, stalled: boolean): Promise<{ client: ClientSocket; socket: AppSocket }> {
    const client = await connectSocket(stalled ? proxy.url : url, name);
    clients.push(client);
    if (stalled) proxy.connections.at(-1)!.stall('downstream');
    const socket = await waitFor(() => serverSockets.get(name), { what: `${name} on the server` });
    return { client, socket };
  }

  it('cuts a stalled socket as soon as a second packet takes it over the cap; a reader keeps up', async () => {
    await start({ maxBufferedBytes: 4 * MiB, stallMs: 60_000 });
    const reader = await open('reader', false);
    const stalled = await open('stalled', true);
    const received: PublicMessage[] = [];
    reader.client.on('message:new', (m) => received.push(m));
    // 3 MB each: the kernel takes the first few MB of the stalled socket, then the node holds the rest.
    for (let i = 0; i < 6 && stalled.socket.connected; i++) {
      io.emit('message:new', bigMessage(3 * MiB));
      await waitFor(() => received.length === i + 1, { what: `the reader to get message ${i + 1}` });
    }
    await waitFor(() => stalled.socket.disconnected, { what: 'the stalled socket to be cut' });
    expect(reader.socket.connected).to.equal(true);
    expect(logs.text()).to.include('over SOCKET_MAX_BUFFERED_BYTES');
  });

  it('lets one packet larger than the cap through to a reader on an empty queue', async () => {
    await start({ maxBufferedBytes: 1 * MiB, stallMs: 60_000 });
    const reader = await open('reader', false);
    const received: PublicMessage[] = [];
    reader.client.on('message:new', (m) => received.push(m));
    reader.socket.emit('message:new', bigMessage(3 * MiB));
    await waitFor(() => received.length === 1, { what: 'the big message' });
    expect(reader.socket.connected).to.equal(true);
  });

  it('cuts, on the idle sweep, a socket that has taken nothing of what waits for it for stallMs', async () => {
    await start({ maxBufferedBytes: 64 * MiB, stallMs: 500 });
    const stalled = await open('stalled', true);
    // One packet, far under the cap but more than the kernel's buffers take: bytes wait in the node, no more come.
    stalled.socket.emit('message:new', bigMessage(16 * MiB));
    await waitFor(() => backpressure.queued(stalled.socket) > 0, { what: 'bytes waiting in the node' });
    await waitFor(() => stalled.socket.disconnected, { what: 'the stalled socket to be cut' });
    expect(logs.text()).to.include('nothing read for the stall timeout');
  });

  it('writable() waits while more than half the cap waits for the socket, and resolves once it is taken', async () => {
    await start({ maxBufferedBytes: 8 * MiB, stallMs: 60_000 });
    const proxied = await open('slow', true);
    proxied.socket.emit('message:new', bigMessage(12 * MiB));
    await waitFor(() => backpressure.queued(proxied.socket) > 4 * MiB, { what: 'a backlog' });
    let resolved = false;
    const writable = backpressure.writable(proxied.socket).then(() => {
      resolved = true;
    });
    // A client that catches up: the proxy reads again.
    const received: PublicMessage[] = [];
    proxied.client.on('message:new', (m) => received.push(m));
    expect(resolved).to.equal(false);
    proxy.connections.at(-1)!.resume('downstream');
    await writable;
    await waitFor(() => received.length === 1, { what: 'the message' });
    expect(proxied.socket.connected).to.equal(true);
  });

  it('cuts a long-polling socket whose poll answers are not read: each poll on a connection of its own, asking for gzip as browsers do', async () => {
    await start({ maxBufferedBytes: 4 * MiB, stallMs: 60_000 }, ['polling']);
    const base = `${url}/socket.io/?EIO=4&transport=polling`;
    const sid = (JSON.parse((await (await fetch(base)).text()).slice(1)) as { sid: string }).sid;
    const poll = `${base}&sid=${sid}`;
    const connect = await fetch(poll, { method: 'POST', body: '40{"token":"poller"}' });
    expect(connect.status).to.equal(200);
    await connect.text();
    expect(await (await fetch(poll)).text()).to.match(/^40/);
    const socket = await waitFor(() => serverSockets.get('poller'), { what: 'the poller on the server' });
    const { pathname, search } = new URL(poll);
    const opened: Socket[] = [];
    try {
      // Each round: a poll (GET) through the proxy on a new connection, which stops reading its answer at once;
      // then an 8 MiB message, written into that poll's answer (the kernel takes a few MB of it).
      for (let round = 1; round <= 4 && socket.connected; round++) {
        const connection = connectTcp(proxy.port);
        opened.push(connection);
        await new Promise((resolve) => connection.once('connect', resolve));
        proxy.connections.at(-1)!.stall('downstream');
        connection.write(
          `GET ${pathname}${search} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: gzip, deflate\r\n\r\n`,
        );
        // The poll waits in the transport: the next packet is written into its answer.
        await new Promise((resolve) => setTimeout(resolve, 100));
        socket.emit('message:new', bigMessage(round === 1 ? 32 * MiB : MiB, true));
        if (round === 1) {
          // Counted, compressed or not: what the node holds for the poll, all but the kernel's few MB.
          await waitFor(() => backpressure.queued(socket) > 8 * MiB, {
            what: 'the poll’s answer counted',
            timeoutMs: 3000,
          });
        } else await new Promise((resolve) => setTimeout(resolve, 100));
      }
      await waitFor(() => socket.disconnected, { what: 'the poller to be cut' });
      expect(logs.text()).to.include('over SOCKET_MAX_BUFFERED_BYTES');
    } finally {
      for (const connection of opened) connection.destroy();
    }
  });
});
