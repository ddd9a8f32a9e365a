import { randomBytes } from 'node:crypto';
import { copyFile, mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import {
  JWT_SECRET_MISMATCH,
  JWT_SECRET_SETTING,
  jwtSecretFingerprint,
} from '../lib/auth/secretFingerprint.js';
import { BUNDLED_MIGRATIONS_DIR } from '../lib/migrations.js';
import { startServer, type RunningServer } from '../lib/server.js';
import { StartupError } from '../lib/startupErrors.js';
import { captureLogs } from './helpers/logCapture.js';
import { openMigrated } from './helpers/migrations.js';
import { createEmptyDatabase, createTestDatabase } from './helpers/postgres.js';
import { startTestServer, testConfig } from './helpers/server.js';
import { insertUser } from './helpers/users.js';

/** The cluster's JWT_SECRET in the database (lib/auth/secretFingerprint.ts), with nodes in this process. */
describe('JWT_SECRET of the cluster', function () {
  this.timeout(60_000);

  const secret = () => randomBytes(32).toString('hex');
  const nodes: RunningServer[] = [];
  afterEach(async () => {
    await Promise.all(nodes.splice(0).map((node) => node.close()));
  });

  async function start(databaseUrl: string, jwtSecret: string): Promise<RunningServer> {
    const node = await startTestServer(databaseUrl, { JWT_SECRET: jwtSecret });
    nodes.push(node);
    return node;
  }

  it('the fingerprint depends on the secret alone and contains none of it', () => {
    const a = secret();
    expect(jwtSecretFingerprint(a)).to.equal(jwtSecretFingerprint(a));
    expect(jwtSecretFingerprint(a)).to.match(/^[0-9a-f]{64}$/);
    expect(jwtSecretFingerprint(a)).not.to.equal(jwtSecretFingerprint(secret()));
    expect(jwtSecretFingerprint(a)).not.to.include(a.slice(0, 8));
  });

  it('nodes starting together on a new database with one secret all start, and one fingerprint is stored', async () => {
    const databaseUrl = await createTestDatabase();
    const shared = secret();
    await Promise.all([1, 2, 3].map(() => start(databaseUrl, shared)));
    const rows = await nodes[0]!.services.db.knex('cluster_settings').select('name', 'value');
    expect(rows).to.deep.equal([{ name: JWT_SECRET_SETTING, value: jwtSecretFingerprint(shared) }]);
  });

  it('of two nodes starting together with different secrets, exactly one starts; the other is refused', async () => {
    const databaseUrl = await createTestDatabase();
    const results = await Promise.allSettled([start(databaseUrl, secret()), start(databaseUrl, secret())]);
    expect(results.filter((r) => r.status === 'fulfilled')).to.have.length(1);
    const [refused] = results.filter((r) => r.status === 'rejected');
    expect(refused!.reason).to.be.instanceOf(StartupError);
    expect((refused!.reason as Error).message).to.equal(JWT_SECRET_MISMATCH);
  });

  it('a database migrated before this release records the first node’s secret; a node with another is refused', async () => {
    // The migrations as they were before cluster_settings.
    const dir = await mkdtemp(path.join(os.tmpdir(), 'xfchat-before-cluster-secret-'));
    try {
      for (const file of await readdir(BUNDLED_MIGRATIONS_DIR)) {
        if (!file.startsWith('20261203120000_')) {
          await copyFile(path.join(BUNDLED_MIGRATIONS_DIR, file), path.join(dir, file));
        }
      }
      const databaseUrl = await createEmptyDatabase();
      const before = openMigrated(databaseUrl, dir);
      try {
        await before.migrations.latest();
        expect(await before.knex.schema.hasTable('cluster_settings')).to.equal(false);
      } finally {
        await before.close();
      }
      const kept = secret();
      const node = await start(databaseUrl, kept);
      expect(await node.services.db.knex('cluster_settings').pluck('value')).to.deep.equal([
        jwtSecretFingerprint(kept),
      ]);
      let refused: unknown;
      await start(databaseUrl, secret()).catch((err: unknown) => (refused = err));
      expect(refused).to.be.instanceOf(StartupError);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('npm run dev (adoptJwtSecret) adopts another secret instead of refusing, ending every session, and says so', async () => {
    const databaseUrl = await createTestDatabase();
    const first = await start(databaseUrl, secret());
    await insertUser(first.services.db.knex, first.services.config);
    await first.close();

    const replacement = secret();
    const logs = captureLogs('info');
    const config = testConfig(databaseUrl, { JWT_SECRET: replacement });
    const dev = await startServer(config, { logger: logs.logger, adoptJwtSecret: true });
    nodes.push(dev);
    const { knex } = dev.services.db;
    expect(await knex('cluster_settings').pluck('value')).to.deep.equal([jwtSecretFingerprint(replacement)]);
    const [{ n }] = (await knex('sessions').count({ n: '*' })) as [{ n: string | number }];
    expect(Number(n)).to.equal(0);
    const warning = logs.entries().find((e) => String(e.msg).startsWith('[STARTUP] JWT_SECRET'));
    expect(warning).to.include({
      level: 40,
      endedSessions: 1,
      msg: "[STARTUP] JWT_SECRET: this database's cluster used another one; adopted this one (development), 1 sessions ended",
    });
    expect(logs.text()).not.to.include(replacement);
    expect(logs.text()).not.to.include(jwtSecretFingerprint(replacement));
  });
});
