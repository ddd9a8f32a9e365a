import net from 'node:net';
import { expect } from 'chai';
import pg from 'pg';
import { Manager } from 'socket.io-client';
import { newUser } from '../helpers/chat.js';
import { useNode } from '../helpers/nodes.js';
import { statementsWaitingForALockIn } from '../helpers/postgres.js';
import { connectSocket, type ClientSocket } from '../helpers/sockets.js';
import { waitFor } from '../helpers/waitFor.js';

/** A raw engine.io connection over WebSocket, to write Socket.IO packets as a hostile client would. */
async function openTransport(url: string) {
  const manager = new Manager(url, { transports: ['websocket'], reconnection: false, autoConnect: false });
  await new Promise<void>((resolve, reject) => manager.open((err) => (err ? reject(err) : resolve())));
  const engine = manager.engine;
  const received: string[] = [];
  engine.on('message', (data) => received.push(String(data)));
  const closed = new Promise<void>((resolve) => engine.once('close', () => resolve()));
  return {
    received,
    closed,
    /** A Socket.IO CONNECT of the main namespace with this token (wire: `40{"token":...}`). */
    connect: (token: string) => engine.send(`0${JSON.stringify({ token })}`),
    close: () => engine.close(),
  };
}

/** Resolves when the server closes `socket` (a raw TCP connection). */
const serverCloses = (socket: net.Socket) =>
  new Promise<void>((resolve) => {
    socket.on('close', () => resolve());
    socket.on('error', () => resolve());
  });

describe('connections: slots and silent clients', function () {
  this.timeout(30_000);
  const node = useNode({ env: { MAX_SOCKETS_PER_USER: '2', HTTP_IDLE_TIMEOUT_MS: '1000' } });
  const { server, pool } = node;

  it('a connection that closes while its handshake is checked gives its slot back', async () => {
    const user = await newUser(server);
    // Several CONNECTs, then the connection goes at once: every handshake is still being checked when it closes.
    for (let round = 0; round < 5; round++) {
      const transport = await openTransport(server.url);
      for (let i = 0; i < 5; i++) transport.connect(user.token);
      transport.close();
      await transport.closed;
    }
    // Each handshake's check ends after the close; then both of the user's slots must be free.
    const sockets: ClientSocket[] = [];
    await waitFor(
      async () => {
        sockets.push(pool.track(await connectSocket(server.url, user.token)));
        return sockets.length === 2;
      },
      { what: 'the user’s two slots to be free' },
    );
    expect(sockets.every((s) => s.connected)).to.equal(true);
  });

  it('a second CONNECT while the first is checked is refused without a check of its own', async () => {
    const user = await newUser(server);
    const transport = await openTransport(server.url);
    try {
      transport.connect(user.token);
      transport.connect(user.token);
      await waitFor(() => transport.received.length >= 2, { what: 'two answers' });
      // 0: the first socket connected; 4: the second refused.
      expect(transport.received.map((m) => m[0]).sort()).to.deep.equal(['0', '4']);
      const refusal = transport.received.find((m) => m.startsWith('4'));
      expect(JSON.parse(refusal!.slice(1))).to.deep.include({ message: 'VALIDATION_FAILED' });
    } finally {
      transport.close();
    }
  });

  it('closes a connection that never sends a byte', async () => {
    const { port } = new URL(server.url);
    const socket = net.connect({ host: '127.0.0.1', port: Number(port) });
    await new Promise((resolve) => socket.once('connect', resolve));
    const started = Date.now();
    await serverCloses(socket);
    expect(Date.now() - started).to.be.below(10_000);
  });

  /** The body of a raw HTTP answer, parsed: the error envelope. */
  const envelopeOf = (answer: string): unknown => JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4));

  it('answers 408 REQUEST_TIMEOUT, then closes, a request whose body stops coming', async () => {
    const { port } = new URL(server.url);
    const socket = net.connect({ host: '127.0.0.1', port: Number(port) });
    let answer = '';
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString()));
    socket.write(
      'POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{',
    );
    await serverCloses(socket);
    expect(answer).to.match(/^HTTP\/1\.1 408 Request Timeout\r\n/);
    expect(answer).to.match(/\r\nX-Request-Id: [0-9a-f-]{36}\r\n/);
    expect(envelopeOf(answer)).to.deep.equal({
      error: { code: 'REQUEST_TIMEOUT', message: 'The request did not arrive whole in time.' },
    });
  });

  it('answers that 408 with the request’s own X-Request-Id, which its head carried (docs/errors.md)', async () => {
    const { port } = new URL(server.url);
    const socket = net.connect({ host: '127.0.0.1', port: Number(port) });
    let answer = '';
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString()));
    socket.write(
      'POST /auth/login HTTP/1.1\r\nHost: x\r\nX-Request-Id: timeout-probe-1\r\nContent-Type: application/json\r\n' +
        'Content-Length: 50\r\n\r\n{',
    );
    await serverCloses(socket);
    expect(answer).to.match(/^HTTP\/1\.1 408 Request Timeout\r\n/);
    expect(answer).to.match(/\r\nX-Request-Id: timeout-probe-1\r\n/);
  });

  /** Writes `text` to `socket` a byte every `everyMs`, until the server closes it or `text` ends. */
  async function trickle(socket: net.Socket, text: string, everyMs: number): Promise<void> {
    for (const byte of text) {
      if (socket.destroyed || !socket.writable) return;
      socket.write(byte);
      await new Promise((resolve) => setTimeout(resolve, everyMs));
    }
  }

  it('closes a connection whose request head or body trickles in past the idle timeout (408)', async () => {
    const { port } = new URL(server.url);
    const head = 'GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n';
    const body =
      'POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 60\r\n\r\n';
    for (const [what, prefix, slow] of [
      ['an upgrade head', '', head.repeat(4)],
      ['a body', body, '{"username":"nobody","password":"a trickled password....."}'],
    ] as const) {
      const socket = net.connect({ host: '127.0.0.1', port: Number(port) });
      await new Promise((resolve) => socket.once('connect', resolve));
      let answer = '';
      socket.on('data', (chunk: Buffer) => (answer += chunk.toString()));
      socket.write(prefix);
      const started = Date.now();
      const closed = serverCloses(socket);
      // A byte every 100 ms is never silent for the idle timeout (1 s), and would take over 4 s whole.
      void trickle(socket, slow, 100);
      await closed;
      expect(Date.now() - started, what).to.be.below(3500);
      expect(answer, what).to.match(/^HTTP\/1\.1 408/);
      expect(envelopeOf(answer), what).to.have.nested.property('error.code', 'REQUEST_TIMEOUT');
      socket.destroy();
    }
  });

  it('answers a body announced too large at once, and closes its connection a second later instead of reading all of it', async () => {
    const { port } = new URL(server.url);
    const socket = net.connect({ host: '127.0.0.1', port: Number(port) });
    await new Promise((resolve) => socket.once('connect', resolve));
    let answer = '';
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString()));
    socket.on('error', () => undefined);
    const closed = serverCloses(socket);
    socket.write(
      'POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 104857600\r\n\r\n',
    );
    const chunk = Buffer.alloc(64 * 1024, 'a');
    // Keeps sending the announced 100 MB, a chunk every 5 ms: the node answers 413 at once, reads and throws away
    // what follows for a second (so a client still sending reads its answer), then closes the connection.
    const started = Date.now();
    let answeredAt: number | undefined;
    while (!socket.destroyed && Date.now() - started < 6000) {
      if (answeredAt === undefined && answer.includes('\r\n\r\n')) answeredAt = Date.now();
      socket.write(chunk);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await closed;
    expect(answer).to.match(/^HTTP\/1\.1 413/);
    expect(answeredAt, 'answered while the body was still coming').to.not.equal(undefined);
    expect(Date.now() - answeredAt!, 'closed a moment after the answer').to.be.below(3000);
  });

  it('answers Expect: 100-continue with 413 for a body announced too large, and with 100 Continue otherwise', async () => {
    /** What the node answers to the head alone, before any body: the first response line and headers. */
    const answerToHead = async (length: number) => {
      const { port } = new URL(server.url);
      const socket = net.connect({ host: '127.0.0.1', port: Number(port) });
      socket.on('error', () => undefined);
      await new Promise((resolve) => socket.once('connect', resolve));
      let answer = '';
      socket.on('data', (chunk: Buffer) => (answer += chunk.toString()));
      socket.write(
        `POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: ${length}\r\n\r\n`,
      );
      await waitFor(() => answer.includes('\r\n\r\n'), { what: 'an answer to the head' });
      return { socket, answer: () => answer };
    };

    const tooLarge = await answerToHead(70 * 1024);
    expect(tooLarge.answer()).to.match(/^HTTP\/1\.1 413 /);
    expect(tooLarge.answer()).to.include('"code":"PAYLOAD_TOO_LARGE"');
    expect(tooLarge.answer()).to.not.include('100 Continue');
    tooLarge.socket.destroy();

    const body = JSON.stringify({ username: 'nobody-here', password: 'not the password' });
    const within = await answerToHead(Buffer.byteLength(body));
    expect(within.answer()).to.equal('HTTP/1.1 100 Continue\r\n\r\n');
    within.socket.write(body);
    await waitFor(() => /HTTP\/1\.1 401 /.test(within.answer()), { what: 'the answer to the body' });
    within.socket.destroy();
  });

  it('answers a request that takes longer than the idle timeout', async () => {
    const user = await newUser(server);
    const name = new URL(node.databaseUrl).pathname.slice(1);
    const blocker = new pg.Client({ connectionString: node.databaseUrl });
    await blocker.connect();
    try {
      // Holds every read of the user's session for 2.5 s, more than twice the idle timeout.
      await blocker.query('BEGIN');
      await blocker.query('LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE');
      const answer = fetch(`${server.url}/auth/me`, { headers: { Authorization: `Bearer ${user.token}` } });
      const waiting = async () => (await statementsWaitingForALockIn(name)) > 0;
      await waitFor(waiting, { what: 'the request to wait for the lock' });
      await new Promise((resolve) => setTimeout(resolve, 2500));
      await blocker.query('COMMIT');
      expect((await answer).status).to.equal(200);
    } finally {
      await blocker.end();
    }
  });
});

describe('connections: transports waiting for their handshake, per address', function () {
  this.timeout(30_000);
  const { server, pool } = useNode({ env: { MAX_CONNECTIONS_PER_IP: '3' } });

  /** An engine.io polling handshake, as anyone may send it: its session id, or the refusal's status. */
  async function openPolling(): Promise<{ status: number; sid?: string }> {
    const res = await fetch(`${server.url}/socket.io/?EIO=4&transport=polling`);
    const text = await res.text();
    if (res.status !== 200) return { status: res.status };
    // `0{"sid":...}`: the open packet.
    return { status: 200, sid: (JSON.parse(text.slice(1)) as { sid: string }).sid };
  }
  /** Ends a polling transport with a close packet. */
  const closePolling = (sid: string) =>
    fetch(`${server.url}/socket.io/?EIO=4&transport=polling&sid=${sid}`, { method: 'POST', body: '1' });

  /** A poll of a polling transport that has ended: its session is unknown (`400`), answered at once. */
  const pollStatus = async (sid: string) => {
    const res = await fetch(`${server.url}/socket.io/?EIO=4&transport=polling&sid=${sid}`);
    await res.text();
    return res.status;
  };

  it('ends the oldest transport waiting for its handshake of an address with MAX_CONNECTIONS_PER_IP waiting, so that a user behind it still connects', async () => {
    // Connected sockets do not wait: two of them leave the address's waiting count at zero (and one place of its
    // live sockets, which the same setting caps, for the user below).
    for (let i = 0; i < 2; i++) await pool.open(server.url, await newUser(server));
    const waiting: string[] = [];
    for (let i = 0; i < 3; i++) {
      const opened = await openPolling();
      expect(opened.status).to.equal(200);
      waiting.push(opened.sid ?? '');
    }
    // A fourth, anonymous like the others: the first of them ends.
    const fourth = await openPolling();
    expect(fourth.status).to.equal(200);
    expect(await pollStatus(waiting[0]!)).to.equal(400);
    // A user behind the same address, while it is full of transports that never send a handshake: it connects.
    const socket = await pool.open(server.url, await newUser(server));
    expect(socket.connected).to.equal(true);
    expect(await pollStatus(waiting[1]!)).to.equal(400);
    for (const sid of [waiting[2]!, fourth.sid ?? '']) await closePolling(sid);
  });
});

describe('connections: idle keep-alive connections between requests', function () {
  this.timeout(30_000);
  const node = useNode({ env: { HTTP_IDLE_TIMEOUT_MS: '8000' } });

  /** Writes one request on `socket` and resolves with the raw answer (head and body) once it is complete. */
  function exchange(socket: net.Socket, path: string): Promise<string> {
    return new Promise((resolve, reject) => {
      let answer = '';
      const onData = (chunk: Buffer) => {
        answer += chunk.toString('utf8');
        const end = answer.indexOf('\r\n\r\n');
        const length = /content-length: (\d+)/i.exec(answer);
        if (end >= 0 && length && answer.length >= end + 4 + Number(length[1])) {
          socket.off('data', onData);
          resolve(answer);
        }
      };
      socket.on('data', onData);
      socket.once('error', reject);
      socket.write(`GET ${path} HTTP/1.1\r\nHost: xfchat.test\r\n\r\n`);
    });
  }

  it('keeps one open for HTTP_IDLE_TIMEOUT_MS, not Node’s 5 s, says so in Keep-Alive, and closes it after', async () => {
    const { port } = new URL(node.server.url);
    const socket = net.connect({ host: '127.0.0.1', port: Number(port) });
    await new Promise((resolve) => socket.once('connect', resolve));
    const closed = serverCloses(socket);
    let closedAt: number | undefined;
    void closed.then(() => (closedAt = Date.now()));
    const first = await exchange(socket, '/healthz');
    expect(first).to.match(/^HTTP\/1\.1 200/);
    expect(first).to.match(/\r\nKeep-Alive: timeout=8\r\n/i);
    // A balancer reusing its upstream connection after 6 s of quiet (nginx and AWS keep them 60 s).
    await new Promise((resolve) => setTimeout(resolve, 6000));
    expect(closedAt, 'closed while idle').to.equal(undefined);
    expect(await exchange(socket, '/healthz')).to.match(/^HTTP\/1\.1 200/);
    const idleFrom = Date.now();
    await closed;
    // Node checks its timeouts every few seconds (connectionsCheckingInterval): closed after 8 s, give or take.
    expect(closedAt! - idleFrom).to.be.within(7000, 14_000);
  });
});
