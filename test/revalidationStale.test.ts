import { expect } from 'chai';
import type { Knex } from 'knex';
import { createSocketRevalidation } from '../lib/realtime/revalidation.js';
import { createGroup, expectOk, friendsOf, newUser, record, send, subscribe } from './helpers/chat.js';
import { request } from './helpers/http.js';
import { useNode } from './helpers/nodes.js';
import { waitFor } from './helpers/waitFor.js';

/**
 * The node's check of its sockets against the database (lib/realtime/revalidation.ts, every minute on every node,
 * and whenever a LISTEN connection is back) reads who has left the conversations its sockets follow; a user removed
 * while it reads and added back before its answer comes takes part again, and must stay in the room. Here the
 * check's statement is held open around the removal and the addition.
 */
describe('the socket check and a membership that changed while it read', function () {
  this.timeout(30_000);
  const { server, pool } = useNode();

  /** A knex whose departedParticipants() statement waits for `beforeRead`, reads, then waits for `afterRead`. */
  function gatedKnex(knex: Knex) {
    let openBefore!: () => void;
    let openAfter!: () => void;
    let markRead!: () => void;
    const beforeRead = new Promise<void>((r) => (openBefore = r));
    const afterRead = new Promise<void>((r) => (openAfter = r));
    const read = new Promise<void>((r) => (markRead = r));
    let queued!: () => void;
    const waiting = new Promise<void>((r) => (queued = r));
    const proxy = new Proxy(knex, {
      get(target, prop, receiver) {
        if (prop !== 'raw') return Reflect.get(target, prop, receiver) as unknown;
        return (sql: string, bindings: unknown) => {
          if (!sql.includes('unnest(')) return target.raw<unknown>(sql, bindings as never);
          return (async () => {
            queued();
            await beforeRead;
            const result: unknown = await target.raw<unknown>(sql, bindings as never);
            markRead();
            await afterRead;
            return result;
          })();
        };
      },
    });
    return { knex: proxy, waiting, openBefore, read, openAfter };
  }

  it('a member removed and added back is not told conversation:removed again, nor taken out of the room', async () => {
    const owner = await newUser(server);
    const [member] = await friendsOf(server, owner, 1);
    const group = await createGroup(server.url, owner, [member!]);
    const memberSocket = await pool.open(server.url, member!);
    await subscribe(memberSocket, group.id);
    const removed = record(memberSocket, 'conversation:removed');
    const added = record(memberSocket, 'conversation:added');
    const messages = record(memberSocket, 'message:new');
    const order: string[] = [];
    memberSocket.on('conversation:removed', () => order.push('removed'));
    memberSocket.on('conversation:added', () => order.push('added'));

    const gate = gatedKnex(server.services.db.knex);
    const revalidation = createSocketRevalidation({
      io: server.services.io,
      knex: gate.knex,
      logger: server.services.logger,
      clock: server.services.clock,
      everyMs: 3_600_000,
    });
    try {
      // The check takes its list of this node's subscriptions (the member's among them) and starts its read.
      revalidation.request();
      await gate.waiting;
      // The owner removes the member...
      const del = await request(
        server.url,
        'DELETE',
        `/conversations/${group.id}/participants/${member!.id}`,
        {
          token: owner.token,
        },
      );
      expect(del.status).to.equal(204);
      await waitFor(() => removed.length === 1, { what: 'conversation:removed' });
      // ... the check's statement reads the membership now (the member is out) ...
      gate.openBefore();
      await gate.read;
      // ... and the owner adds them back; they subscribe again.
      const add = await request(server.url, 'POST', `/conversations/${group.id}/participants`, {
        token: owner.token,
        body: { userId: member!.id },
      });
      expect(add.status).to.equal(201);
      await waitFor(() => added.length === 1, { what: 'conversation:added' });
      await subscribe(memberSocket, group.id);
      // The check's answer arrives now.
      gate.openAfter();
      await revalidation.settled();

      const ownerSocket = await pool.open(server.url, owner);
      const sent = expectOk(await send(ownerSocket, group.id, 'after the member is back'));
      await new Promise((r) => setTimeout(r, 500));
      // The stored state: the member takes part.
      const got = await request<{ conversation: { participants: Array<{ userId: string }> } }>(
        server.url,
        'GET',
        `/conversations/${group.id}`,
        { token: member!.token },
      );
      expect(got.status).to.equal(200);
      expect({ events: order, messageNewSeqs: messages.map((m) => m.seq) }).to.deep.equal({
        events: ['removed', 'added'],
        messageNewSeqs: [sent.message.seq],
      });
    } finally {
      gate.openBefore();
      gate.openAfter();
      revalidation.close();
    }
  });
});
