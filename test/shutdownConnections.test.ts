import net from 'node:net';
import { expect } from 'chai';
import { createLogger } from '../lib/logger.js';
import type { RunningServer } from '../lib/server.js';
import pg from 'pg';
import { createGroup, expectOk, friendsOf, newUser, send } from './helpers/chat.js';
import { expectAckError } from './helpers/errors.js';
import { createTestDatabase, untilAStatementWaitsForALock } from './helpers/postgres.js';
import { startProxy, type FaultProxy } from './helpers/proxy.js';
import { startTestServer } from './helpers/server.js';
import { connectSocket, type ClientSocket } from './helpers/sockets.js';
import { disconnected } from './helpers/events.js';
import { waitFor } from './helpers/waitFor.js';

/** A raw HTTP/1.1 connection: what it has received so far, and whether the server has closed it. */
interface RawConnection {
  socket: net.Socket;
  received: () => string;
  closed: () => boolean;
}

async function connect(url: string): Promise<RawConnection> {
  const { hostname, port } = new URL(url);
  const socket = net.connect(Number(port), hostname);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  let text = '';
  let ended = false;
  socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
  socket.on('close', () => (ended = true));
  socket.on('error', () => undefined);
  return { socket, received: () => text, closed: () => ended };
}

/** The answers received on a connection, each as its status line and headers (lower-cased). */
function heads(text: string): Array<{ status: string; headers: string }> {
  return text
    .split('HTTP/1.1 ')
    .slice(1)
    .map((answer) => {
      const [head = ''] = answer.split('\r\n\r\n');
      const [status = '', ...headers] = head.split('\r\n');
      return { status, headers: headers.join('\n').toLowerCase() };
    });
}

describe('shutdown: kept connections and a database that does not answer', function () {
  this.timeout(30_000);
  let server: RunningServer | undefined;
  const connections: RawConnection[] = [];

  let proxy: FaultProxy | undefined;
  const sockets: ClientSocket[] = [];

  afterEach(async () => {
    for (const c of connections.splice(0)) c.socket.destroy();
    for (const socket of sockets.splice(0)) socket.close();
    proxy?.release();
    await server?.close();
    server = undefined;
    await proxy?.close();
    proxy = undefined;
  });

  it('a connection busy when the node stops, then reused without pause, does not hold the node open; /readyz says 503 meanwhile', async () => {
    server = await startTestServer(await createTestDatabase(), {}, createLogger('silent'));
    const kept = await connect(server.url);
    connections.push(kept);
    // Busy at the moment of the signal: the request's head has come, its body has not.
    kept.socket.write('GET /readyz HTTP/1.1\r\nHost: node\r\nContent-Length: 2\r\n\r\n');
    await new Promise((resolve) => setTimeout(resolve, 100));

    const closing = server.close();
    let closed = false;
    void closing.then(() => (closed = true));
    kept.socket.write('{}');
    // A load balancer's health checks on the same connection, every 50 ms, for as long as it stays open.
    const checks = setInterval(() => {
      if (!kept.closed()) kept.socket.write('GET /healthz HTTP/1.1\r\nHost: node\r\n\r\n');
    }, 50);
    try {
      await waitFor(() => closed, { what: 'the node to finish closing', timeoutMs: 10_000 });
    } finally {
      clearInterval(checks);
    }
    server = undefined;

    const answers = heads(kept.received());
    expect(answers[0]?.status).to.match(/^503 /);
    expect(answers[0]?.headers).to.include('connection: close');
    expect(kept.received()).to.include('{"status":"unavailable"}');
    await waitFor(() => kept.closed(), { what: 'the connection to be closed by the node' });
  });

  it('a connection that never sent a request does not hold the node open; one accepted just before the stop is answered', async () => {
    server = await startTestServer(await createTestDatabase(), {}, createLogger('silent'));
    // Sends nothing, as a browser's preconnect, or the connection fetch() opens in place of one it dropped when an
    // unread answer was garbage-collected. Node's closeIdleConnections() leaves it: close() waited for it until
    // the shutdown's deadline (40 s here), as it would be closed only at HTTP_IDLE_TIMEOUT_MS (65 s).
    const silent = await connect(server.url);
    connections.push(silent);
    // Past the grace a connection that has sent nothing yet gets once the node stops (1 s from its accept).
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const late = await connect(server.url);
    connections.push(late);

    const started = Date.now();
    const closing = server.close();
    await new Promise((resolve) => setTimeout(resolve, 100));
    late.socket.write('GET /healthz HTTP/1.1\r\nHost: node\r\n\r\n');
    await closing;
    server = undefined;
    expect(Date.now() - started).to.be.below(5000);
    await waitFor(() => silent.closed(), { what: 'the silent connection to be closed by the node' });
    const answers = heads(late.received());
    expect(answers[0]?.status).to.match(/^200 /);
    expect(answers[0]?.headers).to.include('connection: close');
  });

  it('a connection whose request has not come whole (a head cut short, a body that stopped coming) does not hold the node past the drain', async () => {
    server = await startTestServer(
      await createTestDatabase(),
      { SHUTDOWN_TIMEOUT_MS: '1000', DB_STATEMENT_TIMEOUT_MS: '15000' },
      createLogger('silent'),
    );
    const partial = [
      'G',
      'GET /healthz HTTP/1.1\r\nHost: node\r\n',
      'POST /auth/login HTTP/1.1\r\nHost: node\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"user',
    ];
    const held = await Promise.all(partial.map(() => connect(server!.url)));
    connections.push(...held);
    held.forEach((c, i) => c.socket.write(partial[i]!));
    // Past the grace of a connection that sent nothing: these sent something.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const started = Date.now();
    await server.close();
    server = undefined;
    // Nothing to drain; the deadline is 1 s + 15 s.
    expect(Date.now() - started).to.be.below(5000);
    await waitFor(() => held.every((c) => c.closed()), { what: 'the connections to be closed by the node' });
  });

  it('a request head trickled a byte every 200 ms does not hold the node past the drain', async () => {
    server = await startTestServer(
      await createTestDatabase(),
      { SHUTDOWN_TIMEOUT_MS: '1000', DB_STATEMENT_TIMEOUT_MS: '15000' },
      createLogger('silent'),
    );
    const trickled = await connect(server.url);
    connections.push(trickled);
    trickled.socket.write('GET /healthz HTTP/1.1\r\nHost: node\r\n');
    const trickle = setInterval(() => {
      if (!trickled.closed()) trickled.socket.write('X');
    }, 200);
    try {
      await new Promise((resolve) => setTimeout(resolve, 1100));
      const started = Date.now();
      await server.close();
      server = undefined;
      // Nothing to drain; the deadline is 1 s + 15 s.
      expect(Date.now() - started).to.be.below(5000);
    } finally {
      clearInterval(trickle);
    }
  });

  it('a request whose body arrives steadily over a second after the stop is answered, not cut', async () => {
    server = await startTestServer(await createTestDatabase(), {}, createLogger('silent'));
    const connection = await connect(server.url);
    connections.push(connection);
    const socket = connection.socket;

    // A refresh token of the wrong shape: answered 401 without a statement.
    const body = JSON.stringify({ refreshToken: 'x'.repeat(1000) });
    socket.write(
      `POST /auth/refresh HTTP/1.1\r\nHost: node\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`,
    );
    socket.write(body.slice(0, 100));
    await new Promise((resolve) => setTimeout(resolve, 100));

    const closing = server.close();
    server = undefined;
    // The rest comes, 100 bytes every 100 ms: whole about a second after the stop.
    for (let at = 100; at < body.length; at += 100) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      if (connection.closed()) break;
      socket.write(body.slice(at, at + 100));
    }
    await waitFor(() => connection.closed() || connection.received().includes('\r\n\r\n'), {
      what: 'an answer or the close',
    });
    await closing;
    expect(connection.received().split('\r\n')[0]).to.match(/^HTTP\/1\.1 401 /);
  });

  it('past SHUTDOWN_TIMEOUT_MS, waits for the write running in PostgreSQL with the sockets open: its sender is acked, what queued behind it is OVERLOADED', async () => {
    const databaseUrl = await createTestDatabase();
    server = await startTestServer(databaseUrl, { SHUTDOWN_TIMEOUT_MS: '300' }, createLogger('silent'));
    const owner = await newUser(server);
    const group = await createGroup(server.url, owner, await friendsOf(server, owner, 1));
    const socket = await connectSocket(server.url, owner.token);
    sockets.push(socket);
    expectOk(await send(socket, group.id, 'first'));
    // Another transaction (a membership change on another node) holds the conversation.
    const holder = new pg.Client({ connectionString: databaseUrl });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT id FROM conversations WHERE id = $1 FOR UPDATE', [group.id]);
      const running = send(socket, group.id, 'running when the drain times out');
      await untilAStatementWaitsForALock(server.services.db.knex, 'the write call to wait for the lock');
      const queued = send(socket, group.id, 'queued behind it');
      await new Promise((resolve) => setTimeout(resolve, 50));
      const closing = server.close();
      server = undefined;
      // Well past SHUTDOWN_TIMEOUT_MS, well within DB_STATEMENT_TIMEOUT_MS: the write then commits.
      await new Promise((resolve) => setTimeout(resolve, 1000));
      await holder.query('COMMIT');
      expect(expectOk(await running).message.seq).to.equal(2);
      expectAckError(await queued, 'OVERLOADED');
      await closing;
      const { rows: stored } = await holder.query<{ body: string }>(
        'SELECT body FROM messages WHERE conversation_id = $1 ORDER BY seq',
        [group.id],
      );
      expect(stored.map((r) => r.body)).to.deep.equal(['first', 'running when the drain times out']);
    } finally {
      await holder.end();
    }
  });

  it('acks every send and change drained at the stop before its socket closes: the last acks are written out, not cut', async () => {
    const databaseUrl = await createTestDatabase();
    server = await startTestServer(databaseUrl, {}, createLogger('silent'));
    const owner = await newUser(server);
    const group = await createGroup(server.url, owner, await friendsOf(server, owner, 1));
    const socket = await connectSocket(server.url, owner.token);
    sockets.push(socket);
    const { seq } = expectOk(await send(socket, group.id, 'first')).message;
    // Another transaction holds the conversation: the sends and changes wait in its mailbox until the node stops.
    const holder = new pg.Client({ connectionString: databaseUrl });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT id FROM conversations WHERE id = $1 FOR UPDATE', [group.id]);
      const changes = Array.from({ length: 10 }, (_, i) => [
        socket.emitWithAck('reaction:add', { conversationId: group.id, seq, emoji: `r${i}` }),
        socket.emitWithAck('message:edit', { conversationId: group.id, seq, body: `edit ${i}` }),
        send(socket, group.id, `sent ${i}`),
      ]).flat();
      await untilAStatementWaitsForALock(server.services.db.knex, 'the write call to wait for the lock');
      const closing = server.close();
      server = undefined;
      await new Promise((resolve) => setTimeout(resolve, 100));
      await holder.query('COMMIT');
      const acks = await Promise.all(changes.map((ack) => Promise.race([ack, disconnected(socket)])));
      await closing;
      expect(acks.map((ack) => (typeof ack === 'string' ? `no ack: ${ack}` : ack.ok))).to.deep.equal(
        changes.map(() => true),
      );
    } finally {
      await holder.end();
    }
  });

  it('with PostgreSQL not answering, stops within SHUTDOWN_TIMEOUT_MS + DB_STATEMENT_TIMEOUT_MS', async () => {
    const databaseUrl = await createTestDatabase();
    proxy = await startProxy(databaseUrl);
    server = await startTestServer(
      proxy.urlThrough(databaseUrl),
      { SHUTDOWN_TIMEOUT_MS: '200', DB_STATEMENT_TIMEOUT_MS: '3000' },
      createLogger('silent'),
    );
    const owner = await newUser(server);
    const group = await createGroup(server.url, owner, await friendsOf(server, owner, 1));
    const socket = await connectSocket(server.url, owner.token);
    sockets.push(socket);

    // Nothing reaches PostgreSQL from here on, and nothing comes back: a send waits in its write.
    proxy.hold('upstream');
    void send(socket, group.id, 'never committed');
    await new Promise((resolve) => setTimeout(resolve, 200));

    const started = Date.now();
    await server.close();
    server = undefined;
    const took = Date.now() - started;
    // 200 + 3000 ms, and what the last steps take once nothing is waited for. Each step waited for its statement
    // (the adapter's goodbye, a heartbeat's NOTIFY) up to pg's query timeout, one after the other: 4 s and more.
    expect(took).to.be.below(200 + 3000 + 700);
  });
});
