import { randomUUID } from 'node:crypto';
import net from 'node:net';
import { expect } from 'chai';
import { CONTROL_APPLICATION_NAME } from '../lib/cluster/controlBus.js';
import { createGroup, friendsOf, newUser, record } from './helpers/chat.js';
import { request } from './helpers/http.js';
import { useTwoNodes } from './helpers/nodes.js';
import { adminQuery } from './helpers/postgres.js';
import { waitFor } from './helpers/waitFor.js';

/**
 * Node B's control-bus LISTEN connection goes silent without closing (a half-open link). pg-listen finds out at its
 * next paranoid check: SELECT every 10 s, which fails only at the driver's query timeout (DB_STATEMENT_TIMEOUT_MS +
 * 1 s). Only then does it emit 'reconnect'. The socket revalidation took THAT moment, less 5 s, as the start of the
 * gap, and what the control bus carried before (a user added to a group: conversation:added) was never told; it
 * takes the longest the connection can have been silent by then (lib/cluster/controlBus.ts, controlBusSilentAtMostMs).
 * A statement timeout of 4 s here (31 s by default) keeps the test short; the bound follows it.
 */
describe('cross-node: notices missed while the control bus was silently dead are told once it listens again', function () {
  this.timeout(150_000);
  const nodes = useTwoNodes({ env: { DB_STATEMENT_TIMEOUT_MS: '4000' } });
  const { a, b, pool } = nodes;

  /** The test database's port (an embedded PostgreSQL's is not 5432). */
  const databasePort = () => Number(new URL(nodes.databaseUrl).port || 5432);
  /** The in-process TCP socket whose local port is `port` (both nodes run in this process). */
  function socketOnPort(port: number): net.Socket | undefined {
    const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles();
    return handles.find(
      (h): h is net.Socket =>
        h instanceof net.Socket && h.localPort === port && h.remotePort === databasePort(),
    );
  }

  /** Whether node B's control bus hears an event published now, within `ms`. */
  async function bHears(ms: number): Promise<boolean> {
    const conversationId = randomUUID();
    let heard = false;
    const off = b.services.controlBus.subscribe((e) => {
      if (e.conversationId === conversationId) heard = true;
    });
    try {
      await a.services.controlBus.publish({
        type: 'membership.changed',
        conversationId,
        userId: randomUUID(),
      });
      const until = Date.now() + ms;
      while (!heard && Date.now() < until) await new Promise((r) => setTimeout(r, 25));
      return heard;
    } finally {
      off();
    }
  }

  for (const detectedAtOnce of [true, false]) {
    it(`a user added to a group on node A while node B’s control bus was silently dead hears conversation:added on B${detectedAtOnce ? ' (control: the dead connection is found at once)' : ''}`, async () => {
      const owner = await newUser(a);
      const [added] = await friendsOf(a, owner, 1);
      const group = await createGroup(a.url, owner, []);
      const onB = await pool.open(b.url, added!);
      const heard = record(onB, 'conversation:added');
      expect(await bHears(5000), 'node B hears the control bus before the fault').to.equal(true);

      // Find node B's LISTEN socket among this database's control connections, and make it silent.
      const database = new URL(nodes.databaseUrl).pathname.slice(1);
      const rows = (
        await adminQuery(
          `SELECT pid, client_port AS port FROM pg_stat_activity WHERE application_name = $1 AND datname = $2`,
          [CONTROL_APPLICATION_NAME, database],
        )
      ).rows as Array<{ pid: number; port: number }>;
      expect(rows).to.have.length(2);
      let silenced: { pid: number; socket: net.Socket } | undefined;
      for (const row of rows) {
        const socket = socketOnPort(row.port);
        if (!socket) continue;
        socket.pause();
        if (!(await bHears(1500))) {
          silenced = { pid: row.pid, socket };
          break;
        }
        socket.resume();
      }
      expect(silenced, "node B's control bus socket").to.not.equal(undefined);

      try {
        const res = await request(a.url, 'POST', `/conversations/${group.id}/participants`, {
          token: owner.token,
          body: { userId: added!.id },
        });
        expect(res.status).to.equal(201);
        // The control: the link's death is noticed right away (as a RST would tell it).
        if (detectedAtOnce) silenced!.socket.destroy();

        // Node B finds its control connection dead (paranoid check + query timeout) and listens again.
        await waitFor(async () => bHears(500), {
          what: "node B's control bus listening again",
          timeoutMs: 90_000,
          intervalMs: 1000,
        });
        // Its check of the sockets, and the notices it tells, follow the reconnect.
        await waitFor(() => heard.length >= 1, {
          what: 'conversation:added on node B after its control bus listens again',
          timeoutMs: 10_000,
        });
        expect(heard[0]!.id).to.equal(group.id);
      } finally {
        silenced?.socket.resume();
      }
    });
  }
});
