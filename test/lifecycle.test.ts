import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import type { ConversationListItem, PublicConversation, PublicMessage } from '../lib/protocol/index.js';
import { createGroup, expectOk, friendsOf, newUser, putMessage, rows, send } from './helpers/chat.js';
import { expectAckError, expectError } from './helpers/errors.js';
import { useTwoNodes } from './helpers/nodes.js';
import { directConversation } from './helpers/faults.js';
import { request } from './helpers/http.js';
import {
  asStored,
  counters,
  deleteMessage,
  editMessage,
  fullHistory,
  currentMessage,
  ownerAndTwoMembers,
  reaction,
  storedState,
} from './helpers/lifecycle.js';
import { createTestDatabase } from './helpers/postgres.js';
import { startTestServer } from './helpers/server.js';
import type { ClientSocket } from './helpers/sockets.js';
import type { TestUser } from './helpers/users.js';
import { waitFor } from './helpers/waitFor.js';

/** Emoji of several code points: a flag (2), a skin tone (2), a keycap (3) and a ZWJ family (7). */
const FLAG = '🇫🇷';
const SKIN_TONE = '👍🏽';
const KEYCAP = '1️⃣';
const FAMILY = '👨‍👩‍👧‍👦';

const MESSAGE_FIELDS = [
  'id',
  'conversationId',
  'seq',
  'senderId',
  'clientMsgId',
  'body',
  'createdAt',
  'replyToSeq',
  'editedAt',
  'deletedAt',
  'reactions',
  'version',
];

describe('message lifecycle: edits, deletes, reactions, replies and versions', function () {
  this.timeout(30_000);
  const { a, b, pool } = useTwoNodes();

  const knex = () => a.services.db.knex;

  /** An owner, two members (the owner's friends) and their group. */
  const group = () => ownerAndTwoMembers(a);

  /** A message sent over REST; the message, or a thrown error. */
  async function put(user: TestUser, conversationId: string, body: string, extra: object = {}) {
    const res = await putMessage(a.url, user, conversationId, randomUUID(), { body, ...extra });
    if (res.status !== 201) throw new Error(`send: ${res.status} ${res.text}`);
    return res.body.message;
  }

  const getConversation = async (user: TestUser, id: string, url = a.url) => {
    const res = await request<{ conversation: PublicConversation }>(url, 'GET', `/conversations/${id}`, {
      token: user.token,
    });
    return res.body.conversation;
  };

  /** One message as a fresh history read shows it. */
  const current = (user: TestUser, conversationId: string, seq: number) =>
    currentMessage(b.url, user, conversationId, seq);

  const socketOf = (user: TestUser, node = b): Promise<ClientSocket> => pool.open(node.url, user);

  describe('shapes', () => {
    it('a message carries replyToSeq, editedAt, deletedAt, reactions and version; a conversation its version', async () => {
      const { owner, alice, id, conversation } = await group();
      expect(conversation.version).to.equal(0);
      expect((await getConversation(owner, id)).version).to.equal(0);

      const socket = await socketOf(alice);
      const sent = expectOk(await send(socket, id, 'first')).message;
      expect(Object.keys(sent).sort()).to.deep.equal([...MESSAGE_FIELDS].sort());
      expect(sent).to.deep.include({
        seq: 1,
        body: 'first',
        replyToSeq: null,
        editedAt: null,
        deletedAt: null,
        reactions: [],
        version: 1,
      });
      const viaRest = await put(owner, id, 'second');
      expect(Object.keys(viaRest).sort()).to.deep.equal([...MESSAGE_FIELDS].sort());
      expect(viaRest).to.deep.include({ seq: 2, version: 2, replyToSeq: null, reactions: [] });

      expect(await getConversation(alice, id, b.url)).to.deep.include({ lastSeq: 2, version: 2 });
      const list = await request<{ conversations: ConversationListItem[] }>(b.url, 'GET', '/conversations', {
        token: alice.token,
      });
      const item = list.body.conversations.find((c) => c.id === id);
      expect(item).to.deep.include({ lastSeq: 2, version: 2 });
      expect(item?.lastMessage).to.deep.equal(viaRest);
      expect(await fullHistory(b.url, alice, id)).to.deep.equal([sent, viaRest]);
    });

    it('a deleted message keeps its seq, id and createdAt, with body "", no reactions and deletedAt set', async () => {
      const { owner, alice, id } = await group();
      const first = await put(alice, id, 'to be deleted');
      await put(owner, id, 'stays');
      expect((await reaction(a.url, owner, 'PUT', id, 1, '👍')).status).to.equal(204);
      await editMessage(a.url, alice, id, 1, 'edited first');
      const edited = await current(owner, id, 1);
      expect((await deleteMessage(b.url, alice, id, 1)).status).to.equal(204);

      const history = await fullHistory(a.url, owner, id);
      expect(history.map((m) => m.seq)).to.deep.equal([1, 2]);
      const tombstone = history[0]!;
      expect(tombstone).to.deep.include({
        id: first.id,
        seq: 1,
        senderId: alice.id,
        clientMsgId: first.clientMsgId,
        createdAt: first.createdAt,
        body: '',
        reactions: [],
        editedAt: edited.editedAt,
        version: 5,
      });
      expect(tombstone.deletedAt).to.be.a('string');
      expect(Date.parse(tombstone.deletedAt!)).to.be.at.least(Date.parse(first.createdAt));
      expect(history[1]).to.deep.include({ body: 'stays', deletedAt: null });
    });
  });

  describe('versions', () => {
    it('every new message, edit, delete and reaction change takes the next version; the message carries its latest', async () => {
      const { owner, alice, bob, id } = await group();
      const aliceSocket = await socketOf(alice, a);
      const bobSocket = await socketOf(bob, b);
      let expected = 0;
      /** After each change: the conversation took exactly the next version, and `seq` carries it. */
      const took = async (seq: number, what: string) => {
        expected += 1;
        expect((await getConversation(owner, id)).version, what).to.equal(expected);
        expect((await current(owner, id, seq)).version, what).to.equal(expected);
        expect(await counters(knex(), id), what).to.deep.include({ version: expected });
      };
      const tookNone = async (what: string) => {
        expect((await getConversation(owner, id)).version, what).to.equal(expected);
      };

      await put(alice, id, 'one');
      await took(1, 'send over REST');
      expectOk(await send(bobSocket, id, 'two'));
      await took(2, 'send over the socket');
      expect((await editMessage(a.url, alice, id, 1, 'one, edited')).status).to.equal(200);
      await took(1, 'edit over REST');
      expectOk(
        await bobSocket.emitWithAck('message:edit', { conversationId: id, seq: 2, body: 'two, edited' }),
      );
      await took(2, 'edit over the socket');
      expect((await reaction(b.url, bob, 'PUT', id, 1, '🎉')).status).to.equal(204);
      await took(1, 'reaction added over REST');
      expectOk(await aliceSocket.emitWithAck('reaction:add', { conversationId: id, seq: 2, emoji: FLAG }));
      await took(2, 'reaction added over the socket');
      expect((await reaction(a.url, bob, 'DELETE', id, 1, '🎉')).status).to.equal(204);
      await took(1, 'reaction removed over REST');
      expectOk(await aliceSocket.emitWithAck('reaction:remove', { conversationId: id, seq: 2, emoji: FLAG }));
      await took(2, 'reaction removed over the socket');
      expect((await deleteMessage(b.url, alice, id, 1)).status).to.equal(204);
      await took(1, 'delete over REST');
      expectOk(await bobSocket.emitWithAck('message:delete', { conversationId: id, seq: 2 }));
      await took(2, 'delete over the socket');
      await put(owner, id, 'three');
      await took(3, 'a send after the changes');

      // Changes that change nothing, and changes that fail, take no version.
      expect((await editMessage(a.url, owner, id, 3, 'three')).status).to.equal(200);
      expect((await deleteMessage(a.url, alice, id, 1)).status).to.equal(204);
      expect((await reaction(a.url, alice, 'DELETE', id, 3, '🎉')).status).to.equal(204);
      expect((await reaction(a.url, alice, 'PUT', id, 3, '🎉')).status).to.equal(204);
      await took(3, 'the one reaction that changed something');
      expect((await reaction(b.url, alice, 'PUT', id, 3, '🎉')).status).to.equal(204);
      expectError(await editMessage(a.url, alice, id, 3, 'not mine'), 403, 'FORBIDDEN');
      expectError(await editMessage(a.url, alice, id, 1, 'deleted'), 409, 'MESSAGE_DELETED');
      expectError(await reaction(a.url, alice, 'PUT', id, 1, '🎉'), 409, 'MESSAGE_DELETED');
      expectError(await editMessage(a.url, owner, id, 99, 'missing'), 404, 'NOT_FOUND');
      expectError(
        await putMessage(a.url, owner, id, randomUUID(), { body: 'x', replyToSeq: 9 }),
        400,
        'VALIDATION_FAILED',
      );
      await tookNone('no-ops and failures');
      expect(await counters(knex(), id)).to.deep.equal({ lastSeq: 3, version: expected });

      // Stored versions are distinct and each message holds its latest change.
      const stored = await storedState(knex(), id);
      expect(stored.map((m) => m.version)).to.deep.equal([9, 10, 12]);
    });
  });

  describe('replies', () => {
    it('message:send and PUT accept replyToSeq (an earlier seq), store it and show it everywhere', async () => {
      const { owner, alice, id } = await group();
      const socket = await socketOf(alice);
      await put(owner, id, 'question');
      const viaSocket = expectOk(
        await socket.emitWithAck('message:send', {
          conversationId: id,
          clientMsgId: randomUUID(),
          body: 'answer',
          replyToSeq: 1,
        }),
      ).message;
      expect(viaSocket).to.deep.include({ seq: 2, replyToSeq: 1 });
      const viaRest = await put(owner, id, 'follow-up', { replyToSeq: 2 });
      expect(viaRest).to.deep.include({ seq: 3, replyToSeq: 2 });
      const explicitNull = await put(owner, id, 'no reply', { replyToSeq: null });
      expect(explicitNull.replyToSeq).to.equal(null);
      // An edit keeps what a message answers.
      const edited = await editMessage(b.url, alice, id, 2, 'answer, edited');
      expect(edited.body.message).to.deep.include({ replyToSeq: 1 });
      // A deleted message keeps its seq, so it can still be answered.
      expect((await deleteMessage(a.url, owner, id, 3)).status).to.equal(204);
      expect(await put(alice, id, 'to a tombstone', { replyToSeq: 3 })).to.deep.include({
        seq: 5,
        replyToSeq: 3,
      });

      const stored = await rows<{ seq: number; reply_to_seq: number | null }>(
        knex(),
        'SELECT seq, reply_to_seq FROM messages WHERE conversation_id = ? ORDER BY seq',
        [id],
      );
      expect(stored).to.deep.equal([
        { seq: 1, reply_to_seq: null },
        { seq: 2, reply_to_seq: 1 },
        { seq: 3, reply_to_seq: 2 },
        { seq: 4, reply_to_seq: null },
        { seq: 5, reply_to_seq: 3 },
      ]);
      expect((await fullHistory(b.url, alice, id)).map((m) => m.replyToSeq)).to.deep.equal([
        null,
        1,
        2,
        null,
        3,
      ]);
    });

    it('refuses a replyToSeq that is not an earlier seq of the conversation: VALIDATION_FAILED naming replyToSeq, nothing stored', async () => {
      const { owner, alice, id } = await group();
      const other = await group();
      const socket = await socketOf(alice);
      await put(owner, id, 'one');
      await put(owner, id, 'two');
      await put(other.owner, other.id, 'elsewhere');
      await put(other.owner, other.id, 'elsewhere too');
      await put(other.owner, other.id, 'elsewhere three');
      const before = await counters(knex(), id);
      // 3 would be the new message itself; 99 does not exist here (seq 3 exists in the other conversation).
      for (const replyToSeq of [3, 4, 99]) {
        const rest = await putMessage(a.url, owner, id, randomUUID(), { body: 'x', replyToSeq });
        expect(expectError(rest, 400, 'VALIDATION_FAILED').details).to.have.property('replyToSeq');
        const ack = await socket.emitWithAck('message:send', {
          conversationId: id,
          clientMsgId: randomUUID(),
          body: 'x',
          replyToSeq,
        });
        expect(expectAckError(ack, 'VALIDATION_FAILED').details).to.have.property('replyToSeq');
      }
      for (const replyToSeq of [0, -1, 1.5, 'one', true, {}]) {
        const rest = await putMessage(b.url, owner, id, randomUUID(), { body: 'x', replyToSeq });
        expect(
          expectError(rest, 400, 'VALIDATION_FAILED').details,
          JSON.stringify(replyToSeq),
        ).to.have.property('replyToSeq');
      }
      expect(await counters(knex(), id)).to.deep.equal(before);
      expect((await storedState(knex(), id)).map((m) => m.seq)).to.deep.equal([1, 2]);
    });
  });

  describe('edits', () => {
    it('PATCH edits the sender’s message: 200 {message} with the new body, editedAt and the next version', async () => {
      const { owner, alice, id } = await group();
      const sent = await put(alice, id, 'original');
      const res = await editMessage(b.url, alice, id, 1, 'edited ✍️');
      expect(res.status).to.equal(200);
      expect(Object.keys(res.body)).to.deep.equal(['message']);
      const edited = res.body.message;
      expect(edited).to.deep.include({
        id: sent.id,
        seq: 1,
        senderId: alice.id,
        clientMsgId: sent.clientMsgId,
        createdAt: sent.createdAt,
        body: 'edited ✍️',
        deletedAt: null,
        version: 2,
      });
      expect(edited.editedAt).to.be.a('string');
      expect(Date.parse(edited.editedAt!)).to.be.at.least(Date.parse(sent.createdAt));
      expect(await current(owner, id, 1)).to.deep.equal(edited);
      const [row] = await storedState(knex(), id);
      expect(row).to.deep.include({ body: 'edited ✍️', edited: true, editedAt: edited.editedAt, version: 2 });
      // A second edit moves editedAt on; an edit to the same body changes nothing and answers the message.
      const again = await editMessage(a.url, alice, id, 1, 'edited twice');
      expect(again.body.message).to.deep.include({ body: 'edited twice', version: 3 });
      expect(Date.parse(again.body.message.editedAt!)).to.be.at.least(Date.parse(edited.editedAt!));
      const same = await editMessage(a.url, alice, id, 1, 'edited twice');
      expect(same.status).to.equal(200);
      expect(same.body.message).to.deep.equal(again.body.message);
      expect(await counters(knex(), id)).to.deep.equal({ lastSeq: 1, version: 3 });
    });

    it('message:edit answers {ok, message} with the current state', async () => {
      const { alice, id } = await group();
      const socket = await socketOf(alice, a);
      expectOk(await send(socket, id, 'typo'));
      const ack = expectOk(
        await socket.emitWithAck('message:edit', { conversationId: id, seq: 1, body: 'fixed' }),
      );
      expect(Object.keys(ack).sort()).to.deep.equal(['message', 'ok']);
      expect(ack.message).to.deep.include({ seq: 1, body: 'fixed', version: 2 });
      expect(ack.message.editedAt).to.be.a('string');
      expect(await current(alice, id, 1)).to.deep.equal(ack.message);
      const same = expectOk(
        await socket.emitWithAck('message:edit', { conversationId: id, seq: 1, body: 'fixed' }),
      );
      expect(same.message).to.deep.equal(ack.message);
    });

    it('only the sender edits (FORBIDDEN, a group owner included); a deleted message is MESSAGE_DELETED; a missing seq NOT_FOUND', async () => {
      const { owner, alice, bob, id } = await group();
      await put(alice, id, 'alice’s');
      await put(owner, id, 'owner’s');
      const bobSocket = await socketOf(bob);
      const ownerSocket = await socketOf(owner, a);
      expectError(await editMessage(a.url, bob, id, 1, 'bob was here'), 403, 'FORBIDDEN');
      expectError(await editMessage(b.url, owner, id, 1, 'the owner was here'), 403, 'FORBIDDEN');
      expectError(await editMessage(a.url, alice, id, 2, 'alice was here'), 403, 'FORBIDDEN');
      expectAckError(
        await bobSocket.emitWithAck('message:edit', { conversationId: id, seq: 1, body: 'bob' }),
        'FORBIDDEN',
      );
      expectAckError(
        await ownerSocket.emitWithAck('message:edit', { conversationId: id, seq: 1, body: 'owner' }),
        'FORBIDDEN',
      );

      expect((await deleteMessage(a.url, alice, id, 1)).status).to.equal(204);
      expectError(await editMessage(a.url, alice, id, 1, 'too late'), 409, 'MESSAGE_DELETED');
      const aliceSocket = await socketOf(alice);
      expectAckError(
        await aliceSocket.emitWithAck('message:edit', { conversationId: id, seq: 1, body: 'late' }),
        'MESSAGE_DELETED',
      );

      expectError(await editMessage(a.url, alice, id, 3, 'nothing there'), 404, 'NOT_FOUND');
      expectAckError(
        await aliceSocket.emitWithAck('message:edit', { conversationId: id, seq: 3, body: 'x' }),
        'NOT_FOUND',
      );
      expect(await counters(knex(), id)).to.deep.equal({ lastSeq: 2, version: 3 });
      expect((await storedState(knex(), id)).map((m) => m.body)).to.deep.equal(['', 'owner’s']);
    });

    it('validates the body and the seq like a send (400 VALIDATION_FAILED)', async () => {
      const { alice, id } = await group();
      await put(alice, id, 'valid');
      for (const body of ['', '  \n\t', 'x'.repeat(4001), 'nul\u0000', 5, null, ['x']]) {
        const res = await editMessage(a.url, alice, id, 1, body);
        expect(expectError(res, 400, 'VALIDATION_FAILED').details).to.have.property('body');
      }
      for (const seq of ['0', '-1', '1.5', 'one', '99999999999999999999']) {
        expectError(await editMessage(a.url, alice, id, seq, 'x'), 400, 'VALIDATION_FAILED');
      }
      const socket = await socketOf(alice);
      for (const seq of [0, -1, 1.5, 'one', null]) {
        const ack = await socket.emitWithAck('message:edit', {
          conversationId: id,
          seq: seq as number,
          body: 'x',
        });
        expectAckError(ack, 'VALIDATION_FAILED', JSON.stringify(seq));
      }
      const longest = '🙂'.repeat(4000);
      expect((await editMessage(a.url, alice, id, 1, longest)).body.message?.body).to.equal(longest);
    });
  });

  describe('deletes', () => {
    it('DELETE answers 204; the body is gone from the row and the reactions with it; twice is fine', async () => {
      const { owner, alice, bob, id } = await group();
      const secret = `secret ${randomUUID()}`;
      await put(alice, id, secret);
      await reaction(a.url, bob, 'PUT', id, 1, '👀');
      await reaction(a.url, owner, 'PUT', id, 1, FAMILY);
      const res = await deleteMessage(b.url, alice, id, 1);
      expect(res.status).to.equal(204);
      expect(res.text).to.equal('');

      const [row] = await rows<{ body: string; deleted_at: Date | null; version: number }>(
        knex(),
        'SELECT body, deleted_at, version FROM messages WHERE conversation_id = ? AND seq = 1',
        [id],
      );
      expect(row?.body).to.equal('');
      expect(row?.deleted_at).to.be.instanceOf(Date);
      expect(row?.version).to.equal(4);
      const [found] = await rows<{ n: number }>(
        knex(),
        'SELECT count(*)::int AS n FROM messages WHERE conversation_id = ? AND body LIKE ?',
        [id, `%${secret}%`],
      );
      expect(found?.n).to.equal(0);
      const [left] = await rows<{ n: number }>(
        knex(),
        `SELECT count(*)::int AS n FROM message_reactions r JOIN messages m ON m.id = r.message_id
         WHERE m.conversation_id = ?`,
        [id],
      );
      expect(left?.n).to.equal(0);

      const again = await deleteMessage(a.url, alice, id, 1);
      expect(again.status).to.equal(204);
      expect(await counters(knex(), id)).to.deep.equal({ lastSeq: 1, version: 4 });
      expect((await current(bob, id, 1)).deletedAt).to.equal((await current(owner, id, 1)).deletedAt);
    });

    it('message:delete answers {ok}; deleting twice over the socket is fine too', async () => {
      const { alice, id } = await group();
      const socket = await socketOf(alice, a);
      expectOk(await send(socket, id, 'oops'));
      const ack = await socket.emitWithAck('message:delete', { conversationId: id, seq: 1 });
      expect(ack).to.deep.equal({ ok: true });
      expect(await socket.emitWithAck('message:delete', { conversationId: id, seq: 1 })).to.deep.equal({
        ok: true,
      });
      expect(await current(alice, id, 1)).to.deep.include({ body: '', reactions: [], version: 2 });
    });

    it('the sender or the group’s owner deletes; another member is FORBIDDEN; in a direct conversation only the sender', async () => {
      const { owner, alice, bob, id } = await group();
      await put(alice, id, 'alice’s');
      await put(bob, id, 'bob’s');
      await put(owner, id, 'owner’s');
      const bobSocket = await socketOf(bob);
      expectError(await deleteMessage(a.url, bob, id, 1), 403, 'FORBIDDEN');
      expectAckError(
        await bobSocket.emitWithAck('message:delete', { conversationId: id, seq: 1 }),
        'FORBIDDEN',
      );
      expectError(await deleteMessage(a.url, alice, id, 3), 403, 'FORBIDDEN');
      expect((await deleteMessage(a.url, owner, id, 1)).status).to.equal(204);
      const ownerSocket = await socketOf(owner, a);
      expect(await ownerSocket.emitWithAck('message:delete', { conversationId: id, seq: 2 })).to.deep.equal({
        ok: true,
      });
      expect((await deleteMessage(b.url, owner, id, 3)).status).to.equal(204);
      expectError(await deleteMessage(b.url, owner, id, 4), 404, 'NOT_FOUND');
      expectAckError(
        await ownerSocket.emitWithAck('message:delete', { conversationId: id, seq: 4 }),
        'NOT_FOUND',
      );
      expect((await storedState(knex(), id)).map((m) => m.deleted)).to.deep.equal([true, true, true]);

      const [friend] = await friendsOf(a, alice, 1);
      const direct = await directConversation(a.url, alice, friend!);
      await put(alice, direct, 'mine');
      await put(friend!, direct, 'theirs');
      expectError(await deleteMessage(a.url, alice, direct, 2), 403, 'FORBIDDEN');
      expectError(await deleteMessage(a.url, friend!, direct, 1), 403, 'FORBIDDEN');
      expect((await deleteMessage(a.url, friend!, direct, 2)).status).to.equal(204);
    });
  });

  describe('reactions', () => {
    it('PUT and DELETE answer 204 and are idempotent; users are listed in the order they reacted', async () => {
      const { owner, alice, bob, id } = await group();
      await put(alice, id, 'react to me');
      const add = (user: TestUser, emoji: string, url = a.url) => reaction(url, user, 'PUT', id, 1, emoji);
      const remove = (user: TestUser, emoji: string, url = a.url) =>
        reaction(url, user, 'DELETE', id, 1, emoji);
      for (const [user, emoji] of [
        [bob, '👍'],
        [owner, '❤️'],
        [alice, '👍'],
        [owner, '👍'],
      ] as const) {
        const res = await add(user, emoji, user === alice ? b.url : a.url);
        expect(res.status).to.equal(204);
        expect(res.text).to.equal('');
      }
      const expected = [
        { emoji: '👍', userIds: [bob.id, alice.id, owner.id] },
        { emoji: '❤️', userIds: [owner.id] },
      ];
      expect((await current(owner, id, 1)).reactions).to.deep.equal(expected);
      expect(await counters(knex(), id)).to.deep.equal({ lastSeq: 1, version: 5 });
      // Again: nothing changes.
      expect((await add(bob, '👍', b.url)).status).to.equal(204);
      expect((await current(owner, id, 1)).reactions).to.deep.equal(expected);
      expect(await counters(knex(), id)).to.deep.equal({ lastSeq: 1, version: 5 });

      expect((await remove(alice, '👍')).status).to.equal(204);
      expect((await remove(alice, '👍', b.url)).status).to.equal(204);
      expect((await remove(bob, '❤️')).status).to.equal(204);
      expect((await remove(owner, '❤️')).status).to.equal(204);
      expect((await current(owner, id, 1)).reactions).to.deep.equal([
        { emoji: '👍', userIds: [bob.id, owner.id] },
      ]);
      expect(await counters(knex(), id)).to.deep.equal({ lastSeq: 1, version: 7 });
      expect(asStored([await current(owner, id, 1)])).to.deep.equal(await storedState(knex(), id));
    });

    it('takes emoji of several code points URL-encoded in the path, up to 16 code points', async () => {
      const { owner, alice, id } = await group();
      await put(alice, id, 'emoji');
      const sixteen = '😀'.repeat(16);
      const emojis = [FLAG, SKIN_TONE, KEYCAP, FAMILY, sixteen, '+1', 'ok'];
      for (const emoji of emojis)
        expect((await reaction(a.url, owner, 'PUT', id, 1, emoji)).status).to.equal(204);
      const shown = (await current(alice, id, 1)).reactions;
      expect(shown.map((r) => r.emoji)).to.deep.equal(emojis);
      const stored = await rows<{ emoji: string }>(
        knex(),
        `SELECT r.emoji FROM message_reactions r JOIN messages m ON m.id = r.message_id
         WHERE m.conversation_id = ? ORDER BY r.created_at`,
        [id],
      );
      expect(stored.map((r) => r.emoji)).to.deep.equal(emojis);
      for (const emoji of emojis)
        expect((await reaction(b.url, owner, 'DELETE', id, 1, emoji)).status).to.equal(204);
      expect((await current(alice, id, 1)).reactions).to.deep.equal([]);
    });

    it('refuses an emoji over 16 code points or with whitespace (400), over REST and the socket', async () => {
      const { owner, alice, id } = await group();
      await put(alice, id, 'emoji');
      const socket = await socketOf(owner);
      const refused = ['😀'.repeat(17), 'a b', ' 👍', '👍 ', '\t', '\u00a0', '\u3000', 'x\ny', '\u202e'];
      for (const emoji of refused) {
        for (const method of ['PUT', 'DELETE'] as const) {
          const res = await reaction(a.url, owner, method, id, 1, emoji);
          expect(expectError(res, 400, 'VALIDATION_FAILED').details, JSON.stringify(emoji)).to.have.property(
            'emoji',
          );
        }
        for (const event of ['reaction:add', 'reaction:remove'] as const) {
          const ack = await socket.emitWithAck(event, { conversationId: id, seq: 1, emoji });
          expectAckError(ack, 'VALIDATION_FAILED', `${event} ${JSON.stringify(emoji)}`);
        }
      }
      for (const seq of ['0', 'x', '-3']) {
        expectError(await reaction(a.url, owner, 'PUT', id, seq, '👍'), 400, 'VALIDATION_FAILED');
      }
      expectError(await reaction(a.url, owner, 'PUT', id, 2, '👍'), 404, 'NOT_FOUND');
      expectError(await reaction(a.url, owner, 'DELETE', id, 2, '👍'), 404, 'NOT_FOUND');
      expect(await counters(knex(), id)).to.deep.equal({ lastSeq: 1, version: 1 });
    });

    it('reaction:add and reaction:remove answer {ok}; a deleted message refuses both with MESSAGE_DELETED', async () => {
      const { owner, alice, id } = await group();
      await put(alice, id, 'short-lived');
      const socket = await socketOf(owner, a);
      const add = () => socket.emitWithAck('reaction:add', { conversationId: id, seq: 1, emoji: FAMILY });
      const remove = () =>
        socket.emitWithAck('reaction:remove', { conversationId: id, seq: 1, emoji: FAMILY });
      expect(await add()).to.deep.equal({ ok: true });
      expect(await add()).to.deep.equal({ ok: true });
      expect((await current(alice, id, 1)).reactions).to.deep.equal([{ emoji: FAMILY, userIds: [owner.id] }]);
      expect(await remove()).to.deep.equal({ ok: true });
      expect(await remove()).to.deep.equal({ ok: true });
      expect(await add()).to.deep.equal({ ok: true });
      expect(await counters(knex(), id)).to.deep.equal({ lastSeq: 1, version: 4 });

      expect((await deleteMessage(a.url, alice, id, 1)).status).to.equal(204);
      expectAckError(await add(), 'MESSAGE_DELETED');
      expectAckError(await remove(), 'MESSAGE_DELETED');
      expectError(await reaction(b.url, owner, 'PUT', id, 1, '👍'), 409, 'MESSAGE_DELETED');
      expectError(await reaction(b.url, owner, 'DELETE', id, 1, FAMILY), 409, 'MESSAGE_DELETED');
      expect(await counters(knex(), id)).to.deep.equal({ lastSeq: 1, version: 5 });
      expect((await current(alice, id, 1)).reactions).to.deep.equal([]);
    });

    it('lists users in the order they reacted, also when their reactions share one commit', async () => {
      const owner = await newUser(a);
      const members = await friendsOf(a, owner, 12);
      const { id } = await createGroup(a.url, owner, members);
      await put(owner, id, 'everyone react');
      const sockets = await Promise.all(members.map((m) => socketOf(m, a)));
      const watcher = await socketOf(owner, a);
      const updates: PublicMessage[] = [];
      watcher.on('message:updated', (m) => updates.push(m));
      expectOk(await watcher.emitWithAck('conversation:subscribe', { conversationId: id }));
      const acks = await Promise.all(
        sockets.map((s) => s.emitWithAck('reaction:add', { conversationId: id, seq: 1, emoji: '🔥' })),
      );
      for (const ack of acks) expectOk(ack);
      const final = await current(owner, id, 1);
      expect(final.version).to.equal(1 + members.length);
      // The order in which the conversation's actor applied them is the order of their versions (the reactions
      // of one commit go out once, in their newest state: each update's list begins with the one before).
      await waitFor(() => updates.some((u) => u.version === final.version), { what: 'the last reaction' });
      const applied: string[] = [];
      for (const update of [...updates].sort((x, y) => x.version - y.version)) {
        const users = update.reactions[0]?.userIds ?? [];
        expect(users.slice(0, applied.length), `at version ${update.version}`).to.deep.equal(applied);
        applied.push(...users.slice(applied.length));
      }
      expect(final.reactions).to.deep.equal([{ emoji: '🔥', userIds: applied }]);
    });
  });

  describe('semantics the contract leaves open', () => {
    it('a send retried with its clientMsgId answers the stored message as it is now: edited, reacted to, deleted', async () => {
      const { owner, alice, id } = await group();
      const socket = await socketOf(alice, a);
      const clientMsgId = randomUUID();
      const sent = expectOk(await send(socket, id, 'first draft', clientMsgId)).message;
      const retry = async () => {
        const viaSocket = expectOk(await send(socket, id, 'first draft', clientMsgId));
        const viaRest = await putMessage(b.url, alice, id, clientMsgId, { body: 'first draft' });
        expect(viaSocket.duplicate).to.equal(true);
        expect(viaRest.status).to.equal(200);
        expect(viaRest.body.message).to.deep.equal(viaSocket.message);
        expect(viaSocket.message).to.deep.equal(await current(owner, id, sent.seq));
        return viaSocket.message;
      };
      expect(await retry()).to.deep.equal(sent);
      await editMessage(a.url, alice, id, 1, 'second draft');
      expect(await retry()).to.deep.include({ body: 'second draft', version: 2 });
      await reaction(a.url, owner, 'PUT', id, 1, '👍');
      expect((await retry()).reactions).to.deep.equal([{ emoji: '👍', userIds: [owner.id] }]);
      await deleteMessage(a.url, alice, id, 1);
      expect(await retry()).to.deep.include({ body: '', reactions: [], version: 4 });
      expect(await counters(knex(), id)).to.deep.equal({ lastSeq: 1, version: 4 });
    });

    it('edits, deletes and reactions do not move a conversation up the list, nor change lastSeq or unread counts', async () => {
      const owner = await newUser(a);
      const [alice] = (await friendsOf(a, owner, 1)) as [TestUser];
      const older = await createGroup(a.url, owner, [alice], 'older');
      const newer = await createGroup(a.url, owner, [alice], 'newer');
      await put(owner, older.id, 'older activity');
      await put(owner, older.id, 'more');
      await put(owner, newer.id, 'newer activity');
      const list = async () =>
        (
          await request<{ conversations: ConversationListItem[] }>(b.url, 'GET', '/conversations', {
            token: alice.token,
          })
        ).body.conversations.map((c) => ({ id: c.id, lastSeq: c.lastSeq, unreadCount: c.unreadCount }));
      const before = await list();
      expect(before.map((c) => c.id)).to.deep.equal([newer.id, older.id]);
      await editMessage(a.url, owner, older.id, 1, 'older, edited');
      await reaction(a.url, alice, 'PUT', older.id, 2, '👍');
      await reaction(a.url, alice, 'DELETE', older.id, 2, '👍');
      await deleteMessage(a.url, owner, older.id, 2);
      expect(await list()).to.deep.equal(before);
      expect(before.find((c) => c.id === older.id)).to.deep.equal({
        id: older.id,
        lastSeq: 2,
        unreadCount: 2,
      });
      await put(owner, older.id, 'a new message moves it');
      expect((await list()).map((c) => c.id)).to.deep.equal([older.id, newer.id]);
    });

    it('a change goes through the actor in order with the sends: an edit emitted right behind its send finds it', async function () {
      this.timeout(60_000);
      // Fresh conversations, so the first commands meet a cold membership cache and no actor yet.
      for (let round = 0; round < 12; round++) {
        const { alice, id } = await group();
        const socket = await socketOf(alice, round % 2 ? a : b);
        const acks = await Promise.all(
          [1, 2, 3].flatMap((seq) => [
            socket.emitWithAck('message:send', {
              conversationId: id,
              clientMsgId: randomUUID(),
              body: `m${seq}`,
            }),
            socket.emitWithAck('message:edit', { conversationId: id, seq, body: `m${seq}, edited` }),
            socket.emitWithAck('reaction:add', { conversationId: id, seq, emoji: '✅' }),
          ]),
        );
        for (const ack of acks) expectOk(ack);
        const stored = await storedState(knex(), id);
        expect(
          stored.map((m) => [m.seq, m.body, m.version]),
          `round ${round}`,
        ).to.deep.equal([
          [1, 'm1, edited', 3],
          [2, 'm2, edited', 6],
          [3, 'm3, edited', 9],
        ]);
        pool.closeAll();
      }
    });

    it('changes count against the per-user send rate limit (RATE_LIMITED with Retry-After)', async () => {
      const node = await startTestServer(await createTestDatabase(), { RATE_LIMIT_MESSAGES_PER_SEC: '1' });
      try {
        const owner = await newUser(node);
        const { id } = await createGroup(node.url, owner, await friendsOf(node, owner, 1));
        expect((await putMessage(node.url, owner, id, randomUUID(), { body: 'one' })).status).to.equal(201);
        // A budget of 1 per second with bursts of 2: of ten changes at once, most are refused.
        const results = await Promise.all([
          ...[1, 2, 3, 4, 5].map((n) => editMessage(node.url, owner, id, 1, `edit ${n}`)),
          ...['👍', '🎉', '👀', '🙂', '🚀'].map((emoji) => reaction(node.url, owner, 'PUT', id, 1, emoji)),
        ]);
        const passed = results.filter((r) => r.status === 200 || r.status === 204);
        const limited = results.filter((r) => r.status === 429);
        expect(passed.length + limited.length).to.equal(results.length);
        expect(limited.length).to.be.at.least(7);
        for (const res of limited) {
          expectError(res, 429, 'RATE_LIMITED');
          expect(Number(res.headers.get('retry-after'))).to.be.at.least(1);
        }
        const socket = await pool.open(node.url, owner);
        const acks = await Promise.all(
          [1, 2, 3, 4, 5].map((n) =>
            socket.emitWithAck('message:edit', { conversationId: id, seq: 1, body: `socket edit ${n}` }),
          ),
        );
        const refused = acks.filter((ack) => !ack.ok);
        expect(refused.length).to.be.at.least(2);
        for (const ack of refused) expectAckError(ack, 'RATE_LIMITED');
        // Every change that passed took one version, nothing else did.
        expect(await counters(node.services.db.knex, id)).to.deep.equal({
          lastSeq: 1,
          version: 1 + passed.length + acks.length - refused.length,
        });
      } finally {
        pool.closeAll();
        await node.close();
      }
    });
  });
});
