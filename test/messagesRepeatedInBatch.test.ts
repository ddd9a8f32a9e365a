import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import type { Ack } from '../lib/protocol/index.js';
import { putMessage } from './helpers/chat.js';
import { deleteMessage, ownerAndTwoMembers } from './helpers/lifecycle.js';
import { useNode } from './helpers/nodes.js';
import type { ClientSocket } from './helpers/sockets.js';
import { insertSession, type TestUser } from './helpers/users.js';
import { waitFor } from './helpers/waitFor.js';
import { signAccessToken } from '../lib/auth/tokens.js';
import { untilAStatementWaitsForALock } from './helpers/postgres.js';

/**
 * Guarantee 3 and docs/api.md: a clientMsgId sent again answers the stored message (`duplicate: true`), and
 * IDEMPOTENCY_CONFLICT compares the body with the stored one only while the message is unedited and not deleted.
 * Two retries that go in one group commit must get the answers each would get alone. (A repeat within a batch was
 * answered by comparing its body with the batch's first command, not by what was stored.)
 */
/** A send's body, and the seq it replies to. */
interface Retry {
  body: string;
  replyToSeq: number;
}

describe('a clientMsgId sent again twice within one batch', function () {
  const { server, pool } = useNode();

  /**
   * Sends 30 other messages, then the two retries: the burst keeps the conversation's actor busy, so the retries
   * queue behind it and go in one batch. Answers the retries' acks.
   */
  async function retriesBehindABurst(
    socket: ClientSocket,
    conversationId: string,
    clientMsgId: string,
    sends: [string | Retry, string | Retry],
  ): Promise<Ack[]> {
    const burst = Array.from({ length: 30 }, (_, i) =>
      socket.emitWithAck('message:send', { conversationId, clientMsgId: randomUUID(), body: `burst ${i}` }),
    );
    const retries = sends.map((send) =>
      socket.emitWithAck('message:send', {
        conversationId,
        clientMsgId,
        ...(typeof send === 'string' ? { body: send } : send),
      }),
    );
    await Promise.all(burst);
    return await Promise.all(retries);
  }

  const outcome = (ack: Ack) =>
    ack.ok ? `duplicate: ${String((ack as { duplicate?: boolean }).duplicate)}` : ack.error.code;

  it('answers both with the stored message once it was deleted, whatever their bodies', async () => {
    const { alice, id } = await ownerAndTwoMembers(server);
    const clientMsgId = randomUUID();
    expect((await putMessage(server.url, alice, id, clientMsgId, { body: 'first' })).status).to.equal(201);
    expect((await deleteMessage(server.url, alice, id, 1)).status).to.equal(204);
    const socket = await pool.open(server.url, alice);
    for (let attempt = 0; attempt < 3; attempt++) {
      const acks = await retriesBehindABurst(socket, id, clientMsgId, ['retry one', 'retry two']);
      expect(acks.map(outcome), `attempt ${attempt + 1}`).to.deep.equal([
        'duplicate: true',
        'duplicate: true',
      ]);
    }
  });

  it('answers a retry with the stored body with the stored message, behind one with another body', async () => {
    const { alice, id } = await ownerAndTwoMembers(server);
    const clientMsgId = randomUUID();
    expect((await putMessage(server.url, alice, id, clientMsgId, { body: 'stored' })).status).to.equal(201);
    const socket = await pool.open(server.url, alice);
    for (let attempt = 0; attempt < 3; attempt++) {
      const acks = await retriesBehindABurst(socket, id, clientMsgId, ['another body', 'stored']);
      expect(acks.map(outcome), `attempt ${attempt + 1}`).to.deep.equal([
        'IDEMPOTENCY_CONFLICT',
        'duplicate: true',
      ]);
    }
  });

  it('stores a retry that replies to an existing seq, behind a first refused for replying to none', async () => {
    const { alice, id } = await ownerAndTwoMembers(server);
    const socket = await pool.open(server.url, alice);
    const clientMsgId = randomUUID();
    const acks = await retriesBehindABurst(socket, id, clientMsgId, [
      { body: 'a reply', replyToSeq: 1000 },
      { body: 'a reply', replyToSeq: 1 },
    ]);
    expect(acks.map(outcome)).to.deep.equal(['VALIDATION_FAILED', 'duplicate: false']);
    const stored = acks[1] as Ack & { message?: { seq: number; replyToSeq: number | null } };
    expect(stored.message?.replyToSeq).to.equal(1);
    expect(stored.message?.seq).to.equal(31);
  });
  describe('from two sessions of one user, the first of them ended while both waited', function () {
    /** Another session of `user`'s (a second device), with its access token. */
    async function secondDevice(user: TestUser): Promise<TestUser> {
      const sessionId = await insertSession(server.services.db.knex, user.id);
      const { auth } = server.services.config;
      return {
        ...user,
        sessionId,
        token: signAccessToken({ userId: user.id, sessionId }, auth, Date.now()).token,
      };
    }

    /**
     * `first` then `second` send the same clientMsgId and body while the conversation's row is locked and
     * `ahead`'s send waits for it, so they go in one batch; `ended`'s session ends before the lock goes. Answers
     * both statuses.
     */
    async function inOneBatch(
      id: string,
      ahead: TestUser,
      first: TestUser,
      second: TestUser,
      ended: TestUser,
    ) {
      const { knex } = server.services.db;
      const lock = await knex.transaction();
      try {
        await lock.raw('SELECT id FROM conversations WHERE id = ? FOR UPDATE', [id]);
        // A send ahead of them holds the actor on the lock: the two queue behind it, into one batch.
        const sentAhead = putMessage(server.url, ahead, id, randomUUID(), { body: 'ahead' });
        const actor = await waitFor(() => server.services.messaging.registry.find(id), { what: 'the actor' });
        await untilAStatementWaitsForALock(knex, 'the send ahead to wait for the lock');
        const clientMsgId = randomUUID();
        const one = putMessage(server.url, first, id, clientMsgId, { body: 'same' });
        await waitFor(() => actor.queued === 1, { what: 'the first queued' });
        const two = putMessage(server.url, second, id, clientMsgId, { body: 'same' });
        await waitFor(() => actor.queued === 2, { what: 'the second queued' });
        await knex('sessions').where({ id: ended.sessionId }).delete();
        await lock.commit();
        expect((await sentAhead).status).to.equal(201);
        return (await Promise.all([one, two])).map((r) => r.status);
      } finally {
        if (!lock.isCompleted()) await lock.rollback();
      }
    }

    it('stores the repeat of the live session, and refuses only the ended one', async () => {
      const { owner, alice, id } = await ownerAndTwoMembers(server);
      const alice2 = await secondDevice(alice);
      expect(await inOneBatch(id, owner, alice2, alice, alice2)).to.deep.equal([401, 201]);
    });

    it('refuses the repeat of the ended session, though the first came in on a live one', async () => {
      const { owner, alice, id } = await ownerAndTwoMembers(server);
      const alice2 = await secondDevice(alice);
      expect(await inOneBatch(id, owner, alice, alice2, alice2)).to.deep.equal([201, 401]);
    });
  });
});
