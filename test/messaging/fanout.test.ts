import { expect } from 'chai';
import { loadDatabaseConfig } from '../../lib/config.js';
import { createDatabase, type Database } from '../../lib/db.js';
import { createLogger } from '../../lib/logger.js';
import { createFanout, type Fanout } from '../../lib/messaging/fanout.js';
import { knexConnections } from '../../lib/messaging/statements.js';
import { createGroupCommitWriter } from '../../lib/messaging/writer.js';
import type { PublicMessage } from '../../lib/protocol/index.js';
import { rows } from '../helpers/chat.js';
import { createTestDatabase } from '../helpers/postgres.js';
import { testConfig } from '../helpers/server.js';
import { insertUser } from '../helpers/users.js';
import { waitFor } from '../helpers/waitFor.js';

const logger = createLogger('silent');

describe('messaging/fanout: a node that another node did not know yet catches up (PostgreSQL)', () => {
  let db: Database;
  let alice: string;
  let conversationId: string;
  let fanout: Fanout | undefined;

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

  /** Commits sends the way another node that did not announce them would. */
  async function commitUnannounced(...bodies: string[]): Promise<PublicMessage[]> {
    const writer = createGroupCommitWriter({
      connections: knexConnections(db.knex),
      logger,
      maxConcurrency: 1,
    });
    try {
      const outcomes = await writer.write({
        conversationId,
        commands: bodies.map((body) => ({
          kind: 'send' as const,
          senderId: alice,
          clientMsgId: `m-${body}`,
          body,
          replyToSeq: null,
        })),
      });
      return outcomes.map((o) => {
        if (!o.ok) throw new Error('send refused');
        return o.value.message;
      });
    } finally {
      await writer.close();
    }
  }

  it('reads what was committed unannounced when another node appears, once, and drops the repeats', async () => {
    const [first] = await commitUnannounced('given');
    let nodes = 1;
    const delivered: number[] = [];
    let announcement: ((payload: unknown) => void) | undefined;
    fanout = await createFanout({
      bus: {
        listen: (_channel, handler) => {
          announcement = handler;
          return Promise.resolve();
        },
      },
      knex: db.knex,
      notify: {
        hasSubscribersHere: () => true,
        messagesCommitted: (messages) => delivered.push(...messages.map((m) => m.seq)),
        messagesUpdated: () => undefined,
      },
      nodeCount: () => Promise.resolve(nodes),
      logger,
      peerCheckMs: 20,
      peerSettleMs: 150,
    });
    // This node's subscriber has been given seq 1 (a history page, say).
    fanout.seen(conversationId, first!.seq, first!.version);
    // Another node commits seq 2 and 3 before it has heard of this node: nothing is announced.
    const missed = await commitUnannounced('missed-1', 'missed-2');
    expect(delivered).to.deep.equal([]);

    nodes = 2;
    await waitFor(() => delivered.length === 2, { what: 'the catch-up after the new node count' });
    expect(delivered).to.deep.equal(missed.map((m) => m.seq));
    // The same messages announced late (queued behind the catch-up) are not delivered again.
    announcement!({
      n: 'the-other-node',
      m: missed.map((m) => [
        m.conversationId,
        m.seq,
        m.id,
        m.senderId,
        m.clientMsgId,
        m.body,
        Date.parse(m.createdAt),
        m.replyToSeq,
        m.version,
      ]),
    });
    // The second catch-up, a moment later, finds nothing new either.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(delivered).to.deep.equal(missed.map((m) => m.seq));
  });
});
