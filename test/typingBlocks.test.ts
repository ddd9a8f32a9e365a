import { expect } from 'chai';
import { createGroup, friendsOf, newUser, record, subscribe } from './helpers/chat.js';
import { expectAckError } from './helpers/errors.js';
import { controlBusSettled, directConversation } from './helpers/faults.js';
import { request } from './helpers/http.js';
import { useNode } from './helpers/nodes.js';
import type { TestUser } from './helpers/users.js';
import { waitFor } from './helpers/waitFor.js';

/**
 * A `typing` checks the blocks in a statement of its own, outside any lock a block takes (it stores nothing), and
 * spends the user's typing budget (2 a second, bursts of 5, over all conversations) only when it goes out
 * (lib/messaging/service.ts).
 */
describe('typing and blocks', function () {
  this.timeout(30_000);
  const { server, pool } = useNode();

  async function setUp() {
    const alice = await newUser(server);
    const [bob, carol] = (await friendsOf(server, alice, 2)) as [TestUser, TestUser];
    const direct = await directConversation(server.url, alice, bob);
    const group = await createGroup(server.url, alice, [carol]);
    const aliceSocket = await pool.open(server.url, alice);
    const bobSocket = await pool.open(server.url, bob);
    const carolSocket = await pool.open(server.url, carol);
    await subscribe(bobSocket, direct);
    await subscribe(carolSocket, group.id);
    return { alice, bob, direct, group: group.id, aliceSocket, bobSocket, carolSocket };
  }

  const block = (by: TestUser, target: TestUser) =>
    request(server.url, 'POST', '/blocks', { token: by.token, body: { userId: target.id } });

  /** Five typings in the blocked direct conversation, each refused: a client that goes on typing there. */
  async function typeWhileBlocked(socket: Awaited<ReturnType<typeof setUp>>['aliceSocket'], direct: string) {
    for (let i = 0; i < 5; i++) {
      expectAckError(
        await socket.emitWithAck('typing', { conversationId: direct }),
        'BLOCKED',
        `typing ${i}`,
      );
    }
  }

  it('refused typings spend no budget: in a group, where a block changes nothing, the next typing goes out', async () => {
    const { alice, bob, direct, group, aliceSocket, carolSocket } = await setUp();
    const typingAtCarol = record(carolSocket, 'typing');
    expect((await block(bob, alice)).status).to.equal(204);
    await typeWhileBlocked(aliceSocket, direct);
    expect(await aliceSocket.emitWithAck('typing', { conversationId: group })).to.deep.equal({ ok: true });
    await waitFor(() => typingAtCarol.length === 1, {
      what: "alice's group typing at carol",
      timeoutMs: 1500,
    });
    expect(typingAtCarol).to.deep.equal([{ conversationId: group, userId: alice.id }]);
  });

  it('a typing in a blocked direct conversation is refused BLOCKED once the user’s typing budget is spent', async () => {
    const alice = await newUser(server);
    const [bob, ...others] = (await friendsOf(server, alice, 6)) as [TestUser, ...TestUser[]];
    const direct = await directConversation(server.url, alice, bob);
    const groups = await Promise.all(
      others.map(async (other) => (await createGroup(server.url, alice, [other])).id),
    );
    expect((await block(bob, alice)).status).to.equal(204);
    const aliceSocket = await pool.open(server.url, alice);
    // Five typings that go out, one a conversation: the user's burst of the budget.
    for (const group of groups) {
      expect(await aliceSocket.emitWithAck('typing', { conversationId: group })).to.deep.equal({ ok: true });
    }
    expectAckError(await aliceSocket.emitWithAck('typing', { conversationId: direct }), 'BLOCKED');
  });

  it('refused typings spend no budget: the first typing after the unblock goes out', async () => {
    const { alice, bob, direct, aliceSocket, bobSocket } = await setUp();
    const typingAtBob = record(bobSocket, 'typing');
    expect((await block(bob, alice)).status).to.equal(204);
    await typeWhileBlocked(aliceSocket, direct);
    const unblocked = await request(server.url, 'DELETE', `/blocks/${alice.id}`, { token: bob.token });
    expect(unblocked.status).to.equal(204);
    expect(await aliceSocket.emitWithAck('typing', { conversationId: direct })).to.deep.equal({ ok: true });
    await waitFor(() => typingAtBob.length === 1, {
      what: "alice's typing after the unblock",
      timeoutMs: 1500,
    });
    expect(typingAtBob).to.deep.equal([{ conversationId: direct, userId: alice.id }]);
  });

  /**
   * Holds each typing's look at the blocks after it has read, until let go: `held[n]()` lets the (n+1)th look go
   * on. `restore()` lets every look go and ends the holding.
   */
  function holdLooksAtBlocks() {
    const knex = server.services.db.knex as unknown as { raw: (...args: unknown[]) => unknown };
    const original = knex.raw;
    const held: Array<() => void> = [];
    const hold = function (this: unknown, ...args: unknown[]) {
      const result = original.apply(this, args);
      if (typeof args[0] === 'string' && args[0].includes('xfchat_blocked(')) {
        return (async () => {
          const rows = await (result as Promise<unknown>);
          await new Promise<void>((resolve) => held.push(resolve));
          return rows;
        })();
      }
      return result;
    };
    Object.defineProperty(knex, 'raw', { value: hold, configurable: true, writable: true });
    return {
      held,
      restore() {
        for (const go of held) go();
        Object.defineProperty(knex, 'raw', { value: original, configurable: true, writable: true });
      },
    };
  }

  /** A block heard by the node (its 204, then the control bus's notice). */
  async function blockHeard(by: TestUser, target: TestUser): Promise<void> {
    expect((await block(by, target)).status).to.equal(204);
    await controlBusSettled(server.services.controlBus);
  }

  /**
   * A round trip on `socket`: a typing the node sent it before answering the typist (it is sent before the ack)
   * comes before this answer. (A fixed 200 ms passed without looking when a loaded machine delivered it later.)
   */
  const roundTrip = (socket: Awaited<ReturnType<typeof setUp>>['bobSocket']) =>
    socket.emitWithAck('conversation:subscribe', { conversationId: '00000000-0000-4000-8000-000000000000' });

  /** The pair's setup, with the typings Bob's socket hears recorded, and the looks at the blocks held from now. */
  async function withLooksHeld() {
    const pair = await setUp();
    await controlBusSettled(server.services.controlBus);
    return { ...pair, typingAtBob: record(pair.bobSocket, 'typing'), looks: holdLooksAtBlocks() };
  }

  it('a typing whose check read before a block committed, and ended after the node heard it, does not go out', async () => {
    const { alice, bob, direct, aliceSocket, bobSocket, typingAtBob, looks } = await withLooksHeld();
    try {
      const typing = aliceSocket.emitWithAck('typing', { conversationId: direct });
      await waitFor(() => looks.held.length === 1, { what: "alice's typing checked" });
      // Bob blocks Alice: committed, answered, and heard by the node.
      await blockHeard(bob, alice);
      looks.held[0]!();
      // Overtaken by the block: it looks again, and reads the block.
      await waitFor(() => looks.held.length === 2, { what: 'the second look' });
      looks.held[1]!();
      expectAckError(await typing, 'BLOCKED', 'the typing');
      await roundTrip(bobSocket);
      expect(typingAtBob, 'a typing told to the blocker after the block').to.deep.equal([]);
    } finally {
      looks.restore();
    }
  });

  it('a typing looks again for the changes of its own conversation only: other pairs’ blocks heard meanwhile do not', async () => {
    const { direct, aliceSocket, bobSocket } = await setUp();
    const others: Array<[TestUser, TestUser]> = [];
    for (let i = 0; i < 3; i++) {
      const x = await newUser(server);
      const [y] = (await friendsOf(server, x, 1)) as [TestUser];
      await directConversation(server.url, x, y);
      others.push([x, y]);
    }
    await controlBusSettled(server.services.controlBus);
    const typingAtBob = record(bobSocket, 'typing');
    const looks = holdLooksAtBlocks();
    try {
      let answer: unknown;
      const typing = aliceSocket
        .emitWithAck('typing', { conversationId: direct })
        .then((ack) => (answer = ack));
      await waitFor(() => looks.held.length === 1, { what: "alice's typing checked" });
      for (const [x, y] of others) await blockHeard(x, y);
      looks.held[0]!();
      await waitFor(() => answer !== undefined || looks.held.length > 1, {
        what: 'the answer, or a second look',
      });
      expect(looks.held, 'looks').to.have.length(1);
      expect(await typing).to.deep.equal({ ok: true });
      await waitFor(() => typingAtBob.length === 1, { what: 'the typing at bob' });
    } finally {
      looks.restore();
    }
  });

  it('a typing overtaken by a change of its conversation at every look goes nowhere, the last a block', async () => {
    const { alice, bob, direct, aliceSocket, bobSocket, typingAtBob, looks } = await withLooksHeld();
    try {
      const typing = aliceSocket.emitWithAck('typing', { conversationId: direct });
      for (let look = 1; look <= 3; look++) {
        await waitFor(() => looks.held.length === look, { what: `look ${look}` });
        // Each look read before a block that the node heard; before the last one, the block is undone again.
        await blockHeard(bob, alice);
        if (look < 3) {
          const unblocked = await request(server.url, 'DELETE', `/blocks/${alice.id}`, { token: bob.token });
          expect(unblocked.status).to.equal(204);
        }
        looks.held[look - 1]!();
      }
      // The last look read no block (it came after), but it was overtaken: nothing goes out, nothing is stored.
      expect(await typing).to.deep.equal({ ok: true });
      await roundTrip(bobSocket);
      expect(typingAtBob, 'a typing told to the blocker after the block').to.deep.equal([]);
      expect(looks.held).to.have.length(3);
    } finally {
      looks.restore();
    }
  });
});
