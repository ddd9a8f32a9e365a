import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { directConversation, terminateAll } from '../helpers/faults.js';
import { captureLogs } from '../helpers/logCapture.js';
import { useTwoNodes } from '../helpers/nodes.js';
import { adminUrl } from '../helpers/postgres.js';
import { ResilientClient } from '../helpers/resilientClient.js';
import { TEST_JWT_SECRET } from '../helpers/server.js';
import { insertFriendship, insertUser } from '../helpers/users.js';
import { waitFor } from '../helpers/waitFor.js';

/** What an operator's log pipeline can take per line; a driver object dumped whole blows past it. */
const MAX_LINE_BYTES = 8192;
/** Keys of a node-postgres Client or its connection settings: their presence means a driver object was logged. */
const DRIVER_KEYS = /"(secretKey|processID|password|connectionParameters|_connection|_events)"\s*:/;

describe('log hygiene under faults: pg_terminate_backend on every backend, debug logging', function () {
  this.timeout(60_000);
  const logs = captureLogs('debug');
  // Two nodes, so the adapter's cross-node connections are cut too.
  const nodes = useTwoNodes({
    env: { DB_ACQUIRE_TIMEOUT_MS: '2000', DB_CONNECT_TIMEOUT_MS: '2000', LOG_LEVEL: 'debug' },
    logger: logs.logger,
  });
  const { a, b } = nodes;
  const clients: ResilientClient[] = [];

  afterEach(() => {
    for (const client of clients.splice(0)) client.close();
  });

  it('logs no driver object and no secret, and no line over 8 KB', async () => {
    const { knex } = a.services.db;
    const config = a.services.config;
    const sender = await insertUser(knex, config);
    const receiver = await insertUser(knex, config);
    await insertFriendship(knex, sender.id, receiver.id);
    const conversationId = await directConversation(a.url, sender, receiver);
    const clientA = new ResilientClient(sender, () => a.url);
    const clientB = new ResilientClient(receiver, () => b.url);
    clients.push(clientA, clientB);

    let stop = false;
    const load = Promise.all(
      [clientA, clientB].map(async (client) => {
        while (!stop) await client.sendUntilAcked(conversationId, randomUUID(), 'during the storm');
      }),
    );
    for (let round = 0; round < 3; round++) {
      const acked = clientA.acked.size + clientB.acked.size;
      await waitFor(() => clientA.acked.size + clientB.acked.size > acked + 3, {
        timeoutMs: 20_000,
        what: 'sends between the kills',
      });
      expect(await terminateAll(nodes.databaseUrl)).to.be.greaterThan(0);
    }
    stop = true;
    await load;
    for (const node of [a, b]) {
      await waitFor(async () => (await fetch(`${node.url}/readyz`)).status === 200, { what: '/readyz 200' });
    }

    const text = logs.text();
    const lines = text.split('\n').filter((line) => line !== '');
    // The storm was logged at all: the connections that broke said so.
    expect(lines.filter((line) => /"level":(40|50)/.test(line)).length, 'warnings').to.be.greaterThan(0);
    const databasePassword = decodeURIComponent(new URL(adminUrl()).password);
    const secrets: Record<string, string> = {
      jwtSecret: TEST_JWT_SECRET,
      // The embedded PostgreSQL has a generated password; a TEST_DATABASE_URL with trust auth has none to leak.
      ...(databasePassword ? { databasePassword } : {}),
    };
    for (const [name, secret] of Object.entries(secrets)) {
      expect(secret.length, name).to.be.greaterThan(8);
      expect(text.includes(secret), `${name} in the logs`).to.equal(false);
    }
    const withDriverKeys = lines.filter((line) => DRIVER_KEYS.test(line));
    expect(
      withDriverKeys.map((line) => line.slice(0, 300)),
      'lines with driver objects',
    ).to.deep.equal([]);
    const oversized = lines.filter((line) => Buffer.byteLength(line) > MAX_LINE_BYTES);
    expect(
      oversized.map((line) => `${Buffer.byteLength(line)} bytes: ${line.slice(0, 200)}`),
      'oversized lines',
    ).to.deep.equal([]);
  });
});
