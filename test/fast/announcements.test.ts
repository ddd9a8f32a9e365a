import { expect } from 'chai';
import { announcementsOf } from '../../lib/messaging/announcements.js';
import type { PublicMessage } from '../../lib/protocol/index.js';

const message = (conversationId: string, seq: number, body: string): PublicMessage => ({
  id: `00000000-0000-4000-8000-${String(seq).padStart(12, '0')}`,
  conversationId,
  seq,
  senderId: '00000000-0000-4000-8000-00000000000a',
  clientMsgId: `c-${seq}`,
  body,
  createdAt: '2026-11-30T12:00:00.000Z',
  replyToSeq: seq > 1 ? seq - 1 : null,
  editedAt: null,
  deletedAt: null,
  reactions: [],
  version: seq,
});

describe('messaging/fanout: the announcements of one commit (MESSAGE_ANNOUNCE=after)', () => {
  it('carries small messages whole, with every field a node needs to deliver them', () => {
    const sent = message('c1', 7, 'hello');
    const [only, ...rest] = announcementsOf('node-a', { created: [sent], repeated: [], changed: [] });
    expect(rest).to.deep.equal([]);
    expect(only).to.deep.equal({
      n: 'node-a',
      m: [['c1', 7, sent.id, sent.senderId, 'c-7', 'hello', Date.parse(sent.createdAt), 6, 7]],
    });
  });

  it('announces nothing for a commit that wrote nothing', () => {
    expect(announcementsOf('node-a', { created: [], repeated: [], changed: [] })).to.deep.equal([]);
  });

  it('splits a large commit into NOTIFYs under 8000 bytes, keeping each conversation in seq order', () => {
    const created: PublicMessage[] = [];
    for (let c = 0; c < 12; c++) {
      for (let seq = 1; seq <= 5; seq++) created.push(message(`conv-${c}`, seq, 'x'.repeat(300)));
    }
    const payloads = announcementsOf('node-a', { created, repeated: [], changed: [] });
    expect(payloads.length).to.be.above(1);
    for (const payload of payloads) expect(Buffer.byteLength(JSON.stringify(payload))).to.be.below(8000);
    const items = payloads.flatMap((p) => p.m ?? []);
    expect(items.map((m) => `${m[0]}:${m[1]}`)).to.deep.equal(
      created.map((m) => `${m.conversationId}:${m.seq}`),
    );
  });

  it('announces a conversation with a very long message by its seq range, repeats and changes by seq', () => {
    const payloads = announcementsOf('node-a', {
      created: [
        message('small', 3, 'short'),
        message('long', 2, 'short'),
        message('long', 3, 'y'.repeat(3900)),
        message('long', 4, 'short again'),
      ],
      repeated: [message('small', 1, 'sent again')],
      changed: [message('edited', 9, 'new text')],
    });
    expect(payloads).to.have.length(1);
    const [payload] = payloads;
    expect(payload!.m?.map((m) => [m[0], m[1]])).to.deep.equal([['small', 3]]);
    expect(payload!.r).to.deep.equal([
      ['long', 2, 4],
      ['small', 1, 1],
    ]);
    expect(payload!.u).to.deep.equal([['edited', 9]]);
  });

  it('puts a body of multi-byte characters under the limit by bytes, not characters', () => {
    // 1000 characters of 3 bytes each: 3000 bytes, each message small enough to travel whole.
    const created = Array.from({ length: 6 }, (_, i) => message('c', i + 1, '€'.repeat(1000)));
    const payloads = announcementsOf('node-a', { created, repeated: [], changed: [] });
    for (const payload of payloads) expect(Buffer.byteLength(JSON.stringify(payload))).to.be.below(8000);
    expect(payloads.flatMap((p) => p.m ?? [])).to.have.length(6);
  });
});
