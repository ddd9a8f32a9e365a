import { expect } from 'chai';
import { Writable } from 'node:stream';
import { createLogger } from '../lib/logger.js';
import type { RunningServer } from '../lib/server.js';
import { useNode } from './helpers/nodes.js';
import { startTestServer } from './helpers/server.js';
import { insertUser } from './helpers/users.js';
import { waitFor } from './helpers/waitFor.js';

/**
 * Each node sweeps sessions unused for REFRESH_TTL_DAYS, with their refresh tokens (lib/auth/accounts.ts): a device
 * gone for good, of a user who never came back, kept them for ever (DATA hunt). The timer's work, and its end at
 * close() (a sweep going on after it sent statements into a closing pool: review).
 */
describe('sessions: the sweep of expired sessions', function () {
  this.timeout(120_000);
  const one = useNode();
  const { server } = one;

  /** A new user (with one live session) and `count` sessions of theirs, expired, each with a refresh token. */
  async function expiredSessions(count: number) {
    const { knex } = server.services.db;
    const user = await insertUser(knex, server.services.config);
    const ttl = server.services.config.auth.refreshTtlDays;
    await knex.raw(
      `INSERT INTO sessions (user_id, last_used_at, created_at)
       SELECT ?, now() - make_interval(days => ?, secs => g), now() - make_interval(days => ?, secs => g)
       FROM generate_series(1, ?) g`,
      [user.id, ttl + 1, ttl + 1, count],
    );
    await knex.raw(
      `INSERT INTO refresh_tokens (token_hash, session_id)
       SELECT sha256(id::text::bytea), id FROM sessions WHERE user_id = ?`,
      [user.id],
    );
    const left = async () =>
      (
        await knex.raw<{ rows: Array<{ sessions: number; tokens: number }> }>(
          `SELECT (SELECT count(*)::int FROM sessions WHERE user_id = ?) AS sessions,
                  (SELECT count(*)::int FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id
                   WHERE s.user_id = ?) AS tokens`,
          [user.id, user.id],
        )
      ).rows[0]!;
    return { user, left };
  }

  /**
   * A second node on the database, with the first timers of its two sweeps (lib/periodic.ts): the sessions'
   * (accounts.ts) and the auth limit counters' (authLimits.ts). The test calls the sessions' sweep itself, not in
   * minutes.
   */
  async function nodeWithSweep() {
    const realSetTimeout = globalThis.setTimeout;
    const firsts: Array<{ of: 'sessions' | 'limits'; fn: () => void; ms: number }> = [];
    (globalThis as { setTimeout: unknown }).setTimeout = (fn: () => void, ms: number, ...rest: unknown[]) => {
      const stack = new Error().stack ?? '';
      if (/periodic\.ts/.test(stack)) {
        firsts.push({ of: /authLimits\.ts/.test(stack) ? 'limits' : 'sessions', fn, ms });
      }
      return realSetTimeout(fn, ms, ...(rest as []));
    };
    const lines: string[] = [];
    const logger = createLogger(
      'info',
      new Writable({
        write(chunk: Buffer, _enc, done) {
          lines.push(chunk.toString());
          done();
        },
      }),
    );
    let node: RunningServer;
    try {
      // The auth limits on (the tests' default is off), so that they sweep their counters too.
      node = await startTestServer(one.databaseUrl, { RATE_LIMIT_AUTH_PER_MIN: '1000' }, logger);
    } finally {
      globalThis.setTimeout = realSetTimeout;
    }
    const sweeps = firsts.map((first) => first.of).sort();
    if (sweeps.join() !== 'limits,sessions') {
      await node.close();
      expect(sweeps, 'the sweeps of the node').to.deep.equal(['limits', 'sessions']);
    }
    const first = (of: 'sessions' | 'limits') => firsts.find((timer) => timer.of === of)!;
    return {
      node,
      sweep: first('sessions').fn,
      firstIn: { sessions: first('sessions').ms, limits: first('limits').ms },
      lines,
    };
  }

  it('sweeps the first time between a minute after the start and the interval, so a node restarted often sweeps too', async () => {
    const { node, firstIn } = await nodeWithSweep();
    await node.close();
    expect(firstIn.sessions, 'the sessions').to.be.within(60_000, 600_000 - 1);
    expect(firstIn.limits, 'the auth limit counters').to.be.within(60_000, 300_000 - 1);
  });

  it('deletes every expired session and its tokens, a batch at a time, at the timer', async () => {
    const { left } = await expiredSessions(250);
    const { node, sweep, lines } = await nodeWithSweep();
    try {
      sweep();
      // The user's own session (live) stays.
      await waitFor(async () => (await left()).sessions === 1, { what: 'the sweep', timeoutMs: 20_000 });
      expect(await left()).to.deep.equal({ sessions: 1, tokens: 1 });
      expect(lines.filter((l) => l.includes('sweeping expired sessions failed'))).to.deep.equal([]);
    } finally {
      await node.close();
    }
  });

  it('runs no batch after close(); the one on its way may finish', async () => {
    const { knex } = server.services.db;
    const { user, left } = await expiredSessions(2500);
    const { node, sweep, lines } = await nodeWithSweep();
    // Hold every token row of the expired sessions: the first batch's cascade waits on them.
    const holder = await knex.transaction();
    await holder.raw(
      'SELECT 1 FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id WHERE s.user_id = ? FOR UPDATE OF r',
      [user.id],
    );
    sweep();
    await new Promise((r) => setTimeout(r, 500));
    node.services.auth.close();
    await holder.rollback();
    await new Promise((r) => setTimeout(r, 3000));
    const after = await left();
    await node.close();
    // Batches of 100: one at most ran.
    expect(after.sessions, 'expired sessions left after close()').to.be.at.least(2400);
    expect(lines.filter((l) => l.includes('sweeping expired sessions failed'))).to.deep.equal([]);
  });
});
