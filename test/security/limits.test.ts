import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { io as connect } from 'socket.io-client';
import { SETTINGS } from '../../lib/config.js';
import type { Ack, ErrorCode } from '../../lib/protocol/index.js';
import { expectOk, friendsOf, newUser, rows, send } from '../helpers/chat.js';
import { errorCodeOf, expectAckError, type ErrorResponse } from '../helpers/errors.js';
import { directConversation } from '../helpers/faults.js';
import { useNode } from '../helpers/nodes.js';
import { connectSocket, type ClientSocket } from '../helpers/sockets.js';
import type { TestUser } from '../helpers/users.js';
import { waitFor } from '../helpers/waitFor.js';

const ALLOWED = 'https://chat.example.com';
const EVIL = 'https://evil.example.net';

/** A socket seen without the contract's types: any event name, any arguments. */
interface RawSocket {
  emit(event: string, ...args: unknown[]): void;
  emitWithAck(event: string, ...args: unknown[]): Promise<unknown>;
}

/** A socket with a browser Origin header (socket.io-client in Node sends none unless told). */
function connectWithOrigin(url: string, token: string, origin: string): Promise<ClientSocket> {
  const socket: ClientSocket = connect(url, {
    auth: { token },
    transports: ['websocket'],
    reconnection: false,
    forceNew: true,
    extraHeaders: { Origin: origin },
  });
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', (err) => {
      socket.close();
      reject(err);
    });
  });
}

describe('abuse limits', function () {
  this.timeout(30_000);
  const { server } = useNode({
    env: {
      CORS_ORIGINS: ALLOWED,
      MAX_CONNECTIONS_PER_IP: '3',
      SOCKET_EVENTS_PER_SEC: '5',
      SOCKET_MAX_BYTES: '32768',
      RATE_LIMIT_MESSAGES_PER_SEC: '2',
    },
  });
  let owner: TestUser;
  let conversationId: string;
  const sockets: ClientSocket[] = [];

  before(async () => {
    owner = await newUser(server);
    const [friend] = await friendsOf(server, owner, 1);
    conversationId = await directConversation(server.url, owner, friend!);
  });

  afterEach(async () => {
    for (const socket of sockets.splice(0)) socket.close();
    // Each test starts with this IP's connection slots free again.
    await waitFor(() => server.services.io.of('/').sockets.size === 0, { what: 'sockets to close' });
  });

  async function open(token = owner.token): Promise<ClientSocket> {
    const socket = await connectSocket(server.url, token);
    sockets.push(socket);
    return socket;
  }

  describe('HTTP CORS', () => {
    it('answers a preflight from an allowed origin with the CORS headers', async () => {
      const res = await fetch(`${server.url}/conversations`, {
        method: 'OPTIONS',
        headers: { Origin: ALLOWED, 'Access-Control-Request-Method': 'POST' },
      });
      expect(res.status).to.equal(204);
      expect(res.headers.get('access-control-allow-origin')).to.equal(ALLOWED);
      expect(res.headers.get('access-control-allow-methods')).to.include('PUT');
      expect(res.headers.get('access-control-allow-headers')).to.include('Authorization');
      expect(res.headers.get('vary')).to.include('Origin');
    });

    it('refuses another browser origin with 403 FORBIDDEN, preflight or not', async () => {
      for (const method of ['OPTIONS', 'GET']) {
        const res = await fetch(`${server.url}/healthz`, {
          method,
          headers: { Origin: EVIL, 'Access-Control-Request-Method': 'GET' },
        });
        expect(res.status).to.equal(403);
        expect(res.headers.get('access-control-allow-origin')).to.equal(null);
        expect(await res.json()).to.deep.equal({
          error: { code: 'FORBIDDEN', message: 'This origin is not allowed.' },
        } satisfies ErrorResponse);
      }
    });

    it('allows the server’s own host as origin, and requests without an Origin', async () => {
      const same = await fetch(`${server.url}/healthz`, { headers: { Origin: server.url } });
      expect(same.status).to.equal(200);
      expect(same.headers.get('access-control-allow-origin')).to.equal(server.url);
      const none = await fetch(`${server.url}/healthz`);
      expect(none.status).to.equal(200);
      expect(none.headers.get('access-control-allow-origin')).to.equal(null);
    });
  });

  describe('Socket.IO handshake origin', () => {
    it('refuses a browser origin outside CORS_ORIGINS', async () => {
      let refused: Error | undefined;
      try {
        sockets.push(await connectWithOrigin(server.url, owner.token, EVIL));
      } catch (err) {
        refused = err as Error;
      }
      expect(refused, 'the handshake is refused').to.be.instanceOf(Error);
    });

    it('accepts an allowed origin, the own host, and non-browser clients without an Origin', async () => {
      sockets.push(await connectWithOrigin(server.url, owner.token, ALLOWED));
      sockets.push(await connectWithOrigin(server.url, owner.token, server.url));
      await open();
      expect(sockets.every((s) => s.connected)).to.equal(true);
    });

    it('lets a long-polling page of an allowed origin send cookies (a balancer’s sticky-session cookie)', async () => {
      const res = await fetch(`${server.url}/socket.io/?EIO=4&transport=polling`, {
        headers: { Origin: ALLOWED },
      });
      expect(res.status).to.equal(200);
      expect(res.headers.get('access-control-allow-origin')).to.equal(ALLOWED);
      // Without it a browser drops the cookie of a cross-origin answer, and never sends one.
      expect(res.headers.get('access-control-allow-credentials')).to.equal('true');
    });
  });

  it('limits live sockets per IP (MAX_CONNECTIONS_PER_IP) and frees a slot on disconnect', async () => {
    for (let i = 0; i < 3; i++) await open();
    let refusal: Error | undefined;
    try {
      await open();
    } catch (err) {
      refusal = err as Error;
    }
    expect(refusal?.message).to.equal('RATE_LIMITED');
    sockets.shift()!.close();
    const fourth = await waitFor(
      async () => {
        try {
          return await open();
        } catch {
          return undefined;
        }
      },
      { what: 'a freed slot' },
    );
    expect(fourth.connected).to.equal(true);
  });

  it('does not count refused tokens against the IP', async () => {
    for (let i = 0; i < 5; i++) {
      let message = '';
      try {
        await open('not-a-token');
      } catch (err) {
        message = (err as Error).message;
      }
      expect(message).to.equal('UNAUTHORIZED');
    }
    for (let i = 0; i < 3; i++) await open();
  });

  it('rate-limits events per socket with RATE_LIMITED acks, whatever the event', async () => {
    const socket = await open();
    const acks = await Promise.all(
      Array.from({ length: 25 }, () => socket.emitWithAck('typing', { conversationId })),
    );
    const codes = acks.map((ack: Ack) => (ack.ok ? 'ok' : ack.error.code));
    expect(codes.filter((c) => c === 'ok').length).to.be.within(1, 12);
    expect(codes).to.include('RATE_LIMITED');
    expect(codes.every((c) => c === 'ok' || c === 'RATE_LIMITED')).to.equal(true);
  });

  it('counts unknown events and events without an ack against SOCKET_EVENTS_PER_SEC too', async () => {
    const socket = await open();
    const raw = socket as unknown as RawSocket;
    // Six without an ack and six unknown ones: more than the burst of 10 between them.
    for (let i = 0; i < 6; i++) raw.emit('typing', { conversationId });
    const unknown = (await Promise.all(
      Array.from({ length: 6 }, () => raw.emitWithAck('no:such-event', { conversationId })),
    )) as Ack[];
    expect(unknown.map(errorCodeOf)).to.include('RATE_LIMITED' satisfies ErrorCode);
    const refused = expectAckError(await socket.emitWithAck('typing', { conversationId }), 'RATE_LIMITED');
    expect(refused.details).to.have.property('retryAfter').that.is.at.least(1);
  });

  it('rate-limits sends per user across sockets (RATE_LIMIT_MESSAGES_PER_SEC), storing nothing refused', async () => {
    const sender = await newUser(server);
    const [friend] = await friendsOf(server, sender, 1);
    const conversation = await directConversation(server.url, sender, friend!);
    const [s1, s2] = [await open(sender.token), await open(sender.token)];
    const acks = await Promise.all(
      Array.from({ length: 8 }, (_, i) => send(i % 2 === 0 ? s1 : s2, conversation, `burst ${i}`)),
    );
    const limited = acks.filter((ack) => !ack.ok && ack.error.code === 'RATE_LIMITED');
    expect(limited.length).to.be.at.least(1);
    const okCount = acks.filter((ack) => ack.ok).length;
    const stored = await rows(server.services.db.knex, 'SELECT 1 FROM messages WHERE conversation_id = ?', [
      conversation,
    ]);
    expect(stored).to.have.length(okCount);
  });

  it('acks the largest valid send at the smallest SOCKET_MAX_BYTES (4000 control characters, six bytes each in JSON)', async () => {
    const socket = await open();
    const ack = expectOk(await send(socket, conversationId, 'a' + '\u0001'.repeat(3999)));
    expect([...ack.message.body]).to.have.length(4000);
    expect(socket.connected).to.equal(true);
  });

  it('closes a socket that sends more than SOCKET_MAX_BYTES, stores nothing, and keeps serving', async () => {
    const socket = await open();
    const disconnected = new Promise<string>((resolve) => socket.once('disconnect', resolve));
    const clientMsgId = randomUUID();
    socket.emit('message:send', { conversationId, clientMsgId, body: 'x'.repeat(40_000) }, () => undefined);
    expect(await disconnected).to.be.a('string');
    expect(
      await rows(server.services.db.knex, 'SELECT 1 FROM messages WHERE client_msg_id = ?', [clientMsgId]),
    ).to.have.length(0);
    expect((await fetch(`${server.url}/healthz`)).status).to.equal(200);
    expectOk(await send(await open(), conversationId, 'still fine'));
  });

  it('counts binary attachments in SOCKET_MAX_BYTES: five under it that together pass it close the socket', async () => {
    const socket = await open();
    const disconnected = new Promise<string>((resolve) => socket.once('disconnect', resolve));
    const clientMsgId = randomUUID();
    const attachments = Array.from({ length: 5 }, () => Buffer.alloc(8_000, 1));
    const acks: unknown[] = [];
    (socket as unknown as RawSocket).emit(
      'message:send',
      { conversationId, clientMsgId, body: 'hi', attachments },
      (ack: unknown) => acks.push(ack),
    );
    expect(await disconnected).to.equal('transport close');
    expect(acks).to.deep.equal([]);
    expect(
      await rows(server.services.db.knex, 'SELECT 1 FROM messages WHERE client_msg_id = ?', [clientMsgId]),
    ).to.have.length(0);

    // A message with a small attachment is within the cap: refused by its event's validation, socket kept.
    const small = await open();
    const ack = (await (small as unknown as RawSocket).emitWithAck('message:send', {
      conversationId,
      clientMsgId,
      body: Buffer.alloc(10, 1),
    })) as Ack;
    expectAckError(ack, 'VALIDATION_FAILED');
    expect(small.connected).to.equal(true);
  });

  it('answers an unknown event with VALIDATION_FAILED and ignores events without an ack', async () => {
    const socket = await open();
    // What a hostile client can emit, outside the typed contract.
    const raw = socket as unknown as RawSocket;
    const unknown = (await raw.emitWithAck('admin:drop-tables', { conversationId })) as Ack;
    expectAckError(unknown, 'VALIDATION_FAILED');
    // No ack callback: nothing to answer, and nothing may throw.
    const clientMsgId = randomUUID();
    raw.emit('message:send', { conversationId, clientMsgId, body: 'no ack' });
    raw.emit('typing');
    expect(socket.connected).to.equal(true);
    const ok = await socket.emitWithAck('conversation:subscribe', { conversationId });
    expect(ok.ok).to.equal(true);
    expect(
      await rows(server.services.db.knex, 'SELECT 1 FROM messages WHERE client_msg_id = ?', [clientMsgId]),
    ).to.have.length(0);
  });
});

describe('socket caps at their defaults: per user, and per IP high enough for a NAT', function () {
  this.timeout(60_000);
  const { server } = useNode({
    env: {
      MAX_CONNECTIONS_PER_IP: String(SETTINGS.MAX_CONNECTIONS_PER_IP.default),
      MAX_SOCKETS_PER_USER: String(SETTINGS.MAX_SOCKETS_PER_USER.default),
    },
  });
  // Closed after the suite, not after each test: the second test runs with the first one's 60 still open.
  const sockets: ClientSocket[] = [];

  after(() => {
    for (const socket of sockets.splice(0)) socket.close();
  });

  async function open(user: TestUser): Promise<ClientSocket> {
    const socket = await connectSocket(server.url, user.token);
    sockets.push(socket);
    return socket;
  }

  it('lets 60 users behind one address connect', async () => {
    const users = await Promise.all(Array.from({ length: 60 }, () => newUser(server)));
    const connected = await Promise.all(users.map((user) => open(user)));
    expect(connected.every((s) => s.connected)).to.equal(true);
  });

  it('refuses a user past MAX_SOCKETS_PER_USER with RATE_LIMITED, and frees the slot on disconnect', async () => {
    const cap = SETTINGS.MAX_SOCKETS_PER_USER.default;
    const user = await newUser(server);
    const own = await Promise.all(Array.from({ length: cap }, () => open(user)));
    let refusal: Error | undefined;
    try {
      await open(user);
    } catch (err) {
      refusal = err as Error;
    }
    expect(refusal?.message).to.equal('RATE_LIMITED');
    // Another user from the same address is not affected.
    expect((await open(await newUser(server))).connected).to.equal(true);
    own[0]!.close();
    const again = await waitFor(
      async () => {
        try {
          return await open(user);
        } catch {
          return undefined;
        }
      },
      { what: 'a freed slot' },
    );
    expect(again.connected).to.equal(true);
  });
});
