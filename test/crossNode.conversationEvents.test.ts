import { expect } from 'chai';
import type { PublicConversation } from '../lib/protocol/index.js';
import { FOLLOWS_REMOVALS_ROOM } from '../lib/realtime/notifier.js';
import type { RunningServer } from '../lib/server.js';
import { createGroup, friendsOf, newUser, record } from './helpers/chat.js';
import { request } from './helpers/http.js';
import { captureLogs } from './helpers/logCapture.js';
import { holdPublishes } from './helpers/adapterHold.js';
import { useTwoNodes } from './helpers/nodes.js';
import type { ClientSocket } from './helpers/sockets.js';
import type { TestUser } from './helpers/users.js';
import { waitFor } from './helpers/waitFor.js';

/**
 * What a socket heard of one conversation, in order: `added`, `updated` (`+me` when the conversation lists the
 * socket's user), `removed`.
 */
function heard(socket: ClientSocket, conversationId: string, me: TestUser) {
  const kinds: string[] = [];
  const shown: PublicConversation[] = [];
  const listsMe = (c: PublicConversation) => (c.participants.some((p) => p.userId === me.id) ? '+me' : '');
  socket.on('conversation:added', (c) => {
    if (c.id !== conversationId) return;
    kinds.push(`added${listsMe(c)}`);
    shown.push(c);
  });
  socket.on('conversation:updated', (c) => {
    if (c.id !== conversationId) return;
    kinds.push(`updated${listsMe(c)}`);
    shown.push(c);
  });
  socket.on('conversation:removed', (e) => {
    if (e.conversationId === conversationId) kinds.push('removed');
  });
  return { kinds, shown, last: () => shown.at(-1) };
}

const idsOf = (c: PublicConversation | undefined) => (c?.participants.map((p) => p.userId) ?? []).sort();

/**
 * A group's detail events (`conversation:added`, `conversation:updated`, `conversation:removed`) reach every
 * socket in the order of the group's changes, on the node that made them and on the other: each node hears the
 * changes on the control bus, in commit order, and tells its own sockets the conversation as it reloaded it
 * (lib/realtime/conversationEvents.ts).
 */
describe("a group's detail events reach every node's sockets in the order of its changes", function () {
  const logs = captureLogs('error');
  const { a: nodeA, b: nodeB, pool } = useTwoNodes({ logger: logs.logger });

  const change = (node: RunningServer, method: string, path: string, owner: TestUser, body?: unknown) =>
    request<{ conversation: PublicConversation }>(node.url, method, path, { token: owner.token, body });

  /**
   * A group created through node A, once both nodes have told its creation (through the adapter): a socket opened
   * afterwards hears only what comes after it.
   */
  async function newGroup(owner: TestUser, members: readonly TestUser[]): Promise<PublicConversation> {
    const probes = await Promise.all([nodeA, nodeB, nodeB].map((node) => pool.open(node.url, owner)));
    // The third as a 0.2.0 node's socket, on a node that follows the control bus too: it hears the creation twice,
    // from node B and in node A's copy through the adapter, which a socket of node B taken out of the followers'
    // room after the creation would otherwise hear late.
    await leaveFollowers(nodeB, probes[2]!);
    const told = probes.map((probe) => record(probe, 'conversation:added'));
    const group = await createGroup(nodeA.url, owner, members);
    const copies = (i: number) => told[i]!.filter((c) => c.id === group.id).length;
    await waitFor(() => copies(0) === 1 && copies(1) === 1 && copies(2) === 2, {
      what: 'the creation on both nodes',
    });
    for (const probe of probes) probe.close();
    return group;
  }

  /** Takes the socket out of the room of the sockets whose node follows the control bus, as a 0.2.0 node's. */
  async function leaveFollowers(node: RunningServer, socket: ClientSocket): Promise<void> {
    const serverSide = [...node.services.io.of('/').sockets.values()].find((s) => s.id === socket.id)!;
    await serverSide.leave(FOLLOWS_REMOVALS_ROOM);
  }

  /** The owner renames the group: a change every participant hears, which marks the end of what came before. */
  async function rename(node: RunningServer, owner: TestUser, conversationId: string, title: string) {
    expect(
      (await change(node, 'PATCH', `/conversations/${conversationId}`, owner, { title })).status,
    ).to.equal(200);
  }

  /**
   * Holds the node's next reload of the conversation for its events: it reads the conversation at once, as the
   * change that asked for it left it, and answers only when released, as a reload slower than what follows would.
   */
  function holdReload(node: RunningServer, conversationId: string) {
    const events = node.services.conversationEvents;
    const original = events.reload.bind(events);
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let entered!: () => void;
    const reading = new Promise<void>((resolve) => (entered = resolve));
    let held = false;
    events.reload = async (id) => {
      const read = await original(id);
      if (id !== conversationId || held) return read;
      held = true;
      entered();
      await released;
      return read;
    };
    return {
      reading,
      release() {
        events.reload = original;
        release();
      },
    };
  }

  it('the user added hears conversation:added and no conversation:updated of it; the others hear conversation:updated', async () => {
    const owner = await newUser(nodeA);
    const [member, newcomer] = await friendsOf(nodeA, owner, 2);
    const group = await newGroup(owner, [member!]);
    const newcomerHere = heard(await pool.open(nodeA.url, newcomer!), group.id, newcomer!);
    const newcomerThere = heard(await pool.open(nodeB.url, newcomer!), group.id, newcomer!);
    const memberThere = heard(await pool.open(nodeB.url, member!), group.id, member!);

    const added = await change(nodeA, 'POST', `/conversations/${group.id}/participants`, owner, {
      userId: newcomer!.id,
    });
    expect(added.status).to.equal(201);
    // Heard before the rename is made: a node that hears both before it reloads tells them as one (the state after
    // both), which is right but is not what this test looks at.
    for (const s of [newcomerHere, newcomerThere, memberThere]) {
      await waitFor(() => s.kinds.length > 0, { what: 'the addition' });
    }
    // A later change every participant hears: it marks the end of what the addition could have sent.
    await rename(nodeA, owner, group.id, 'marker');
    for (const s of [newcomerHere, newcomerThere, memberThere]) {
      await waitFor(() => s.last()?.title === 'marker', { what: 'the rename' });
    }
    expect(newcomerHere.kinds).to.deep.equal(['added+me', 'updated+me']);
    expect(newcomerThere.kinds).to.deep.equal(['added+me', 'updated+me']);
    expect(idsOf(newcomerThere.shown[0])).to.deep.equal([owner.id, member!.id, newcomer!.id].sort());
    expect(memberThere.kinds).to.deep.equal(['updated+me', 'updated+me']);
    expect(idsOf(memberThere.shown[0])).to.deep.equal([owner.id, member!.id, newcomer!.id].sort());
  });

  it('an addition whose reload ends after a removal: the removed member hears nothing after conversation:removed, and the others end with the state after it', async () => {
    const owner = await newUser(nodeA);
    const [member, newcomer, keeper] = await friendsOf(nodeA, owner, 3);
    const group = await newGroup(owner, [member!, keeper!]);
    const members = [nodeA, nodeB].map(async (node) =>
      heard(await pool.open(node.url, member!), group.id, member!),
    );
    const memberHeard = await Promise.all(members);
    const keepers = [nodeA, nodeB].map(async (node) =>
      heard(await pool.open(node.url, keeper!), group.id, keeper!),
    );
    const keeperHeard = await Promise.all(keepers);

    // Each node reads the group as the addition left it (the member still in), and tells it after the removal.
    const holds = [holdReload(nodeA, group.id), holdReload(nodeB, group.id)];
    try {
      const added = await change(nodeA, 'POST', `/conversations/${group.id}/participants`, owner, {
        userId: newcomer!.id,
      });
      expect(added.status).to.equal(201);
      await Promise.all(holds.map((h) => h.reading));
      const removed = await change(
        nodeB,
        'DELETE',
        `/conversations/${group.id}/participants/${member!.id}`,
        owner,
      );
      expect(removed.status).to.equal(204);
      await waitFor(() => memberHeard.every((s) => s.kinds.includes('removed')), {
        what: 'the removal on both nodes',
      });
    } finally {
      for (const h of holds) h.release();
    }
    await rename(nodeA, owner, group.id, 'marker');
    for (const s of keeperHeard) await waitFor(() => s.last()?.title === 'marker', { what: 'the marker' });
    const stored = (await change(nodeA, 'GET', `/conversations/${group.id}`, owner)).body.conversation;
    expect(idsOf(stored)).to.deep.equal([owner.id, newcomer!.id, keeper!.id].sort());
    for (const s of memberHeard) expect(s.kinds).to.deep.equal(['removed']);
    for (const s of keeperHeard) {
      // The addition (told with the state it read), the removal, the marker: the last before the marker is current.
      const beforeMarker = s.shown.filter((c) => c.title !== 'marker');
      expect(beforeMarker).to.have.length.at.least(1);
      expect(idsOf(beforeMarker.at(-1))).to.deep.equal(idsOf(stored));
    }
  });

  it('a user added and removed at once hears conversation:removed last, and conversation:added when added again', async () => {
    const owner = await newUser(nodeA);
    const [member, newcomer] = await friendsOf(nodeA, owner, 2);
    const group = await newGroup(owner, [member!]);
    const newcomerThere = heard(await pool.open(nodeB.url, newcomer!), group.id, newcomer!);
    const memberThere = heard(await pool.open(nodeB.url, member!), group.id, member!);
    const path = `/conversations/${group.id}/participants`;

    const hold = holdReload(nodeB, group.id);
    try {
      expect((await change(nodeA, 'POST', path, owner, { userId: newcomer!.id })).status).to.equal(201);
      await hold.reading;
      expect((await change(nodeA, 'DELETE', `${path}/${newcomer!.id}`, owner)).status).to.equal(204);
      await waitFor(() => newcomerThere.kinds.includes('removed'), { what: 'the removal' });
    } finally {
      hold.release();
    }
    await rename(nodeA, owner, group.id, 'marker');
    await waitFor(() => memberThere.last()?.title === 'marker', { what: 'the marker' });
    expect(newcomerThere.kinds).to.deep.equal(['removed']);

    expect((await change(nodeA, 'POST', path, owner, { userId: newcomer!.id })).status).to.equal(201);
    await waitFor(() => newcomerThere.kinds.length === 2, { what: 'the second addition' });
    expect(newcomerThere.kinds).to.deep.equal(['removed', 'added+me']);
    expect(idsOf(newcomerThere.last())).to.deep.equal([owner.id, member!.id, newcomer!.id].sort());
  });

  it('never tells a removed member conversation:updated after conversation:removed, and leaves the others the stored state (an addition racing a removal)', async function () {
    // Sixty rounds of five changes across two nodes: about ten seconds here, more on a loaded machine. The rounds
    // stop at 40 s whatever their count: a round left running past mocha's timeout would go on beside the next
    // test, and its pool.closeAll() would close that test's sockets.
    this.timeout(60_000);
    const wrong: string[] = [];
    const until = Date.now() + 40_000;
    for (let i = 0; i < 60 && wrong.length === 0 && (i < 10 || Date.now() < until); i += 1) {
      const owner = await newUser(nodeA);
      const [member, newcomer, keeper] = await friendsOf(nodeA, owner, 3);
      const group = await newGroup(owner, [member!, keeper!]);
      const memberThere = heard(await pool.open(nodeB.url, member!), group.id, member!);
      const keeperHere = heard(await pool.open(nodeA.url, keeper!), group.id, keeper!);
      const answers = await Promise.all([
        change(nodeA, 'POST', `/conversations/${group.id}/participants`, owner, { userId: newcomer!.id }),
        change(nodeB, 'DELETE', `/conversations/${group.id}/participants/${member!.id}`, owner),
      ]);
      expect(answers.map((r) => r.status)).to.deep.equal([201, 204]);
      const stored = [owner.id, newcomer!.id, keeper!.id].sort();
      // The keeper hears the stored state before the rename is made: a node that heard the three changes before it
      // reloaded would tell them as one, the rename's, and leave nothing before the marker to look at. A node left
      // with a stale state never gets here (and a stale state told after it is seen before the marker, below).
      await waitFor(() => idsOf(keeperHere.last()).join() === stored.join(), {
        what: `round ${i}: the keeper to hear the stored participants`,
      });
      await rename(nodeB, owner, group.id, 'marker');
      await waitFor(() => keeperHere.last()?.title === 'marker', { what: 'the marker' });
      const beforeMarker = keeperHere.shown.filter((c) => c.title !== 'marker').at(-1);
      // Before the removal it may hear the addition (listing it), when that committed first; nothing after.
      const heardLast = memberThere.kinds.indexOf('removed');
      if (heardLast === -1 || heardLast !== memberThere.kinds.length - 1) {
        wrong.push(`round ${i}: the member heard ${memberThere.kinds.join()}`);
      }
      if (idsOf(beforeMarker).join() !== stored.join()) {
        wrong.push(`round ${i}: the keeper was left with ${idsOf(beforeMarker).join()}`);
      }
      pool.closeAll();
    }
    expect(wrong).to.deep.equal([]);
  });

  it("a socket outside the control bus's followers (a 0.2.0 node's) hears the changes through the adapter, from the node that made them", async () => {
    const owner = await newUser(nodeA);
    const [member, newcomer] = await friendsOf(nodeA, owner, 2);
    const group = await newGroup(owner, [member!]);
    const follower = await pool.open(nodeB.url, member!);
    const older = await pool.open(nodeB.url, member!);
    const newcomerOlder = await pool.open(nodeB.url, newcomer!);
    // As sockets of a 0.2.0 node would be: outside the room of the sockets whose node follows the control bus.
    for (const socket of [older, newcomerOlder]) await leaveFollowers(nodeB, socket);
    const followerHeard = heard(follower, group.id, member!);
    const olderHeard = heard(older, group.id, member!);
    const newcomerHeard = heard(newcomerOlder, group.id, newcomer!);

    const added = await change(nodeA, 'POST', `/conversations/${group.id}/participants`, owner, {
      userId: newcomer!.id,
    });
    expect(added.status).to.equal(201);
    // Both copies of the addition heard before the rename is made (a node that heard both changes before it
    // reloaded would tell them as one).
    await waitFor(
      () =>
        olderHeard.kinds.length === 2 && newcomerHeard.kinds.length === 2 && followerHeard.kinds.length === 1,
      { what: 'the addition, twice to the older sockets' },
    );
    await rename(nodeA, owner, group.id, 'marker');
    // Their node is of this release and follows the control bus too: they hear each twice, the adapter's copy
    // included. A follower hears each once: the adapter's copy leaves it out. The adapter's copy and the control
    // bus's come by separate channels, in no order between them: each is waited for.
    await waitFor(
      () =>
        olderHeard.kinds.length === 4 && newcomerHeard.kinds.length === 4 && followerHeard.kinds.length === 2,
      { what: "the adapter's copies and the follower's" },
    );
    expect(olderHeard.kinds).to.deep.equal(['updated+me', 'updated+me', 'updated+me', 'updated+me']);
    expect(newcomerHeard.kinds).to.deep.equal(['added+me', 'added+me', 'updated+me', 'updated+me']);
    expect(followerHeard.kinds).to.deep.equal(['updated+me', 'updated+me']);
    expect(followerHeard.last()?.title).to.equal('marker');
  });

  it('a reload that fails is logged, and the next change tells the state after both', async () => {
    const owner = await newUser(nodeA);
    const [member] = await friendsOf(nodeA, owner, 1);
    const group = await newGroup(owner, [member!]);
    const memberHere = heard(await pool.open(nodeA.url, member!), group.id, member!);
    const events = nodeA.services.conversationEvents;
    const original = events.reload.bind(events);
    events.reload = (id) => {
      if (id !== group.id) return original(id);
      events.reload = original;
      return Promise.reject(new Error('the database is away'));
    };
    try {
      await rename(nodeA, owner, group.id, 'first');
      await waitFor(() => logs.text().includes('the database is away'), { what: 'the failure logged' });
    } finally {
      events.reload = original;
    }
    await rename(nodeA, owner, group.id, 'second');
    await waitFor(() => memberHere.kinds.length === 1, { what: 'the second rename' });
    expect(memberHere.shown.map((c) => c.title)).to.deep.equal(['second']);
    const logged = logs.entries().find((e) => JSON.stringify(e.err ?? '').includes('the database is away'));
    expect(logged?.msg).to.match(/^reloading a conversation failed/);
  });

  describe('a new group against its next change, with the creating node’s adapter slow', () => {
    /** Creates a group through node A with its adapter held, makes `next` through node A, then lets the adapter go. */
    async function createThen(
      owner: TestUser,
      members: readonly TestUser[],
      title: string,
      next: (group: PublicConversation) => Promise<void>,
    ): Promise<PublicConversation> {
      const hold = holdPublishes(nodeA);
      try {
        const group = await createGroup(nodeA.url, owner, members, title);
        await next(group);
        return group;
      } finally {
        hold.release();
      }
    }

    it('renamed at once: a member on the other node hears conversation:added, then the rename, last', async () => {
      const owner = await newUser(nodeA);
      const [member] = await friendsOf(nodeA, owner, 1);
      const socket = await pool.open(nodeB.url, member!);
      const all: Array<{ kind: string; title: string | null }> = [];
      socket.on('conversation:added', (c) => all.push({ kind: 'added', title: c.title }));
      socket.on('conversation:updated', (c) => all.push({ kind: 'updated', title: c.title }));
      await createThen(owner, [member!], 'first', async (group) => {
        await rename(nodeA, owner, group.id, 'second');
        await waitFor(() => all.some((e) => e.title === 'second'), { what: 'the rename on node B' });
      });
      // Whatever the adapter still carried has arrived: a later change through it is heard after it.
      await waitFor(() => all.length >= 2, { what: 'both events' });
      await new Promise((resolve) => setTimeout(resolve, 300));
      // The creation first (once), the stored title last.
      expect(all[0]?.kind, JSON.stringify(all)).to.equal('added');
      expect(
        all.filter((e) => e.kind === 'added'),
        JSON.stringify(all),
      ).to.have.length(1);
      expect(all.at(-1)?.title, JSON.stringify(all)).to.equal('second');
    });

    it('a member removed at once hears nothing of the group after conversation:removed', async () => {
      const owner = await newUser(nodeA);
      const [member, other] = await friendsOf(nodeA, owner, 2);
      const socket = await pool.open(nodeB.url, member!);
      const kinds: string[] = [];
      socket.on('conversation:added', () => kinds.push('added'));
      socket.on('conversation:updated', () => kinds.push('updated'));
      socket.on('conversation:removed', () => kinds.push('removed'));
      await createThen(owner, [member!, other!], 'g', async (created) => {
        const res = await change(
          nodeA,
          'DELETE',
          `/conversations/${created.id}/participants/${member!.id}`,
          owner,
        );
        expect(res.status).to.equal(204);
        await waitFor(() => kinds.includes('removed'), { what: 'the removal on node B' });
      });
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(kinds.at(-1), kinds.join(', ')).to.equal('removed');
    });
  });
});
