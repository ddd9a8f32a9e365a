import { expect } from 'chai';
import { toWire, type Announcement } from '../lib/messaging/announcements.js';
import type { MessageCommand } from '../lib/messaging/types.js';
import type { PublicMessage } from '../lib/protocol/index.js';
import { announceAsAnotherNode, commitUnannounced, rows } from './helpers/chat.js';
import { ownerAndTwoMembers } from './helpers/lifecycle.js';
import { useNode } from './helpers/nodes.js';
import { connectSocket } from './helpers/sockets.js';
import { waitFor } from './helpers/waitFor.js';

/**
 * docs/messaging.md ("message:updated"): no subscriber gets "its first state (a deleted message's original text)
 * after a newer one."
 *
 * The first subscriber of a conversation on a node: its socket joins the room, then its page is read. While that
 * read runs the node has no record of the conversation yet ("starting", lib/messaging/fanout.ts). A change that
 * reaches the room then (another node's deletion, announced) of a message no page gave counts that message as given
 * in its changed state once the marks start: its first state, announced later by the node that wrote it, is passed
 * over. (It went out after the deletion as message:new, with the deleted text.)
 *
 * The test plays the other nodes (commits unannounced, then sends their announcements), as
 * test/subscribePage.test.ts does; a slow page read is made by a message whose JSON takes 1.5 s to build.
 */
describe('subscribe: a deletion heard while the first subscriber’s page is read', function () {
  this.timeout(30_000);
  const { server, pool } = useNode();
  const knex = () => server.services.db.knex;

  const commitElsewhere = (conversationId: string, commands: MessageCommand[]) =>
    commitUnannounced(server.services.db, conversationId, commands);

  /** The other node's announcement, arriving now. */
  const announce = (announcement: Announcement) => announceAsAnotherNode(knex(), announcement);

  /** xfchat_message_json() sleeps 1.5 s for a message whose body is SLOW: a page holding it reads slowly. */
  const SLOW = 'a slow message to read';
  async function slowPages(): Promise<void> {
    const [row] = await rows<{ def: string }>(
      knex(),
      "SELECT pg_get_functiondef('xfchat_message_json(messages)'::regprocedure) AS def",
    );
    const def = row?.def ?? '';
    const slowed = def.replace(
      /BEGIN/,
      `BEGIN\n    IF m.body = '${SLOW}' THEN PERFORM pg_sleep(1.5); END IF;`,
    );
    if (slowed === def) throw new Error('xfchat_message_json() does not read as expected');
    await knex().raw(slowed);
  }

  it('never pushes a deleted message’s first state (its text) after the deletion', async () => {
    const { owner, alice, bob, id } = await ownerAndTwoMembers(server);
    // Seq 1, in every page of the newest messages: its JSON is slow to build.
    await commitElsewhere(id, [
      { kind: 'send', senderId: owner.id, clientMsgId: 'slow', body: SLOW, replyToSeq: null },
    ]);
    await slowPages();

    // Alice's socket is the conversation's first subscriber on this node: it joins the room, then reads its page.
    const socket = pool.track(await connectSocket(server.url, alice.token));
    const events: Array<{ event: string; message: PublicMessage }> = [];
    socket.on('message:new', (message) => events.push({ event: 'message:new', message }));
    socket.on('message:updated', (message) => events.push({ event: 'message:updated', message }));
    const acked = socket.emitWithAck('conversation:subscribe', { conversationId: id });
    await waitFor(
      async () =>
        (
          await rows<{ n: number }>(
            knex(),
            "SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event = 'PgSleep'",
          )
        )[0]!.n > 0,
      { what: 'the page read under way' },
    );

    // Another node: Bob sends a message, the owner deletes it; the deletion's announcement arrives first (a third
    // node made it), while Alice's page is still being read.
    const [secret] = await commitElsewhere(id, [
      { kind: 'send', senderId: bob.id, clientMsgId: 'secret', body: 'the secret text', replyToSeq: null },
    ]);
    const [deleted] = await commitElsewhere(id, [{ kind: 'delete', userId: owner.id, seq: secret!.seq }]);
    await announce({ n: 'node-c', u: [[id, secret!.seq]] });
    await waitFor(() => events.some((e) => e.message.seq === secret!.seq), { what: 'the deletion at Alice' });
    const ack = await acked;
    expect(ack.ok).to.equal(true);

    // The first state's announcement, from the node that wrote it, arrives now.
    await announce({ n: 'node-a', m: [toWire(secret!)] });
    // A later message through this node: once Alice has it, everything before it has arrived.
    const [later] = await commitElsewhere(id, [
      { kind: 'send', senderId: owner.id, clientMsgId: 'later', body: 'later', replyToSeq: null },
    ]);
    await announce({ n: 'node-a', m: [toWire(later!)] });
    await waitFor(() => events.some((e) => e.message.seq === later!.seq), { what: 'the later message' });

    const ofSecret = events
      .filter((e) => e.message.seq === secret!.seq)
      .map((e) => ({ event: e.event, version: e.message.version, body: e.message.body }));
    expect(deleted!.deletedAt).to.not.equal(null);
    // Its deletion, and nothing after it: the first state, with its text, is passed over.
    expect(ofSecret).to.deep.equal([{ event: 'message:updated', version: deleted!.version, body: '' }]);
  });
});
