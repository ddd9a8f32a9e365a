import { expect } from 'chai';
import { createGroup, expectOk, friendsOf, newUser, record, send, subscribe } from './helpers/chat.js';
import { holdPublishes } from './helpers/adapterHold.js';
import { request } from './helpers/http.js';
import { useTwoNodes } from './helpers/nodes.js';
import { waitFor } from './helpers/waitFor.js';

/**
 * A session ended on node A reaches node B through the Socket.IO adapter (`sockets:end`), a different LISTEN
 * connection from the one that carries message announcements (the control bus): nothing ordered the two, and the
 * adapter's NOTIFY may wait up to QUEUE_MAX_MS (2 s) behind others, or fail. Meanwhile the ended session's socket on
 * B received the group's messages committed after the logout's 204. The end now goes on the control bus too, before
 * the request is answered (lib/realtime/notifier.ts, SESSION_ENDS_CHANNEL): B hears it before any of them.
 */
describe('cross-node: a session ended on one node, and messages committed after it', function () {
  this.timeout(60_000);
  const { a, b, pool } = useTwoNodes();

  it('do not reach the ended session’s socket on the other node', async () => {
    const owner = await newUser(a);
    const [member] = await friendsOf(a, owner, 1);
    const group = await createGroup(a.url, owner, [member!]);
    const ownerOnA = await pool.open(a.url, owner);
    const memberOnB = await pool.open(b.url, member!);
    await subscribe(memberOnB, group.id);
    const got = record(memberOnB, 'message:new');
    expectOk(await send(ownerOnA, group.id, 'before the logout'));
    await waitFor(() => got.length === 1, { what: 'the first message on node B' });

    // Node A's adapter NOTIFYs are slow (its pool busy): held for a moment.
    const hold = holdPublishes(a);
    try {
      const res = await request(a.url, 'POST', '/auth/logout-all', { token: member!.token });
      expect(res.status).to.equal(204);
      expectOk(await send(ownerOnA, group.id, 'after the logout'));
      await new Promise((r) => setTimeout(r, 1000));
    } finally {
      hold.release();
    }
    expect(
      got.map((m) => m.body),
      'messages the ended session’s socket on B received',
    ).to.deep.equal(['before the logout']);
  });
});

/**
 * A session's end travels twice to every node (the adapter's `sockets:end` and the control bus's
 * `xfchat_session_ends`, which comes back to the ending node too): each socket of the session must hear
 * `session:ended` exactly once.
 */
describe('cross-node: session:ended is heard once per socket, on the ending node and the other', function () {
  this.timeout(60_000);
  const { a, b, pool } = useTwoNodes();

  for (const path of ['/auth/logout', '/auth/logout-all'] as const) {
    it(`${path}: one session:ended on each node's socket`, async () => {
      const user = await newUser(a);
      const onA = await pool.open(a.url, user);
      const onB = await pool.open(b.url, user);
      const heardA = record(onA, 'session:ended');
      const heardB = record(onB, 'session:ended');
      const res = await request(a.url, 'POST', path, { token: user.token });
      expect(res.status).to.equal(204);
      await waitFor(() => heardA.length >= 1 && heardB.length >= 1, { what: 'both sockets told' });
      // Both channels have delivered by now (the control bus before the answer; the adapter within moments).
      await new Promise((r) => setTimeout(r, 1500));
      expect(heardA, 'node A').to.deep.equal([{ reason: 'logged_out' }]);
      expect(heardB, 'node B').to.deep.equal([{ reason: 'logged_out' }]);
    });
  }
});
