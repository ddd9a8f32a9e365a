import { expect } from 'chai';
import { loadDatabaseConfig } from '../../lib/config.js';
import { createDatabase, type Database } from '../../lib/db.js';
import type { AppError } from '../../lib/errors.js';
import { createLogger } from '../../lib/logger.js';
import { createMembership } from '../../lib/messaging/membership.js';
import { rows } from '../helpers/chat.js';
import { createTestDatabase } from '../helpers/postgres.js';
import { testConfig } from '../helpers/server.js';
import { insertUser } from '../helpers/users.js';

describe('messaging/membership: the participant cache (PostgreSQL)', () => {
  let db: Database;
  let alice: string;
  let bob: string;
  let conversationId: string;
  let queries = 0;
  const countQuery = () => (queries += 1);

  before(async () => {
    const url = await createTestDatabase();
    db = createDatabase(loadDatabaseConfig({ DATABASE_URL: url }), createLogger('silent'));
    const config = testConfig(url);
    alice = (await insertUser(db.knex, config)).id;
    bob = (await insertUser(db.knex, config)).id;
    const [row] = await rows<{ id: string }>(
      db.knex,
      "INSERT INTO conversations (type, title) VALUES ('group', 't') RETURNING id",
    );
    conversationId = row!.id;
    await db.knex('conversation_participants').insert({ conversation_id: conversationId, user_id: alice });
    db.knex.on('query', countQuery);
  });

  after(async () => {
    db.knex.off('query', countQuery);
    await db.close();
  });

  const code = (err: unknown) => (err as AppError).code;

  it('confirms a participant with one lookup and answers from the cache after that', async () => {
    const membership = createMembership(db.knex);
    queries = 0;
    await membership.assert(conversationId, alice);
    await membership.assert(conversationId, alice);
    expect(queries).to.equal(1);
  });

  it('answers RATE_LIMITED without a lookup once a user’s lookups found nothing too often, but still confirms from the cache', async () => {
    let clock = 0;
    const membership = createMembership(db.knex, { missesPerSecond: 2, now: () => clock });
    await membership.assert(conversationId, alice);
    queries = 0;
    // A burst of twice the rate finds nothing, each with a lookup.
    for (let i = 0; i < 4; i++) {
      expect(code(await membership.assert(crypto.randomUUID(), alice).catch((e: unknown) => e))).to.equal(
        'NOT_FOUND',
      );
    }
    expect(queries).to.equal(4);
    const refused = (await membership
      .assert(crypto.randomUUID(), alice)
      .catch((e: unknown) => e)) as AppError;
    expect(refused.code).to.equal('RATE_LIMITED');
    expect(refused.retryAfter).to.equal(1);
    expect(queries).to.equal(4);
    // The user's own conversation, confirmed before, still is; another user is not held.
    await membership.assert(conversationId, alice);
    expect(code(await membership.assert(crypto.randomUUID(), bob).catch((e: unknown) => e))).to.equal(
      'NOT_FOUND',
    );
    expect(queries).to.equal(5);
    // Half a second gives the user one lookup back.
    clock += 500;
    expect(code(await membership.assert(crypto.randomUUID(), alice).catch((e: unknown) => e))).to.equal(
      'NOT_FOUND',
    );
    expect(queries).to.equal(6);
  });

  it('counts lookups sent at once as they are sent, and never refuses a member for lookups that found them', async () => {
    const clock = 0;
    const membership = createMembership(db.knex, { missesPerSecond: 2, now: () => clock });
    const outcome = (p: Promise<void>) =>
      p.then(
        () => 'ok',
        (e: unknown) => code(e),
      );
    // Twenty random ids at once: the bucket (four) pays for four lookups, the rest are refused without one.
    queries = 0;
    const probes = await Promise.all(
      Array.from({ length: 20 }, () => outcome(membership.assert(crypto.randomUUID(), bob))),
    );
    expect(probes.filter((c) => c === 'NOT_FOUND')).to.have.length(4);
    expect(probes.filter((c) => c === 'RATE_LIMITED')).to.have.length(16);
    expect(queries).to.equal(4);
    // Ten conversations of a member's, none cached, at once: more lookups than the bucket holds wait for the
    // ones running, which find the member and give their tokens back.
    const mine = await rows<{ id: string }>(
      db.knex,
      "INSERT INTO conversations (type, title) SELECT 'group', 't' FROM generate_series(1, 10) RETURNING id",
    );
    await db
      .knex('conversation_participants')
      .insert(mine.map((c) => ({ conversation_id: c.id, user_id: alice })));
    const fresh = createMembership(db.knex, { missesPerSecond: 2, now: () => clock });
    const answers = await Promise.all(mine.map((c) => outcome(fresh.assert(c.id, alice))));
    expect(answers).to.deep.equal(mine.map(() => 'ok'));
  });

  it('costs a non-participant one lookup whether the conversation exists or not, and caches no refusal', async () => {
    const membership = createMembership(db.knex);
    queries = 0;
    expect(code(await membership.assert(conversationId, bob).catch((e: unknown) => e))).to.equal('NOT_FOUND');
    expect(code(await membership.assert(crypto.randomUUID(), bob).catch((e: unknown) => e))).to.equal(
      'NOT_FOUND',
    );
    expect(queries).to.equal(2);
    expect(membership.size).to.equal(0);
    // Added later: seen at once, since refusals are not cached.
    await db.knex('conversation_participants').insert({ conversation_id: conversationId, user_id: bob });
    await membership.assert(conversationId, bob);
    await db
      .knex('conversation_participants')
      .where({ conversation_id: conversationId, user_id: bob })
      .delete();
  });

  it('past its bound, drops the conversation cached longest ago for each new one, not every one', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 4; i += 1) {
      const [row] = await rows<{ id: string }>(
        db.knex,
        "INSERT INTO conversations (type, title) VALUES ('group', 't') RETURNING id",
      );
      ids.push(row!.id);
      await db.knex('conversation_participants').insert({ conversation_id: row!.id, user_id: alice });
    }
    const membership = createMembership(db.knex, { maxConversations: 3 });
    for (const id of ids) await membership.assert(id, alice);
    expect(membership.size).to.equal(3);
    queries = 0;
    for (const id of ids.slice(1)) await membership.assert(id, alice);
    expect(queries, 'the three cached last answer from the cache').to.equal(0);
    await membership.assert(ids[0]!, alice);
    expect(queries, 'the first was dropped').to.equal(1);
  });

  it('drops a conversation on invalidate(), so a removal is seen at the next check', async () => {
    const membership = createMembership(db.knex);
    await db.knex('conversation_participants').insert({ conversation_id: conversationId, user_id: bob });
    await membership.assert(conversationId, bob);
    await db
      .knex('conversation_participants')
      .where({ conversation_id: conversationId, user_id: bob })
      .delete();
    // Still cached until the membership.changed event arrives ...
    await membership.assert(conversationId, bob);
    membership.invalidate(conversationId);
    expect(code(await membership.assert(conversationId, bob).catch((e: unknown) => e))).to.equal('NOT_FOUND');
  });

  it('does not cache a confirmation whose lookup raced an invalidation', async () => {
    const membership = createMembership(db.knex);
    await db.knex('conversation_participants').insert({ conversation_id: conversationId, user_id: bob });
    const inFlight = membership.assert(conversationId, bob);
    // The removal commits and is announced while the lookup is on its way.
    membership.invalidateAll();
    await inFlight;
    await db
      .knex('conversation_participants')
      .where({ conversation_id: conversationId, user_id: bob })
      .delete();
    expect(code(await membership.assert(conversationId, bob).catch((e: unknown) => e))).to.equal('NOT_FOUND');
  });
});
