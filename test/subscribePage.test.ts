import { expect } from 'chai';
import { toWire, type Announcement } from '../lib/messaging/announcements.js';
import type { MessageCommand } from '../lib/messaging/types.js';
import type { PublicMessage } from '../lib/protocol/index.js';
import {
  announceAsAnotherNode,
  commitUnannounced,
  expectOk,
  record,
  send,
  subscribe,
} from './helpers/chat.js';
import { ownerAndTwoMembers } from './helpers/lifecycle.js';
import { useNode } from './helpers/nodes.js';
import { connectSocket } from './helpers/sockets.js';
import { waitFor } from './helpers/waitFor.js';

/**
 * A socket joins a conversation's room before it reads its page, so a page can show what the node's other
 * subscribers have not been given yet: another node's writes whose announcements are still on their way. When
 * they arrive, the node gives them to the others and leaves the subscriber whose page gave them out
 * (lib/messaging/fanout.ts). Here the test plays the other node: it commits without announcing, then sends the
 * announcements itself, on the channel the nodes use.
 */
describe('a subscriber’s page and the announcements still on their way', function () {
  this.timeout(30_000);
  const { server, pool } = useNode();
  const knex = () => server.services.db.knex;

  /** Commits as another node would, its announcements still on their way. */
  const commitElsewhere = (conversationId: string, commands: MessageCommand[]) =>
    commitUnannounced(server.services.db, conversationId, commands);

  /** The other node's announcement, arriving now. */
  const announce = (announcement: Announcement) => announceAsAnotherNode(knex(), announcement);

  const shown = (messages: readonly PublicMessage[]) =>
    messages.map((m) => ({ seq: m.seq, version: m.version, body: m.body }));

  it('gives a late message’s first state to the subscribers before, and not to one whose page showed it deleted', async () => {
    const { owner, alice, bob, id } = await ownerAndTwoMembers(server);
    // Alice's socket follows the conversation: the node's record of what its subscribers were given starts here.
    const early = pool.track(await connectSocket(server.url, alice.token));
    await subscribe(early, id);
    const earlyNew = record(early, 'message:new');
    const earlyUpdated = record(early, 'message:updated');

    // The other node: bob sends two messages, the owner deletes the first.
    const [first, second] = await commitElsewhere(id, [
      { kind: 'send', senderId: bob.id, clientMsgId: 'first', body: 'first', replyToSeq: null },
      { kind: 'send', senderId: bob.id, clientMsgId: 'second', body: 'second', replyToSeq: null },
    ]);
    const [deleted] = await commitElsewhere(id, [{ kind: 'delete', userId: owner.id, seq: first!.seq }]);

    // Bob's socket subscribes before the announcements arrive: its page shows the deletion.
    const late = pool.track(await connectSocket(server.url, bob.token));
    const lateNew = record(late, 'message:new');
    const lateUpdated = record(late, 'message:updated');
    const page = await subscribe(late, id);
    expect(shown(page.messages)).to.deep.equal([
      { seq: 1, version: deleted!.version, body: '' },
      { seq: 2, version: second!.version, body: 'second' },
    ]);

    // The announcements arrive: the two sends in their first state, then the deletion (by seq, read from messages).
    await announce({ n: 'another-node', m: [toWire(first!), toWire(second!)] });
    await announce({ n: 'another-node', u: [[id, first!.seq]] });
    await waitFor(() => earlyUpdated.length === 1, { what: 'the deletion at the early subscriber' });
    // A send through this node goes to both, after all that.
    const third = expectOk(await send(early, id, 'third')).message;
    await waitFor(() => lateNew.length > 0 && earlyNew.length === 3, { what: 'the third message at both' });

    expect(shown(earlyNew)).to.deep.equal(shown([first!, second!, third]));
    expect(shown(earlyUpdated)).to.deep.equal(shown([deleted!]));
    expect(shown(lateNew), 'the late subscriber: nothing its page gave').to.deep.equal(shown([third]));
    expect(lateUpdated).to.deep.equal([]);
  });

  it('gives a subscriber a change newer than its page, and a message after it, as it gives them to everyone', async () => {
    const { owner, alice, bob, id } = await ownerAndTwoMembers(server);
    const early = pool.track(await connectSocket(server.url, alice.token));
    await subscribe(early, id);
    const [sent] = await commitElsewhere(id, [
      { kind: 'send', senderId: bob.id, clientMsgId: 'sent', body: 'sent', replyToSeq: null },
    ]);
    const late = pool.track(await connectSocket(server.url, bob.token));
    const lateNew = record(late, 'message:new');
    const lateUpdated = record(late, 'message:updated');
    const page = await subscribe(late, id);
    expect(shown(page.messages)).to.deep.equal(shown([sent!]));
    // After its page: an edit on the other node, and a send on it, announced after the first send's.
    const [edited] = await commitElsewhere(id, [
      { kind: 'edit', userId: bob.id, seq: sent!.seq, body: 'edited after the page' },
    ]);
    const [after] = await commitElsewhere(id, [
      { kind: 'send', senderId: owner.id, clientMsgId: 'after', body: 'after', replyToSeq: null },
    ]);
    await announce({ n: 'another-node', m: [toWire(sent!)] });
    await announce({ n: 'another-node', u: [[id, sent!.seq]] });
    await announce({ n: 'another-node', m: [toWire(after!)] });
    await waitFor(() => lateNew.length === 1 && lateUpdated.length === 1, { what: 'the edit and the send' });
    expect(shown(lateUpdated)).to.deep.equal(shown([edited!]));
    expect(shown(lateNew)).to.deep.equal(shown([after!]));
  });
});
