import { expect } from 'chai';
import { CONTROL_APPLICATION_NAME } from '../lib/cluster/controlBus.js';
import { createGroup, expectOk, friendsOf, newUser, record, send, subscribe } from './helpers/chat.js';
import { listeningPids } from './helpers/faults.js';
import { useTwoNodes } from './helpers/nodes.js';
import { adminQuery } from './helpers/postgres.js';
import { waitFor } from './helpers/waitFor.js';

interface KnexClient {
  query: (this: KnexClient, connection: unknown, statement: { sql: string }) => Promise<unknown>;
}

/**
 * A removal whose control-bus event a node missed (its LISTEN connection was down) is not in that node's count of
 * removals: until the node has checked the conversation's removals after it listens again, what it delivers to the
 * conversation's room checks them first (lib/messaging/fanout.ts, `lost()`). Its check of its sockets against the
 * database (lib/realtime/revalidation.ts) runs on its own and may be slow or fail: the messages must not wait for
 * it. The removal is made in the database as a removal makes it, with no event; then both nodes' control
 * connections are ended, as a PostgreSQL restart or an operator would.
 */
describe('a removal missed while the control bus was down: what the node hears after it listens again', function () {
  this.timeout(60_000);
  const nodes = useTwoNodes();
  const { a, b, pool } = nodes;
  const databaseName = () => new URL(nodes.databaseUrl).pathname.slice(1);

  const controlListeners = () => listeningPids(databaseName(), CONTROL_APPLICATION_NAME);

  /**
   * A group with its owner and a member subscribed on node B and a writer on node A; its first message has reached
   * both subscribers.
   */
  async function setUp() {
    const owner = await newUser(a);
    const [member, writer] = await friendsOf(a, owner, 2);
    const group = await createGroup(a.url, owner, [member!, writer!]);
    const ownerOnB = await pool.open(b.url, owner);
    const removedOnB = await pool.open(b.url, member!);
    const writerOnA = await pool.open(a.url, writer!);
    await subscribe(ownerOnB, group.id);
    await subscribe(removedOnB, group.id);
    const ownerMessages = record(ownerOnB, 'message:new');
    const removedMessages = record(removedOnB, 'message:new');
    const removedNotices = record(removedOnB, 'conversation:removed');
    expectOk(await send(writerOnA, group.id, 'before'));
    await waitFor(() => ownerMessages.length === 1 && removedMessages.length === 1, {
      what: 'the first message on B',
    });
    await waitFor(async () => (await controlListeners()).length === 2, {
      what: 'both control buses listening',
    });
    return { member: member!, group, writerOnA, ownerMessages, removedMessages, removedNotices };
  }

  /**
   * The member's removal, as a removal writes it, whose event no node hears: straight in the database, then both
   * nodes' control connections end (and come back).
   */
  async function removeWhileNotListening(conversationId: string, userId: string): Promise<void> {
    await a.services.db.knex.transaction(async (trx) => {
      await trx('conversation_participants')
        .where({ conversation_id: conversationId, user_id: userId })
        .delete();
      await trx('conversations').where('id', conversationId).increment('removals', 1);
    });
    const listening = await controlListeners();
    expect(listening).to.have.length(2);
    for (const pid of listening) await adminQuery('SELECT pg_terminate_backend($1)', [pid]);
  }

  for (const failFirst of [false, true]) {
    const title = failFirst
      ? 'does not reach the removed participant when the node’s first check of the removals fails: the next delivery checks again'
      : 'does not reach the removed participant while the node’s check of its sockets is still running';
    it(title, async () => {
      const { member, group, writerOnA, ownerMessages, removedMessages, removedNotices } = await setUp();

      // Node B's check of its sockets against the database is slow (as right after an outage): held.
      const client = b.services.db.knex.client as KnexClient;
      const query = client.query;
      let held = 0;
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      // And, in the second variant, its first look at the conversation's removals after the reconnect fails.
      let refused = 0;
      client.query = function (this: KnexClient, connection, statement) {
        if (statement.sql.includes('AS q(user_id, conversation_id)')) {
          held += 1;
          return gate.then(() => query.call(this, connection, statement));
        }
        if (failFirst && refused === 0 && statement.sql.includes('SELECT removals FROM conversations')) {
          refused += 1;
          return Promise.reject(new Error('Connection terminated unexpectedly'));
        }
        return query.call(this, connection, statement);
      };
      try {
        await removeWhileNotListening(group.id, member.id);
        // B listens again: its resync (catch-up) has run and its socket check has started (held).
        await waitFor(() => held > 0, {
          what: "node B's socket check after the reconnect",
          timeoutMs: 20_000,
        });
        await waitFor(async () => (await controlListeners()).length === 2, {
          what: 'both control buses back',
        });
        await new Promise((r) => setTimeout(r, 500));

        expectOk(await send(writerOnA, group.id, 'after the removal'));
        await waitFor(() => ownerMessages.length === 2, { what: "the owner's copy on B" });
        await new Promise((r) => setTimeout(r, 200));
        expect(
          removedMessages.map((m) => m.body),
          'the removed participant got a message written after their removal',
        ).to.deep.equal(['before']);
        expect(refused, 'failed looks at the removals').to.equal(failFirst ? 1 : 0);
      } finally {
        release();
        client.query = query;
      }
      await waitFor(() => removedNotices.length === 1, { what: 'conversation:removed once the check ran' });
    });
  }

  it('does not reach the removed participant after the node’s check of its sockets failed (until the next one, a minute later)', async () => {
    const { member, group, writerOnA, ownerMessages, removedMessages } = await setUp();

    // Node B's first check of its sockets after the reconnect fails in its driver (as right after a restart).
    const client = b.services.db.knex.client as KnexClient;
    const query = client.query;
    let refused = 0;
    client.query = function (this: KnexClient, connection, statement) {
      if (statement.sql.includes('AS q(user_id, conversation_id)') && refused === 0) {
        refused += 1;
        return Promise.reject(new Error('Connection terminated unexpectedly'));
      }
      return query.call(this, connection, statement);
    };
    try {
      await removeWhileNotListening(group.id, member.id);
      await waitFor(() => refused > 0, {
        what: "node B's socket check after the reconnect",
        timeoutMs: 20_000,
      });
      await waitFor(async () => (await controlListeners()).length === 2, { what: 'both control buses back' });
    } finally {
      client.query = query;
    }
    // Seconds later, with the database answering again, the conversation goes on.
    await new Promise((r) => setTimeout(r, 2000));
    for (const body of ['one', 'two', 'three']) expectOk(await send(writerOnA, group.id, body));
    await waitFor(() => ownerMessages.length === 4, { what: "the owner's copies on B" });
    await new Promise((r) => setTimeout(r, 200));
    expect(
      removedMessages.map((m) => m.body),
      'messages written after the removal, delivered to the removed participant',
    ).to.deep.equal(['before']);
  });
});
