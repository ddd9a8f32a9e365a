import { randomUUID } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { expect } from 'chai';
import { ERROR_CATALOG } from '../../lib/errors.js';
import type { Ack, ClientToServerEvents } from '../../lib/protocol/index.js';
import { friendsOf, newUser, rows } from '../helpers/chat.js';
import type { ErrorResponse } from '../helpers/errors.js';
import { uniqueUsername as uniqueName } from '../helpers/users.js';
import { directConversation } from '../helpers/faults.js';
import { request } from '../helpers/http.js';
import { captureLogs } from '../helpers/logCapture.js';
import { useNode } from '../helpers/nodes.js';
import { rawRequest, type RawRequest, type RawResponse } from '../helpers/rawHttp.js';
import type { TestUser } from '../helpers/users.js';

/** Text that must never reach a client: SQL, driver wording, stack frames, file paths. */
const LEAK =
  /\b(select|insert into|update \w+ set|delete from|syntax error|relation "|column "|violates|constraint|pg_|knex|objection)\b|\bat \S+ \(|node_modules|\.ts:\d+|\/work\//i;

const SQLISH = [
  "' OR '1'='1",
  '1; DROP TABLE messages; --',
  '"; SELECT pg_sleep(5); --',
  "admin'--",
  '$1',
  '?',
];
/** Strings no field accepts: a NUL (PostgreSQL text cannot hold it), 4001 code points, only whitespace. */
const UNICODE = ['\u0000', 'a\u0000b', '𝕏'.repeat(4001), ' \t\n '];
/** Valid message bodies that stress encoding: astral emoji, bidi override, zero-width space. */
const UNICODE_BODIES = ['💥'.repeat(4000), 'é\u202e\u200b ok', '𝕏 שלום مرحبا 你好'];
const HUGE = 'x'.repeat(30_000);
/** Values of every wrong kind, for any field. */
const WRONG_VALUES: unknown[] = [
  null,
  42,
  -1,
  1.5,
  1e308,
  true,
  [],
  ['a'],
  {},
  { $gt: '' },
  HUGE,
  ...SQLISH,
  ...UNICODE,
];

/** Wrong for a whole-number field (seq, afterSeq, limit): 42 would be valid there, these never are. */
const NUMBER_WRONG: unknown[] = [-1, 1.5, 1e308, null, true, [], {}, 'abc', HUGE, ...SQLISH];
/** In an event's payload a number is a JSON number: a string of digits is wrong there too. */
const PAYLOAD_NUMBER_WRONG: unknown[] = [...NUMBER_WRONG, '3'];
/** A page size above its maximum is clamped, however large (1e308 too): the rest stays wrong. */
const LIMIT_WRONG = PAYLOAD_NUMBER_WRONG.filter((v) => v !== 1e308);
/** Wrong for a free-text field (body, title): SQL-looking text is valid text there, so it is not in this list. */
const TEXT_WRONG: unknown[] = [null, 42, true, [], ['a'], {}, { $gt: '' }, HUGE, ...UNICODE];

/** The fields each event reads, each with values that must be refused. */
const EVENT_FIELDS: Record<keyof ClientToServerEvents, Record<string, unknown[]>> = {
  'conversation:subscribe': {
    conversationId: WRONG_VALUES,
    afterSeq: PAYLOAD_NUMBER_WRONG,
    limit: LIMIT_WRONG,
  },
  'conversation:unsubscribe': { conversationId: WRONG_VALUES },
  'message:send': {
    conversationId: WRONG_VALUES,
    clientMsgId: WRONG_VALUES,
    body: TEXT_WRONG,
    replyToSeq: PAYLOAD_NUMBER_WRONG.filter((v) => v !== null),
  },
  'message:edit': { conversationId: WRONG_VALUES, seq: PAYLOAD_NUMBER_WRONG, body: TEXT_WRONG },
  'message:delete': { conversationId: WRONG_VALUES, seq: PAYLOAD_NUMBER_WRONG },
  'reaction:add': { conversationId: WRONG_VALUES, seq: PAYLOAD_NUMBER_WRONG, emoji: TEXT_WRONG },
  'reaction:remove': { conversationId: WRONG_VALUES, seq: PAYLOAD_NUMBER_WRONG, emoji: TEXT_WRONG },
  'conversation:read': { conversationId: WRONG_VALUES, seq: PAYLOAD_NUMBER_WRONG },
  typing: { conversationId: WRONG_VALUES },
  // A string token, empty or huge too, is a well-formed request (a bad one is UNAUTHORIZED, tested in
  // test/crossNode.sessions.test.ts): only the wrong kinds here.
  'auth:refresh': { token: [null, 42, true, [], ['a'], {}, { $gt: '' }] },
};

const CODES = new Set(Object.keys(ERROR_CATALOG));

/** An error ack or body: a catalog code other than INTERNAL, the catalog shape, and nothing leaked. */
function expectCleanError(payload: unknown, where: string): string {
  const text = JSON.stringify(payload);
  expect(text, where).not.to.match(LEAK);
  const error = (payload as { error?: { code?: unknown; message?: unknown } }).error;
  expect(error, `${where}: ${text.slice(0, 300)}`).to.be.an('object');
  expect(CODES.has(String(error!.code)), `${where}: code ${String(error!.code)}`).to.equal(true);
  expect(error!.code, where).not.to.equal('INTERNAL');
  expect(error!.message, where).to.be.a('string');
  return String(error!.code);
}

describe('fuzzing every socket event and REST endpoint', function () {
  this.timeout(60_000);
  const { server, pool } = useNode();
  let user: TestUser;
  let conversationId: string;

  before(async () => {
    user = await newUser(server);
    const [friend] = await friendsOf(server, user, 1);
    conversationId = await directConversation(server.url, user, friend!);
  });

  interface Counts {
    messages: number;
    users: number;
    conversations: number;
    reactions: number;
    /** Every conversation's version summed: any edit, delete or reaction change moves it. */
    versions: number;
  }

  async function counts(): Promise<Counts> {
    const [row] = await rows<Counts>(
      server.services.db.knex,
      `SELECT (SELECT count(*)::int FROM messages) AS messages, (SELECT count(*)::int FROM users) AS users,
              (SELECT count(*)::int FROM conversations) AS conversations,
              (SELECT count(*)::int FROM message_reactions) AS reactions,
              (SELECT coalesce(sum(version), 0)::int FROM conversations) AS versions`,
    );
    return row!;
  }

  it('every malformed socket payload gets a clean error ack; nothing is stored and the node keeps serving', async () => {
    const socket = await pool.open(server.url, user);
    const raw = socket as unknown as { emitWithAck(event: string, ...args: unknown[]): Promise<Ack> };
    const before = await counts();
    const valid = { conversationId, clientMsgId: randomUUID(), body: 'hello', seq: 1, emoji: '👍' };
    let checked = 0;
    for (const [event, fields] of Object.entries(EVENT_FIELDS)) {
      // The whole payload of a wrong kind, or missing.
      for (const payload of [undefined, ...WRONG_VALUES]) {
        const ack = await raw.emitWithAck(event, payload);
        expectCleanError(ack, `${event} ${JSON.stringify(payload)?.slice(0, 80)}`);
        checked++;
      }
      // One field wrong at a time, the rest valid.
      for (const [field, values] of Object.entries(fields)) {
        for (const value of values) {
          const ack = await raw.emitWithAck(event, { ...valid, clientMsgId: randomUUID(), [field]: value });
          const code = expectCleanError(ack, `${event} ${field}=${JSON.stringify(value)?.slice(0, 40)}`);
          expect(code, `${event} ${field}`).to.be.oneOf(['VALIDATION_FAILED', 'NOT_FOUND']);
          checked++;
        }
      }
      // A conversation that does not exist, or is not mine: NOT_FOUND, not a leak.
      if (!('conversationId' in fields)) continue;
      const ack = await raw.emitWithAck(event, { ...valid, conversationId: randomUUID() });
      expect(expectCleanError(ack, `${event} unknown conversation`)).to.equal('NOT_FOUND');
    }
    expect(checked).to.be.greaterThan(200);
    expect(await counts()).to.deep.equal(before);
    expect(socket.connected).to.equal(true);
    expect((await fetch(`${server.url}/healthz`)).status).to.equal(200);
  });

  it('stores valid unicode bodies exactly as sent, over both interfaces', async () => {
    const socket = await pool.open(server.url, user);
    for (const body of UNICODE_BODIES) {
      const ack = await socket.emitWithAck('message:send', {
        conversationId,
        clientMsgId: randomUUID(),
        body,
      });
      expect(ack.ok && ack.message.body).to.equal(body);
      const put = await request<{ message: { body: string } }>(
        server.url,
        'PUT',
        `/conversations/${conversationId}/messages/${randomUUID()}`,
        { body: { body }, token: user.token },
      );
      expect(put.status).to.equal(201);
      expect(put.body.message.body).to.equal(body);
    }
    const stored = await rows<{ body: string }>(
      server.services.db.knex,
      'SELECT body FROM messages WHERE conversation_id = ? ORDER BY seq',
      [conversationId],
    );
    expect(stored.map((r) => r.body)).to.deep.equal(UNICODE_BODIES.flatMap((b) => [b, b]));
  });

  it('refuses control, bidirectional-control and line-separator characters in display names and group titles over REST', async () => {
    const before = await counts();
    const hostile = [
      'bell\u0007',
      'esc\u001b[31mred',
      'del\u007f',
      'c1\u0085',
      'tab\there',
      'new\nline',
      'invoice\u202egpj.exe',
      'left\u202aembedding',
      '\u2066isolated\u2069',
      'pop\u202c',
      '\u200fmark',
      'alm\u061c',
      'two\u2028lines',
    ];
    const group = await request<{ conversation: { id: string } }>(server.url, 'POST', '/conversations', {
      token: user.token,
      body: { type: 'group', title: 'plain title', participantIds: [] },
    });
    expect(group.status).to.equal(201);
    const groupId = group.body.conversation.id;
    for (const value of hostile) {
      const where = JSON.stringify(value);
      const signup = await request(server.url, 'POST', '/auth/signup', {
        body: { username: uniqueName(), password: 'long enough', displayName: value },
      });
      expect(signup.status, `signup ${where}`).to.equal(400);
      expect(signup.body, `signup ${where}`).to.have.nested.property('error.code', 'VALIDATION_FAILED');
      expect(signup.body, `signup ${where}`).to.have.nested.property('error.details.displayName');
      const created = await request(server.url, 'POST', '/conversations', {
        token: user.token,
        body: { type: 'group', title: value, participantIds: [] },
      });
      expect(created.status, `create ${where}`).to.equal(400);
      expect(created.body, `create ${where}`).to.have.nested.property('error.details.title');
      const renamed = await request(server.url, 'PATCH', `/conversations/${groupId}`, {
        token: user.token,
        body: { title: value },
      });
      expect(renamed.status, `rename ${where}`).to.equal(400);
      expect(renamed.body, `rename ${where}`).to.have.nested.property('error.details.title');
    }
    // Letters of any script, emoji and a zero-width joiner are plain text.
    const fine = await request(server.url, 'PATCH', `/conversations/${groupId}`, {
      token: user.token,
      body: { title: 'Équipe 𝕏 שלום 👩\u200d💻' },
    });
    expect(fine.status).to.equal(200);
    expect(await counts()).to.deep.equal({ ...before, conversations: before.conversations + 1 });
  });

  it('every REST endpoint answers malformed input with a clean 4xx; nothing is stored', async () => {
    const before = await counts();
    // Query values are capped: a URL over Node's 16 KiB header limit is refused by Node itself (431, no body).
    const bad = (v: unknown) =>
      encodeURIComponent(String(typeof v === 'string' ? v : JSON.stringify(v)).slice(0, 2000));
    const pathValues = [...SQLISH, '\u0000', 'a\u0000b', '𝕏'.repeat(300), '..%2F..%2Fetc%2Fpasswd'];
    const requests: Array<{ method: string; path: string; body?: unknown; token?: string }> = [];
    for (const value of NUMBER_WRONG) {
      requests.push(
        {
          method: 'POST',
          path: `/conversations/${conversationId}/read`,
          body: { seq: value },
          token: user.token,
        },
        {
          method: 'GET',
          path: `/conversations/${conversationId}/messages?after=${bad(value)}&limit=${bad(value)}`,
          token: user.token,
        },
        {
          method: 'GET',
          path: `/conversations/${conversationId}/messages?before=${bad(value)}`,
          token: user.token,
        },
        {
          method: 'GET',
          path: `/conversations/${conversationId}/changes?since=${bad(value)}`,
          token: user.token,
        },
        {
          method: 'GET',
          path: `/conversations/${conversationId}/changes?since=0&limit=${bad(value)}`,
          token: user.token,
        },
      );
      // null is a valid replyToSeq (no reply); every other wrong number is not.
      if (value !== null) {
        requests.push({
          method: 'PUT',
          path: `/conversations/${conversationId}/messages/${randomUUID()}`,
          body: { body: 'a reply', replyToSeq: value },
          token: user.token,
        });
      }
    }
    for (const value of TEXT_WRONG) {
      requests.push(
        {
          method: 'PUT',
          path: `/conversations/${conversationId}/messages/${randomUUID()}`,
          body: { body: value },
          token: user.token,
        },
        {
          method: 'PATCH',
          path: `/conversations/${conversationId}/messages/1`,
          body: { body: value },
          token: user.token,
        },
        {
          method: 'POST',
          path: '/conversations',
          body: { type: 'group', title: value, participantIds: [] },
          token: user.token,
        },
        {
          method: 'POST',
          path: '/auth/signup',
          body: { username: uniqueName(), password: 'long enough', displayName: value },
        },
      );
    }
    for (const value of WRONG_VALUES) {
      requests.push(
        {
          method: 'POST',
          path: '/auth/signup',
          body: { username: value, password: value, displayName: value },
        },
        { method: 'POST', path: '/auth/login', body: { username: value, password: value } },
        { method: 'POST', path: '/friends/requests', body: { username: value }, token: user.token },
        { method: 'POST', path: '/blocks', body: { userId: value }, token: user.token },
        {
          method: 'POST',
          path: '/conversations',
          body: { type: 'direct', userId: value },
          token: user.token,
        },
        {
          method: 'POST',
          path: '/conversations',
          // An empty list is a valid (one-person) group; every other wrong value is not.
          body: {
            type: 'group',
            title: 'ok',
            participantIds: Array.isArray(value) && value.length === 0 ? 7 : value,
          },
          token: user.token,
        },
        { method: 'POST', path: '/conversations', body: { type: value }, token: user.token },
        {
          method: 'PATCH',
          path: `/conversations/${conversationId}`,
          body: { title: value },
          token: user.token,
        },
        {
          method: 'POST',
          path: `/conversations/${conversationId}/participants`,
          body: { userId: value },
          token: user.token,
        },
        { method: 'GET', path: `/friends/requests?direction=${bad(value)}`, token: user.token },
      );
    }
    for (const value of pathValues) {
      const v = encodeURIComponent(value);
      for (const [method, path] of [
        ['GET', `/conversations/${v}`],
        ['PATCH', `/conversations/${v}`],
        ['GET', `/conversations/${v}/messages`],
        ['PUT', `/conversations/${v}/messages/${v}`],
        ['PUT', `/conversations/${conversationId}/messages/${v}`],
        ['POST', `/conversations/${v}/read`],
        ['POST', `/conversations/${v}/participants`],
        ['DELETE', `/conversations/${v}/participants/${v}`],
        ['POST', `/friends/requests/${v}/accept`],
        ['POST', `/friends/requests/${v}/decline`],
        ['DELETE', `/friends/requests/${v}`],
        ['DELETE', `/friends/${v}`],
        ['DELETE', `/blocks/${v}`],
        ['PATCH', `/conversations/${v}/messages/${v}`],
        ['PATCH', `/conversations/${conversationId}/messages/${v}`],
        ['DELETE', `/conversations/${v}/messages/${v}`],
        ['DELETE', `/conversations/${conversationId}/messages/${v}`],
        ['PUT', `/conversations/${v}/messages/1/reactions/${v}`],
        ['PUT', `/conversations/${conversationId}/messages/${v}/reactions/${v}`],
        ['DELETE', `/conversations/${conversationId}/messages/${v}/reactions/${v}`],
        ['GET', `/conversations/${v}/changes?since=0`],
      ] as const) {
        requests.push({
          method,
          path,
          body: { body: 'x', title: 'x', seq: 1, userId: value },
          token: user.token,
        });
      }
    }
    // Emoji that no reaction accepts: too long, whitespace, NUL, a bidirectional override.
    for (const emoji of ['😀'.repeat(17), 'a b', ' ', '\u0000', '\u202e', HUGE.slice(0, 300)]) {
      for (const method of ['PUT', 'DELETE']) {
        requests.push({
          method,
          path: `/conversations/${conversationId}/messages/1/reactions/${encodeURIComponent(emoji)}`,
          token: user.token,
        });
      }
    }
    // Bodies that are not JSON objects at all, and tokens that are not tokens.
    for (const body of ['{', '[1,2,3]', '"just a string"', 'null', '{"a":'.repeat(5000)]) {
      requests.push({ method: 'POST', path: '/conversations', body, token: user.token });
      requests.push({ method: 'POST', path: '/auth/signup', body });
      requests.push({
        method: 'PATCH',
        path: `/conversations/${conversationId}/messages/1`,
        body,
        token: user.token,
      });
    }
    for (const token of ['', 'x', `${user.token}x`, "' OR 1=1 --", HUGE.slice(0, 5000)]) {
      requests.push({ method: 'GET', path: '/conversations', token });
    }

    for (const r of requests) {
      const body = r.method === 'GET' ? undefined : r.body;
      const res = await request(server.url, r.method, r.path, { body, token: r.token });
      const where = `${r.method} ${r.path.slice(0, 80)} ${JSON.stringify(r.body)?.slice(0, 60)}`;
      expect(res.status, `${where}: ${res.text.slice(0, 200)}`).to.be.within(400, 499);
      expect(res.text, where).not.to.match(LEAK);
      expect(res.body, `${where}: status ${res.status}, body "${res.text.slice(0, 100)}"`).to.be.an('object');
      expectCleanError(res.body, where);
    }
    // Over the 64 KiB body limit.
    const tooLarge = await request(server.url, 'POST', '/conversations', {
      body: { type: 'group', title: 'x'.repeat(70_000), participantIds: [] },
      token: user.token,
    });
    expect(tooLarge.status).to.equal(413);
    expect(expectCleanError(tooLarge.body, '413')).to.equal('PAYLOAD_TOO_LARGE');
    expect(requests.length).to.be.greaterThan(300);
    expect(await counts()).to.deep.equal(before);
  });
});

describe('fuzzing HTTP framing: encodings, content types, methods and raw paths', function () {
  this.timeout(60_000);
  const logs = captureLogs('info');
  const { server } = useNode({ logger: logs.logger });
  let user: TestUser;
  let conversationId: string;

  before(async () => {
    user = await newUser(server);
    const [friend] = await friendsOf(server, user, 1);
    conversationId = await directConversation(server.url, user, friend!);
  });

  const JSON_BODY = '{"username":"someone","password":"long enough"}';
  const chunked = (body: string) => `${Buffer.byteLength(body).toString(16)}\r\n${body}\r\n0\r\n\r\n`;

  /** Every request below, with the bearer token when `auth` is set. */
  function cases(): Array<{ name: string; auth?: boolean; request: RawRequest }> {
    const list: Array<{ name: string; auth?: boolean; request: RawRequest }> = [];
    const json = (extra: ReadonlyArray<readonly [string, string]>, body = JSON_BODY) => ({
      headers: [
        ['Content-Type', 'application/json'],
        ['Content-Length', String(Buffer.byteLength(body))],
        ...extra,
      ] as const,
      body,
    });
    const targets = [
      { method: 'POST', target: '/auth/login', auth: false },
      { method: 'POST', target: '/conversations', auth: true },
      { method: 'PUT', target: `/conversations/${conversationId}/messages/${randomUUID()}`, auth: true },
    ];
    // A body that is not what Content-Encoding says, and encodings nobody supports.
    for (const encoding of [
      'gzip',
      'br',
      'deflate',
      'x-gzip',
      'zstd',
      'compress',
      'gzip, gzip',
      'identity, gzip',
      'bogus',
      ' ',
    ]) {
      for (const t of targets) {
        list.push({
          name: `Content-Encoding ${encoding} ${t.target}`,
          auth: t.auth,
          request: { ...t, ...json([['Content-Encoding', encoding]]) },
        });
      }
    }
    // Content types and charsets: everything is read as JSON, and only UTF-8/16/32 are decoded.
    for (const type of [
      'text/plain',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      'application/json; charset=latin1',
      'application/json; charset=utf-16',
      'application/json; charset=utf-7',
      'application/json; charset=nonsense',
      ';;;',
      'application/json; charset="',
    ]) {
      const body = JSON_BODY;
      list.push({
        name: `Content-Type ${type}`,
        request: {
          method: 'POST',
          target: '/auth/login',
          headers: [
            ['Content-Type', type],
            ['Content-Length', String(body.length)],
          ],
          body,
        },
      });
    }
    // Framing: chunked bodies, transfer codings Node does not decode, conflicting lengths.
    const framing: Array<[string, ReadonlyArray<readonly [string, string]>, string]> = [
      ['chunked', [['Transfer-Encoding', 'chunked']], chunked(JSON_BODY)],
      ['chunked with a bad size', [['Transfer-Encoding', 'chunked']], `zz\r\n${JSON_BODY}\r\n0\r\n\r\n`],
      ['gzip, chunked', [['Transfer-Encoding', 'gzip, chunked']], chunked(JSON_BODY)],
      ['chunked, gzip', [['Transfer-Encoding', 'chunked, gzip']], chunked(JSON_BODY)],
      [
        'identity',
        [
          ['Transfer-Encoding', 'identity'],
          ['Content-Length', String(JSON_BODY.length)],
        ],
        JSON_BODY,
      ],
      [
        'chunked and Content-Length',
        [
          ['Transfer-Encoding', 'chunked'],
          ['Content-Length', '5'],
        ],
        chunked(JSON_BODY),
      ],
      [
        'two Content-Lengths',
        [
          ['Content-Length', '5'],
          ['Content-Length', '7'],
        ],
        JSON_BODY,
      ],
      ['negative Content-Length', [['Content-Length', '-1']], JSON_BODY],
      [
        'chunked twice',
        [
          ['Transfer-Encoding', 'chunked'],
          ['Transfer-Encoding', 'chunked'],
        ],
        chunked(JSON_BODY),
      ],
    ];
    for (const [name, headers, body] of framing) {
      list.push({
        name: `framing: ${name}`,
        request: {
          method: 'POST',
          target: '/auth/login',
          headers: [['Content-Type', 'application/json'], ...headers],
          body,
        },
      });
    }
    // Methods no route answers, and ones Node's parser refuses.
    for (const [method, target] of [
      ['PROPFIND', '/conversations'],
      ['TRACE', '/healthz'],
      ['SEARCH', '/users'],
      ['PATCH', '/healthz'],
      ['DELETE', '/'],
      ['OPTIONS', '*'],
      ['CONNECT', `127.0.0.1:${new URL(server.url).port}`],
      ['FOO', '/healthz'],
      ['get', '/healthz'],
      ['GET', 'http://elsewhere.example/healthz'],
    ] as const) {
      list.push({ name: `method ${method} ${target}`, auth: true, request: { method, target } });
    }
    // Paths fetch() would not send: bad or odd percent-encoding, traversal, raw bytes.
    for (const target of [
      '/%',
      '/%zz',
      '/%00',
      `/conversations/%E0%A4%A`,
      '/conversations/%',
      '/conversations/%ff/messages',
      `/conversations/${conversationId}/messages/%c0%ae`,
      `/conversations/${conversationId}/messages?after=%`,
      '/friends/requests/%/accept',
      '/blocks/%zz',
      '/users?username=%',
      '/users?username=%ff%fe',
      '/app.js%',
      '/%2e%2e/%2e%2e/etc/passwd',
      '/..%2f..%2fpackage.json',
      '//healthz',
      '/healthz?%%%',
      '/\u00e9t\u00e9',
      '/a b',
      `/${'x'.repeat(20_000)}`,
    ]) {
      list.push({
        name: `path ${JSON.stringify(target.slice(0, 60))}`,
        auth: true,
        request: { method: 'GET', target },
      });
    }
    return list;
  }

  it('names what is wrong: a body not in its Content-Encoding, an unknown encoding, a bad path', async () => {
    const send = (request: RawRequest) => rawRequest(server.url, request);
    const login = (
      extra: ReadonlyArray<readonly [string, string]>,
      type = 'application/json',
    ): RawRequest => ({
      method: 'POST',
      target: '/auth/login',
      headers: [['Content-Type', type], ['Content-Length', String(JSON_BODY.length)], ...extra],
      body: JSON_BODY,
    });
    const codeOf = (res: RawResponse) => (JSON.parse(res.body) as ErrorResponse).error.code;
    const plainAsGzip = await send(login([['Content-Encoding', 'gzip']]));
    expect([plainAsGzip.status, codeOf(plainAsGzip)]).to.deep.equal([400, 'VALIDATION_FAILED']);
    const unknown = await send(login([['Content-Encoding', 'bogus']]));
    expect([unknown.status, codeOf(unknown)]).to.deep.equal([415, 'UNSUPPORTED_MEDIA_TYPE']);
    // zstd is refused on every Node (the parser reads it where Node has it, from 22.15), and so is a list of them.
    for (const encoding of ['zstd', 'gzip, br', 'identity, gzip']) {
      const refused = await send(login([['Content-Encoding', encoding]]));
      expect([refused.status, codeOf(refused)], encoding).to.deep.equal([415, 'UNSUPPORTED_MEDIA_TYPE']);
    }
    // Identity in any case, and an empty header (which names no encoding), are the plain body.
    for (const encoding of ['Identity', '']) {
      const plain = await send(login([['Content-Encoding', encoding]]));
      expect([plain.status, codeOf(plain)], `"${encoding}"`).to.deep.equal([401, 'INVALID_CREDENTIALS']);
    }
    const latin1 = await send(login([], 'application/json; charset=latin1'));
    expect([latin1.status, codeOf(latin1)]).to.deep.equal([415, 'UNSUPPORTED_MEDIA_TYPE']);
    // The parser decodes any utf-* charset; UTF-7 (where "+AEA-" is "@") is not one JSON is written in.
    for (const charset of ['utf-7', 'UTF-7-IMAP']) {
      const utf7 = await send(login([], `application/json; charset=${charset}`));
      expect([utf7.status, codeOf(utf7)], charset).to.deep.equal([415, 'UNSUPPORTED_MEDIA_TYPE']);
    }
    for (const charset of ['utf-8', 'UTF-16', 'utf-32le']) {
      const json = await send(login([], `application/json; charset=${charset}`));
      expect(json.status, charset).not.to.equal(415);
    }
    const badPath = await send({
      method: 'GET',
      target: '/conversations/%E0%A4%A',
      headers: [['Authorization', `Bearer ${user.token}`]],
    });
    expect([badPath.status, codeOf(badPath)]).to.deep.equal([400, 'VALIDATION_FAILED']);
    expect(badPath.headers['x-request-id']).to.be.a('string');
    const badMethod = await send({ method: 'FOO', target: '/healthz' });
    expect([badMethod.status, codeOf(badMethod)]).to.deep.equal([400, 'VALIDATION_FAILED']);
    expect(badMethod.headers['x-request-id']).to.be.a('string');
    // A gzip body that really is gzip is read.
    const gzipped = gzipSync(JSON.stringify({ username: 'nobody_here', password: 'long enough' }));
    const real = await send({
      method: 'POST',
      target: '/auth/login',
      headers: [
        ['Content-Type', 'application/json'],
        ['Content-Encoding', 'gzip'],
        ['Content-Length', String(gzipped.length)],
      ],
      body: gzipped,
    });
    expect([real.status, codeOf(real)]).to.deep.equal([401, 'INVALID_CREDENTIALS']);
  });

  it('answers every one with a 2xx or a 4xx (errors in the envelope), never a 5xx, and logs no error', async () => {
    const all = cases();
    // Every case is tried; the failures are reported together.
    const failures: string[] = [];
    for (const { name, auth, request } of all) {
      const headers = [
        ...(request.headers ?? []),
        ...(auth ? ([['Authorization', `Bearer ${user.token}`]] as const) : []),
      ];
      try {
        const res = await rawRequest(server.url, { ...request, headers });
        const where = `${name}: ${res.status} ${res.body.slice(0, 200)}`;
        expect(res.status, where).to.satisfy((s: number) => (s >= 200 && s < 300) || (s >= 400 && s < 500));
        expect(res.body, where).not.to.match(LEAK);
        if (res.status >= 400) {
          expect(res.headers['content-type'], where).to.match(/^application\/json/);
          expectCleanError(JSON.parse(res.body) as unknown, where);
        }
      } catch (err) {
        failures.push(`${name}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    expect(failures, failures.join('\n')).to.deep.equal([]);
    expect(all.length).to.be.greaterThan(60);
    expect((await fetch(`${server.url}/healthz`)).status).to.equal(200);
    const errors = logs.entries().filter((e) => typeof e.level === 'number' && e.level >= 50);
    expect(
      errors.map((e) => e.msg),
      'error-level log lines',
    ).to.deep.equal([]);
  });
});
