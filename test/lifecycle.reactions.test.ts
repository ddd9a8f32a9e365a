import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import { MAX_REACTIONS_PER_MESSAGE } from '../lib/protocol/schemas.js';
import { createGroup, expectOk, friendsOf, newUser, putMessage, rows } from './helpers/chat.js';
import { expectAckError, expectError } from './helpers/errors.js';
import { request } from './helpers/http.js';
import { counters, currentMessage, ownerAndTwoMembers, reaction, storedState } from './helpers/lifecycle.js';
import { useTwoNodes } from './helpers/nodes.js';
import { rawRequest } from './helpers/rawHttp.js';
import type { ClientSocket } from './helpers/sockets.js';
import type { TestUser } from './helpers/users.js';

/** `count` different emoji, one code point each, from U+1F600 on. */
const emojiRun = (count: number, from = 0): string[] =>
  Array.from({ length: count }, (_, i) => String.fromCodePoint(0x1f600 + from + i));

const CAP_MESSAGE = `A message has at most ${MAX_REACTIONS_PER_MESSAGE} different reactions.`;

describe('reactions: which emoji, normalized how, and how many on one message', function () {
  this.timeout(30_000);
  const { a, b, pool } = useTwoNodes();
  const knex = () => a.services.db.knex;

  /** An owner, two members (the owner's friends), their group and one message of alice's in it. */
  async function group() {
    const { owner, alice, bob, id } = await ownerAndTwoMembers(a);
    const res = await putMessage(a.url, alice, id, randomUUID(), { body: 'react to me' });
    if (res.status !== 201) throw new Error(`send: ${res.status} ${res.text}`);
    return { owner, alice, bob, id };
  }

  /** One message as a fresh history read shows it. */
  const current = (user: TestUser, conversationId: string, seq = 1) =>
    currentMessage(b.url, user, conversationId, seq);

  /** The emoji stored for a conversation's messages, straight from the table. */
  const storedEmoji = async (conversationId: string): Promise<string[]> =>
    (
      await rows<{ emoji: string }>(
        knex(),
        `SELECT DISTINCT r.emoji FROM message_reactions r JOIN messages m ON m.id = r.message_id
         WHERE m.conversation_id = ? ORDER BY r.emoji`,
        [conversationId],
      )
    ).map((r) => r.emoji);

  const socketOf = (user: TestUser, node = b): Promise<ClientSocket> => pool.open(node.url, user);

  describe('emoji made of dots ("." and "..": URL path segments)', () => {
    it('are refused over the socket, add and remove', async () => {
      const { owner, id } = await group();
      const socket = await socketOf(owner);
      for (const emoji of ['.', '..', '...'])
        for (const event of ['reaction:add', 'reaction:remove'] as const) {
          const ack = await socket.emitWithAck(event, { conversationId: id, seq: 1, emoji });
          expect(expectAckError(ack, 'VALIDATION_FAILED', `${event} ${emoji}`).details).to.deep.equal({
            emoji: 'must not be only dots',
          });
        }
      expect(await counters(knex(), id)).to.deep.equal({ lastSeq: 1, version: 1 });
      expect(await storedEmoji(id)).to.deep.equal([]);
    });

    it('are refused over REST as they reach the server, encoded or not, and the message stays', async () => {
      const { alice, id } = await group();
      // The sender herself: a DELETE that reached `.../messages/1` would delete her message.
      const authorization = ['Authorization', `Bearer ${alice.token}`] as const;
      for (const segment of ['.', '..', '%2E', '%2e', '%2E%2E', '%2e.', '.%2E', '...'])
        for (const method of ['PUT', 'DELETE']) {
          const res = await rawRequest(a.url, {
            method,
            target: `/conversations/${id}/messages/1/reactions/${segment}`,
            headers: [authorization],
          });
          const what = `${method} ${segment}: ${res.body}`;
          expect(res.status, what).to.equal(400);
          expect(JSON.parse(res.body), what).to.deep.include({
            error: {
              code: 'VALIDATION_FAILED',
              message: 'The request is invalid.',
              details: { emoji: 'must not be only dots' },
            },
          });
        }
      expect(await current(alice, id)).to.deep.include({
        body: 'react to me',
        deletedAt: null,
        reactions: [],
      });
      expect(await counters(knex(), id)).to.deep.equal({ lastSeq: 1, version: 1 });
    });
  });

  it('refuses an empty emoji over REST as over the socket (VALIDATION_FAILED, not an unknown route)', async () => {
    const { owner, id } = await group();
    const socket = await socketOf(owner);
    for (const event of ['reaction:add', 'reaction:remove'] as const) {
      const ack = await socket.emitWithAck(event, { conversationId: id, seq: 1, emoji: '' });
      expect(expectAckError(ack, 'VALIDATION_FAILED', event).details).to.have.property('emoji');
    }
    const authorization = ['Authorization', `Bearer ${owner.token}`] as const;
    for (const target of ['reactions/', 'reactions'])
      for (const method of ['PUT', 'DELETE']) {
        const res = await rawRequest(a.url, {
          method,
          target: `/conversations/${id}/messages/1/${target}`,
          headers: [authorization],
        });
        const what = `${method} ${target}: ${res.body}`;
        expect(res.status, what).to.equal(400);
        const { error } = JSON.parse(res.body) as { error: { code: string; details: object } };
        expect(error.code, what).to.equal('VALIDATION_FAILED');
        expect(error.details, what).to.have.property('emoji');
      }
    expect(await counters(knex(), id)).to.deep.equal({ lastSeq: 1, version: 1 });
  });

  it('refuses to add emoji with nothing visible, over REST and the socket, writing nothing; removing one is a no-op', async () => {
    const { owner, id } = await group();
    const socket = await socketOf(owner, a);
    const invisible = {
      ZWSP: '\u200b',
      'lone ZWJ': '\u200d',
      'word joiner': '\u2060',
      'lone VS16': '\ufe0f',
      'lone combining acute': '\u0301',
      'Hangul filler U+3164': '\u3164',
      'Braille blank U+2800': '\u2800',
      'Hangul choseong filler U+115F': '\u115f',
      'Hangul jungseong filler U+1160': '\u1160',
      'halfwidth Hangul filler U+FFA0': '\uffa0',
      'ZWJ and VS16': '\u200d\ufe0f',
    };
    for (const [name, emoji] of Object.entries(invisible)) {
      const res = await reaction(b.url, owner, 'PUT', id, 1, emoji);
      expect(expectError(res, 400, 'VALIDATION_FAILED', `PUT ${name}`).details).to.deep.equal({
        emoji: 'must contain a visible character',
      });
      const ack = await socket.emitWithAck('reaction:add', { conversationId: id, seq: 1, emoji });
      expect(expectAckError(ack, 'VALIDATION_FAILED', `reaction:add ${name}`).details).to.deep.equal({
        emoji: 'must contain a visible character',
      });
      // A removal is taken (earlier rules stored some of these): there is nothing to remove.
      expect((await reaction(b.url, owner, 'DELETE', id, 1, emoji)).status, `DELETE ${name}`).to.equal(204);
      const removed = await socket.emitWithAck('reaction:remove', { conversationId: id, seq: 1, emoji });
      expect(removed, `reaction:remove ${name}`).to.deep.equal({ ok: true });
    }
    expect(await counters(knex(), id)).to.deep.equal({ lastSeq: 1, version: 1 });
    expect(await storedEmoji(id)).to.deep.equal([]);
  });

  it('removes a reaction stored under earlier rules that it would refuse now (only noncharacters)', async () => {
    const { alice, id } = await group();
    const socket = await socketOf(alice, a);
    // As a node of the release before (during a rolling upgrade) stored them: nothing visible by today's rules.
    for (const emoji of ['\uffff', '\ufdd0'])
      await knex().raw(
        `INSERT INTO message_reactions (message_id, emoji, user_id)
         SELECT id, ?, ? FROM messages WHERE conversation_id = ? AND seq = 1`,
        [emoji, alice.id, id],
      );
    expect(await storedEmoji(id)).to.have.length(2);
    expect((await reaction(b.url, alice, 'DELETE', id, 1, '\uffff')).status).to.equal(204);
    expect(
      await socket.emitWithAck('reaction:remove', { conversationId: id, seq: 1, emoji: '\ufdd0' }),
    ).to.deep.equal({
      ok: true,
    });
    expect(await storedEmoji(id)).to.deep.equal([]);
  });

  // MIGRATE hunt: a reaction holding a bidirectional mark (LRM, RLM, ALM), which 0.2.0 stored and this release
  // refuses to add, could not be removed either (the removal asked for plain text): it stayed on the message for good.
  it('removes a reaction stored under earlier rules with a bidirectional mark (LRM, RLM, ALM), alone or beside an emoji', async () => {
    const { alice, id } = await group();
    const socket = await socketOf(alice, a);
    const marked = ['\u200e', '\ud83d\udc4d\u200e', '\u200f', '\u061c'];
    for (const emoji of marked)
      await knex().raw(
        `INSERT INTO message_reactions (message_id, emoji, user_id)
         SELECT id, ?, ? FROM messages WHERE conversation_id = ? AND seq = 1`,
        [emoji, alice.id, id],
      );
    expect(await storedEmoji(id)).to.have.length(4);
    for (const emoji of marked.slice(0, 2))
      expect((await reaction(b.url, alice, 'DELETE', id, 1, emoji)).status, JSON.stringify(emoji)).to.equal(
        204,
      );
    for (const emoji of marked.slice(2))
      expect(
        await socket.emitWithAck('reaction:remove', { conversationId: id, seq: 1, emoji }),
        JSON.stringify(emoji),
      ).to.deep.equal({ ok: true });
    expect(await storedEmoji(id)).to.deep.equal([]);
    // Adding one is still refused.
    expect((await reaction(b.url, alice, 'PUT', id, 1, '\ud83d\udc4d\u200e')).status).to.equal(400);
    // REV2: and removing one with any other control, override or isolate (no release stored those) is refused.
    for (const emoji of ['\u202e', '\u2066', '\ud83d\udc4d\u0001', '\u0085', '\u007f']) {
      expect((await reaction(b.url, alice, 'DELETE', id, 1, emoji)).status, JSON.stringify(emoji)).to.equal(
        400,
      );
      const refused = await socket.emitWithAck('reaction:remove', { conversationId: id, seq: 1, emoji });
      expect(refused, JSON.stringify(emoji)).to.have.nested.property('error.code', 'VALIDATION_FAILED');
    }
  });

  it('stores and compares emoji in NFC: a decomposed and a precomposed "é" are one reaction', async () => {
    const { owner, alice, bob, id } = await group();
    const NFC = '\u00e9';
    const NFD = 'e\u0301';
    const socket = await socketOf(bob, a);

    expect((await reaction(a.url, owner, 'PUT', id, 1, NFD)).status).to.equal(204);
    expectOk(await socket.emitWithAck('reaction:add', { conversationId: id, seq: 1, emoji: NFC }));
    // Already there, as the other form: nothing changes.
    expect((await reaction(b.url, owner, 'PUT', id, 1, NFC)).status).to.equal(204);
    expect((await current(alice, id)).reactions).to.deep.equal([{ emoji: NFC, userIds: [owner.id, bob.id] }]);
    expect(await storedEmoji(id)).to.deep.equal([NFC]);
    expect(await counters(knex(), id)).to.deep.equal({ lastSeq: 1, version: 3 });

    // Added as NFD, removed as NFC; added as NFC, removed as NFD.
    expect((await reaction(b.url, owner, 'DELETE', id, 1, NFC)).status).to.equal(204);
    expect((await current(alice, id)).reactions).to.deep.equal([{ emoji: NFC, userIds: [bob.id] }]);
    expectOk(await socket.emitWithAck('reaction:remove', { conversationId: id, seq: 1, emoji: NFD }));
    expect((await current(alice, id)).reactions).to.deep.equal([]);
    expect(await storedEmoji(id)).to.deep.equal([]);
    expect(await counters(knex(), id)).to.deep.equal({ lastSeq: 1, version: 5 });
  });

  describe(`at most ${MAX_REACTIONS_PER_MESSAGE} different emoji on a message`, () => {
    it('refuses a new one past the cap with FORBIDDEN over REST and the socket, writing nothing', async () => {
      const { owner, alice, bob, id } = await group();
      const full = [...emojiRun(MAX_REACTIONS_PER_MESSAGE - 1), '\u00e9'];
      for (const emoji of full)
        expect((await reaction(a.url, owner, 'PUT', id, 1, emoji)).status).to.equal(204);
      const atCap = await current(alice, id);
      expect(atCap.reactions.map((r) => r.emoji)).to.deep.equal(full);
      expect(await counters(knex(), id)).to.deep.equal({ lastSeq: 1, version: 1 + full.length });

      const [extra] = emojiRun(1, 100) as [string];
      const viaRest = expectError(await reaction(b.url, alice, 'PUT', id, 1, extra), 403, 'FORBIDDEN');
      expect(viaRest).to.deep.equal({ code: 'FORBIDDEN', message: CAP_MESSAGE });
      const socket = await socketOf(bob, a);
      expect(
        await socket.emitWithAck('reaction:add', { conversationId: id, seq: 1, emoji: extra }),
      ).to.deep.equal({
        ok: false,
        error: { code: 'FORBIDDEN', message: CAP_MESSAGE },
      });
      // The owner too: the cap is the message's, not a user's.
      expectError(await reaction(a.url, owner, 'PUT', id, 1, '+1'), 403, 'FORBIDDEN');
      expect(await counters(knex(), id)).to.deep.equal({ lastSeq: 1, version: 1 + full.length });
      expect(await current(alice, id)).to.deep.equal(atCap);

      // An emoji already on the message may still be added, by anyone (NFD of one stored as NFC included).
      expect((await reaction(b.url, alice, 'PUT', id, 1, full[0]!)).status).to.equal(204);
      expectOk(await socket.emitWithAck('reaction:add', { conversationId: id, seq: 1, emoji: 'e\u0301' }));
      // Removing one that is not there changes nothing, past the cap as below it.
      expect((await reaction(a.url, alice, 'DELETE', id, 1, extra)).status).to.equal(204);
      const shared = (await current(owner, id)).reactions;
      expect(shared).to.have.length(MAX_REACTIONS_PER_MESSAGE);
      expect(shared[0]).to.deep.equal({ emoji: full[0], userIds: [owner.id, alice.id] });
      expect(shared[MAX_REACTIONS_PER_MESSAGE - 1]).to.deep.equal({
        emoji: '\u00e9',
        userIds: [owner.id, bob.id],
      });
      expect(await counters(knex(), id)).to.deep.equal({ lastSeq: 1, version: 3 + full.length });

      // An emoji whose last user removed it frees its place.
      expect((await reaction(a.url, owner, 'DELETE', id, 1, full[1]!)).status).to.equal(204);
      expect((await reaction(a.url, alice, 'PUT', id, 1, extra)).status).to.equal(204);
      expect((await current(owner, id)).reactions.map((r) => r.emoji)).to.deep.equal([
        full[0],
        ...full.slice(2),
        extra,
      ]);
      expectError(await reaction(a.url, alice, 'PUT', id, 1, full[1]!), 403, 'FORBIDDEN');
      expect(await counters(knex(), id)).to.deep.equal({ lastSeq: 1, version: 5 + full.length });

      // The cap is per message: the next one takes its own.
      expect((await putMessage(a.url, alice, id, randomUUID(), { body: 'another' })).status).to.equal(201);
      for (const emoji of emojiRun(MAX_REACTIONS_PER_MESSAGE, 200))
        expect((await reaction(a.url, owner, 'PUT', id, 2, emoji)).status).to.equal(204);
      expect((await current(owner, id, 2)).reactions).to.have.length(MAX_REACTIONS_PER_MESSAGE);
    });

    it('is refused before the cap is checked when the message is deleted (MESSAGE_DELETED)', async () => {
      const { owner, alice, id } = await group();
      for (const emoji of emojiRun(MAX_REACTIONS_PER_MESSAGE))
        expect((await reaction(a.url, owner, 'PUT', id, 1, emoji)).status).to.equal(204);
      expect(
        (await request(a.url, 'DELETE', `/conversations/${id}/messages/1`, { token: alice.token })).status,
      ).to.equal(204);
      expectError(await reaction(a.url, owner, 'PUT', id, 1, emojiRun(1, 100)[0]!), 409, 'MESSAGE_DELETED');
    });

    it('holds when both nodes add different emoji at once: never more than the cap', async function () {
      this.timeout(60_000);
      const owner = await newUser(a);
      const members = await friendsOf(a, owner, 8);
      const { id } = await createGroup(a.url, owner, members);
      for (let round = 0; round < 3; round++) {
        const seq = round + 1;
        expect(
          (await putMessage(a.url, owner, id, randomUUID(), { body: `round ${round}` })).status,
        ).to.equal(201);
        const before = await counters(knex(), id);
        // Already a few on it, then 40 different ones at once: sockets of every member on both nodes, and REST.
        const start = round * 3;
        for (const emoji of emojiRun(start, 500))
          expect((await reaction(b.url, owner, 'PUT', id, seq, emoji)).status).to.equal(204);
        const sockets = await Promise.all(members.map((m, i) => socketOf(m, i % 2 ? a : b)));
        const wanted = emojiRun(40);
        const results = await Promise.all(
          wanted.map(async (emoji, i) => {
            if (i % 4 === 3) {
              const res = await reaction(
                i % 8 === 3 ? a.url : b.url,
                members[i % members.length]!,
                'PUT',
                id,
                seq,
                emoji,
              );
              return res.status === 204 ? 'ok' : (res.body.error?.code ?? String(res.status));
            }
            const ack = await sockets[i % sockets.length]!.emitWithAck('reaction:add', {
              conversationId: id,
              seq,
              emoji,
            });
            return ack.ok ? 'ok' : ack.error.code;
          }),
        );
        const accepted = results.filter((r) => r === 'ok').length;
        expect(accepted, `round ${round}`).to.equal(MAX_REACTIONS_PER_MESSAGE - start);
        expect(results.filter((r) => r !== 'ok')).to.deep.equal(
          Array.from({ length: wanted.length - accepted }, () => 'FORBIDDEN'),
        );
        const stored = (await storedState(knex(), id)).find((m) => m.seq === seq);
        expect(stored?.reactions, `round ${round}`).to.have.length(MAX_REACTIONS_PER_MESSAGE);
        expect((await current(owner, id, seq)).reactions).to.have.length(MAX_REACTIONS_PER_MESSAGE);
        // Only what was written took a version.
        expect(await counters(knex(), id)).to.deep.equal({
          lastSeq: seq,
          version: before.version + MAX_REACTIONS_PER_MESSAGE,
        });
        pool.closeAll();
      }
    });
  });
});
