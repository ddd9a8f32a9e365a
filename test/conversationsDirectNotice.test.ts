import { expect } from 'chai';
import type { Knex } from 'knex';
import type { PublicConversation } from '../lib/protocol/index.js';
import { friendsOf, newUser, record } from './helpers/chat.js';
import { request } from './helpers/http.js';
import { useNode } from './helpers/nodes.js';
import type { TestUser } from './helpers/users.js';
import { waitFor } from './helpers/waitFor.js';

/**
 * A new direct conversation is told (`conversation:added`, to both users) from its commit, by the control bus event
 * sent inside its transaction, as a group's creation is. Told after a read made after the commit, it was never
 * told when that read failed (no pool connection in time: DB_UNAVAILABLE): the client's retry finds the
 * conversation (200), and the path that finds an existing one tells no one.
 */
describe('conversations: a direct conversation whose creation answered 503 after its commit', function () {
  this.timeout(30_000);
  const { server, pool } = useNode();

  /** Fails the service's next read-only snapshot transaction (its read after the commit) as a pool timeout does. */
  function failNextSnapshotRead(knex: Knex): () => void {
    const target = knex as unknown as { transaction: (...args: unknown[]) => unknown };
    const original = target.transaction;
    let armed = true;
    const patched = function (this: unknown, ...args: unknown[]) {
      const options = args[1] as { readOnly?: boolean } | undefined;
      // The service's own read of its answer, not the control bus event's read on its way to the sockets, which
      // the commit's NOTIFY may start first.
      const answering = new Error().stack?.includes('conversationService') === true;
      if (armed && answering && typeof args[0] === 'function' && options?.readOnly === true) {
        armed = false;
        const err = new Error('Knex: Timeout acquiring a connection. The pool is probably full.');
        err.name = 'KnexTimeoutError';
        return Promise.reject(err);
      }
      return original.apply(this, args);
    };
    Object.defineProperty(target, 'transaction', { value: patched, configurable: true, writable: true });
    return () =>
      Object.defineProperty(target, 'transaction', { value: original, configurable: true, writable: true });
  }

  it('still tells the other user conversation:added (the conversation was created)', async () => {
    const alice = await newUser(server);
    const [bob] = (await friendsOf(server, alice, 1)) as [TestUser];
    const bobSocket = await pool.open(server.url, bob);
    const added = record(bobSocket, 'conversation:added');
    const create = () =>
      request<{ conversation: PublicConversation }>(server.url, 'POST', '/conversations', {
        token: alice.token,
        body: { type: 'direct', userId: bob.id },
      });
    const restore = failNextSnapshotRead(server.services.db.knex);
    let first;
    try {
      first = await create();
    } finally {
      restore();
    }
    expect(first.status, first.text).to.equal(503);
    // The client retries, as it should after a 503: the conversation was made by the first attempt.
    const retry = await create();
    expect(retry.status, retry.text).to.equal(200);
    const id = retry.body.conversation.id;
    await waitFor(() => added.length > 0, { what: `bob to hear conversation:added of ${id}` });
    expect(added.map((c) => c.id)).to.deep.equal([id]);
  });
});
