import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import jwt from 'jsonwebtoken';
import { io as connect } from 'socket.io-client';
import { disconnected } from './helpers/events.js';
import { request } from './helpers/http.js';
import { expectError } from './helpers/errors.js';
import { useNode } from './helpers/nodes.js';
import { TEST_JWT_SECRET } from './helpers/server.js';
import { connectSocket, type ClientSocket } from './helpers/sockets.js';
import { insertUser, type TestUser } from './helpers/users.js';
import { waitFor } from './helpers/waitFor.js';

const b64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
const nowSeconds = () => Math.floor(Date.now() / 1000);

/** A token as the server would sign it, with any claim or option overridden. */
function sign(
  payload: Record<string, unknown>,
  options: jwt.SignOptions = {},
  secret: string = TEST_JWT_SECRET,
): string {
  return jwt.sign(payload, secret, {
    algorithm: 'HS256',
    issuer: 'xfchat',
    audience: 'xfchat',
    expiresIn: 600,
    ...options,
  });
}

describe('JWT attacks on REST and on the Socket.IO handshake', function () {
  const { server, pool } = useNode();

  const newUser = () => insertUser(server.services.db.knex, server.services.config);

  /** The REST answer (on two bearer routes) and the handshake answer for `token`. */
  async function expectRefused(token: string | undefined, what: string): Promise<void> {
    for (const path of ['/auth/me', '/friends']) {
      const res = await request(server.url, 'GET', path, token === undefined ? {} : { token });
      expectError(res, 401, 'UNAUTHORIZED', `${what}: GET ${path}`);
    }
    let error: Error | undefined;
    try {
      pool.track(await connectSocket(server.url, token));
    } catch (err) {
      error = err as Error;
    }
    expect(error, `${what}: the handshake must fail`).to.be.instanceOf(Error);
    expect(error!.message, what).to.equal('UNAUTHORIZED');
  }

  async function expectAccepted(token: string, user: TestUser): Promise<void> {
    const res = await request<{ user: { id: string } }>(server.url, 'GET', '/auth/me', { token });
    expect(res.status).to.equal(200);
    expect(res.body.user.id).to.equal(user.id);
    const socket = await connectSocket(server.url, token);
    pool.track(socket);
    expect(socket.connected).to.equal(true);
  }

  it('accepts a well-formed token (the control case)', async () => {
    const user = await newUser();
    await expectAccepted(user.token, user);
    await expectAccepted(sign({ sid: user.sessionId }, { subject: user.id }), user);
  });

  it('refuses a missing token and garbage', async () => {
    await expectRefused(undefined, 'missing');
    await expectRefused('', 'empty');
    await expectRefused('not-a-jwt', 'garbage');
    await expectRefused(`${'a'.repeat(3000)}.${'b'.repeat(2000)}.c`, 'oversized');
  });

  it('refuses alg "none" (unsigned) tokens', async () => {
    const user = await newUser();
    const payload = {
      sub: user.id,
      sid: user.sessionId,
      iss: 'xfchat',
      aud: 'xfchat',
      iat: nowSeconds(),
      exp: nowSeconds() + 600,
    };
    for (const alg of ['none', 'None', 'NONE']) {
      await expectRefused(`${b64url({ alg, typ: 'JWT' })}.${b64url(payload)}.`, `alg ${alg}`);
    }
  });

  it('refuses a token signed with another secret or another algorithm', async () => {
    const user = await newUser();
    await expectRefused(sign({ sid: user.sessionId }, { subject: user.id }, 'x'.repeat(64)), 'wrong secret');
    await expectRefused(
      sign({ sid: user.sessionId }, { subject: user.id, algorithm: 'HS512' }),
      'HS512 with the right secret',
    );
  });

  it('refuses an expired token and one without exp', async () => {
    const user = await newUser();
    const expired = jwt.sign(
      { sid: user.sessionId, exp: nowSeconds() - 5, iat: nowSeconds() - 100 },
      TEST_JWT_SECRET,
      {
        algorithm: 'HS256',
        subject: user.id,
        issuer: 'xfchat',
        audience: 'xfchat',
      },
    );
    await expectRefused(expired, 'expired');
    const noExp = jwt.sign({ sid: user.sessionId }, TEST_JWT_SECRET, {
      algorithm: 'HS256',
      subject: user.id,
      issuer: 'xfchat',
      audience: 'xfchat',
    });
    expect(jwt.decode(noExp)).to.not.have.property('exp');
    await expectRefused(noExp, 'missing exp');
  });

  it('refuses a tampered payload (another user id, another version) under the original signature', async () => {
    const victim = await newUser();
    const attacker = await newUser();
    const [header, payload, signature] = attacker.token.split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<string, unknown>;
    await expectRefused(`${header}.${b64url({ ...claims, sub: victim.id })}.${signature}`, 'tampered sub');
    await expectRefused(
      `${header}.${b64url({ ...claims, exp: nowSeconds() + 86400 })}.${signature}`,
      'tampered exp',
    );
    // The attacker's own token still works: the refusals above were about the tampering.
    await expectAccepted(attacker.token, attacker);
  });

  it('refuses the wrong audience, the wrong issuer and missing claims', async () => {
    const user = await newUser();
    await expectRefused(
      sign({ sid: user.sessionId }, { subject: user.id, audience: 'other-app' }),
      'wrong audience',
    );
    await expectRefused(sign({ sid: user.sessionId }, { subject: user.id, issuer: 'evil' }), 'wrong issuer');
    await expectRefused(
      jwt.sign({ sid: user.sessionId }, TEST_JWT_SECRET, {
        algorithm: 'HS256',
        subject: user.id,
        expiresIn: 600,
      }),
      'no issuer nor audience',
    );
    await expectRefused(sign({}, { subject: user.id }), 'missing sid');
    await expectRefused(sign({ sid: 'not-a-uuid' }, { subject: user.id }), 'sid not a UUID');
    await expectRefused(sign({ sid: user.sessionId }), 'missing sub');
    await expectRefused(sign({ sid: user.sessionId }, { subject: 'not-a-uuid' }), 'sub not a UUID');
    await expectRefused(sign({ sid: randomUUID() }, { subject: user.id }), 'a session that does not exist');
    const other = await newUser();
    await expectRefused(sign({ sid: other.sessionId }, { subject: user.id }), "another user's session");
    await expectRefused(
      sign({ sid: user.sessionId }, { subject: user.id, noTimestamp: true }),
      'missing iat',
    );
  });

  it('refuses a correctly signed token that claims a longer life than JWT_TTL_SECONDS, or a future iat', async () => {
    const user = await newUser();
    const ttl = server.services.config.auth.tokenTtlSeconds;
    await expectAccepted(sign({ sid: user.sessionId }, { subject: user.id, expiresIn: ttl }), user);
    await expectRefused(
      sign({ sid: user.sessionId }, { subject: user.id, expiresIn: 10 * 365 * 24 * 3600 }),
      'a ten-year token',
    );
    await expectRefused(
      sign({ sid: user.sessionId }, { subject: user.id, expiresIn: ttl + 120 }),
      'two minutes over the lifetime',
    );
    const future = nowSeconds() + 3600;
    await expectRefused(
      jwt.sign({ sid: user.sessionId, iat: future, exp: future + 60 }, TEST_JWT_SECRET, {
        algorithm: 'HS256',
        subject: user.id,
        issuer: 'xfchat',
        audience: 'xfchat',
      }),
      'issued an hour from now',
    );
  });

  it("refuses a deleted user's token", async () => {
    const user = await newUser();
    await expectAccepted(user.token, user);
    await server.services.db.knex('users').where({ id: user.id }).delete();
    await expectRefused(user.token, 'deleted user');
  });

  it('refuses a token from before logout, and logout disconnects the open socket', async () => {
    const user = await newUser();
    const socket = await connectSocket(server.url, user.token);
    pool.track(socket);
    const gone = disconnected(socket);
    const out = await request(server.url, 'POST', '/auth/logout', { token: user.token });
    expect(out.status).to.equal(204);
    expect(await gone).to.equal('io server disconnect');
    await expectRefused(user.token, 'token from before logout');
  });

  it('never reads the token from the query string', async () => {
    const user = await newUser();
    const socket: ClientSocket = connect(server.url, {
      query: { token: user.token },
      transports: ['websocket'],
      reconnection: false,
      forceNew: true,
    });
    pool.track(socket);
    const error = await new Promise<Error>((resolve, reject) => {
      socket.once('connect', () => reject(new Error('connected with a query-string token')));
      socket.once('connect_error', resolve);
    });
    expect(error.message).to.equal('UNAUTHORIZED');
    const res = await request(server.url, 'GET', `/auth/me?token=${user.token}`);
    expect(res.status).to.equal(401);
  });

  it('disconnects a socket when its token expires', async () => {
    const user = await newUser();
    const exp = nowSeconds() + 3;
    const token = jwt.sign({ sid: user.sessionId, exp }, TEST_JWT_SECRET, {
      algorithm: 'HS256',
      subject: user.id,
      issuer: 'xfchat',
      audience: 'xfchat',
    });
    const socket = await connectSocket(server.url, token);
    pool.track(socket);
    const reason = await disconnected(socket);
    const at = server.services.clock.now();
    expect(reason).to.equal('io server disconnect');
    // Not before the expiry by the clock the node counts expiries by (PostgreSQL's, as the node measures it: this
    // machine's own clock may differ from it by a millisecond of rounding), and promptly after it.
    expect(at).to.be.at.least(exp * 1000);
    expect(at).to.be.at.most(exp * 1000 + 3000);
    await waitFor(() => socket.disconnected, { what: 'the socket to be closed' });
    await expectRefused(token, 'the expired token');
  });
});
