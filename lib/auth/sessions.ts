import type { Knex } from 'knex';
import type { DatabaseClock } from '../cluster/clock.js';
import type { Config } from '../config.js';
import { AppError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Notifier } from '../notifier.js';
import type { AuthTokens, PublicSession, SessionEndReason } from '../protocol/index.js';
import { RateLimiter } from '../rateLimiter.js';
import { createRefreshTokens, type RefreshTokenKind } from './refreshTokens.js';
import { signAccessToken } from './tokens.js';

/** Longest user agent kept, in code points (the column's CHECK). */
const MAX_USER_AGENT = 512;
/**
 * Characters a user agent loses before it is stored: NUL cannot be stored, lone surrogates neither, and the rest
 * (controls, bidirectional controls, line separators: the names' rule, lib/protocol/schemas.ts) could mislead a UI.
 */
const UNSHOWABLE = /[\p{Cc}\p{Bidi_Control}\u2028\u2029\p{Cs}]/gu;

/** The user agent as stored: printable, at most 512 code points, or null. */
export function cleanUserAgent(raw: string | undefined): string | null {
  if (raw === undefined) return null;
  const clean = [...raw.replace(UNSHOWABLE, '')].slice(0, MAX_USER_AGENT).join('').trim();
  return clean === '' ? null : clean;
}

/** Thrown inside a refresh's transaction to roll it back when its caller has gone (see SessionService.refresh). */
const ABANDONED = new Error('refresh abandoned by its caller');

export interface StartedSession extends AuthTokens {
  sessionId: string;
  /**
   * The user's least recently used sessions that this one pushed over {@link MAX_SESSIONS_PER_USER}: ended
   * (deleted) with it. Announce them ({@link SessionService.announceEnded}, `revoked`) after the commit.
   */
  evicted: readonly string[];
}

/**
 * Live sessions a user may have; a new one ends the least recently used past it. Without a cap, a loop of logins
 * (right passwords are not failures) grew the user's rows and `GET /auth/sessions` without end.
 */
export const MAX_SESSIONS_PER_USER = 100;

/** How many more statements a login runs to end the sessions past the cap that refreshes made it spare. */
const EVICTION_ROUNDS = 3;

/**
 * The common expressions `lru` (a user's live sessions past the newest ones kept; bindings: the user's id, the
 * lifetime in days, how many to keep) and `evicted` (those of them deleted: each unless used since the statement's
 * snapshot), with `guard` (SQL text, never a value) a further condition on `lru`'s rows.
 */
const EVICT_LEAST_RECENTLY_USED = (guard: string): string => `lru AS (
    SELECT id, last_used_at FROM sessions WHERE user_id = ? AND last_used_at > now() - make_interval(days => ?) ${guard}
    ORDER BY last_used_at DESC, id DESC OFFSET ?
  ), evicted AS (
    DELETE FROM sessions AS s USING lru WHERE s.id = lru.id AND s.last_used_at = lru.last_used_at RETURNING s.id
  )`;

/** The columns `evicted` (the ids deleted) and `over` (how many were past the kept ones) of those expressions. */
const EVICTED_AND_OVER =
  'ARRAY(SELECT e.id::text FROM evicted AS e) AS evicted, (SELECT count(*)::int FROM lru) AS over';

/**
 * Sessions: one per signup or login (one device). The access token names its session (`sid`); the refresh token
 * is opaque, stored as an HMAC, used once, and valid REFRESH_TTL_DAYS after the session was last used. Ending a
 * session deletes its row (so its access tokens are refused at the next request or handshake, on every node)
 * and disconnects its sockets on every node, telling them why (`session:ended`).
 */
export interface SessionService {
  /**
   * A new session with its first tokens; also drops the user's expired sessions. `db` may be a transaction.
   * `passwordHash` is the hash the caller checked the password against: the session starts only while it is still
   * the user's (undefined otherwise). The user's row is locked (FOR NO KEY UPDATE) to check it, so a password
   * change or an account deletion that commits meanwhile either comes first (no session) or waits for this one and
   * ends it too, and the user's logins start their sessions one after another (the cap holds under concurrency).
   */
  start(
    userId: string,
    userAgent: string | undefined,
    passwordHash: string,
    db?: Knex,
  ): Promise<StartedSession | undefined>;
  /**
   * Trades a refresh token for a new pair (rotation). A token used before ends its whole session (`reused`);
   * an unknown one, or one of a session unused for REFRESH_TTL_DAYS, is refused. Throws UNAUTHORIZED.
   *
   * `abandoned`, asked right before the rotation commits, says whether the caller can no longer hand the new pair
   * on (an HTTP client that went away mid-request, e.g. a page reloaded during its refresh). Then the rotation is
   * rolled back and the answer is undefined: the presented token was never used, so it still works once. A client
   * that never gets its new pair would otherwise hold only a spent token, and its next refresh would end the
   * session as a reuse.
   */
  refresh(refreshToken: string, abandoned?: () => boolean): Promise<AuthTokens | undefined>;
  /**
   * What a presented refresh token is (lib/auth/refreshTokens.ts): one this cluster issued carries its mark, and a
   * made-up one does not. No query.
   */
  refreshTokenKind(refreshToken: string): RefreshTokenKind;
  /** The user's live sessions, most recently used first; `current` marks `currentSessionId`. */
  list(userId: string, currentSessionId: string): Promise<PublicSession[]>;
  /**
   * Ends one session of the user; false when the user has no such session, or it had already ended by not being
   * used for REFRESH_TTL_DAYS (its row is deleted all the same, announced as `expired`, as a refresh would).
   */
  end(userId: string, sessionId: string, reason: SessionEndReason): Promise<boolean>;
  /**
   * Inside `db` (the caller's transaction, after its lock on the user's row): throws UNAUTHORIZED unless the
   * user's session `sessionId` still exists. Share-locks its row, so a revocation or a logout of it that comes
   * later waits for the transaction to end, and one that came first is seen.
   */
  requireLive(userId: string, sessionId: string, db: Knex): Promise<void>;
  /**
   * Ends every session of the user but `except`, inside `db` when given (the caller's transaction); returns
   * the ended ids. Call {@link announceEnded} after the commit.
   */
  endAll(userId: string, options: { except?: string; db?: Knex }): Promise<string[]>;
  /** Ends every session the user has now, and disconnects their sockets on every node. */
  endEverySession(userId: string, reason: SessionEndReason): Promise<void>;
  /**
   * Tells the ended sessions' sockets why, and disconnects them on every node (after the commit). Resolves (never
   * rejects) once every node will hear it before any message committed from then on: answer after it.
   */
  announceEnded(sessionIds: readonly string[], reason: SessionEndReason): Promise<void>;
  /**
   * Deletes sessions unused for `REFRESH_TTL_DAYS` (and with them their refresh tokens), at most `batch` of them;
   * answers how many. Nothing else reaches a session whose device went away and whose user never came back.
   */
  sweepExpired(batch: number): Promise<number>;
}

export interface SessionDeps {
  config: Readonly<Config>;
  knex: Knex;
  notify: Notifier;
  logger: Logger;
  /** PostgreSQL's clock: access tokens are issued by it, so every node counts their life alike. */
  clock: DatabaseClock;
}

interface SessionRow {
  id: string;
  created_at: Date;
  last_used_at: Date;
  user_agent: string | null;
}

/** Builds the session service. */
export function createSessionService(deps: SessionDeps): SessionService {
  const { config, knex, notify, clock } = deps;
  const logger = deps.logger.child({ component: 'sessions' });
  const refreshTokens = createRefreshTokens(config.auth.jwtSecret);
  const ttlDays = config.auth.refreshTtlDays;
  // Refreshes that succeed, RATE_LIMIT_AUTH_PER_MIN a minute per session on each node. Each one stores a token row
  // kept for REFRESH_TTL_DAYS (a used token must be known to be used): without a limit, one client refreshing in a
  // loop (some hundred a second) grew `refresh_tokens` without end. A client refreshes about once per access
  // token's life (15 minutes by default).
  const perMinute = config.limits.authPerMinute;
  // Bursts of three times that: every tab of a browser resumes the one session it shares with a refresh when it
  // loads, and a browser restoring its tabs loads them all at once. A short JWT_TTL_SECONDS has clients refresh more
  // often than N a minute (the SDK refreshes once half a token's life is gone): the rate is then four per token's
  // life, twice what such a client needs, so that no setting refuses the refreshes that keep a session going.
  const refreshesPerSession = new RateLimiter({
    ratePerSecond:
      perMinute > 0 ? Math.max(perMinute / 60, 4 / Math.max(1, config.auth.tokenTtlSeconds - 1)) : 0,
    burst: 3 * perMinute,
  });

  function tokensFor(
    userId: string,
    sessionId: string,
    refreshToken: string,
  ): Omit<StartedSession, 'evicted'> {
    return { sessionId, refreshToken, ...signAccessToken({ userId, sessionId }, config.auth, clock.now()) };
  }

  /** Deletes the session; true if it was there. */
  async function deleteSession(sessionId: string): Promise<boolean> {
    return (await knex('sessions').where({ id: sessionId }).delete()) > 0;
  }

  const service: SessionService = {
    async start(userId, userAgent, passwordHash, db = knex) {
      if (!db.isTransaction)
        return db.transaction((trx) => service.start(userId, userAgent, passwordHash, trx));
      const refreshToken = refreshTokens.issue();
      // The user's session starts one at a time, each in a statement that begins after the previous one's commit:
      // a statement sees only what committed before it began, so concurrent logins would each count the others'
      // new sessions out and together pass the cap. (Foreign keys take KEY SHARE, which this lock lets through.)
      await db.raw('SELECT 1 FROM users WHERE id = ? FOR NO KEY UPDATE', [userId]);
      // One statement: the session and its first refresh token exist together or not at all, and only while the
      // password checked is still the user's (a deleted account has none), read after the lock above waited for any
      // password change or deletion in progress. The user's expired sessions go, and the live ones past the cap
      // (the statement's snapshot does not see the new session, so the newest MAX - 1 others stay), unless used
      // since the snapshot: a refresh that committed while this waited for its row answered tokens of that session,
      // which stays (and the next least recently used go, below).
      const result = await db.raw<{ rows: Array<{ session_id: string; evicted: string[]; over: number }> }>(
        `WITH owner AS (
           SELECT id FROM users WHERE id = ? AND password_hash = ? FOR SHARE
         ), started AS (
           INSERT INTO sessions (user_id, user_agent) SELECT id, ? FROM owner RETURNING id
         ), expired AS (
           DELETE FROM sessions WHERE user_id = ? AND last_used_at <= now() - make_interval(days => ?)
             AND EXISTS (SELECT FROM owner)
         ), ${EVICT_LEAST_RECENTLY_USED('AND EXISTS (SELECT FROM owner)')}, issued AS (
           INSERT INTO refresh_tokens (token_hash, session_id) SELECT ?, id FROM started RETURNING session_id
         )
         SELECT i.session_id, ${EVICTED_AND_OVER} FROM issued AS i`,
        [
          userId,
          passwordHash,
          cleanUserAgent(userAgent),
          userId,
          ttlDays,
          userId,
          ttlDays,
          MAX_SESSIONS_PER_USER - 1,
          refreshTokens.hash(refreshToken),
        ],
      );
      const row = result.rows[0];
      if (row === undefined) return undefined;
      const evicted = [...row.evicted];
      // A session refreshed while this waited for its row was spared (its client was just given tokens): the next
      // least recently used go instead, each statement seeing what committed before it (the new session included,
      // so the newest MAX stay). A few rounds: a session refreshed at each of them is rarer still.
      let over = row.over - row.evicted.length;
      for (let round = 0; over > 0 && round < EVICTION_ROUNDS; round++) {
        const next = await db.raw<{ rows: Array<{ evicted: string[]; over: number }> }>(
          `WITH ${EVICT_LEAST_RECENTLY_USED('')} SELECT ${EVICTED_AND_OVER}`,
          [userId, ttlDays, MAX_SESSIONS_PER_USER],
        );
        const got = next.rows[0];
        if (got === undefined) break;
        evicted.push(...got.evicted);
        over = got.over - got.evicted.length;
      }
      return { ...tokensFor(userId, row.session_id, refreshToken), evicted };
    },

    async refresh(refreshToken, abandoned = () => false) {
      if (refreshTokens.kind(refreshToken) === 'malformed') throw new AppError('UNAUTHORIZED');
      const presented = refreshTokens.hash(refreshToken);
      const next = refreshTokens.issue();
      const rotate = (db: Knex) =>
        // One statement, so one atomic step: the presented token is marked used only if it was unused (the
        // conditional UPDATE is the race guard: of two concurrent refreshes with it, the second waits for the
        // first's row lock, re-reads used_at and matches nothing), the session is touched only if still live,
        // and the next token is stored. Used tokens older than the TTL are pruned on the way.
        db.raw<{ rows: Array<{ session_id: string; user_id: string }> }>(
          `WITH consumed AS (
             UPDATE refresh_tokens AS r SET used_at = now()
             FROM sessions AS s
             WHERE r.token_hash = ? AND r.used_at IS NULL
               AND s.id = r.session_id AND s.last_used_at > now() - make_interval(days => ?)
             RETURNING r.session_id
           ), touched AS (
             UPDATE sessions AS s SET last_used_at = now() FROM consumed AS c
             WHERE s.id = c.session_id RETURNING s.id, s.user_id
           ), issued AS (
             INSERT INTO refresh_tokens (token_hash, session_id) SELECT ?, t.id FROM touched AS t
             RETURNING session_id
           ), pruned AS (
             DELETE FROM refresh_tokens AS p USING consumed AS c
             WHERE p.session_id = c.session_id AND p.used_at < now() - make_interval(days => ?)
           )
           SELECT t.id AS session_id, t.user_id FROM touched AS t JOIN issued AS i ON i.session_id = t.id`,
          [presented, ttlDays, refreshTokens.hash(next), ttlDays],
        );
      let rotated;
      try {
        rotated = await knex.transaction(async (trx) => {
          // The session's row before its token's, in the order every end of a session takes them (its DELETE
          // cascades to the tokens): taken the other way round, a refresh and a logout, a revocation or a reuse
          // detection could deadlock, and one of them answered 500.
          const locked = await trx.raw<{ rows: Array<{ session_id: string; unused: boolean }> }>(
            `SELECT s.id AS session_id, r.used_at IS NULL AS unused
             FROM sessions AS s JOIN refresh_tokens AS r ON r.session_id = s.id
             WHERE r.token_hash = ? FOR NO KEY UPDATE OF s`,
            [presented],
          );
          // A refresh that would succeed takes one of its session's budget first. A token already used is not held
          // by it: its reuse ends the session at once, however fast the session was refreshed before.
          const lockedRow = locked.rows[0];
          if (lockedRow?.unused) {
            const budget = refreshesPerSession.take(lockedRow.session_id);
            if (!budget.allowed) throw new AppError('RATE_LIMITED', { retryAfter: budget.retryAfterSeconds });
          }
          const result = await rotate(trx);
          if (result.rows.length > 0 && abandoned()) throw ABANDONED;
          return result;
        });
      } catch (err) {
        if (err === ABANDONED) return undefined;
        throw err;
      }
      const row = rotated.rows[0];
      if (row) return tokensFor(row.user_id, row.session_id, next);
      await refuseRefresh(presented);
      throw new AppError('UNAUTHORIZED');
    },

    refreshTokenKind(refreshToken) {
      return refreshTokens.kind(refreshToken);
    },

    async list(userId, currentSessionId) {
      const rows = await knex<SessionRow>('sessions')
        .select('id', 'created_at', 'last_used_at', 'user_agent')
        .where('user_id', userId)
        .whereRaw('last_used_at > now() - make_interval(days => ?)', [ttlDays])
        .orderBy([
          { column: 'last_used_at', order: 'desc' },
          { column: 'id', order: 'asc' },
        ]);
      return rows.map((r) => ({
        id: r.id,
        createdAt: r.created_at.toISOString(),
        lastUsedAt: r.last_used_at.toISOString(),
        userAgent: r.user_agent,
        current: r.id === currentSessionId,
      }));
    },

    async end(userId, sessionId, reason) {
      // One that ended by not being used is over already (not listed, its refresh token refused): its row goes
      // now, as when a refresh notices it, but there was no session left to end.
      const deleted = await knex('sessions')
        .where({ id: sessionId, user_id: userId })
        .delete()
        .returning<Array<{ live: boolean }>>(
          knex.raw('last_used_at > now() - make_interval(days => ?) AS live', [ttlDays]),
        );
      const row = deleted[0];
      if (row === undefined) return false;
      await service.announceEnded([sessionId], row.live ? reason : 'expired');
      return row.live;
    },

    async requireLive(userId, sessionId, db) {
      const live = await db<{ id: string; user_id: string }>('sessions')
        .where({ id: sessionId, user_id: userId })
        .forShare()
        .first('id');
      if (live === undefined) throw new AppError('UNAUTHORIZED');
    },

    async endAll(userId, { except, db = knex }) {
      const query = db('sessions').where('user_id', userId);
      if (except !== undefined) void query.whereNot('id', except);
      const rows = await query.delete().returning<Array<{ id: string }>>('id');
      return rows.map((r) => r.id);
    },

    async endEverySession(userId, reason) {
      // Under the user's row lock, as a password change and an account deletion end sessions: without it, this
      // delete and a password change's (which share-locks the caller's session first) could wait for each other.
      const ended = await knex.transaction(async (trx) => {
        await trx('users').where('id', userId).forUpdate().first('id');
        return service.endAll(userId, { db: trx });
      });
      // The ended sessions' rooms, not the user's: a session that began after this commit (another device signing
      // in at once) is live, and its sockets may join the user's room on another node before the notice gets
      // there. A socket whose handshake raced the delete looks at its session again once in its room (io.ts).
      await service.announceEnded(ended, reason);
    },

    async announceEnded(sessionIds, reason) {
      await Promise.all(sessionIds.map((sessionId) => notify.disconnectSession(sessionId, reason)));
    },

    async sweepExpired(batch) {
      // Expired: the same test as a login's and a refused refresh's. No one is told: an expired session has no
      // socket left (a socket needs an access token, which lives at most REFRESH_TTL_DAYS, renewed by refreshes).
      // SKIP LOCKED: a session a refresh or a logout holds is theirs to settle.
      const result = await knex.raw<{ rowCount: number | null }>(
        `DELETE FROM sessions WHERE id IN (
           SELECT id FROM sessions WHERE last_used_at <= now() - make_interval(days => ?)
           LIMIT ? FOR UPDATE SKIP LOCKED)`,
        [ttlDays, batch],
      );
      return result.rowCount ?? 0;
    },
  };

  /** Why a refresh matched nothing: a used token ends its session, an expired session is cleared. */
  async function refuseRefresh(presented: Buffer): Promise<void> {
    const found = await knex.raw<{
      rows: Array<{ session_id: string; user_id: string; used: boolean; expired: boolean }>;
    }>(
      `SELECT r.session_id, s.user_id, r.used_at IS NOT NULL AS used,
              s.last_used_at <= now() - make_interval(days => ?) AS expired
       FROM refresh_tokens AS r JOIN sessions AS s ON s.id = r.session_id
       WHERE r.token_hash = ?`,
      [ttlDays, presented],
    );
    const row = found.rows[0];
    if (!row) return;
    if (row.expired) {
      if (await deleteSession(row.session_id)) await service.announceEnded([row.session_id], 'expired');
      return;
    }
    if (row.used) {
      // Someone holds a token that was already traded in: the legitimate client or a thief. Either way the
      // session cannot be trusted any more.
      logger.warn(
        { sessionId: row.session_id, userId: row.user_id },
        'a used refresh token was presented again; ending its session',
      );
      if (await deleteSession(row.session_id)) await service.announceEnded([row.session_id], 'reused');
    }
  }

  return service;
}
