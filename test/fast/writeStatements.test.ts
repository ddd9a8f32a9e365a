import { expect } from 'chai';
import type pg from 'pg';
import { writeBatches, type Announce } from '../../lib/messaging/statements.js';
import type { ConversationBatch, MessageCommand } from '../../lib/messaging/types.js';

/** A connection that records the statement it is given and answers every command with a new message. */
function recordingClient(): { client: pg.ClientBase; calls: pg.QueryConfig[] } {
  const calls: pg.QueryConfig[] = [];
  const client = {
    query(config: pg.QueryConfig) {
      calls.push(config);
      const values = config.values ?? [];
      const commands = config.name?.startsWith('xfchat_send_one')
        ? 1
        : (values[0] as unknown[]).length + (values[5] as unknown[]).length;
      const rows = Array.from({ length: commands }, (_, i) => ({
        r_ord: i + 1,
        r_status: 0,
        r_id: `id-${i + 1}`,
        r_seq: i + 1,
        r_version: i + 1,
        r_created_ms: 0,
        r_message: {},
      }));
      return Promise.resolve({ rows });
    },
  };
  return { client: client as unknown as pg.ClientBase, calls };
}

const C1 = '00000000-0000-4000-8000-000000000001';
const C2 = '00000000-0000-4000-8000-000000000002';
const SENDER = '00000000-0000-4000-8000-0000000000aa';
const SESSION = '00000000-0000-4000-8000-0000000000bb';
const send = (clientMsgId: string, replyToSeq: number | null = null): MessageCommand => ({
  kind: 'send',
  sessionId: SESSION,
  senderId: SENDER,
  clientMsgId,
  body: `body of ${clientMsgId}`,
  replyToSeq,
});

async function statementOf(batches: ConversationBatch[], announce?: Announce, wait = false) {
  const { client, calls } = recordingClient();
  const outcomes = await writeBatches(client, batches, announce, wait);
  expect(calls).to.have.length(1);
  for (const answers of outcomes) {
    expect(answers).to.not.equal('busy');
    for (const outcome of answers as Array<{ ok: boolean }>) expect(outcome.ok).to.equal(true);
  }
  return calls[0]!;
}

describe('messaging/statements: which write function a group commit calls', () => {
  it('a lone send calls xfchat_send_one with its fields and whether to wait', async () => {
    const call = await statementOf([{ conversationId: C1, commands: [send('a', 3)] }], undefined, true);
    expect(call.name).to.equal('xfchat_send_one_v3');
    expect(call.values).to.deep.equal([C1, SENDER, 'a', 'body of a', 3, true, SESSION]);
  });

  it('a lone send announced after the commit (MESSAGE_ANNOUNCE=after) still calls xfchat_send_one', async () => {
    const call = await statementOf([{ conversationId: C1, commands: [send('a')] }], {
      node: 'n1',
      inCommit: false,
    });
    expect(call.name).to.equal('xfchat_send_one_v3');
  });

  it('anything else calls xfchat_write: two sends, two conversations, a change, or a NOTIFY in the transaction', async () => {
    const cases: Array<[ConversationBatch[], Announce | undefined]> = [
      [[{ conversationId: C1, commands: [send('a'), send('b')] }], undefined],
      [
        [
          { conversationId: C1, commands: [send('a')] },
          { conversationId: C2, commands: [send('b')] },
        ],
        undefined,
      ],
      [[{ conversationId: C1, commands: [{ kind: 'delete', userId: 'u', seq: 1 }] }], undefined],
      [[{ conversationId: C1, commands: [send('a')] }], { node: 'n1', inCommit: true }],
    ];
    for (const [batches, announce] of cases) {
      expect((await statementOf(batches, announce)).name).to.equal('xfchat_write_v4');
    }
  });

  it('names each send’s and each change’s session (null for a command of no session), for the write to check', async () => {
    const call = await statementOf([
      { conversationId: C1, commands: [send('a'), { ...send('b'), sessionId: null }] },
      {
        conversationId: C2,
        commands: [
          { kind: 'delete', userId: SENDER, seq: 1, sessionId: SESSION },
          { kind: 'react', userId: SENDER, seq: 1, emoji: '👍' },
        ],
      },
    ]);
    expect(call.name).to.equal('xfchat_write_v4');
    expect(call.values?.slice(13)).to.deep.equal([
      [SESSION, null],
      [SESSION, null],
    ]);
  });
});
