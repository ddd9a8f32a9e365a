import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import type { Ack } from '../lib/protocol/index.js';
import { putMessage } from './helpers/chat.js';
import { deleteMessage, ownerAndTwoMembers } from './helpers/lifecycle.js';
import { useNode } from './helpers/nodes.js';
import type { ClientSocket } from './helpers/sockets.js';

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
});
