import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import type { PublicMessage } from '../lib/protocol/index.js';
import {
  seqState,
  createGroup,
  expectOk,
  friendsOf,
  newUser,
  range,
  record,
  rows,
  seedMessages,
  send,
  subscribe,
  putMessage,
  removeWithNoEvent,
} from './helpers/chat.js';
import { expectError, type ErrorResponse } from './helpers/errors.js';
import { useTwoNodes } from './helpers/nodes.js';
import { request } from './helpers/http.js';
import type { TestUser } from './helpers/users.js';
import { waitFor } from './helpers/waitFor.js';

interface Page {
  messages: PublicMessage[];
  hasMore: boolean;
  lastSeq: number;
  version: number;
}

describe('messages over REST', function () {
  const { a: server, b: other, pool } = useTwoNodes();

  const put = (
    user: TestUser,
    conversationId: string,
    clientMsgId: string,
    body: unknown,
    url = server.url,
  ) => putMessage(url, user, conversationId, clientMsgId, body);

  const history = (user: TestUser, conversationId: string, query = '') =>
    request<Page & Partial<ErrorResponse>>(
      server.url,
      'GET',
      `/conversations/${conversationId}/messages${query}`,
      {
        token: user.token,
      },
    );

  const conversationState = (id: string) => seqState(server.services.db.knex, id);

  it('PUT stores a message (201, in the database at once), replays it (200) and refuses another body (409)', async () => {
    const owner = await newUser(server);
    const [member] = await friendsOf(server, owner, 1);
    const group = await createGroup(server.url, owner, [member!]);
    const memberSocket = await pool.open(other.url, member!);
    const live = record(memberSocket, 'message:new');
    await subscribe(memberSocket, group.id);
    const clientMsgId = randomUUID();
    const created = await put(owner, group.id, clientMsgId, { body: 'hello over REST' });
    expect(created.status).to.equal(201);
    const message = created.body.message;
    expect(Object.keys(message).sort()).to.deep.equal(
      [
        'body',
        'clientMsgId',
        'conversationId',
        'createdAt',
        'id',
        'senderId',
        'seq',
        'replyToSeq',
        'editedAt',
        'deletedAt',
        'reactions',
        'version',
      ].sort(),
    );
    expect(message).to.deep.include({
      replyToSeq: null,
      editedAt: null,
      deletedAt: null,
      reactions: [],
      version: 1,
    });
    expect(message).to.include({
      conversationId: group.id,
      seq: 1,
      senderId: owner.id,
      clientMsgId,
      body: 'hello over REST',
    });
    const row = (await server.services.db.knex('messages').where({ id: message.id }).first()) as
      { seq: number } | undefined;
    expect(row?.seq).to.equal(1);

    const replay = await put(owner, group.id, clientMsgId, { body: 'hello over REST' }, other.url);
    expect(replay.status).to.equal(200);
    expect(replay.body.message).to.deep.equal(message);
    expect(replay.text).to.equal(created.text);
    expectError(
      await put(owner, group.id, clientMsgId, { body: 'something else' }),
      409,
      'IDEMPOTENCY_CONFLICT',
    );
    // The socket path sees the same stored message as a duplicate.
    const ownerSocket = await pool.open(server.url, owner);
    const viaSocket = expectOk(await send(ownerSocket, group.id, 'hello over REST', clientMsgId));
    expect(viaSocket).to.deep.equal({ ok: true, message, duplicate: true });

    await waitFor(() => live.length === 1, { what: 'message:new for the REST send' });
    expect(live[0]).to.deep.equal(message);
    expect(await conversationState(group.id)).to.deep.equal({ lastSeq: 1, seqs: [1] });
  });

  it('PUT validates its input (400) and hides conversations (404)', async () => {
    const owner = await newUser(server);
    const group = await createGroup(server.url, owner, await friendsOf(server, owner, 1));
    for (const body of [
      {},
      { body: '' },
      { body: ' \n ' },
      { body: 'x'.repeat(4001) },
      { body: 5 },
      'text',
      null,
    ]) {
      expectError(await put(owner, group.id, randomUUID(), body), 400, 'VALIDATION_FAILED');
    }
    expectError(await put(owner, group.id, 'bad.id', { body: 'x' }), 400, 'VALIDATION_FAILED');
    expectError(await put(owner, group.id, 'x'.repeat(65), { body: 'x' }), 400, 'VALIDATION_FAILED');
    expectError(await put(owner, 'not-a-uuid', randomUUID(), { body: 'x' }), 404, 'NOT_FOUND');
    expectError(await put(owner, randomUUID(), randomUUID(), { body: 'x' }), 404, 'NOT_FOUND');
    const emoji = '🙂'.repeat(4000);
    const big = await put(owner, group.id, randomUUID(), { body: emoji });
    expect(big.status).to.equal(201);
    expect(big.body.message.body).to.equal(emoji);
    // A reply names seq 1, which exists now, but as a JSON number: a string of digits is refused.
    expectError(
      await put(owner, group.id, randomUUID(), { body: 'a reply', replyToSeq: '1' }),
      400,
      'VALIDATION_FAILED',
    );
    expect(await conversationState(group.id)).to.deep.equal({ lastSeq: 1, seqs: [1] });
  });

  it('pages through 1200 messages both ways with no gap and a right hasMore', async function () {
    this.timeout(30_000);
    const owner = await newUser(server);
    const group = await createGroup(server.url, owner, await friendsOf(server, owner, 1));
    const total = 1200;
    await seedMessages(server.services.db.knex, group.id, owner.id, total);

    const forward: number[] = [];
    let after = 0;
    for (;;) {
      const res = await history(owner, group.id, `?after=${after}&limit=200`);
      expect(res.status).to.equal(200);
      const seqs = res.body.messages.map((m) => m.seq);
      expect(seqs).to.deep.equal(range(seqs.length).map((i) => after + i));
      forward.push(...seqs);
      after = seqs.at(-1) ?? after;
      expect(res.body.hasMore).to.equal(after < total);
      if (!res.body.hasMore) break;
    }
    expect(forward).to.deep.equal(range(total));

    const newest = await history(owner, group.id, '?limit=70');
    expect(newest.body.messages.map((m) => m.seq)).to.deep.equal(range(70).map((i) => total - 70 + i));
    expect(newest.body.hasMore).to.equal(true);
    const backward: number[] = [...newest.body.messages.map((m) => m.seq)];
    let before = backward[0]!;
    for (;;) {
      const res = await history(owner, group.id, `?before=${before}&limit=130`);
      const seqs = res.body.messages.map((m) => m.seq);
      expect(seqs.at(-1)).to.equal(before - 1);
      backward.unshift(...seqs);
      before = seqs[0] ?? before;
      expect(res.body.hasMore).to.equal(before > 1);
      if (!res.body.hasMore) break;
    }
    expect(backward).to.deep.equal(range(total));

    const defaults = await history(owner, group.id);
    expect(defaults.body.messages.map((m) => m.seq)).to.deep.equal(range(50).map((i) => total - 50 + i));
    const clamped = await history(owner, group.id, '?after=0&limit=5000');
    expect(clamped.body.messages).to.have.length(200);
    // However large: a limit of more digits than a safe integer is clamped too.
    const huge = await history(owner, group.id, '?after=0&limit=99999999999999999999');
    expect(huge.body.messages).to.have.length(200);
    // Even one too large for a double.
    const endless = await history(owner, group.id, `?after=0&limit=${'9'.repeat(400)}`);
    expect(endless.body.messages).to.have.length(200);
    const [{ version } = { version: -1 }] = await rows<{ version: number }>(
      server.services.db.knex,
      'SELECT version FROM conversations WHERE id = ?',
      [group.id],
    );
    const end = await history(owner, group.id, `?after=${total}`);
    expect(end.body).to.deep.equal({ messages: [], hasMore: false, lastSeq: total, version });
    const start = await history(owner, group.id, '?before=1');
    expect(start.body).to.deep.equal({ messages: [], hasMore: false, lastSeq: total, version });
    for (const query of [
      '?after=-1',
      '?limit=0',
      '?limit=ten',
      '?before=0',
      '?after=1&before=5',
      '?after=1.5',
      '?after=99999999999999999999',
      '?before=1e3',
    ]) {
      expectError(await history(owner, group.id, query), 400, 'VALIDATION_FAILED');
    }
    // Sending continues the seeded sequence.
    const next = await put(owner, group.id, randomUUID(), { body: 'after the seed' });
    expect(next.body.message.seq).to.equal(total + 1);
  });

  it('a history page answers the conversation’s lastSeq and version with its messages: a client holding more sees it is ahead', async () => {
    const owner = await newUser(server);
    const [member] = await friendsOf(server, owner, 1);
    const group = await createGroup(server.url, owner, [member!]);
    for (let n = 1; n <= 3; n += 1) await put(member!, group.id, randomUUID(), { body: `m${n}` });
    // An edit moves the conversation's version past its last message's.
    const edit = await request(server.url, 'PATCH', `/conversations/${group.id}/messages/2`, {
      token: member!.token,
      body: { body: 'm2, edited' },
    });
    expect(edit.status).to.equal(200);
    const [{ version } = { version: -1 }] = await rows<{ version: number }>(
      server.services.db.knex,
      'SELECT version FROM conversations WHERE id = ?',
      [group.id],
    );
    expect(version).to.equal(4);
    for (const query of ['', '?limit=1', '?after=1', '?before=3']) {
      const res = await history(owner, group.id, query);
      expect(res.status, query).to.equal(200);
      expect(res.body, query).to.include({ lastSeq: 3, version });
    }
    // A client that holds seq 10 (say, from before the database was restored) asks for what follows: the page
    // tells "the server is behind me" from "nothing new".
    const ahead = await history(owner, group.id, '?after=10');
    expect(ahead.body).to.deep.equal({ messages: [], hasMore: false, lastSeq: 3, version });
  });

  it('POST /read moves my marker forward only, up to lastSeq, and tells the subscribers', async () => {
    const owner = await newUser(server);
    const [member] = await friendsOf(server, owner, 1);
    const group = await createGroup(server.url, owner, [member!]);
    for (let n = 1; n <= 4; n += 1) await put(owner, group.id, randomUUID(), { body: `m${n}` });
    const watcher = await pool.open(other.url, owner);
    const reads = record(watcher, 'conversation:read');
    await subscribe(watcher, group.id);
    const read = (seq: unknown) =>
      request(server.url, 'POST', `/conversations/${group.id}/read`, { token: member!.token, body: { seq } });
    expect((await read(2)).status).to.equal(204);
    expect((await read(1)).status).to.equal(204);
    expect((await read(1000)).status).to.equal(204);
    // A JSON body's seq is a JSON number, not a string of digits.
    for (const bad of [-1, 'x', null, 1.5, '3']) expectError(await read(bad), 400, 'VALIDATION_FAILED');
    await waitFor(() => reads.length === 2, { what: 'two read events' });
    expect(reads).to.deep.equal([
      { conversationId: group.id, userId: member!.id, seq: 2 },
      { conversationId: group.id, userId: member!.id, seq: 4 },
    ]);
  });

  it('markers moved one seq at a time, as fast as a client can, reach the subscribers as at most one event each 500 ms, the last move always', async () => {
    const owner = await newUser(server);
    const [member] = await friendsOf(server, owner, 1);
    const group = await createGroup(server.url, owner, [member!]);
    await seedMessages(server.services.db.knex, group.id, owner.id, 31);
    const watcher = await pool.open(server.url, owner);
    const reads = record(watcher, 'conversation:read');
    await subscribe(watcher, group.id);
    const read = (seq: number) =>
      request(server.url, 'POST', `/conversations/${group.id}/read`, { token: member!.token, body: { seq } });
    const started = Date.now();
    for (let seq = 1; seq <= 30; seq++) expect((await read(seq)).status).to.equal(204);
    const took = Date.now() - started;
    // Every move is stored; the last one goes out at the end of its interval.
    await waitFor(() => reads.at(-1)?.seq === 30, { what: 'the event of the last move' });
    const [row] = await rows<{ last_read_seq: number }>(
      server.services.db.knex,
      'SELECT last_read_seq FROM conversation_participants WHERE conversation_id = ? AND user_id = ?',
      [group.id, member!.id],
    );
    expect(Number(row?.last_read_seq)).to.equal(30);
    // The first at once, then one per 500 ms at most, in order (however slow the 30 moves were).
    expect(reads[0]).to.deep.equal({ conversationId: group.id, userId: member!.id, seq: 1 });
    expect(reads.length, `${reads.length} events for 30 moves in ${took} ms`).to.be.at.most(
      Math.floor(took / 500) + 2,
    );
    const seqs = reads.map((r) => r.seq);
    expect(seqs).to.deep.equal([...seqs].sort((a, b) => a - b));
    // A move after a quiet interval goes out at once.
    await new Promise((resolve) => setTimeout(resolve, 600));
    const before = reads.length;
    expect((await read(31)).status).to.equal(204);
    // Sent before the 204: an answer to the watcher after it comes after the event (one connection, in order).
    await watcher.emitWithAck('typing', { conversationId: randomUUID() });
    expect(reads.slice(before)).to.deep.equal([{ conversationId: group.id, userId: member!.id, seq: 31 }]);
  });
  /**
   * A member marks 10 read, is removed (`remove`) and added again: her marker starts over at 0, and her move to 5
   * must reach the subscribers (each node remembers the highest marker it told of her, and tells nothing below it).
   */
  async function rejoinedMemberReads(
    remove: (conversationId: string, memberId: string, owner: TestUser) => Promise<void>,
  ) {
    const owner = await newUser(server);
    const [member] = await friendsOf(server, owner, 1);
    const group = await createGroup(server.url, owner, [member!]);
    await seedMessages(server.services.db.knex, group.id, owner.id, 10);
    const watcher = await pool.open(server.url, owner);
    const reads = record(watcher, 'conversation:read');
    await subscribe(watcher, group.id);
    const read = (seq: number) =>
      request(server.url, 'POST', `/conversations/${group.id}/read`, { token: member!.token, body: { seq } });
    const asOwner = (method: string, path: string, body?: unknown) =>
      request(server.url, method, path, { token: owner.token, body });
    expect((await read(10)).status).to.equal(204);
    await waitFor(() => reads.length === 1, { what: 'the event of the move to 10' });

    await remove(group.id, member!.id, owner);
    const readded = await asOwner('POST', `/conversations/${group.id}/participants`, { userId: member!.id });
    expect(readded.status).to.equal(201);
    const again = await asOwner('GET', `/conversations/${group.id}`);
    const participants = (
      again.body as { conversation: { participants: Array<{ userId: string; lastReadSeq: number }> } }
    ).conversation.participants;
    expect(participants.find((p) => p.userId === member!.id)?.lastReadSeq).to.equal(0);

    await new Promise((resolve) => setTimeout(resolve, 600)); // past the interval: the next move goes at once
    expect((await read(5)).status).to.equal(204);
    // Sent before the 204: an answer to the watcher after it comes after the event (one connection, in order).
    await watcher.emitWithAck('typing', { conversationId: randomUUID() });
    expect(reads.slice(1)).to.deep.equal([{ conversationId: group.id, userId: member!.id, seq: 5 }]);
  }

  it('tells the moves of a member removed and added again from 0, below her marker of before', async () => {
    await rejoinedMemberReads(async (conversationId, memberId, owner) => {
      const removed = await request(
        server.url,
        'DELETE',
        `/conversations/${conversationId}/participants/${memberId}`,
        {
          token: owner.token,
        },
      );
      expect(removed.status).to.equal(204);
    });
  });

  it('tells them so on a node that never heard of the removal (its LISTEN connection down)', async () => {
    await rejoinedMemberReads(async (conversationId, memberId) => {
      await removeWithNoEvent(server.services.db.knex, conversationId, memberId);
    });
  });

  it("a held read event carries the stored marker: a user's markers never go down, moved through two nodes or passed by her own send", async () => {
    const owner = await newUser(server);
    const [member] = await friendsOf(server, owner, 1);
    const group = await createGroup(server.url, owner, [member!]);
    await seedMessages(server.services.db.knex, group.id, owner.id, 3);
    const watcher = await pool.open(server.url, owner);
    const heard: Array<[string, number]> = [];
    watcher.on('conversation:read', (e) => {
      if (e.userId === member!.id) heard.push(['read', e.seq]);
    });
    watcher.on('message:new', (m) => {
      if (m.senderId === member!.id) heard.push(['message', m.seq]);
    });
    await subscribe(watcher, group.id);
    const read = (url: string, seq: number) =>
      request(url, 'POST', `/conversations/${group.id}/read`, { token: member!.token, body: { seq } });

    // Through two nodes: the other node tells 1 at once and holds 2; this one tells 3 at once (it has told nothing
    // of her yet); the held event, when it goes out, tells the stored marker, 3, not 2.
    expect((await read(other.url, 1)).status).to.equal(204);
    await waitFor(() => heard.length === 1, { what: 'the first event' });
    expect((await read(other.url, 2)).status).to.equal(204);
    expect((await read(server.url, 3)).status).to.equal(204);
    await waitFor(() => heard.length === 3, { what: 'the held event' });
    // [1, 3, 3] (or [1, 2, 3] when the machine was slow enough for the held one to go before the move to 3).
    const first = heard.map(([, seq]) => seq);
    expect(first, JSON.stringify(heard)).to.deep.equal([...first].sort((x, y) => x - y));
    expect(first.at(-1)).to.equal(3);

    // Passed by her own send (which moves her marker, told by its message:new alone): the held event tells 4.
    heard.length = 0;
    await new Promise((resolve) => setTimeout(resolve, 600)); // past this node's interval: the next goes at once
    const memberSocket = await pool.open(server.url, member!);
    await put(owner, group.id, randomUUID(), { body: 'four' });
    expect((await read(server.url, 4)).status).to.equal(204); // at once
    await waitFor(() => heard.length === 1, { what: 'the read of 4' });
    await put(owner, group.id, randomUUID(), { body: 'five' });
    expect((await read(server.url, 5)).status).to.equal(204); // held
    expectOk(await send(memberSocket, group.id, 'mine'));
    await waitFor(() => heard.length === 3, { what: 'her message and the held event' });
    // [read 4, message 6, read 6] (or read 5 before message 6 on a slow machine): never read 5 after message 6.
    const second = heard.map(([, seq]) => seq);
    expect(second, JSON.stringify(heard)).to.deep.equal([...second].sort((x, y) => x - y));
    expect(heard).to.deep.include(['message', 6]);
  });
});
