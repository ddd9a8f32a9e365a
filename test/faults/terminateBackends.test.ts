import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { record, subscribe } from '../helpers/chat.js';
import {
  ackedIn,
  directConversation,
  expectControlBusDelivers,
  expectStoredExactlyAsAcked,
  terminateAll,
} from '../helpers/faults.js';
import { useTwoNodes } from '../helpers/nodes.js';
import { ResilientClient } from '../helpers/resilientClient.js';
import { insertFriendship, insertUser, type TestUser } from '../helpers/users.js';
import { waitFor } from '../helpers/waitFor.js';

const SENDERS = 4;
const MESSAGES_EACH = 20;
const KILL_ROUNDS = 3;

describe('faults: pg_terminate_backend on every backend, under load', function () {
  this.timeout(60_000);
  const nodes = useTwoNodes({ env: { DB_ACQUIRE_TIMEOUT_MS: '2000', DB_CONNECT_TIMEOUT_MS: '2000' } });
  const { a, b, pool } = nodes;
  const clients: ResilientClient[] = [];

  afterEach(() => {
    for (const client of clients.splice(0)) client.close();
  });

  it('does not crash; every acked message is stored once, gap-free; sends and cross-node delivery work after', async () => {
    const { knex } = a.services.db;
    const config = a.services.config;
    const pairs: Array<{ sender: TestUser; receiver: TestUser; conversationId: string }> = [];
    for (let i = 0; i < SENDERS; i++) {
      const sender = await insertUser(knex, config);
      const receiver = await insertUser(knex, config);
      await insertFriendship(knex, sender.id, receiver.id);
      pairs.push({ sender, receiver, conversationId: await directConversation(a.url, sender, receiver) });
    }
    // Receivers listen on the other node, so the kills also hit the cross-node path.
    const received = await Promise.all(
      pairs.map(async ({ receiver, conversationId }) => {
        const socket = await pool.open(b.url, receiver);
        await subscribe(socket, conversationId);
        return record(socket, 'message:new');
      }),
    );

    const senders = pairs.map(({ sender }, i) => {
      const node = i % 2 === 0 ? a : b;
      const client = new ResilientClient(sender, () => node.url);
      clients.push(client);
      return client;
    });
    const totalAcked = () => senders.reduce((n, c) => n + c.acked.size, 0);

    const load = Promise.all(
      pairs.map(async ({ conversationId }, i) => {
        for (let m = 0; m < MESSAGES_EACH; m++) {
          await senders[i]!.sendUntilAcked(conversationId, randomUUID(), `message ${m} of sender ${i}`);
        }
      }),
    );
    let terminated = 0;
    for (let round = 0; round < KILL_ROUNDS; round++) {
      const target = Math.min(SENDERS * MESSAGES_EACH - 1, 10 + round * 15);
      await waitFor(() => totalAcked() >= target, { timeoutMs: 30_000, what: `${target} acks` });
      terminated += await terminateAll(nodes.databaseUrl);
    }
    await load;
    expect(terminated, 'sessions terminated').to.be.greaterThan(0);

    // Both processes are alive and ready.
    for (const node of [a, b]) {
      expect((await fetch(`${node.url}/healthz`)).status).to.equal(200);
      await waitFor(async () => (await fetch(`${node.url}/readyz`)).status === 200, { what: '/readyz 200' });
    }

    for (const { conversationId } of pairs) {
      const acked = ackedIn(senders, conversationId);
      expect(acked.size).to.equal(MESSAGES_EACH);
      await expectStoredExactlyAsAcked(knex, conversationId, acked);
    }
    // Receivers got most messages live; any gap is what subscribe {afterSeq} is for, not a lost message.
    expect(received.reduce((n, r) => n + r.length, 0)).to.be.greaterThan(0);

    // After the kills: a new send from node A reaches the subscriber on node B.
    const { conversationId } = pairs[0]!;
    const live = received[0]!;
    const sentAfter = new Set<string>();
    await waitFor(
      async () => {
        // The ack usually beats the cross-node broadcast: any message sent after the kills arriving will do.
        const outcome = await senders[0]!.sendUntilAcked(conversationId, randomUUID(), 'after the storm');
        sentAfter.add(outcome.message.id);
        return live.some((m) => sentAfter.has(m.id));
      },
      { timeoutMs: 20_000, intervalMs: 200, what: 'cross-node delivery after the kills' },
    );
    await expectStoredExactlyAsAcked(knex, conversationId, ackedIn(senders, conversationId));
    await expectControlBusDelivers(a.services.controlBus, b.services.controlBus);
    await expectControlBusDelivers(b.services.controlBus, a.services.controlBus);
  });
});
