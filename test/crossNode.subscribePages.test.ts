import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import type { PublicMessage } from '../lib/protocol/index.js';
import { putMessage, record } from './helpers/chat.js';
import { useTwoNodes } from './helpers/nodes.js';
import { editMessage, ownerAndTwoMembers } from './helpers/lifecycle.js';
import { request } from './helpers/http.js';

/**
 * Contract: `message:updated` (Message, current state) goes to the conversation's subscribers on every node; a
 * subscribe ack's page plus the events after it give the subscriber every change.
 *
 * A node follows a conversation from marks (what its subscribers were given), started by the first read of it.
 * That read used to start them whatever it was: a REST read, another socket's page or a send of this node, newer
 * than a page still being read for a subscriber already in the room; the states between the two snapshots then
 * counted as given to that subscriber and never reached it (lib/messaging/fanout.ts, `Starting`).
 *
 * The test holds the subscriber's page result for a moment after PostgreSQL answered it (a slow page: a big one,
 * a busy event loop), so the interleaving is deterministic.
 */
describe('a subscriber whose page is older than what its node delivered meanwhile (two nodes)', function () {
  this.timeout(30_000);
  const { a, b, pool } = useTwoNodes();

  for (const meanwhile of [
    'nothing',
    'a REST history read',
    'another socket subscribing',
    'a send on node a',
  ] as const)
    it(`still gets message:updated for a change committed after its page snapshot (on node a meanwhile: ${meanwhile})`, async () => {
      const { owner, alice, bob, id } = await ownerAndTwoMembers(a);
      const sent = await putMessage(b.url, alice, id, randomUUID(), { body: 'original' });
      expect(sent.status).to.equal(201);

      // Hold the next subscribe page on node a after PostgreSQL answered it.
      // knex.raw forwards to knex.context.raw, which can be wrapped.
      const knex = (a.services.db.knex as unknown as { context: { raw: (...args: unknown[]) => unknown } })
        .context;
      const originalRaw = knex.raw;
      let held: (() => void) | undefined;
      let answered: (() => void) | undefined;
      const pageAnswered = new Promise<void>((resolve) => (answered = resolve));
      let armed = true;
      // Node a reads an announced change's current state ('m.seq = ANY'): held until `releaseAnnounced`, so the
      // REST read below is answered first whatever the timing of the NOTIFY (it is a race in production).
      let releaseAnnounced: () => void = () => undefined;
      const announcedMayGo = new Promise<void>((resolve) => (releaseAnnounced = resolve));
      let announcedReads = 0;
      knex.raw = function (this: unknown, ...args: unknown[]) {
        const result = originalRaw.apply(this, args);
        if (typeof args[0] === 'string' && args[0].includes('m.seq = ANY(')) {
          announcedReads += 1;
          return (async () => {
            const rows = await (result as Promise<unknown>);
            await announcedMayGo;
            return rows;
          })();
        }
        if (armed && typeof args[0] === 'string' && args[0].includes('LEFT JOIN LATERAL')) {
          armed = false;
          return (async () => {
            const rows = await (result as Promise<unknown>);
            answered?.();
            await new Promise<void>((resolve) => (held = resolve));
            return rows;
          })();
        }
        return result;
      };

      try {
        const socket = await pool.open(a.url, bob);
        const updates = record(socket, 'message:updated');
        const ackPromise = socket.emitWithAck('conversation:subscribe', { conversationId: id });
        await pageAnswered;

        // Another node edits the message after the subscriber's page snapshot...
        const edit = await editMessage(b.url, alice, id, 1, 'edited');
        expect(edit.status).to.equal(200);
        // ...and someone reads the history over REST on node a meanwhile (snapshot after the edit).
        if (meanwhile === 'a REST history read') {
          const page = await request<{ messages: PublicMessage[] }>(
            a.url,
            'GET',
            `/conversations/${id}/messages`,
            {
              token: owner.token,
            },
          );
          expect(page.body.messages[0]?.body).to.equal('edited');
        } else if (meanwhile === 'a send on node a') {
          const res = await putMessage(a.url, owner, id, randomUUID(), { body: 'a new one' });
          expect(res.body.message?.version).to.equal(3);
        } else if (meanwhile === 'another socket subscribing') {
          const other = await pool.open(a.url, owner);
          const otherAck = (await other.emitWithAck('conversation:subscribe', { conversationId: id })) as {
            messages: PublicMessage[];
          };
          expect(otherAck.messages[0]?.body).to.equal('edited');
        }

        held?.();
        // The announcement of the edit has reached node a (its read is held); then it is let go.
        const until = Date.now() + 4000;
        while (announcedReads === 0 && Date.now() < until)
          await new Promise((resolve) => setTimeout(resolve, 20));
        expect(announcedReads, 'node a heard of the edit').to.be.greaterThan(0);
        releaseAnnounced();
        const ack = (await ackPromise) as { ok: boolean; messages: PublicMessage[]; version: number };
        expect(ack.ok).to.equal(true);
        expect(ack.messages[0]?.body, 'the page is from before the edit').to.equal('original');
        expect(ack.version).to.equal(1);

        // The edit must reach the subscriber (its page did not have it).
        const deadline = Date.now() + 4000;
        while (Date.now() < deadline && !updates.some((m) => m.version === 2)) {
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        expect(
          updates.map((m) => `${m.seq}:v${m.version}:${m.body}`),
          'message:updated events the subscriber got',
        ).to.include('1:v2:edited');
      } finally {
        knex.raw = originalRaw;
      }
    });
});
