import { expect } from 'chai';
import { FOLLOWS_REMOVALS_ROOM } from '../lib/realtime/notifier.js';
import type { RunningServer } from '../lib/server.js';
import { createGroup, expectOk, friendsOf, newUser, record, rows, send, subscribe } from './helpers/chat.js';
import { expectAckError } from './helpers/errors.js';
import { request } from './helpers/http.js';
import { holdPublishes } from './helpers/adapterHold.js';
import { useTwoNodes } from './helpers/nodes.js';
import type { ClientSocket } from './helpers/sockets.js';
import type { TestUser } from './helpers/users.js';
import { waitFor } from './helpers/waitFor.js';

describe("events reach the sending node's sockets at once, whatever the adapter's NOTIFY takes", function () {
  const { a: nodeA, b: nodeB, pool } = useTwoNodes();

  /** The owner removes a participant through node A. */
  async function removeParticipant(owner: TestUser, conversationId: string, userId: string): Promise<void> {
    const removed = await request(
      nodeA.url,
      'DELETE',
      `/conversations/${conversationId}/participants/${userId}`,
      {
        token: owner.token,
      },
    );
    expect(removed.status).to.equal(204);
  }

  /**
   * A round trip of a removed user's socket (a subscribe, refused): its answer comes after everything its node sent
   * it before (one connection, in order), which another socket's having its own copy does not say.
   */
  async function answeredAfter(socket: ClientSocket, conversationId: string): Promise<void> {
    expectAckError(await socket.emitWithAck('conversation:subscribe', { conversationId }), 'NOT_FOUND');
  }

  it('typing and read markers reach the subscribers here before a message sent after them, and the other node later', async () => {
    const owner = await newUser(nodeA);
    const [member, other] = await friendsOf(nodeA, owner, 2);
    const group = await createGroup(nodeA.url, owner, [member!, other!]);
    const typist = await pool.open(nodeA.url, owner);
    const reader = await pool.open(nodeA.url, member!);
    const here = await pool.open(nodeA.url, other!);
    const there = await pool.open(nodeB.url, other!);
    const hereEvents: string[] = [];
    for (const event of ['typing', 'conversation:read', 'message:new'] as const) {
      here.on(event, () => hereEvents.push(event));
    }
    const thereTyping = record(there, 'typing');
    const thereReads = record(there, 'conversation:read');
    await subscribe(here, group.id);
    await subscribe(there, group.id);
    expectOk(await send(typist, group.id, 'first'));
    await waitFor(() => hereEvents.length === 1, { what: 'the first message' });

    const hold = holdPublishes(nodeA);
    try {
      expectOk(await typist.emitWithAck('typing', { conversationId: group.id }));
      expectOk(await reader.emitWithAck('conversation:read', { conversationId: group.id, seq: 1 }));
      expectOk(await send(typist, group.id, 'marker'));
      await waitFor(() => hereEvents.length === 4, {
        what: 'typing, the read marker and the marker message',
      });
      expect(hereEvents).to.deep.equal(['message:new', 'typing', 'conversation:read', 'message:new']);
      // Held: the other node has heard nothing of them yet.
      expect(hold.held()).to.be.at.least(1);
      expect(thereTyping).to.have.length(0);
      expect(thereReads).to.have.length(0);
    } finally {
      hold.release();
    }
    await waitFor(() => thereTyping.length === 1 && thereReads.length === 1, {
      what: 'the events on node B',
    });
    expect(thereTyping[0]).to.deep.equal({ conversationId: group.id, userId: owner.id });
    expect(thereReads[0]).to.deep.equal({ conversationId: group.id, userId: member!.id, seq: 1 });
    // Node A's sockets got each once: the adapter does not hand a node its own events back.
    expect(hereEvents).to.deep.equal(['message:new', 'typing', 'conversation:read', 'message:new']);
  });

  it("a removed participant's sockets leave the room before the next message, on this node and the other", async () => {
    const owner = await newUser(nodeA);
    const [member] = await friendsOf(nodeA, owner, 1);
    const group = await createGroup(nodeA.url, owner, [member!]);
    const ownerSocket = await pool.open(nodeA.url, owner);
    const ownerThere = await pool.open(nodeB.url, owner);
    const here = await pool.open(nodeA.url, member!);
    const there = await pool.open(nodeB.url, member!);
    const hereMessages = record(here, 'message:new');
    const thereMessages = record(there, 'message:new');
    const ownerSawThere = record(ownerThere, 'message:new');
    const hereRemoved = record(here, 'conversation:removed');
    const thereRemoved = record(there, 'conversation:removed');
    for (const socket of [ownerThere, here, there]) await subscribe(socket, group.id);

    const hold = holdPublishes(nodeA);
    try {
      await removeParticipant(owner, group.id, member!.id);
      await waitFor(() => hereRemoved.length === 1, { what: 'the removal on node A' });
      expectOk(await send(ownerSocket, group.id, 'after the removal'));
      // A round trip of the removed socket, answered after the message was delivered on this node.
      await answeredAfter(here, group.id);
      expect(hereMessages).to.have.length(0);
      // Node B heard the removal with its commit, on the control bus, before the message: its socket left the
      // room and was told, with the adapter's NOTIFYs held.
      await waitFor(() => ownerSawThere.length === 1, { what: "the owner's copy on node B" });
      await answeredAfter(there, group.id);
      expect(thereMessages).to.have.length(0);
      expect(thereRemoved).to.deep.equal([{ conversationId: group.id }]);
    } finally {
      hold.release();
    }
    expect(hereRemoved).to.deep.equal([{ conversationId: group.id }]);
    expect(thereRemoved).to.deep.equal([{ conversationId: group.id }]);
    expectOk(await send(ownerSocket, group.id, 'later'));
    await waitFor(() => ownerSawThere.length === 2, { what: "the owner's second copy on node B" });
    expect(thereMessages).to.have.length(0);
    expect(hereMessages).to.have.length(0);
    // Told once on each node: the node that removed them does not act on its own control event again.
    expect(hereRemoved).to.have.length(1);
  });

  it("a removal reaches a socket outside the control bus's followers (a 0.2.0 node's) through the adapter", async () => {
    const owner = await newUser(nodeA);
    const [member] = await friendsOf(nodeA, owner, 1);
    const group = await createGroup(nodeA.url, owner, [member!]);
    const ownerSocket = await pool.open(nodeA.url, owner);
    const follower = await pool.open(nodeB.url, member!);
    const older = await pool.open(nodeB.url, member!);
    // As a socket of a 0.2.0 node would be: outside the room of the sockets whose node follows the control bus.
    const serverSide = [...nodeB.services.io.of('/').sockets.values()].find((s) => s.id === older.id)!;
    await serverSide.leave(FOLLOWS_REMOVALS_ROOM);
    const followerRemoved = record(follower, 'conversation:removed');
    const olderRemoved = record(older, 'conversation:removed');
    const olderMessages = record(older, 'message:new');
    await subscribe(follower, group.id);
    await subscribe(older, group.id);

    await removeParticipant(owner, group.id, member!.id);
    // Its node is of this release and follows the control bus too: it hears it twice, the adapter's copy included.
    await waitFor(() => olderRemoved.length === 2, { what: "the adapter's copy" });
    expect(serverSide.rooms.has(`conversation:${group.id}`)).to.equal(false);
    const ownerThere = await pool.open(nodeB.url, owner);
    const ownerSaw = record(ownerThere, 'message:new');
    await subscribe(ownerThere, group.id);
    expectOk(await send(ownerSocket, group.id, 'after the removal'));
    await waitFor(() => ownerSaw.length === 1, { what: "the owner's copy on node B" });
    await answeredAfter(older, group.id);
    expect(olderMessages).to.have.length(0);
    // A follower is told once: the adapter's copy leaves it out.
    await answeredAfter(follower, group.id);
    expect(followerRemoved).to.deep.equal([{ conversationId: group.id }]);
  });

  it('the removing node gives the removed user no message committed after the removal, whichever commit it reads first', async () => {
    const owner = await newUser(nodeA);
    const [member] = await friendsOf(nodeA, owner, 1);
    const group = await createGroup(nodeA.url, owner, [member!]);
    const ownerSocket = await pool.open(nodeA.url, owner);
    const ownerSaw = record(ownerSocket, 'message:new');
    const here = await pool.open(nodeA.url, member!);
    const hereMessages = record(here, 'message:new');
    const hereRemoved = record(here, 'conversation:removed');
    await subscribe(ownerSocket, group.id);
    await subscribe(here, group.id);
    expectOk(await send(ownerSocket, group.id, 'before the removal'));
    await waitFor(() => hereMessages.length === 1, { what: 'the message before the removal' });

    // As if node A read the next message's commit before the removal's: what follows the commit waits.
    const held = holdRemovalNotices(nodeA);
    try {
      await removeParticipant(owner, group.id, member!.id);
      expect(held.count()).to.equal(1);
      expectOk(await send(ownerSocket, group.id, 'after the removal'));
      await waitFor(() => ownerSaw.length === 2, { what: "the owner's copy" });
    } finally {
      held.release();
    }
    await waitFor(() => hereRemoved.length === 1, { what: 'the removal' });
    expect(hereMessages.map((m) => m.body)).to.deep.equal(['before the removal']);
    // Once removed, the node keeps nothing for it: the owner's own sockets still get everything.
    expectOk(await send(ownerSocket, group.id, 'later'));
    await waitFor(() => ownerSaw.length === 3, { what: "the owner's third copy" });
    expect(hereMessages).to.have.length(1);
  });

  it('tells a removed user conversation:removed once when a write of the removing node found the removal first', async () => {
    const owner = await newUser(nodeA);
    const [member] = await friendsOf(nodeA, owner, 1);
    const group = await createGroup(nodeA.url, owner, [member!]);
    const here = await pool.open(nodeA.url, member!);
    const hereRemoved = record(here, 'conversation:removed');
    await subscribe(here, group.id);

    // The removing node goes on after its commit only once a write of it has found the removal (before the node
    // heard the removal's event): that write tells the user's sockets here, and the removing node must not again.
    const held = holdRemovalNotices(nodeA);
    try {
      await removeParticipant(owner, group.id, member!.id);
      expect(held.count()).to.equal(1);
      const [{ removals }] = (await rows<{ removals: number }>(
        nodeA.services.db.knex,
        'SELECT removals FROM conversations WHERE id = ?',
        [group.id],
      )) as [{ removals: number }];
      nodeA.services.notify.keepParticipantsOnly(group.id, new Set([owner.id]), removals);
    } finally {
      held.release();
    }
    // A round trip of the removed socket, answered after anything the node told it.
    expectAckError(await here.emitWithAck('typing', { conversationId: group.id }), 'NOT_FOUND');
    expect(hereRemoved).to.deep.equal([{ conversationId: group.id }]);
  });
});

/**
 * Holds what the node that removes a participant does after its commit (`conversationRemoved`: the user's sockets
 * here leave the room and are told) until `release()`, which puts the node's own method back and runs what waited.
 */
function holdRemovalNotices(node: RunningServer) {
  const { notify } = node.services;
  const original = notify.conversationRemoved.bind(notify);
  const waiting: Array<() => void> = [];
  notify.conversationRemoved = (userId, conversationId, removals) => {
    waiting.push(() => original(userId, conversationId, removals));
  };
  return {
    count: () => waiting.length,
    release() {
      notify.conversationRemoved = original;
      for (const run of waiting.splice(0)) run();
    },
  };
}
