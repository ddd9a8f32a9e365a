import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { CONTROL_APPLICATION_NAME } from '../lib/cluster/controlBus.js';
import { ADAPTER_APPLICATION_NAME } from '../lib/realtime/adapterPool.js';
import { createSocketRevalidation } from '../lib/realtime/revalidation.js';
import { createGroup, expectOk, record, removeWithNoEvent, send, subscribe } from './helpers/chat.js';
import { disconnected } from './helpers/events.js';
import { listeningPids } from './helpers/faults.js';
import { request } from './helpers/http.js';
import { useTwoNodes } from './helpers/nodes.js';
import { adminQuery } from './helpers/postgres.js';
import { insertFriendship, insertUser } from './helpers/users.js';
import { waitFor } from './helpers/waitFor.js';

/**
 * A session ended, or a participant removed, while another node's adapter was not listening (its LISTEN
 * connection lost: a PostgreSQL restart, a dropped connection) still reaches that node's sockets: the node checks
 * its sockets against the database when the adapter listens again, and on a timer.
 */
describe('sockets checked against the database, for cluster events a node missed', function () {
  this.timeout(30_000);
  const nodes = useTwoNodes();
  const { a, b, pool } = nodes;

  const databaseName = () => new URL(nodes.databaseUrl).pathname.slice(1);
  const listeners = async (): Promise<number> =>
    (await listeningPids(databaseName(), ADAPTER_APPLICATION_NAME)).length;

  /** Ends every node's adapter LISTEN connection and waits until none is left: the nodes hear nothing now. */
  async function cutAdapterListeners(): Promise<void> {
    // A node's adapter listens a moment after the node has started.
    await waitFor(async () => (await listeners()) === 2, { what: 'both adapters to listen' });
    for (const pid of await listeningPids(databaseName(), ADAPTER_APPLICATION_NAME)) {
      await adminQuery('SELECT pg_terminate_backend($1)', [pid]);
    }
    await waitFor(async () => (await listeners()) === 0, { what: 'the LISTEN connections to end' });
  }

  /** Ends both nodes' control bus LISTEN connections (PostgreSQL does not say which one is b's); they reconnect. */
  async function cutControlListeners(): Promise<void> {
    const listening = () => listeningPids(databaseName(), CONTROL_APPLICATION_NAME);
    // Both listen (again, after an earlier test's cut: pg-listen reconnects after 250 ms, later under load).
    await waitFor(async () => (await listening()).length === 2, { what: 'both control buses listening' });
    for (const pid of await listening()) await adminQuery('SELECT pg_terminate_backend($1)', [pid]);
  }

  const newUser = () => insertUser(a.services.db.knex, a.services.config);

  /** A group of a new owner with a new member, whose socket on node b is subscribed to it. */
  async function groupWithMemberOnB() {
    const owner = await newUser();
    const member = await newUser();
    await insertFriendship(a.services.db.knex, owner.id, member.id);
    const group = await createGroup(a.url, owner, [member]);
    const socket = await pool.open(b.url, member);
    await subscribe(socket, group.id);
    return { owner, member, group, socket };
  }

  afterEach(async () => {
    // The next test starts with both nodes listening.
    await waitFor(async () => (await listeners()) === 2, { what: 'both adapters to listen again' });
  });

  it('a logout on one node while the other’s adapter was not listening still ends the session’s socket there, with its reason (the control bus carries it)', async () => {
    const alice = await newUser();
    const onB = await pool.open(b.url, alice);
    const reasons = record(onB, 'session:ended');
    const gone = disconnected(onB);

    await cutAdapterListeners();
    const res = await request(a.url, 'POST', '/auth/logout', { token: alice.token });
    expect(res.status).to.equal(204);

    expect(await gone).to.equal('io server disconnect');
    expect(reasons).to.deep.equal([{ reason: 'logged_out' }]);
  });

  it('a participant removed while the adapters were not listening leaves the room there and hears conversation:removed (the control bus carries it)', async () => {
    const { owner, member: bob, group, socket: bobOnB } = await groupWithMemberOnB();
    const removed = record(bobOnB, 'conversation:removed');
    const messages = record(bobOnB, 'message:new');

    await cutAdapterListeners();
    const res = await request(a.url, 'DELETE', `/conversations/${group.id}/participants/${bob.id}`, {
      token: owner.token,
    });
    expect(res.status).to.equal(204);

    await waitFor(() => removed.length > 0, { what: 'conversation:removed on the other node' });
    expect(removed).to.deep.equal([{ conversationId: group.id }]);
    // A message sent once both listen again does not reach the removed participant's socket.
    await waitFor(async () => (await listeners()) === 2, { what: 'both adapters to listen again' });
    const ownerOnB = await pool.open(b.url, owner);
    const ownerMessages = record(ownerOnB, 'message:new');
    await subscribe(ownerOnB, group.id);
    expectOk(await send(ownerOnB, group.id, 'after the removal'));
    await waitFor(() => ownerMessages.length > 0, { what: 'the owner’s own delivery' });
    expect(messages).to.deep.equal([]);
  });

  it('a participant removed with no event heard leaves the room and hears conversation:removed once the control bus listens again', async () => {
    const { knex } = b.services.db;
    const { member: carol, group, socket: carolOnB } = await groupWithMemberOnB();
    const removed = record(carolOnB, 'conversation:removed');
    // As if node b's control bus had missed the removal's event: straight in the database, no event at all.
    await knex('conversation_participants').where({ conversation_id: group.id, user_id: carol.id }).delete();
    await cutControlListeners();
    await waitFor(() => removed.length > 0, { what: 'conversation:removed after the reconnect' });
    expect(removed).to.deep.equal([{ conversationId: group.id }]);
    expect(carolOnB.connected).to.equal(true);
  });

  it('a participant removed with no event heard, whose sockets there do not follow the group, hears conversation:removed once the control bus listens again', async () => {
    const owner = await newUser();
    const carol = await newUser();
    await insertFriendship(a.services.db.knex, owner.id, carol.id);
    const group = await createGroup(a.url, owner, [carol]);
    // Carol's device on node b shows her list of conversations: it has not opened this group.
    const carolOnB = await pool.open(b.url, carol);
    const removed = record(carolOnB, 'conversation:removed');
    await removeWithNoEvent(b.services.db.knex, group.id, carol.id);
    await cutControlListeners();
    await waitFor(() => removed.length > 0, { what: 'conversation:removed after the reconnect' });
    // Once: node a, where she has no socket, tells nothing; node b tells it one time.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(removed).to.deep.equal([{ conversationId: group.id }]);
  });

  it('a participant removed with no event heard and added back since is told of the addition, not of the removal', async () => {
    const owner = await newUser();
    const carol = await newUser();
    await insertFriendship(a.services.db.knex, owner.id, carol.id);
    // Connected before the group is made, and told of it before anything else: the creation's notice, told by node
    // b from the control bus a moment after the creation's answer, must not land among what the test records.
    const carolOnB = await pool.open(b.url, carol);
    const created = record(carolOnB, 'conversation:added');
    const group = await createGroup(a.url, owner, [carol]);
    await waitFor(() => created.length === 1, { what: "the group's creation on node b" });
    const order: string[] = [];
    carolOnB.on('conversation:removed', () => order.push('removed'));
    carolOnB.on('conversation:added', () => order.push('added'));
    await removeWithNoEvent(b.services.db.knex, group.id, carol.id);
    // Added back through the API: node b hears it (and tells it) before it listens again.
    const res = await request(a.url, 'POST', `/conversations/${group.id}/participants`, {
      token: owner.token,
      body: { userId: carol.id },
    });
    expect(res.status).to.equal(201);
    await waitFor(() => order.length > 0, { what: 'conversation:added on node b' });
    await cutControlListeners();
    // The addition is told again from the database (it was made since the gap began); the removal is over.
    await waitFor(() => order.length === 2, { what: 'conversation:added told again after the reconnect' });
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(order).to.deep.equal(['added', 'added']);
  });

  it('a user added to a group with no event heard hears conversation:added once the control bus listens again', async () => {
    const { knex } = b.services.db;
    const owner = await newUser();
    const bob = await newUser();
    const carol = await newUser();
    await insertFriendship(knex, owner.id, bob.id);
    const bobOnB = await pool.open(b.url, bob);
    const bobAdded = record(bobOnB, 'conversation:added');
    const group = await createGroup(a.url, owner, [bob]);
    // Node b has told the group's creation: its reload, heard late, would read carol's row below and tell her too.
    await waitFor(() => bobAdded.length > 0, { what: 'the creation on node b' });
    const carolOnB = await pool.open(b.url, carol);
    const added = record(carolOnB, 'conversation:added');
    // As if node b's control bus had missed the addition's event (additions are told on it): straight in the
    // database, no event at all.
    await knex('conversation_participants').insert({
      conversation_id: group.id,
      user_id: carol.id,
      role: 'member',
    });
    await cutControlListeners();
    await waitFor(() => added.length > 0, { what: 'conversation:added after the reconnect' });
    expect(added.map((c) => c.id)).to.deep.equal([group.id]);
    expect(added[0]!.participants.map((p) => p.userId).sort()).to.deep.equal(
      [owner.id, bob.id, carol.id].sort(),
    );
  });

  it('a conversation created while a node was not listening reaches the new participant’s socket there, once it listens', async () => {
    const owner = await newUser();
    const bob = await newUser();
    await insertFriendship(a.services.db.knex, owner.id, bob.id);
    const bobOnB = await pool.open(b.url, bob);
    const added = record(bobOnB, 'conversation:added');

    await cutAdapterListeners();
    const group = await createGroup(a.url, owner, [bob]);

    // The creation is told on the control bus, which kept listening: that copy comes at once and says nothing of
    // the gap. The one this test is about is told again from the database once node b's adapter listens again
    // (1-3 s; a socket may hear a notice twice, each with the current state): both are waited for.
    await waitFor(() => added.length === 2, {
      what: 'conversation:added from the control bus, and again once node b listens',
      timeoutMs: 15_000,
    });
    expect(added.map((c) => c.id)).to.deep.equal([group.id, group.id]);
    for (const told of added) {
      expect(told.participants.map((p) => p.userId).sort()).to.deep.equal([owner.id, bob.id].sort());
    }
  });

  /** Bob asks Dave to be friends (Carol is there to ask Bob); Bob's socket on node b records the notices. */
  async function bobAsksDave() {
    const bob = await newUser();
    const carol = await newUser();
    const dave = await newUser();
    const asked = await request<{ request: { id: string } }>(a.url, 'POST', '/friends/requests', {
      token: bob.token,
      body: { username: dave.username },
    });
    expect(asked.status).to.equal(201);
    const bobOnB = await pool.open(b.url, bob);
    const requests = record(bobOnB, 'friend:request');
    const accepted = record(bobOnB, 'friend:accepted');
    return { bob, carol, dave, asked, requests, accepted };
  }

  it('a friend request made, and one accepted, while a node was not listening reach the sockets there', async () => {
    const { bob, carol, dave, asked, requests, accepted } = await bobAsksDave();

    await cutAdapterListeners();
    const fromCarol = await request<{ request: { id: string } }>(a.url, 'POST', '/friends/requests', {
      token: carol.token,
      body: { username: bob.username },
    });
    expect(fromCarol.status).to.equal(201);
    const byDave = await request(a.url, 'POST', `/friends/requests/${asked.body.request.id}/accept`, {
      token: dave.token,
    });
    expect(byDave.status).to.equal(200);

    await waitFor(() => requests.length > 0 && accepted.length > 0, {
      what: 'both notices on the other node',
    });
    expect(requests.map((r) => [r.id, r.from.id, r.status])).to.deep.equal([
      [fromCarol.body.request.id, carol.id, 'pending'],
    ]);
    expect(accepted.map((r) => [r.id, r.to.id, r.status])).to.deep.equal([
      [asked.body.request.id, dave.id, 'accepted'],
    ]);
  });

  it('a request accepted while a node was not listening, and unfriended since, is not announced there', async () => {
    const { bob, carol, dave, asked, requests, accepted } = await bobAsksDave();

    await cutAdapterListeners();
    const byDave = await request(a.url, 'POST', `/friends/requests/${asked.body.request.id}/accept`, {
      token: dave.token,
    });
    expect(byDave.status).to.equal(200);
    const unfriended = await request(a.url, 'DELETE', `/friends/${bob.id}`, { token: dave.token });
    expect(unfriended.status).to.equal(204);
    // Told in the same pass as the accepted requests: once bob hears it, the node has told all it will.
    const fromCarol = await request(a.url, 'POST', '/friends/requests', {
      token: carol.token,
      body: { username: bob.username },
    });
    expect(fromCarol.status).to.equal(201);

    await waitFor(() => requests.length > 0, { what: 'the missed request on the other node' });
    expect(accepted).to.deep.equal([]);
  });

  it('the timer finds an ended session or a lost membership with no event at all, and tells why', async () => {
    const { knex } = b.services.db;
    const { member: carol, group, socket: carolOnB } = await groupWithMemberOnB();
    const dave = await newUser();
    const daveOnB = await pool.open(b.url, dave);
    const carolRemoved = record(carolOnB, 'conversation:removed');
    const daveEnded = record(daveOnB, 'session:ended');
    const daveGone = disconnected(daveOnB);

    // Straight in the database: no node announces anything.
    await knex('conversation_participants').where({ conversation_id: group.id, user_id: carol.id }).delete();
    // In one transaction, as an account deletion does: a check of the node's own (its timer, a handshake's) that ran
    // between the two would see the session gone and the user not, and end the socket as `revoked`.
    await knex.transaction(async (trx) => {
      await trx('sessions').where({ id: dave.sessionId }).delete();
      await trx('users')
        .where({ id: dave.id })
        .update({ deleted_at: trx.fn.now(), username: null, password_hash: null });
    });

    const revalidation = createSocketRevalidation({
      io: b.services.io,
      knex,
      logger: b.services.logger,
      clock: b.services.clock,
      removalsTold: b.services.conversationEvents,
      everyMs: 100,
    });
    try {
      expect(await daveGone).to.equal('io server disconnect');
      expect(daveEnded).to.deep.equal([{ reason: 'deleted' }]);
      await waitFor(() => carolRemoved.length > 0, { what: 'conversation:removed' });
      expect(carolRemoved).to.deep.equal([{ conversationId: group.id }]);
      expect(carolOnB.connected).to.equal(true);
    } finally {
      revalidation.close();
    }
  });

  it('leaves sockets alone whose sessions and memberships hold', async () => {
    const { owner, group, socket: erinOnB } = await groupWithMemberOnB();
    const removed = record(erinOnB, 'conversation:removed');
    const ended = record(erinOnB, 'session:ended');
    const messages = record(erinOnB, 'message:new');

    const revalidation = createSocketRevalidation({
      io: b.services.io,
      knex: b.services.db.knex,
      logger: b.services.logger,
      clock: b.services.clock,
      removalsTold: b.services.conversationEvents,
    });
    try {
      revalidation.request();
      await revalidation.settled();
    } finally {
      revalidation.close();
    }

    const ownerOnA = await pool.open(a.url, owner);
    expectOk(await send(ownerOnA, group.id, 'still here', randomUUID()));
    await waitFor(() => messages.length > 0, { what: 'the message on the other node' });
    expect(removed).to.deep.equal([]);
    expect(ended).to.deep.equal([]);
    expect(erinOnB.connected).to.equal(true);
  });
});
