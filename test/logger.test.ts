import net from 'node:net';
import { expect } from 'chai';
import pg from 'pg';
import { AppError } from '../lib/errors.js';
import { request } from './helpers/http.js';
import { captureLogs } from './helpers/logCapture.js';
import { createTestDatabase } from './helpers/postgres.js';
import { startServer } from '../lib/server.js';
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
