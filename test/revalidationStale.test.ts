import { expect } from 'chai';
import type { Knex } from 'knex';
import { createSocketRevalidation } from '../lib/realtime/revalidation.js';
import {
  createGroup,
  expectOk,
  friendsOf,
  newUser,
  record,
  removeWithNoEvent,
  send,
  subscribe,
} from './helpers/chat.js';
import { request } from './helpers/http.js';
import { useNode } from './helpers/nodes.js';
import { waitFor } from './helpers/waitFor.js';
import type { TestUser } from './helpers/users.js';

/**
 * The node's check of its sockets against the database (lib/realtime/revalidation.ts, every minute on every node,
 * and whenever a LISTEN connection is back) reads who has left the conversations its sockets follow; a user removed
 * while it reads and added back before its answer comes takes part again, and must stay in the room. Here the
 * check's statement is held open around the removal and the addition.
 */
describe('the socket check and a membership that changed while it read', function () {
  this.timeout(30_000);
  const { server, pool } = useNode();

  /**
   * A knex whose statement that `matches` (a raw statement, or the transaction of `inTransaction`) waits for
   * `beforeRead`, reads, then waits for `afterRead` before it answers.
   */
  function gatedKnex(knex: Knex, matches: { raw: string } | { inTransaction: true } = { raw: 'unnest(' }) {
    let openBefore!: () => void;
    let openAfter!: () => void;
    let markRead!: () => void;
    const beforeRead = new Promise<void>((r) => (openBefore = r));
    const afterRead = new Promise<void>((r) => (openAfter = r));
    const read = new Promise<void>((r) => (markRead = r));
    let queued!: () => void;
    const waiting = new Promise<void>((r) => (queued = r));
    async function held<T>(run: () => Promise<T>): Promise<T> {
      queued();
      await beforeRead;
      const result = await run();
      markRead();
      await afterRead;
      return result;
    }
    const proxy = new Proxy(knex, {
      get(target, prop, receiver) {
        if ('raw' in matches && prop === 'raw') {
          return (sql: string, bindings: unknown) =>
            sql.includes(matches.raw)
              ? held(() => target.raw<unknown>(sql, bindings as never))
              : target.raw<unknown>(sql, bindings as never);
        }
        if ('inTransaction' in matches && prop === 'transaction') {
          return (run: (trx: Knex.Transaction) => Promise<unknown>, options: Knex.TransactionConfig) =>
            target.transaction((trx) => held(() => run(trx)), options);
        }
        return Reflect.get(target, prop, receiver) as unknown;
      },
    });
    return { knex: proxy, waiting, openBefore, read, openAfter };
  }

  /** A group of a new owner's with one member, whose socket on the node is subscribed to it. */
  async function subscribedMember() {
    const owner = await newUser(server);
    const [member] = (await friendsOf(server, owner, 1)) as [TestUser];
    // Connected before the group is made, and told of it before anything else: the creation's notice, told a moment
    // after the creation's answer, must not land among what a test records.
    const memberSocket = await pool.open(server.url, member);
    const created = record(memberSocket, 'conversation:added');
    const group = await createGroup(server.url, owner, [member]);
    await waitFor(() => created.length === 1, { what: "the group's creation at the member" });
    await subscribe(memberSocket, group.id);
    return { owner, member, group, memberSocket };
  }

  /** The owner takes `member` out of the group through the API. */
  async function removeMember(owner: TestUser, groupId: string, member: TestUser): Promise<void> {
    const res = await request(server.url, 'DELETE', `/conversations/${groupId}/participants/${member.id}`, {
      token: owner.token,
    });
    expect(res.status).to.equal(204);
  }

  /** The owner adds `member` to the group through the API. */
  async function addMember(owner: TestUser, groupId: string, member: TestUser): Promise<void> {
    const res = await request(server.url, 'POST', `/conversations/${groupId}/participants`, {
      token: owner.token,
      body: { userId: member.id },
    });
    expect(res.status).to.equal(201);
  }

  /** A check of this node's sockets of its own (not the node's), reading through `knex`, never run by a timer. */
  function revalidationThrough(knex: Knex) {
    return createSocketRevalidation({
      io: server.services.io,
      knex,
      logger: server.services.logger,
      clock: server.services.clock,
      removalsTold: server.services.conversationEvents,
      everyMs: 3_600_000,
    });
  }

  type Gate = ReturnType<typeof gatedKnex>;
  type Revalidation = ReturnType<typeof revalidationThrough>;

  /** Runs `body` with a check of its own reading through a gated knex; the gate is opened and the check closed after. */
  async function withGatedCheck(
    matches: Parameters<typeof gatedKnex>[1],
    body: (gate: Gate, revalidation: Revalidation) => Promise<void>,
  ): Promise<void> {
    const gate = gatedKnex(server.services.db.knex, matches);
    const revalidation = revalidationThrough(gate.knex);
    try {
      await body(gate, revalidation);
    } finally {
      gate.openBefore();
      gate.openAfter();
      revalidation.close();
    }
  }

  /**
   * The check lists this node's subscriptions (`memberSocket`'s among them) and starts its read; the owner removes
   * the member, who is told at once.
   */
  async function removeWhileCheckStarts(
    gate: Gate,
    revalidation: Revalidation,
    { owner, member, group }: { owner: TestUser; member: TestUser; group: { id: string } },
    removed: readonly unknown[],
  ): Promise<void> {
    revalidation.request();
    await gate.waiting;
    await removeMember(owner, group.id, member);
    await waitFor(() => removed.length === 1, { what: 'conversation:removed' });
  }

  it('a member removed and added back is not told conversation:removed again, nor taken out of the room', async () => {
    const { owner, member, group, memberSocket } = await subscribedMember();
    const removed = record(memberSocket, 'conversation:removed');
    const added = record(memberSocket, 'conversation:added');
    const messages = record(memberSocket, 'message:new');
    const order: string[] = [];
    memberSocket.on('conversation:removed', () => order.push('removed'));
    memberSocket.on('conversation:added', () => order.push('added'));

    await withGatedCheck(undefined, async (gate, revalidation) => {
      // The check starts its read; the owner removes the member...
      await removeWhileCheckStarts(gate, revalidation, { owner, member, group }, removed);
      // ... the check's statement reads the membership now (the member is out) ...
      gate.openBefore();
      await gate.read;
      // ... and the owner adds them back; they subscribe again.
      await addMember(owner, group.id, member);
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
        { token: member.token },
      );
      expect(got.status).to.equal(200);
      expect({ events: order, messageNewSeqs: messages.map((m) => m.seq) }).to.deep.equal({
        events: ['removed', 'added'],
        messageNewSeqs: [sent.message.seq],
      });
    });
  });

  it('a member removed while the check reads is told conversation:removed once', async () => {
    const { owner, member, group, memberSocket } = await subscribedMember();
    const removed = record(memberSocket, 'conversation:removed');

    await withGatedCheck(undefined, async (gate, revalidation) => {
      await removeWhileCheckStarts(gate, revalidation, { owner, member, group }, removed);
      // The check reads the membership now (the member is out) and acts on its answer.
      gate.openBefore();
      gate.openAfter();
      await revalidation.settled();
      await new Promise((r) => setTimeout(r, 300));
      expect(removed).to.deep.equal([{ conversationId: group.id }]);
    });
  });

  it('a member added while a LISTEN connection was down and removed while the check reads is not told conversation:added after conversation:removed', async () => {
    const owner = await newUser(server);
    const [first, member] = (await friendsOf(server, owner, 2)) as [TestUser, TestUser];
    const group = await createGroup(server.url, owner, [first]);
    const memberSocket = await pool.open(server.url, member);
    const order: string[] = [];
    memberSocket.on('conversation:removed', () => order.push('removed'));
    memberSocket.on('conversation:added', () => order.push('added'));

    // The reads of the notices missed run in one transaction: held open around the removal.
    await withGatedCheck({ inTransaction: true }, async (gate, revalidation) => {
      // This check's node stops listening (for the check: the node's own connections stay), then the owner adds
      // the member, who hears it from the node's events.
      revalidation.listenLost('adapter');
      await addMember(owner, group.id, member);
      await waitFor(() => order.length === 1, { what: 'conversation:added' });
      // It listens again: the check tells the notices of the gap again, and reads them (the member is in)...
      revalidation.listening('adapter');
      await gate.waiting;
      gate.openBefore();
      await gate.read;
      // ... then the owner removes the member before the check's answer comes.
      await removeMember(owner, group.id, member);
      await waitFor(() => order.length === 2, { what: 'conversation:removed' });
      gate.openAfter();
      await revalidation.settled();
      await new Promise((r) => setTimeout(r, 300));
      expect(order).to.deep.equal(['added', 'removed']);
    });
  });

  it('a member removed with no event heard who unsubscribes while the check reads is still told conversation:removed', async () => {
    const { member, group, memberSocket } = await subscribedMember();
    const removed = record(memberSocket, 'conversation:removed');
    // A removal this node never heard of (its LISTEN connection was down): made in the database only.
    const { knex } = server.services.db;
    await knex.transaction(async (trx) => {
      await trx('conversation_participants')
        .where({ conversation_id: group.id, user_id: member.id })
        .delete();
      await trx('conversations').where({ id: group.id }).increment('removals', 1);
    });

    await withGatedCheck(undefined, async (gate, revalidation) => {
      // The check lists the node's subscriptions (the member's among them) and starts its read...
      revalidation.request();
      await gate.waiting;
      // ... while the member's page leaves the conversation: no later check would find the member again.
      await memberSocket.emitWithAck('conversation:unsubscribe', { conversationId: group.id });
      gate.openBefore();
      gate.openAfter();
      await revalidation.settled();
      await new Promise((r) => setTimeout(r, 300));
      expect(removed).to.deep.equal([{ conversationId: group.id }]);
    });
  });
  it('a removal told from the database after a gap is not told to a user whose addition since was heard while it read', async () => {
    const owner = await newUser(server);
    const [member] = (await friendsOf(server, owner, 1)) as [TestUser];
    // The member's device shows the list of conversations: it does not follow the group's room. Connected before
    // the group is made, and told of it before anything else: the creation's notice, told from the control bus a
    // moment after the creation's answer, would otherwise reach a socket opened after it now and then, and be
    // recorded as a second conversation:added.
    const memberSocket = await pool.open(server.url, member);
    const created = record(memberSocket, 'conversation:added');
    const group = await createGroup(server.url, owner, [member]);
    await waitFor(() => created.length === 1, { what: "the group's creation at the member" });
    const order: string[] = [];
    memberSocket.on('conversation:removed', () => order.push('removed'));
    memberSocket.on('conversation:added', () => order.push('added'));
    // Removed as a removal writes it, with no event heard (this check's node was not listening).
    await removeWithNoEvent(server.services.db.knex, group.id, member.id);

    await withGatedCheck({ raw: 'participant_removals' }, async (gate, revalidation) => {
      revalidation.listenLost('adapter');
      revalidation.listening('adapter');
      // The check reads the removals made since the gap began (the member's among them)...
      await gate.waiting;
      gate.openBefore();
      await gate.read;
      // ... and the owner adds the member back before its answer comes: the node hears it and tells it.
      await addMember(owner, group.id, member);
      await waitFor(() => order.length === 1, { what: 'conversation:added' });
      gate.openAfter();
      await revalidation.settled();
      await new Promise((r) => setTimeout(r, 300));
      expect(order).to.deep.equal(['added']);
    });
  });
});
