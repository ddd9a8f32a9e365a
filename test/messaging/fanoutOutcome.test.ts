import { expect } from 'chai';
import type { Knex } from 'knex';
import { loadDatabaseConfig } from '../../lib/config.js';
import { createDatabase, type Database } from '../../lib/db.js';
import { createLogger } from '../../lib/logger.js';
import { createFanout, type Fanout } from '../../lib/messaging/fanout.js';
import type { MessageCommand } from '../../lib/messaging/types.js';
import { commitUnannounced, rows } from '../helpers/chat.js';
import { createTestDatabase, untilAStatementWaitsForALock } from '../helpers/postgres.js';
import { testConfig } from '../helpers/server.js';
import { insertUser } from '../helpers/users.js';
import { waitFor } from '../helpers/waitFor.js';

const logger = createLogger('silent');

/**
 * lib/messaging/fanout.ts, outcomeUnknown / settleOutcomes / goodbye; docs/messaging.md, "A write call whose outcome
 * the node never learns": "at the heartbeat at least a second later, it waits for the conversation's row lock (the
 * write, if it still runs, holds it), then catches its own subscribers up on the conversation and asks the other
 * nodes to catch up (again at each heartbeat while PostgreSQL does not answer). Whatever the write committed reaches
 * every subscriber within a few seconds, with or without a retry; its shutdown asks the others to catch up too while
 * one is unsettled."
 */
describe('fanout: settling writes of unknown outcome (PostgreSQL)', function () {
  this.timeout(30_000);
  let db: Database;
  let alice: string;
  let conversationId: string;
  let fanout: Fanout | undefined;
  let sent = 0;

  before(async () => {
    const url = await createTestDatabase();
    db = createDatabase(loadDatabaseConfig({ DATABASE_URL: url }), logger);
    alice = (await insertUser(db.knex, testConfig(url))).id;
    const [row] = await rows<{ id: string }>(
      db.knex,
      "INSERT INTO conversations (type, title) VALUES ('group', 't') RETURNING id",
    );
    conversationId = row!.id;
    await db.knex('conversation_participants').insert({ conversation_id: conversationId, user_id: alice });
  });

  afterEach(() => fanout?.close());
  after(async () => {
    await db.close();
  });

  const sendCommand = (body: string): MessageCommand => ({
    kind: 'send',
    senderId: alice,
    clientMsgId: `unknown-outcome-${++sent}`,
    body,
    replyToSeq: null,
  });

  /**
   * `atNotice`, if given, is called as each notice is sent (not the heartbeats): whether the write is committed
   * then, kept with the notice.
   */
  async function startFanout(knex: Knex, atNotice?: () => Promise<boolean>) {
    const state = {
      delivered: [] as number[],
      notices: [] as Array<{ at: number; payload: unknown; committed?: Promise<boolean> }>,
    };
    fanout = await createFanout({
      bus: {
        listen: () => Promise.resolve(),
        notify: (_channel, payload) => {
          if ((payload as { b?: number }).b !== 1) {
            state.notices.push({ at: Date.now(), payload, committed: atNotice?.().catch(() => false) });
          }
          return Promise.resolve();
        },
      },
      knex,
      notify: {
        hasSubscribersHere: () => true,
        conversationsWithSubscribersHere: () => [conversationId],
        messagesCommitted: (messages) => state.delivered.push(...messages.map((m) => m.seq)),
        messagesUpdated: () => undefined,
      },
      nodeCount: () => Promise.resolve(2),
      logger,
      peerCheckMs: 20,
      peerSettleMs: 150,
      beatMs: 100,
      outcomeSettleMs: 200,
    });
    return { fanout, state };
  }

  it('the goodbye asks the other nodes to catch up only once the write still running has released its lock', async () => {
    const command = sendCommand('committed after the node gave up');
    const { clientMsgId } = command as { clientMsgId: string };
    // At each notice, whether the write is committed: read from another connection as the notice goes (the time
    // the test hears of the commit is no witness: the write's answer may come after the goodbye's lock is
    // granted, and an ask was noted 1 ms before it in 2 of 25 runs).
    const { fanout, state } = await startFanout(db.knex, async () => {
      const found = await rows(
        db.knex,
        'SELECT 1 FROM messages WHERE conversation_id = ? AND client_msg_id = ?',
        [conversationId, clientMsgId],
      );
      return found.length > 0;
    });
    // Past the two catch-ups of the node count's growth (150 ms apart), so the notices below are the goodbye's.
    await new Promise((resolve) => setTimeout(resolve, 400));
    state.notices.length = 0;

    // The write the node gave up on still runs in PostgreSQL: here it waits for the conversation's lock, which a
    // transaction holds; once that ends, it takes the lock and commits.
    const holder = await db.knex.transaction();
    await holder.raw('SELECT 1 FROM conversations WHERE id = ? FOR NO KEY UPDATE', [conversationId]);
    const write = commitUnannounced(db, conversationId, [command]);
    await untilAStatementWaitsForALock(db.knex, 'the write waits for the conversation');
    fanout.outcomeUnknown([conversationId]);

    // The node shuts down at once.
    const goodbye = fanout.goodbye();
    await new Promise((resolve) => setTimeout(resolve, 500));
    await holder.commit();
    await write;
    await goodbye;

    const asks = state.notices.filter((n) => (n.payload as { c?: number }).c === 1);
    expect(asks.length, 'the goodbye asked the others to catch up').to.be.greaterThan(0);
    expect(
      await asks.at(-1)!.committed,
      'the write committed at the last ask to catch up (asked before the commit, nobody reads it then)',
    ).to.equal(true);
  });

  it('a settle whose catch-up reads fail (PostgreSQL gone right after the FOR SHARE) is tried again at a later heartbeat', async () => {
    const [given] = await commitUnannounced(db, conversationId, [sendCommand('given')]);
    // The reads of the first settle's catch-up fail (PostgreSQL went away a moment after answering the FOR SHARE);
    // everything after them succeeds.
    let failReads = 0;
    let failedOnce = false;
    const flaky = new Proxy(db.knex, {
      get(target, prop, receiver) {
        if (prop !== 'raw') return Reflect.get(target, prop, receiver) as unknown;
        return (sql: string, bindings?: unknown) => {
          if (/FOR SHARE/.test(sql)) failReads = failedOnce ? 0 : 2;
          else if (failReads > 0 && /FROM messages m\s+WHERE m\.conversation_id = \?/.test(sql)) {
            failReads -= 1;
            failedOnce = true;
            return Promise.reject(new Error('Connection terminated unexpectedly'));
          }
          return (target.raw as (s: string, b?: unknown) => unknown)(sql, bindings);
        };
      },
    });
    const { fanout, state } = await startFanout(flaky);
    fanout.seen(conversationId, given!.seq, given!.version);
    await new Promise((resolve) => setTimeout(resolve, 400));

    // The write of unknown outcome committed (nobody was told).
    const [lost] = await commitUnannounced(db, conversationId, [sendCommand('committed, unannounced')]);
    state.notices.length = 0;
    fanout.outcomeUnknown([conversationId]);

    await waitFor(() => state.delivered.includes(lost!.seq), {
      what: 'the settled message delivered to this node’s subscribers',
      timeoutMs: 5000,
    });
    // The other nodes were asked once, after the first settle's lock wait: its retry is for this node's own reads.
    const asks = state.notices.filter((n) => (n.payload as { c?: number }).c === 1);
    expect(asks).to.have.length(1);
  });
});
