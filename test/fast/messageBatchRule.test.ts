import { expect } from 'chai';
import { messageBatchRule, type MessageCommand } from '../../lib/messaging/types.js';

const send = (
  senderId: string,
  clientMsgId: string,
  body: string,
  replyToSeq: number | null = null,
): MessageCommand => ({
  kind: 'send',
  senderId,
  clientMsgId,
  body,
  replyToSeq,
});

/** Which commands one batch admits, in order, until the first it refuses. */
function admitted(commands: readonly MessageCommand[]): number {
  const rule = messageBatchRule();
  let n = 0;
  while (n < commands.length && rule(commands[n] as MessageCommand)) n += 1;
  return n;
}

describe('messageBatchRule', () => {
  it('batches sends with sends and changes with changes', () => {
    const edit: MessageCommand = { kind: 'edit', userId: 'alice', seq: 1, body: 'x' };
    expect(admitted([send('alice', 'a', 'x'), send('bob', 'b', 'y'), edit])).to.equal(2);
    expect(admitted([edit, { kind: 'delete', userId: 'alice', seq: 2 }, send('alice', 'a', 'x')])).to.equal(
      2,
    );
  });

  it('admits a repeated clientMsgId with the same body, and ends the batch before one with another body', () => {
    expect(admitted([send('alice', 'a', 'x'), send('alice', 'a', 'x'), send('alice', 'b', 'y')])).to.equal(3);
    expect(admitted([send('alice', 'a', 'x'), send('alice', 'b', 'y'), send('alice', 'a', 'z')])).to.equal(2);
    // Idempotency is per sender: another sender's same clientMsgId is another message.
    expect(admitted([send('alice', 'a', 'x'), send('bob', 'a', 'z')])).to.equal(2);
  });

  it('ends the batch before a repeat that replies to another seq: a first refused for its reply must not refuse it', () => {
    expect(admitted([send('alice', 'a', 'x', 3), send('alice', 'a', 'x', 3)])).to.equal(2);
    expect(admitted([send('alice', 'a', 'x', 99), send('alice', 'a', 'x', 1)])).to.equal(1);
    expect(admitted([send('alice', 'a', 'x'), send('alice', 'a', 'x', 1)])).to.equal(1);
  });
});
