import net from 'node:net';
import { expect } from 'chai';
import pg from 'pg';
import { runMain } from '../helpers/childProcess.js';
import { createEmptyDatabase } from '../helpers/postgres.js';
import { TEST_JWT_SECRET } from '../helpers/server.js';

/**
 * PORT is tried before anything is connected or migrated, as HOST is: a node whose port is taken (the old release
 * still running on the host during an upgrade, a second copy started by a process manager) ran the migrations (an
 * upgrade's exclusive locks, its index builds) and recorded its JWT_SECRET as the cluster's before it exited
 * "port N is in use".
 */
describe('startup: a node whose PORT is taken', function () {
  this.timeout(90_000);

  it('exits "port N is in use" without having touched the database', async () => {
    const holder = net.createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const { port } = holder.address() as net.AddressInfo;
    const databaseUrl = await createEmptyDatabase();
    try {
      const result = await runMain(
        {
          DATABASE_URL: databaseUrl,
          JWT_SECRET: TEST_JWT_SECRET,
          PORT: String(port),
          HOST: '127.0.0.1',
          LOG_LEVEL: 'warn',
        },
        { timeoutMs: 60_000 },
      );
      expect(result.code).to.equal(1);
      expect(result.stderr).to.include(`port ${port} is in use`);
      const client = new pg.Client({ connectionString: databaseUrl });
      await client.connect();
      try {
        const { rows } = await client.query<{ name: string }>(
          "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
        );
        expect(
          rows.map((r) => r.name),
          'tables the refused node created',
        ).to.deep.equal([]);
      } finally {
        await client.end();
      }
    } finally {
      await new Promise<void>((resolve) => holder.close(() => resolve()));
    }
  });
});
