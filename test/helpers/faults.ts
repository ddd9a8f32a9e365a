import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import type { Knex } from 'knex';
import type { ControlBus } from '../../lib/cluster/controlBus.js';
import type { PublicMessage } from '../../lib/protocol/index.js';
import { rows, seqState } from './chat.js';
import { request } from './http.js';
import { adminQuery } from './postgres.js';
import type { ResilientClient } from './resilientClient.js';
import type { TestUser } from './users.js';
import { waitFor } from './waitFor.js';

/** Shared checks of the fault tests: what was acked is stored once, in a gap-free order. */

/** A direct conversation between two friends, created over REST on `url`. */
export async function directConversation(url: string, owner: TestUser, other: TestUser): Promise<string> {
  const res = await request<{ conversation: { id: string } }>(url, 'POST', '/conversations', {
    token: owner.token,
    body: { type: 'direct', userId: other.id },
  });
  if (res.status !== 201 && res.status !== 200)
    throw new Error(`creating a conversation: ${res.status} ${res.text}`);
  return res.body.conversation.id;
}

/**
 * The stored messages of a conversation agree with what clients were told: every acked clientMsgId is stored
 * exactly once with the acked id and seq, nothing else is stored, and seq runs 1..n with last_seq = n.
 */
export async function expectStoredExactlyAsAcked(
  knex: Knex,
  conversationId: string,
  acked: ReadonlyMap<string, PublicMessage>,
): Promise<void> {
  const stored = await rows<{ id: string; client_msg_id: string; seq: number }>(
    knex,
    'SELECT id, client_msg_id, seq FROM messages WHERE conversation_id = ? ORDER BY seq',
    [conversationId],
  );
  const byClientId = new Map<string, { id: string; seq: number }>();
  for (const row of stored) {
    expect(byClientId.has(row.client_msg_id), `clientMsgId ${row.client_msg_id} stored twice`).to.equal(
      false,
    );
    byClientId.set(row.client_msg_id, { id: row.id, seq: row.seq });
  }
  for (const [clientMsgId, message] of acked) {
    expect(byClientId.get(clientMsgId), `acked ${clientMsgId}`).to.deep.equal({
      id: message.id,
      seq: message.seq,
    });
  }
  expect(stored.length, 'only acked messages are stored').to.equal(acked.size);
  const { lastSeq, seqs } = await seqState(knex, conversationId);
  expect(seqs).to.deep.equal(Array.from({ length: seqs.length }, (_, i) => i + 1));
  expect(lastSeq).to.equal(seqs.length);
}

/** The acks of some clients for one conversation, merged. */
export function ackedIn(
  clients: readonly ResilientClient[],
  conversationId: string,
): Map<string, PublicMessage> {
  const merged = new Map<string, PublicMessage>();
  for (const client of clients) {
    for (const [id, message] of client.acked)
      if (message.conversationId === conversationId) merged.set(id, message);
  }
  return merged;
}

/**
 * Terminates every session of the database at `databaseUrl` but the caller's own: the nodes' pools, their LISTEN
 * connections, all. Returns how many it terminated.
 */
export async function terminateAll(databaseUrl: string): Promise<number> {
  const result = await adminQuery(
    `SELECT count(*)::int AS n FROM (
       SELECT pg_terminate_backend(pid) AS done FROM pg_stat_activity
       WHERE datname = $1 AND pid <> pg_backend_pid()) t WHERE done`,
    [new URL(databaseUrl).pathname.slice(1)],
  );
  return (result.rows[0] as { n: number }).n;
}

/**
 * Every control event committed before this call has been heard by the node of `bus`: a marker published now is
 * heard after them (PostgreSQL delivers notifications in commit order, and the bus hands each to its handlers at
 * once). A test that warms a node's membership cache waits for this first, or the node's own late
 * `membership.changed` of a conversation it just created can drop the entry the test relies on.
 */
export async function controlBusSettled(bus: ControlBus): Promise<void> {
  await expectControlBusDelivers(bus, bus);
}

/** The control bus carries an event from one node to another (retrying while a LISTEN connection comes back). */
export async function expectControlBusDelivers(from: ControlBus, to: ControlBus): Promise<void> {
  const conversationId = randomUUID();
  let received = false;
  const unsubscribe = to.subscribe((event) => {
    if (event.conversationId === conversationId) received = true;
  });
  try {
    await waitFor(
      async () => {
        // A publish that fails while the connection comes back throws; waitFor retries it.
        if (!received)
          await from.publish({ type: 'membership.changed', conversationId, userId: randomUUID() });
        return received;
      },
      { timeoutMs: 20_000, intervalMs: 250, what: 'a control event to cross nodes' },
    );
  } finally {
    unsubscribe();
  }
}

/**
 * The pids of a database's LISTEN connections of one kind, by their `application_name`: the control bus's
 * (`CONTROL_APPLICATION_NAME`) or the Socket.IO adapter's (`ADAPTER_APPLICATION_NAME`), one per node. Told by their
 * last statement: a `LISTEN`, or the liveness check run on the connection every 10 s, after which it no longer shows
 * its `LISTEN`: pg-listen's `SELECT pg_backend_pid()` on the control bus's, the adapter pool's `SELECT 1` on the
 * adapter's (lib/realtime/adapterPool.ts; the adapter's other connections of that name send NOTIFYs).
 */
export async function listeningPids(databaseName: string, applicationName: string): Promise<number[]> {
  const result = await adminQuery(
    `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = $2
        AND (query LIKE 'LISTEN%' OR query IN ('SELECT pg_backend_pid()', 'SELECT 1'))`,
    [databaseName, applicationName],
  );
  return (result.rows as Array<{ pid: number }>).map((row) => row.pid);
}
