import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { expect } from 'chai';
import pg from 'pg';
import { AppError } from '../lib/errors.js';
import { request } from './helpers/http.js';
import { captureLogs } from './helpers/logCapture.js';
import { createTestDatabase } from './helpers/postgres.js';
import { startServer, type RunningServer } from '../lib/server.js';
import { testConfig } from './helpers/server.js';

const SECRET = 'pg-password-that-must-not-show';

describe('logger: what a line may hold', () => {
  it('logs an error as {type, message, code, stack}, never the driver client pg-pool attaches to it', () => {
    const logs = captureLogs('info');
    const client = new pg.Client({ connectionString: `postgres://xfchat:${SECRET}@127.0.0.1:1/db` });
    const err = Object.assign(new Error('terminating connection due to administrator command'), {
      code: '57P01',
      client,
      connection: new net.Socket(),
    });
    logs.logger.warn({ err }, 'idle client failed');
    const [entry] = logs.entries();
    expect(Object.keys(entry!.err as object).sort()).to.deep.equal(['code', 'message', 'stack', 'type']);
    expect(entry!.err).to.include({ type: 'Error', code: '57P01' });
    expect(logs.text()).not.to.match(/secretKey|processID|connectionParameters/);
    expect(logs.text()).not.to.include(SECRET);
  });

  it('folds causes into the message and stack', () => {
    const logs = captureLogs('info');
    const cause = Object.assign(new Error('Connection terminated unexpectedly'), { client: new pg.Client() });
    logs.logger.error({ err: new AppError('DB_UNAVAILABLE', { cause }) }, 'failed');
    const err = logs.entries()[0]!.err as { type: string; message: string; code: string; stack: string };
    expect(err.type).to.equal('AppError');
    expect(err.code).to.equal('DB_UNAVAILABLE');
    expect(err.message).to.include('caused by Error: Connection terminated unexpectedly');
    expect(err.stack).to.include('caused by: Error: Connection terminated unexpectedly');
  });

  it('drops live objects, redacts secret keys at any depth, hides URL passwords, and bounds the line', () => {
    const logs = captureLogs('info');
    logs.logger.warn(
      {
        payload: { nested: { socket: new net.Socket(), password: SECRET, deeper: { token: 'abc' } } },
        url: `postgres://xfchat:${SECRET}@db.internal/xfchat`,
        inQuery: `postgres://xfchat@db.internal/xfchat?password=${SECRET}&application_name=x`,
        huge: 'x'.repeat(100_000),
        many: Array.from({ length: 1000 }, (_, i) => ({ i, text: 'y'.repeat(500) })),
      },
      'z'.repeat(50_000),
    );
    const text = logs.text();
    expect(text).not.to.include(SECRET);
    expect(text).not.to.include('"abc"');
    expect(Buffer.byteLength(text)).to.be.below(8192);
    const entry = logs.entries()[0]!;
    expect((entry.payload as { nested: { socket: unknown } }).nested.socket).to.equal('[Socket]');
    expect(entry.url).to.equal('postgres://xfchat:***@db.internal/xfchat');
    expect(entry.inQuery).to.equal('postgres://xfchat@db.internal/xfchat?password=***&application_name=x');
  });

  it('redacts every secret-named key, whatever its case or separators, and keeps the names that only mention one', () => {
    const logs = captureLogs('info');
    const secrets = {
      access_token: 'S1',
      refresh_token: 'S2',
      refreshToken: 'S3',
      Password: 'S4',
      'X-Auth-Token': 'S5',
      clientSecret: 'S6',
      'api-key': 'S7',
      AUTHORIZATION: 'S8',
      Cookie: 'S9',
      currentPassword: 'S10',
    };
    logs.logger.warn(
      {
        query: secrets,
        nested: { deeper: { ...secrets } },
        auth: { tokenTtlSeconds: 900, passwordChangedAt: 'yesterday' },
      },
      'line',
    );
    const entry = logs.entries()[0]!;
    const redacted = Object.fromEntries(Object.keys(secrets).map((key) => [key, '[redacted]']));
    expect(entry.query).to.deep.equal(redacted);
    expect((entry.nested as { deeper: unknown }).deeper).to.deep.equal(redacted);
    // Not secrets, only about one.
    expect(entry.auth).to.deep.equal({ tokenTtlSeconds: 900, passwordChangedAt: 'yesterday' });
    expect(logs.text()).not.to.match(/"S\d+"/);
  });

  it('hides secret-named parameters in logged URLs, query strings and messages', () => {
    const logs = captureLogs('info');
    const jwt = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl';
    logs.logger.warn(
      {
        url: `/auth/me?access_token=${jwt}&page=2`,
        refresh: `/auth/refresh?x=1&refreshToken=${jwt}#id_token=${jwt}`,
        encoded: `/auth/me?access%5Ftoken=${jwt}`,
        bare: `token=${jwt}&limit=10`,
        header: `theme=dark; session_token=${jwt}`,
        keywords: `host=db.internal password=${jwt} dbname=xfchat`,
        inQuery: `postgres://xfchat@db.internal/xfchat?sslpassword=${jwt}&application_name=x`,
        plain: 'a=1&b=2 tokenTtlSeconds=900',
      },
      `GET /auth/me?access_token=${jwt} failed`,
    );
    expect(logs.text()).not.to.include(jwt);
    const entry = logs.entries()[0]!;
    expect(entry.url).to.equal('/auth/me?access_token=***&page=2');
    expect(entry.refresh).to.equal('/auth/refresh?x=1&refreshToken=***#id_token=***');
    expect(entry.encoded).to.equal('/auth/me?access%5Ftoken=***');
    expect(entry.bare).to.equal('token=***&limit=10');
    expect(entry.header).to.equal('theme=dark; session_token=***');
    expect(entry.keywords).to.equal('host=db.internal password=*** dbname=xfchat');
    expect(entry.inQuery).to.equal('postgres://xfchat@db.internal/xfchat?sslpassword=***&application_name=x');
    expect(entry.plain).to.equal('a=1&b=2 tokenTtlSeconds=900');
    expect(entry.msg).to.equal('GET /auth/me?access_token=*** failed');
  });

  it('hides tokens by their shape under names no list knows: a JWT, and a refresh token’s 43 characters', () => {
    const logs = captureLogs('info');
    const jwt = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl';
    const refresh = 'Ab3_-x'.repeat(7) + 'Z';
    logs.logger.warn({
      query: `/auth/me?auth=${jwt}&t=${refresh}`,
      header: `access_token, ${jwt}`,
      path: `/x/${refresh}/y`,
      near: `${'C'.repeat(44)} ${'B'.repeat(42)} 0123e4567-e89b-12d3-a456-426614174000`,
      // 43 characters of one case: a migration's name, a database's or a host's.
      names: '20261205100000_release_0_2_0_writes_current XFCHAT_PRODUCTION_EU_WEST_1_PRIMARY_DB_2026',
      // After a percent-escape (encodeURIComponent of "Bearer <token>"), as after a space.
      escaped: `/auth/me?auth=Bearer%20${jwt}&rt=%20${refresh}`,
    });
    expect(logs.text()).not.to.include(jwt.split('.')[2]);
    expect(logs.text()).not.to.include(refresh);
    const entry = logs.entries()[0]!;
    expect(entry.query).to.equal('/auth/me?auth=eyJ***&t=***');
    expect(entry.header).to.equal('access_token, eyJ***');
    expect(entry.path).to.equal('/x/***/y');
    expect(entry.escaped).to.equal('/auth/me?auth=Bearer%20eyJ***&rt=%20***');
    // Runs of other lengths, and a request id, are kept.
    expect(entry.near).to.equal(`${'C'.repeat(44)} ${'B'.repeat(42)} 0123e4567-e89b-12d3-a456-426614174000`);
    expect(entry.names).to.equal(
      '20261205100000_release_0_2_0_writes_current XFCHAT_PRODUCTION_EU_WEST_1_PRIMARY_DB_2026',
    );
  });

  it('logs a request carrying tokens under names no list knows (a query parameter, a header) without them', async () => {
    const logs = captureLogs('debug');
    const server = await startServer(testConfig(await createTestDatabase(), { LOG_LEVEL: 'debug' }), {
      logger: logs.logger,
    });
    const token = 'eyJhbGciOiJIUzI1NiJ9.eyJxdWVyeSI6InRva2VuIn0.unnamed-token-value';
    const refresh = 'r'.repeat(38) + 'EfR_9';
    try {
      await request(server.url, 'GET', `/auth/me?auth=${token}&refresh=${refresh}`, {
        headers: { 'x-auth': token, 'sec-websocket-protocol': `access_token, ${token}` },
      });
    } finally {
      await server.close();
    }
    expect(logs.text()).to.include('"url":"/auth/me');
    expect(logs.text()).not.to.include('unnamed-token-value');
    expect(logs.text()).not.to.include(refresh);
  });

  it('logs a request with an access token in its query string (LOG_LEVEL=debug) without the token', async () => {
    const logs = captureLogs('debug');
    const server = await startServer(testConfig(await createTestDatabase(), { LOG_LEVEL: 'debug' }), {
      logger: logs.logger,
    });
    const token = 'eyJhbGciOiJIUzI1NiJ9.eyJxdWVyeSI6InRva2VuIn0.query-token-value';
    try {
      await request(server.url, 'GET', `/auth/me?access_token=${token}&refresh_token=${token}`);
    } finally {
      await server.close();
    }
    const line = logs
      .text()
      .split('\n')
      .find((l) => l.includes('"url":"/auth/me'));
    expect(line, 'the request line').to.be.a('string');
    expect(line).not.to.include('query-token-value');
    const req = (JSON.parse(line!) as { req: { url: string; query: Record<string, unknown> } }).req;
    expect(req.url).to.equal('/auth/me?access_token=***&refresh_token=***');
    expect(req.query).to.deep.equal({ access_token: '[redacted]', refresh_token: '[redacted]' });
  });

  it('logs requests with the Authorization header redacted and long headers cut', async () => {
    const logs = captureLogs('debug');
    const server = await startServer(testConfig(await createTestDatabase(), { LOG_LEVEL: 'debug' }), {
      logger: logs.logger,
    });
    try {
      await request(server.url, 'GET', '/healthz', {
        token: 'a-bearer-token-value',
        headers: { 'x-padding': 'p'.repeat(12_000) },
      });
    } finally {
      await server.close();
    }
    const line = logs
      .text()
      .split('\n')
      .find((l) => l.includes('"url":"/healthz"'));
    expect(line, 'the request line').to.be.a('string');
    expect(line).not.to.include('a-bearer-token-value');
    expect(Buffer.byteLength(line!)).to.be.below(8192);
  });
});

describe('logger: the lines of requests', function () {
  this.timeout(60_000);
  let server: RunningServer;
  let admin: pg.Client;
  const logs = captureLogs('debug');

  before(async () => {
    const url = await createTestDatabase();
    server = await startServer(testConfig(url, { LOG_LEVEL: 'debug', DB_STATEMENT_TIMEOUT_MS: '1000' }), {
      logger: logs.logger,
    });
    admin = new pg.Client({ connectionString: url });
    await admin.connect();
  });
  after(async () => {
    await admin.end();
    await server.close();
  });

  it('hides a token sent as a bare query string (`?<token>`): pino-http logs it as a key of req.query', async () => {
    const signup = await request<{ token: string; refreshToken: string }>(
      server.url,
      'POST',
      '/auth/signup',
      {
        body: { username: 'query_key', password: 'a-password-of-the-user-1' },
      },
    );
    const { token, refreshToken } = signup.body;
    await request(server.url, 'GET', `/auth/me?${token}`);
    await request(server.url, 'GET', `/auth/me?${refreshToken}`);
    const lines = logs
      .text()
      .split('\n')
      .filter((l) => l.includes('"url":"/auth/me'));
    expect(lines, 'the two request lines').to.have.length(2);
    for (const line of lines) {
      expect(line, 'the access token (its signature)').not.to.include(token.split('.')[2]);
      expect(line, 'the refresh token').not.to.include(refreshToken);
    }
  });

  it('logs the request id it answered with: a client’s id shaped like a token is replaced, not logged as ***', async () => {
    const ids = { tokenShaped: randomBytes(32).toString('base64url'), plain: 'client-request-1' };
    for (const [what, sent] of Object.entries(ids)) {
      const res = await request(server.url, 'GET', `/no-such-route/${what}`, {
        headers: { 'x-request-id': sent },
      });
      const answered = res.headers.get('x-request-id');
      const line = logs
        .entries()
        .find((e) => (e.req as { url?: string } | undefined)?.url === `/no-such-route/${what}`);
      expect(line, `the request line (${what})`).to.be.an('object');
      expect((line!.req as { id: unknown }).id, `the id in the log (${what})`).to.equal(answered);
    }
    // A client's id the log shows as it is stays the answer's.
    const plain = await request(server.url, 'GET', '/healthz', { headers: { 'x-request-id': ids.plain } });
    expect(plain.headers.get('x-request-id')).to.equal(ids.plain);
  });

  it('names a failed statement’s error by its class and SQLSTATE in the request failed line', async () => {
    // Another transaction holds the users table: the signup's INSERT meets the statement timeout (503).
    await admin.query('BEGIN');
    await admin.query('LOCK TABLE users IN SHARE MODE');
    let status: number;
    try {
      const body = { username: 'statement_timeout', password: 'a-password-of-the-user-1' };
      status = (await request(server.url, 'POST', '/auth/signup', { body })).status;
    } finally {
      await admin.query('ROLLBACK');
    }
    expect(status).to.equal(503);
    const entry = logs.entries().find((e) => e.msg === 'request failed');
    expect(entry, 'the request failed line').to.be.an('object');
    const err = entry!.err as { type: string; code?: unknown; stack: string };
    expect(err.stack.startsWith('DBError:'), err.stack.slice(0, 80)).to.equal(true);
    expect(err).to.include({ type: 'DBError', code: '57014' });
  });
});
