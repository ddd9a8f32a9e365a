import net from 'node:net';
import { expect } from 'chai';
import type { ErrorCode } from '../lib/protocol/index.js';
import type { ErrorResponse } from './helpers/errors.js';
import { useNode } from './helpers/nodes.js';
import { rawRequest } from './helpers/rawHttp.js';
import { insertUser } from './helpers/users.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The envelope of the contract and nothing else: no stack, no request id, no driver text. */
function expectErrorEnvelope(text: string, code: ErrorCode): ErrorResponse {
  const body = JSON.parse(text) as ErrorResponse;
  expect(Object.keys(body)).to.deep.equal(['error']);
  expect(body.error.code).to.equal(code);
  expect(body.error.message).to.be.a('string').and.not.equal('');
  for (const key of Object.keys(body.error)) expect(['code', 'message', 'details']).to.include(key);
  expect(text).not.to.match(/stack|at [\w.]+ \(|node_modules|SyntaxError|Unexpected token/i);
  return body;
}

describe('HTTP basics', function () {
  const { server } = useNode();

  function post(path: string, body: string, headers: Record<string, string> = {}): Promise<Response> {
    return fetch(`${server.url}${path}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', ...headers },
      body,
    });
  }

  it('answers an unknown route with 404 NOT_FOUND in the error envelope', async () => {
    const res = await fetch(`${server.url}/no/such/route`);
    expect(res.status).to.equal(404);
    expect(res.headers.get('content-type')).to.match(/^application\/json/);
    expectErrorEnvelope(await res.text(), 'NOT_FOUND');
  });

  it('answers a body over 64 KiB with 413 PAYLOAD_TOO_LARGE', async () => {
    const body = JSON.stringify({ filler: 'x'.repeat(64 * 1024) });
    expect(Buffer.byteLength(body)).to.be.greaterThan(64 * 1024);
    const res = await post('/healthz', body);
    expect(res.status).to.equal(413);
    expectErrorEnvelope(await res.text(), 'PAYLOAD_TOO_LARGE');
  });

  it('accepts a body of exactly 64 KiB (it gets past the parser to routing)', async () => {
    const overhead = JSON.stringify({ filler: '' }).length;
    const body = JSON.stringify({ filler: 'x'.repeat(64 * 1024 - overhead) });
    expect(Buffer.byteLength(body)).to.equal(64 * 1024);
    const res = await post('/no/such/route', body);
    expect(res.status).to.equal(404);
    expectErrorEnvelope(await res.text(), 'NOT_FOUND');
  });

  it('answers invalid JSON with 400 VALIDATION_FAILED and no parser message', async () => {
    const res = await post('/no/such/route', '{"username": "alice",');
    expect(res.status).to.equal(400);
    const body = expectErrorEnvelope(await res.text(), 'VALIDATION_FAILED');
    expect(body.error.details).to.deep.equal({ body: 'invalid JSON' });
  });

  it('answers JSON that is not an object (null, a string, a number) with 400: the body must be a JSON object', async () => {
    for (const text of ['null', '"x"', '3']) {
      const res = await post('/no/such/route', text);
      expect(res.status, text).to.equal(400);
      const body = expectErrorEnvelope(await res.text(), 'VALIDATION_FAILED');
      expect(body.error.details, text).to.deep.equal({ body: 'must be a JSON object' });
    }
  });

  // DOCS hunt: an array passes the JSON parser's strict mode, and was answered "The request is invalid." with a
  // "is required" for each of the route's fields beside `body`, unlike `null` or a string.
  it('answers a JSON array as it answers null: the body must be a JSON object, and nothing else', async () => {
    for (const text of ['[]', '[{"username": "alice", "password": "x"}]', '[[[[]]]]']) {
      const res = await post('/auth/login', text);
      expect(res.status, text).to.equal(400);
      const body = expectErrorEnvelope(await res.text(), 'VALIDATION_FAILED');
      expect(body.error.details, text).to.deep.equal({ body: 'must be a JSON object' });
      expect(body.error.message, text).to.equal('The request body must be a JSON object.');
    }
  });

  it('answers a body that is not valid UTF-8 with 400 VALIDATION_FAILED instead of storing U+FFFD', async () => {
    const bytes = Buffer.concat([Buffer.from('{"body": "caf'), Buffer.from([0xe9]), Buffer.from('"}')]);
    for (const contentType of ['application/json', 'application/json; charset=utf-8']) {
      const res = await fetch(`${server.url}/no/such/route`, {
        method: 'POST',
        headers: { 'Content-Type': contentType },
        body: bytes,
      });
      expect(res.status, contentType).to.equal(400);
      const body = expectErrorEnvelope(await res.text(), 'VALIDATION_FAILED');
      expect(body.error.details).to.deep.equal({ body: 'invalid UTF-8' });
    }
    // Valid UTF-8 of every width gets past the parser.
    expect((await post('/no/such/route', JSON.stringify({ body: 'café 😀 漢' }))).status).to.equal(404);
  });

  // UTF-32 units above U+10FFFF became U+FFFD and the text was stored changed; UTF-16's odd last byte was dropped
  // (IDENT hunt).
  it('answers a UTF-16 or UTF-32 body that is not well-formed in its charset with 400, and reads one that is', async () => {
    const utf32 = (text: string, littleEndian: boolean, bad?: number): Buffer => {
      const units = [...text].map((c) => (c === '*' && bad !== undefined ? bad : c.codePointAt(0)!));
      const bytes = Buffer.alloc(units.length * 4);
      units.forEach((u, i) => (littleEndian ? bytes.writeUInt32LE(u, i * 4) : bytes.writeUInt32BE(u, i * 4)));
      return bytes;
    };
    const json = JSON.stringify({ body: 'pay * 😀' });
    const send = (charset: string, bytes: Buffer) =>
      fetch(`${server.url}/no/such/route`, {
        method: 'POST',
        headers: { 'Content-Type': `application/json; charset=${charset}` },
        body: new Uint8Array(bytes),
      });
    const bom = (littleEndian: boolean) => utf32('\uFEFF', littleEndian);
    const refused: Array<[string, Buffer, string]> = [
      ['utf-32le', utf32(json, true, 0x110000), 'UTF-32LE'],
      ['utf-32be', utf32(json, false, 0x7fffffff), 'UTF-32BE'],
      ['utf-32le', utf32(json, true, 0xd800), 'UTF-32LE'],
      ['utf-32', Buffer.concat([bom(true), utf32(json, true, 0x110000)]), 'UTF-32'],
      ['utf-32', utf32(json, false, 0x110000), 'UTF-32'],
      ['utf-32le', Buffer.concat([utf32(json, true), Buffer.from([0x20])]), 'UTF-32LE'],
      ['utf-16le', Buffer.concat([Buffer.from(json, 'utf16le'), Buffer.from([0x20])]), 'UTF-16LE'],
    ];
    for (const [charset, bytes, named] of refused) {
      const res = await send(charset, bytes);
      expect(res.status, `${named} ${bytes.length}`).to.equal(400);
      const body = expectErrorEnvelope(await res.text(), 'VALIDATION_FAILED');
      expect(body.error.details).to.deep.equal({ body: `invalid ${named}` });
    }
    // Well-formed, in either order, with or without a byte order mark: past the parser (404: no such route).
    for (const [charset, bytes] of [
      ['utf-32le', utf32(json, true, 0x41)],
      ['utf-32be', utf32(json, false, 0x41)],
      ['utf-32', utf32(json, false, 0x41)],
      ['utf-32', utf32(json, true, 0x41)],
      ['utf-32', Buffer.concat([bom(false), utf32(json, false, 0x41)])],
      ['utf-16le', Buffer.from(json, 'utf16le')],
    ] as const)
      expect((await send(charset, bytes)).status, charset).to.equal(404);
  });

  it('reads a UTF-8 body labelled charset=utf8 (a label of UTF-8) as UTF-8, and still refuses other charsets', async () => {
    const body = JSON.stringify({ body: 'café 😀' });
    for (const contentType of [
      'application/json; charset=utf-8',
      'application/json; charset=utf8',
      'application/json; charset="UTF8"',
      'application/json;charset=utf8; foo=bar',
    ]) {
      const res = await fetch(`${server.url}/no/such/route`, {
        method: 'POST',
        headers: { 'Content-Type': contentType },
        body,
      });
      expect(res.status, contentType).to.equal(404);
    }
    for (const contentType of ['application/json; charset=latin1', 'application/json; charset=utf88']) {
      const res = await fetch(`${server.url}/no/such/route`, {
        method: 'POST',
        headers: { 'Content-Type': contentType },
        body,
      });
      expect(res.status, contentType).to.equal(415);
      expectErrorEnvelope(await res.text(), 'UNSUPPORTED_MEDIA_TYPE');
    }
  });

  it('puts an X-Request-Id header on every response, success or failure', async () => {
    const responses = await Promise.all([
      fetch(`${server.url}/healthz`),
      fetch(`${server.url}/readyz`),
      fetch(`${server.url}/no/such/route`),
      post('/no/such/route', '{bad json'),
      post('/healthz', JSON.stringify({ filler: 'x'.repeat(70_000) })),
    ]);
    expect(responses.map((r) => r.status)).to.deep.equal([200, 200, 404, 400, 413]);
    const ids = responses.map((r) => r.headers.get('x-request-id'));
    for (const id of ids) expect(id).to.be.a('string').and.match(UUID);
    expect(new Set(ids).size).to.equal(ids.length);
    await Promise.all(responses.map((r) => r.arrayBuffer()));
  });

  it('echoes a well-formed incoming X-Request-Id and replaces a malformed one', async () => {
    const echoed = await fetch(`${server.url}/healthz`, { headers: { 'X-Request-Id': 'trace-abc.123_x' } });
    expect(echoed.headers.get('x-request-id')).to.equal('trace-abc.123_x');
    await echoed.arrayBuffer();
    const replaced = await fetch(`${server.url}/healthz`, { headers: { 'X-Request-Id': 'bad id <script>' } });
    expect(replaced.headers.get('x-request-id')).to.match(UUID);
    await replaced.arrayBuffer();
  });

  it('gives two identical failing requests byte-identical bodies', async () => {
    const pairs: Array<() => Promise<Response>> = [
      () => fetch(`${server.url}/no/such/route`),
      () => post('/no/such/route', '{"a":'),
      () => post('/healthz', JSON.stringify({ filler: 'y'.repeat(70_000) })),
    ];
    for (const send of pairs) {
      const first = await send();
      const second = await send();
      expect(first.status).to.equal(second.status);
      expect(first.headers.get('x-request-id')).not.to.equal(second.headers.get('x-request-id'));
      const [a, b] = [Buffer.from(await first.arrayBuffer()), Buffer.from(await second.arrayBuffer())];
      expect(a.equals(b), `${a.toString()} vs ${b.toString()}`).to.equal(true);
    }
  });

  it('sends the helmet security headers and no X-Powered-By', async () => {
    for (const path of ['/healthz', '/no/such/route']) {
      const res = await fetch(`${server.url}${path}`);
      await res.arrayBuffer();
      expect(res.headers.get('x-content-type-options')).to.equal('nosniff');
      expect(res.headers.get('x-frame-options')).to.equal('SAMEORIGIN');
      expect(res.headers.get('content-security-policy')).to.include("default-src 'self'");
      expect(res.headers.get('strict-transport-security')).to.include('max-age=');
      expect(res.headers.get('cross-origin-opener-policy')).to.equal('same-origin');
      expect(res.headers.get('referrer-policy')).to.equal('no-referrer');
      expect(res.headers.get('x-dns-prefetch-control')).to.equal('off');
      expect(res.headers.get('x-powered-by')).to.equal(null);
    }
  });

  it('sends Strict-Transport-Security on what the Socket.IO engine answers itself too (docs/operations.md: every answer)', async () => {
    for (const [query, status] of [
      ['EIO=4&transport=polling', 200], // a long-polling handshake
      ['EIO=4&transport=bogus', 400], // a request the engine refuses
    ] as const) {
      const res = await fetch(`${server.url}/socket.io/?${query}`);
      await res.arrayBuffer();
      expect(res.status, query).to.equal(status);
      expect(res.headers.get('strict-transport-security'), query).to.equal(
        'max-age=31536000; includeSubDomains',
      );
    }
  });

  it('sends X-Request-Id on what the Socket.IO engine answers itself too (every answer carries one), a client’s own kept', async () => {
    for (const [query, status] of [
      ['EIO=4&transport=polling', 200], // a long-polling handshake
      ['EIO=4&transport=bogus', 400], // a request the engine refuses
    ] as const) {
      const made = await fetch(`${server.url}/socket.io/?${query}`);
      await made.arrayBuffer();
      expect(made.status, query).to.equal(status);
      expect(made.headers.get('x-request-id'), query).to.match(/^[0-9a-f-]{36}$/);
      const kept = await fetch(`${server.url}/socket.io/?${query}`, {
        headers: { 'X-Request-Id': 'probe-42' },
      });
      await kept.arrayBuffer();
      expect(kept.headers.get('x-request-id'), query).to.equal('probe-42');
    }
    // Express's answers: the one id the server gave the request, not a second.
    const res = await fetch(`${server.url}/healthz`, { headers: { 'X-Request-Id': 'probe-43' } });
    await res.arrayBuffer();
    expect(res.headers.get('x-request-id')).to.equal('probe-43');
  });

  it('answers the API with Cache-Control: no-store (tokens and account data), failures and signups included', async () => {
    const signup = await post(
      '/auth/signup',
      JSON.stringify({ username: `nostore_${Date.now().toString(36)}`, password: 'correct horse battery' }),
    );
    expect(signup.status).to.equal(201);
    await signup.arrayBuffer();
    expect(signup.headers.get('cache-control')).to.equal('no-store');
    for (const path of ['/auth/me', '/conversations', '/friends', '/blocks', '/users/search?q=abc']) {
      const res = await fetch(`${server.url}${path}`);
      await res.arrayBuffer();
      expect(res.headers.get('cache-control'), path).to.equal('no-store');
    }
  });

  it('answers /healthz 200 {status: "ok"} and /readyz 200 {status: "ready"}', async () => {
    const health = await fetch(`${server.url}/healthz`);
    expect(health.status).to.equal(200);
    expect(await health.json()).to.deep.equal({ status: 'ok' });
    const ready = await fetch(`${server.url}/readyz`);
    expect(ready.status).to.equal(200);
    expect(await ready.json()).to.deep.equal({ status: 'ready' });
  });

  /**
   * Headers Node acts on before the app: an `Upgrade` the node does not take (RFC 9110 7.8: ignored, the request
   * answered over HTTP/1.1) and an `Expect` other than 100-continue (RFC 9110 10.1.1: ignored). Each is served like
   * the same request without it, X-Request-Id included.
   */
  describe('odd request headers (Upgrade, Expect)', function () {
    it('serves a GET that offers an HTTP/2 upgrade (Upgrade: h2c, as curl --http2 and Java HttpClient send)', async () => {
      const alice = await insertUser(server.services.db.knex, server.services.config);
      const res = await rawRequest(server.url, {
        method: 'GET',
        target: '/auth/me',
        headers: [
          ['authorization', `Bearer ${alice.token}`],
          ['connection', 'Upgrade, HTTP2-Settings'],
          ['upgrade', 'h2c'],
          ['http2-settings', 'AAMAAABkAARAAAAAAAIAAAAA'],
        ],
      });
      expect(res.status).to.equal(200);
      expect(res.headers['x-request-id']).to.match(UUID);
      expect((JSON.parse(res.body) as { user: { id: string } }).user.id).to.equal(alice.id);
    });

    it('serves a Socket.IO long-polling request that offers Upgrade: h2c as the polling request it is', async () => {
      // Under /socket.io/, the engine handed every upgrade to ws, which answered this one a bare 400 (no envelope).
      const target = '/socket.io/?EIO=4&transport=polling';
      for (const upgrade of [undefined, 'h2c', 'h2c, websocket']) {
        const res = await rawRequest(server.url, {
          method: 'GET',
          target,
          headers:
            upgrade === undefined
              ? []
              : [
                  ['connection', 'Upgrade, HTTP2-Settings'],
                  ['upgrade', upgrade],
                  ['http2-settings', 'AAMAAABkAARAAAAAAAIAAAAA'],
                ],
        });
        expect(res.status, `${upgrade}: ${res.body}`).to.equal(200);
        expect(res.body, String(upgrade)).to.match(/^0\{"sid":/);
      }
    });

    it('serves GET /healthz with Upgrade: websocket outside /socket.io/', async () => {
      const res = await rawRequest(server.url, {
        method: 'GET',
        target: '/healthz',
        headers: [
          ['connection', 'Upgrade'],
          ['upgrade', 'websocket'],
          ['sec-websocket-version', '13'],
          ['sec-websocket-key', 'dGhlIHNhbXBsZSBub25jZQ=='],
        ],
      });
      expect(res.status).to.equal(200);
      expect(res.headers['x-request-id']).to.match(UUID);
      expect(JSON.parse(res.body)).to.deep.equal({ status: 'ok' });
    });

    it('reads the body of a request with an upgrade, by Content-Length and chunked', async () => {
      const username = `upg_${Date.now().toString(36)}`;
      const body = JSON.stringify({ username, password: 'correct horse battery' });
      const signup = await rawRequest(server.url, {
        method: 'POST',
        target: '/auth/signup',
        headers: [
          ['connection', 'Upgrade'],
          ['upgrade', 'h2c'],
          ['content-type', 'application/json'],
          ['content-length', String(Buffer.byteLength(body))],
        ],
        body,
      });
      expect(signup.status, signup.body).to.equal(201);
      expect(signup.headers['x-request-id']).to.match(UUID);
      const { user, token } = JSON.parse(signup.body) as { user: { username: string }; token: string };
      expect(user.username).to.equal(username);

      const patch = JSON.stringify({ displayName: 'Chunked Upgrade' });
      const half = Math.floor(patch.length / 2);
      const chunks = [patch.slice(0, half), patch.slice(half)];
      const renamed = await rawRequest(server.url, {
        method: 'PATCH',
        target: '/users/me',
        headers: [
          ['authorization', `Bearer ${token}`],
          ['connection', 'Upgrade'],
          ['upgrade', 'websocket'],
          ['content-type', 'application/json'],
          ['transfer-encoding', 'chunked'],
        ],
        body: `${chunks.map((c) => `${c.length.toString(16)}\r\n${c}\r\n`).join('')}0\r\n\r\n`,
      });
      expect(renamed.status, renamed.body).to.equal(200);
      expect(renamed.headers['x-request-id']).to.match(UUID);
      expect((JSON.parse(renamed.body) as { user: { displayName: string } }).user.displayName).to.equal(
        'Chunked Upgrade',
      );
    });

    it('closes the connection after answering a request with an upgrade, even one that asked to keep it', async () => {
      const { hostname, port } = new URL(server.url);
      const socket = net.connect({ host: hostname, port: Number(port) });
      const chunks: Buffer[] = [];
      socket.on('data', (chunk: Buffer) => chunks.push(chunk));
      const closed = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('the connection stayed open')), 5000);
        socket.once('close', () => {
          clearTimeout(timer);
          resolve();
        });
      });
      socket.write(
        `GET /healthz HTTP/1.1\r\nHost: ${hostname}:${port}\r\nConnection: keep-alive, Upgrade\r\nUpgrade: h2c\r\n\r\n`,
      );
      await closed;
      const response = Buffer.concat(chunks).toString('latin1');
      expect(response).to.match(/^HTTP\/1\.1 200 /);
      expect(response).to.match(/\r\nconnection: close\r\n/i);
      expect(response).to.match(/\r\nx-request-id: /i);
    });

    it('serves a request with an unknown Expect header like any other (not a bare 417)', async () => {
      const alice = await insertUser(server.services.db.knex, server.services.config);
      const res = await rawRequest(server.url, {
        method: 'GET',
        target: '/auth/me',
        headers: [
          ['authorization', `Bearer ${alice.token}`],
          ['expect', 'something-else'],
        ],
      });
      expect(res.status).to.equal(200);
      expect(res.headers['x-request-id']).to.match(UUID);
      expect((JSON.parse(res.body) as { user: { id: string } }).user.id).to.equal(alice.id);
    });

    it('answers an upgrade it declines pipelined behind a request still being answered, after it, in order', async () => {
      const alice = await insertUser(server.services.db.knex, server.services.config);
      const { hostname, port } = new URL(server.url);
      const socket = net.connect({ host: hostname, port: Number(port) });
      const chunks: Buffer[] = [];
      socket.on('data', (chunk: Buffer) => chunks.push(chunk));
      const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
      const host = `Host: ${hostname}:${port}\r\n`;
      // One write: the first request reads the database, so its answer is still on its way when the second arrives.
      socket.write(
        `GET /auth/me HTTP/1.1\r\n${host}Authorization: Bearer ${alice.token}\r\n\r\n` +
          `GET /healthz HTTP/1.1\r\n${host}Connection: Upgrade\r\nUpgrade: h2c\r\n\r\n`,
      );
      const timer = setTimeout(() => socket.destroy(), 5000);
      await closed;
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('latin1');
      const answers = [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => m[1]);
      expect(answers, text).to.deep.equal(['200', '200']);
      expect(text.indexOf('"user"'), 'the first answer first').to.be.below(text.indexOf('"status":"ok"'));
    });
  });
  describe('a request the parser refuses on a kept-alive connection', function () {
    /** Two requests on one connection, the second once the first is answered: everything read until it closes. */
    function twoOnOneConnection(first: string, second: string): Promise<string> {
      const { hostname, port } = new URL(server.url);
      return new Promise((resolve, reject) => {
        const socket = net.connect({ host: hostname, port: Number(port) });
        const chunks: Buffer[] = [];
        let sentSecond = false;
        socket.on('data', (chunk: Buffer) => {
          chunks.push(chunk);
          if (!sentSecond && Buffer.concat(chunks).toString('latin1').includes('"status":"ok"}')) {
            sentSecond = true;
            socket.write(Buffer.from(second, 'latin1'));
          }
        });
        socket.on('error', reject);
        socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
        socket.write(Buffer.from(first, 'latin1'));
      });
    }
    const healthz = 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n';

    it('closes without an answer a refused request pipelined behind one still being answered (never a 400 in its place)', async () => {
      const alice = await insertUser(server.services.db.knex, server.services.config);
      const { hostname, port } = new URL(server.url);
      const host = `Host: ${hostname}:${port}\r\n`;
      // After the first answer, a request that reads the database and, in the same write, one the parser refuses.
      const text = await twoOnOneConnection(
        `GET /healthz HTTP/1.1\r\n${host}\r\n`,
        `GET /auth/me HTTP/1.1\r\n${host}Authorization: Bearer ${alice.token}\r\n\r\n` +
          `FOO /healthz HTTP/1.1\r\n${host}\r\n`,
      );
      const statuses = [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => m[1]);
      // Answers come in the requests' order: a 400 second would be read as the answer of GET /auth/me.
      expect(statuses[1], text.slice(0, 400)).not.to.equal('400');
    });

    for (const [what, second] of [
      [
        'a 36 KB path (headers over 16 KiB)',
        `PUT /conversations/00000000-0000-4000-8000-000000000000/messages/1/reactions/${'a'.repeat(36 * 1024)} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n`,
      ],
      ['an unknown method', 'FOO /healthz HTTP/1.1\r\nHost: x\r\n\r\n'],
    ] as const) {
      it(`answers ${what} after an earlier answer with 400 and the error envelope, then closes`, async () => {
        const text = await twoOnOneConnection(healthz, second);
        const statuses = [...text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1]);
        expect(statuses, text.slice(0, 300)).to.deep.equal(['200', '400']);
        expectErrorEnvelope(text.slice(text.lastIndexOf('\r\n\r\n') + 4), 'VALIDATION_FAILED');
        // Every answer carries Strict-Transport-Security (docs/operations.md), this one written whole too.
        expect(text.slice(text.lastIndexOf('HTTP/1.1 400'))).to.include(
          'Strict-Transport-Security: max-age=31536000; includeSubDomains',
        );
      });
    }
  });
});
