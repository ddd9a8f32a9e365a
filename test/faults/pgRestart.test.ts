import { randomUUID } from 'node:crypto';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import pg from 'pg';
import {
  freePort,
  startEmbeddedPostgres,
  type EmbeddedPostgresHandle,
  type EmbeddedPostgresOptions,
} from '../../lib/dev/embeddedPostgres.js';
import type { RunningServer } from '../../lib/server.js';
import { record, rows, subscribe } from '../helpers/chat.js';
import {
  ackedIn,
  directConversation,
  expectControlBusDelivers,
  expectStoredExactlyAsAcked,
} from '../helpers/faults.js';
import { expectAckError, type ErrorResponse } from '../helpers/errors.js';
import { request } from '../helpers/http.js';
import { ResilientClient } from '../helpers/resilientClient.js';
import { startTestServer } from '../helpers/server.js';
import { connectSocket, type ClientSocket } from '../helpers/sockets.js';
import { insertFriendship, insertUser } from '../helpers/users.js';
import { waitFor } from '../helpers/waitFor.js';

/**
 * A PostgreSQL of this file's own (not the shared test server), stopped and started again on the same data
 * directory and port while two nodes keep running against it.
 */
describe('faults: PostgreSQL restarts under two running nodes', function () {
  this.timeout(60_000);
  let root: string | undefined;
  let options: EmbeddedPostgresOptions;
  let postgres: EmbeddedPostgresHandle | undefined;
  let databaseUrl: string;
  let a: RunningServer | undefined;
  let b: RunningServer | undefined;
  const clients: ResilientClient[] = [];
  const sockets: ClientSocket[] = [];

  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'xfchat-restart-pg-'));
    // PostgreSQL runs as the `postgres` OS user and must reach its data directory inside.
    await chmod(root, 0o755);
    options = { dataDir: path.join(root, 'data'), persistent: true, port: await freePort() };
    postgres = await startEmbeddedPostgres(options);
    const admin = new pg.Client({ connectionString: postgres.adminUrl });
    await admin.connect();
    try {
      await admin.query('CREATE DATABASE xfchat_restart');
    } finally {
      await admin.end();
    }
    databaseUrl = postgres.urlFor('xfchat_restart');
    const env = { DB_ACQUIRE_TIMEOUT_MS: '1000', DB_CONNECT_TIMEOUT_MS: '1000' };
    a = await startTestServer(databaseUrl, env);
    b = await startTestServer(databaseUrl, env);
  });

  after(async () => {
    for (const client of clients.splice(0)) client.close();
    for (const socket of sockets.splice(0)) socket.close();
    await a?.close();
    await b?.close();
    await postgres?.stop();
    if (root) await rm(root, { recursive: true, force: true });
  });

  const readyz = async (node: RunningServer) =>
    (await fetch(`${node.url}/readyz`, { signal: AbortSignal.timeout(10_000) })).status;

  it('answers 503 / DB_UNAVAILABLE during the outage, writes nothing half-way, and recovers everything after', async () => {
    const { knex } = a!.services.db;
    const sender = await insertUser(knex, a!.services.config);
    const receiver = await insertUser(knex, a!.services.config);
    await insertFriendship(knex, sender.id, receiver.id);
    const conversationId = await directConversation(a!.url, sender, receiver);
    const watcher = await connectSocket(b!.url, receiver.token);
    sockets.push(watcher);
    await subscribe(watcher, conversationId);
    const live = record(watcher, 'message:new');
    const client = new ResilientClient(sender, () => a!.url);
    clients.push(client);
    for (let i = 0; i < 3; i++) await client.sendUntilAcked(conversationId, randomUUID(), `before ${i}`);

    await postgres!.stop();
    for (const node of [a!, b!]) {
      await waitFor(async () => (await readyz(node)) === 503, { what: '/readyz 503 during the outage' });
    }
    // A send during the outage: an error ack with DB_UNAVAILABLE, within the pool's acquire timeout (1 s here).
    const failedId = randomUUID();
    const started = performance.now();
    const ack = await client.attempt(conversationId, failedId, 'during the outage');
    expect(performance.now() - started).to.be.below(5000);
    expect(ack).to.not.equal('no ack');
    if (ack !== 'no ack') expectAckError(ack, 'DB_UNAVAILABLE');
    const put = await request(a!.url, 'PUT', `/conversations/${conversationId}/messages/${randomUUID()}`, {
      token: sender.token,
      body: { body: 'over REST during the outage' },
    });
    expect(put.status).to.equal(503);
    expect(put.body).to.deep.equal({
      error: { code: 'DB_UNAVAILABLE', message: 'The database is unavailable; retry later.' },
    } satisfies ErrorResponse);
    expect(watcher.connected, 'sockets stay up while PostgreSQL is away').to.equal(true);

    postgres = await startEmbeddedPostgres(options);
    for (const node of [a!, b!]) {
      await waitFor(async () => (await readyz(node)) === 200, {
        timeoutMs: 20_000,
        what: '/readyz 200 again',
      });
    }
    // Nothing of the failed sends was written, and seq did not move.
    expect(await rows(knex, 'SELECT 1 FROM messages WHERE client_msg_id = ?', [failedId])).to.have.length(0);
    await expectStoredExactlyAsAcked(knex, conversationId, ackedIn(clients, conversationId));

    // Sends work again, on both nodes, and reach the subscriber on the other node.
    const sentAfter = new Set<string>();
    await waitFor(
      async () => {
        const outcome = await client.sendUntilAcked(conversationId, randomUUID(), 'after the restart');
        sentAfter.add(outcome.message.id);
        return live.some((m) => sentAfter.has(m.id));
      },
      { timeoutMs: 20_000, intervalMs: 200, what: 'cross-node delivery after the restart' },
    );
    const fromB = new ResilientClient(sender, () => b!.url);
    clients.push(fromB);
    await fromB.sendUntilAcked(conversationId, randomUUID(), 'from node B after the restart');
    await expectStoredExactlyAsAcked(knex, conversationId, ackedIn(clients, conversationId));
    await expectControlBusDelivers(a!.services.controlBus, b!.services.controlBus);
    await expectControlBusDelivers(b!.services.controlBus, a!.services.controlBus);
    // New connections authenticate against the database again.
    const fresh = await connectSocket(b!.url, receiver.token);
    sockets.push(fresh);
    expect(fresh.connected).to.equal(true);
  });
});
