import { expect } from 'chai';
import { captureLogs } from './helpers/logCapture.js';
import { createTestDatabase } from './helpers/postgres.js';
import { startTestServer } from './helpers/server.js';

describe('startup: settings a node takes in part', () => {
  it('warns when DB_WRITE_CONCURRENCY is above DB_POOL_SIZE - 1, with the number of writes it runs at once', async () => {
    const url = await createTestDatabase();
    const warningsOf = async (env: Record<string, string>) => {
      const logs = captureLogs('warn');
      const server = await startTestServer(url, env, logs.logger);
      await server.close();
      return logs.entries().filter((entry) => String(entry.msg).includes('DB_WRITE_CONCURRENCY'));
    };
    const clamped = await warningsOf({ DB_POOL_SIZE: '3', DB_WRITE_CONCURRENCY: '8' });
    expect(clamped).to.have.length(1);
    expect(clamped[0]).to.include({ level: 40, DB_WRITE_CONCURRENCY: 8, DB_POOL_SIZE: 3, writes: 2 });
    expect(String(clamped[0]!.msg)).to.equal(
      '[STARTUP] DB_WRITE_CONCURRENCY is above DB_POOL_SIZE - 1: 2 message-writing transactions at once',
    );
    expect(await warningsOf({ DB_POOL_SIZE: '5', DB_WRITE_CONCURRENCY: '4' })).to.deep.equal([]);
  });
});
