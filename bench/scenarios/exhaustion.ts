import pg from 'pg';
import type { BenchContext } from '../context.js';
import type { ExhaustionRecord } from '../report.js';
import { seedConversations } from '../seed.js';
import { connect, sendMessage, subscribe } from '../socketLoad.js';
import type { Ack, SubscribeResult } from '../../lib/protocol/index.js';

const POOL_SIZE = 2;
const ACQUIRE_TIMEOUT_MS = 1000;

async function timed<T>(work: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const t0 = performance.now();
  const value = await work();
  return { value, ms: Math.round(performance.now() - t0) };
}

async function httpOutcome(url: string, token?: string): Promise<string> {
  const response = await fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  const body = (await response.json()) as { error?: { code?: string } };
  return `${response.status}${body.error?.code ? ` ${body.error.code}` : ''}`;
}

/**
 * A node with a pool of 2 and a 1 s acquire timeout; an outside connection locks the messages table, two
 * subscribes (which read history) block on it holding both pool connections; then REST requests and sends
 * must fail with DB_UNAVAILABLE within the acquire timeout, /healthz must still answer, and once the lock is
 * released the held requests finish and sends work again, with no seq used by the failed ones.
 */
export async function runExhaustion(ctx: BenchContext): Promise<void> {
  const seeded = await seedConversations(ctx.knex, ctx.auth, 2, 2);
  const conversationId = seeded.conversations[0]!.id;
  const [alice, bob] = seeded.users as [{ id: string; token: string }, { id: string; token: string }];
  const node = await ctx.startNode({
    poolSize: POOL_SIZE,
    label: 'exhaustion',
    env: { DB_ACQUIRE_TIMEOUT_MS: String(ACQUIRE_TIMEOUT_MS) },
  });
  ctx.progress.begin('exhaustion');
  const socket = await connect(node.url, alice.token, alice.id);
  // A socket's subscribes are answered one at a time, so each held subscribe has a socket of its own.
  const holders = [
    await connect(node.url, alice.token, alice.id),
    await connect(node.url, bob.token, bob.id),
  ];
  let held: Array<Promise<{ value: Ack<SubscribeResult>; ms: number }>> = [];
  const locker = new pg.Client({ connectionString: ctx.database.url, application_name: 'bench-locker' });
  await locker.connect();
  let locked = false;
  try {
    const subscribed = await subscribe(socket, { conversationId, limit: 1 }, 10_000);
    if (!subscribed.ok) throw new Error(`subscribe failed: ${subscribed.error.code}`);
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE messages IN ACCESS EXCLUSIVE MODE');
    locked = true;
    held = holders.map((holder) => timed(() => subscribe(holder, { conversationId, limit: 10 }, 60_000)));
    // Both pool connections are taken once two of the node's backends wait on the lock.
    const deadline = performance.now() + 10_000;
    for (;;) {
      const rows = await ctx.database.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE application_name = 'xfchat' AND datname = current_database()
            AND wait_event_type = 'Lock' AND wait_event <> 'object'`,
      );
      if ((rows[0]?.n ?? 0) >= POOL_SIZE) break;
      if (performance.now() > deadline) throw new Error('the held requests never blocked on the lock');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }

    const probes = await Promise.all([
      timed(() =>
        httpOutcome(`${node.url}/conversations/${conversationId}/messages?after=0`, bob.token),
      ).then((r) => ({ what: 'GET /conversations/:id/messages', outcome: r.value, ms: r.ms })),
      timed(() => httpOutcome(`${node.url}/conversations`, bob.token)).then((r) => ({
        what: 'GET /conversations',
        outcome: r.value,
        ms: r.ms,
      })),
      timed(() =>
        sendMessage(socket, { conversationId, clientMsgId: 'exhausted-1', body: 'lost?' }, 30_000),
      ).then((r) => ({
        what: 'message:send',
        outcome: r.value.ok ? `ok seq ${r.value.message.seq}` : r.value.error.code,
        ms: r.ms,
      })),
      timed(() => httpOutcome(`${node.url}/readyz`)).then((r) => ({
        what: 'GET /readyz',
        outcome: r.value,
        ms: r.ms,
      })),
      timed(() => httpOutcome(`${node.url}/healthz`)).then((r) => ({
        what: 'GET /healthz',
        outcome: r.value,
        ms: r.ms,
      })),
    ]);

    const released = performance.now();
    await locker.query('COMMIT');
    locked = false;
    const heldResults = await Promise.all(held);
    const recoveryMs = performance.now() - released;
    const after = await sendMessage(
      socket,
      { conversationId, clientMsgId: 'recovered-1', body: 'after the pool freed' },
      10_000,
    );
    const record: ExhaustionRecord = {
      poolSize: POOL_SIZE,
      acquireTimeoutMs: ACQUIRE_TIMEOUT_MS,
      probes,
      heldOutcomes: heldResults.map((h) =>
        h.value.ok ? `ok after ${h.ms} ms` : `${h.value.error.code} after ${h.ms} ms`,
      ),
      recoveryMs: Math.round(recoveryMs),
      afterRecovery: after.ok ? 'message:send ok' : `message:send ${after.error.code}`,
      firstSeqAfterRecovery: after.ok ? after.message.seq : null,
    };
    ctx.results.exhaustion = record;
    ctx.progress.end(probes.map((p) => `${p.what}: ${p.outcome} in ${p.ms} ms`).join('; '));
  } finally {
    if (locked) await locker.query('ROLLBACK');
    await locker.end();
    for (const s of [socket, ...holders]) s.close();
    // After a failure above, the held subscribes end with the sockets; the failure is what is reported.
    await Promise.allSettled(held);
    await node.stop();
  }
}
