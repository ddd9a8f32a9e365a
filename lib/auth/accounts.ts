import type { Knex } from 'knex';
import type { DatabaseClock } from '../cluster/clock.js';
import type { Config } from '../config.js';
import { AppError, constraintName, SQLSTATE, sqlState } from '../errors.js';
import type { Logger } from '../logger.js';
import { User } from '../models/User.js';
import type { Notifier } from '../notifier.js';
import { sweepPeriodically } from '../periodic.js';
import { createAuthLimits, giveBackAfterRefusal, type AuthLimits } from './authLimits.js';
import type { PasswordHasher, PasswordMatch } from './passwords.js';
import { createProfileService, type ConversationLeaver, type ProfileService } from './profile.js';
import { createSessionService, type SessionService, type StartedSession } from './sessions.js';

/** The unique indexes of usernames: a signup that breaks either is USERNAME_TAKEN. */
const USERNAME_UNIQUE_INDEXES = new Set(['users_username_ascii_unique', 'users_username_lower_unique']);

export interface NewAccount {
  username: string;
  password: string;
  displayName: string;
}

/** Who is asking, for the limits and the device list. */
export interface ClientInfo {
  ip: string;
  userAgent: string | undefined;
}

export interface AuthService extends ProfileService {
  /** Signup and password-check limits, shared by every node through PostgreSQL. */
  readonly limits: AuthLimits;
  /** Sessions: start, refresh (rotation), list, end. */
  readonly sessions: SessionService;
  /** Creates the account (username as typed) and its first session. Throws USERNAME_TAKEN. */
  signup(input: NewAccount, client: ClientInfo): Promise<{ user: User; session: StartedSession }>;
  /**
   * The user whose username (case-insensitively) and password match, else undefined. An unknown user and a
   * wrong password take the same time: both run one argon2 verification. Counts nothing: the caller does.
   */
  checkCredentials(username: string, password: string): Promise<User | undefined>;
  /**
   * The session of a login: `user` as {@link checkCredentials} returned it. INVALID_CREDENTIALS when the password
   * it checked is no longer the user's (changed, or the account deleted, while the login ran): a login with an old
   * password must not outlast the change that ended every other session.
   */
  startLogin(user: User, userAgent: string | undefined): Promise<StartedSession>;
  /**
   * Changes the password after checking the current one (counted like a login: INVALID_CREDENTIALS, then
   * RATE_LIMITED); every other session of the user ends, `sessionId` stays. Checked again in the change's
   * transaction, under the user's row lock: UNAUTHORIZED when the account or `sessionId` ended meanwhile,
   * INVALID_CREDENTIALS when the password changed meanwhile; then nothing changes.
   */
  changePassword(
    user: User,
    sessionId: string,
    passwords: { currentPassword: string; newPassword: string },
    client: ClientInfo,
  ): Promise<void>;
  /** Stops the limits' and the session sweep's timers; idempotent. */
  close(): void;
}

export interface AuthDeps {
  config: Readonly<Config>;
  knex: Knex;
  notify: Notifier;
  logger: Logger;
  /** Made once at startup (createPasswordHasher hashes its dummy password then). */
  passwords: PasswordHasher;
  /** Account deletion makes the user leave every group through the conversation service. */
  conversations: ConversationLeaver;
  /** PostgreSQL's clock: access tokens are issued by it (lib/cluster/clock.ts). */
  clock: DatabaseClock;
}

/** The user as the rest of the server may hold it: the same row without its password hash. */
function withoutHash(user: User): User {
  return User.fromJson(
    {
      id: user.id,
      username: user.username,
      displayName: user.displayName,
      createdAt: user.createdAt,
    },
    { skipValidation: true },
  );
}

/** How often a node deletes expired sessions, how many a statement, and how many statements at most a time. */
const SESSION_SWEEP_INTERVAL_MS = 10 * 60_000;
const SESSION_SWEEP_BATCH = 100;
const SESSION_SWEEP_BATCHES = 50;

/** Builds the accounts service over the app's knex and notifier. */
export function createAuthService(deps: AuthDeps): AuthService {
  const { knex, logger, passwords } = deps;
  const limits = createAuthLimits({
    perMinute: deps.config.limits.authPerMinute,
    knex,
    logger,
  });
  const sessions = createSessionService(deps);
  // Expired sessions are deleted at their user's next login or a refresh that presents their token; a device that
  // went away for good, of a user who never came back, kept its session and every used refresh token (up to 5,760
  // rows, 1.3 MB, at the defaults) for ever (DATA hunt). Each node sweeps them now and then, a batch at a time.
  // The first sweep comes within the interval of a start, so a node restarted more often than that sweeps too (one
  // that lives more than a minute: lib/periodic.ts).
  let closed = false;
  const stopSweeping = sweepPeriodically(() => {
    void (async () => {
      // A batch at a time, a few more while they come full (the backlog of an upgrade), none once closed: each
      // statement deletes a batch of sessions with all their tokens (up to 5,760 each), about a second's work.
      for (let batch = 0; batch < SESSION_SWEEP_BATCHES && !closed; batch++)
        if ((await sessions.sweepExpired(SESSION_SWEEP_BATCH)) < SESSION_SWEEP_BATCH) break;
    })().catch((err: unknown) => logger.warn({ err }, 'sweeping expired sessions failed'));
  }, SESSION_SWEEP_INTERVAL_MS);

  async function findByUsername(username: string): Promise<User | undefined> {
    // The unique index's key (migration 20261206100000_usernames_folded_as_ascii), so this is an index lookup.
    return await User.query(knex)
      .whereRaw('lower(username COLLATE "C") = lower(? COLLATE "C")', [username])
      .first();
  }

  /**
   * The hash the user's password is stored under after a login checked it against `checked`: a new one when the
   * hasher's parameters moved on or the password matched only as sent, not normalized (`'outdated'`), upgraded only
   * while `checked` is still stored (a password changed meanwhile is never overwritten with the old one); else
   * `checked`.
   */
  async function rehashIfNeeded(
    userId: string,
    checked: string,
    password: string,
    match: PasswordMatch,
  ): Promise<string> {
    if (match === 'current' && !passwords.needsRehash(checked)) return checked;
    try {
      const passwordHash = await passwords.hash(password);
      const upgraded = await User.query(knex)
        .findById(userId)
        .where('password_hash', checked)
        .patch({ passwordHash });
      return upgraded > 0 ? passwordHash : checked;
    } catch (err) {
      // The login itself succeeded; the old hash still works and is retried at the next login.
      logger.warn({ err, userId }, 'upgrading a password hash failed');
      return checked;
    }
  }

  /** The hash each user checkCredentials returned was checked against, for its session (startLogin). */
  const checkedHashes = new WeakMap<User, string>();

  /**
   * Checks the password of a signed-in user under the login limits of their username; answers the hash it was
   * checked against. Throws RATE_LIMITED or INVALID_CREDENTIALS.
   */
  async function verifyOwnPassword(user: User, password: string, ip: string): Promise<string> {
    if (user.username === null) throw new AppError('UNAUTHORIZED');
    const attempt = await limits.takePasswordAttempt(user.username, ip);
    let checked: string;
    try {
      // Users outside lib/auth carry no hash (User's `public` columns): it is read here, where it is checked.
      const stored = await User.query(knex).findById(user.id).select('password_hash');
      const ok = await passwords.verify(stored?.passwordHash ?? undefined, password);
      if (!ok || !stored?.passwordHash) throw new AppError('INVALID_CREDENTIALS');
      checked = stored.passwordHash;
    } catch (err) {
      // A wrong password, or a check that failed on its way, gives back its point of the pair's right passwords
      // (a wrong one stays counted as a failure); one never made gives back every point.
      await giveBackAfterRefusal(limits, attempt, err, logger);
      throw err;
    }
    await limits.passwordAccepted(attempt, user.id);
    return checked;
  }

  const profile = createProfileService({ ...deps, sessions, verifyOwnPassword });

  return {
    ...profile,
    limits,
    sessions,
    async signup({ username, password, displayName }, client) {
      const passwordHash = await passwords.hash(password);
      try {
        return await knex.transaction(async (trx) => {
          const { id } = await User.query(trx)
            .insert({ username, displayName, passwordHash })
            .returning('id');
          const user = await User.query(trx).modify('public').findById(id).throwIfNotFound();
          // A new user has no other session: nothing is evicted, nothing to announce.
          const session = await sessions.start(user.id, client.userAgent, passwordHash, trx);
          if (session === undefined) throw new Error('the session of a new account did not start');
          return { user, session };
        });
      } catch (err) {
        // Two signups of one name (in any case) race to this insert; the index decides, the loser gets 409.
        if (
          sqlState(err) === SQLSTATE.uniqueViolation &&
          USERNAME_UNIQUE_INDEXES.has(constraintName(err) ?? '')
        ) {
          throw new AppError('USERNAME_TAKEN', { cause: err });
        }
        throw err;
      }
    },
    async checkCredentials(username, password) {
      const user = await findByUsername(username);
      const match = await passwords.verify(user?.passwordHash ?? undefined, password);
      if (!user?.passwordHash || !match) return undefined;
      const checked = await rehashIfNeeded(user.id, user.passwordHash, password, match);
      const found = withoutHash(user);
      checkedHashes.set(found, checked);
      return found;
    },
    async startLogin(user, userAgent) {
      const checked = checkedHashes.get(user);
      if (checked === undefined) throw new Error('startLogin takes a user that checkCredentials returned');
      checkedHashes.delete(user);
      const session = await sessions.start(user.id, userAgent, checked);
      if (session === undefined) throw new AppError('INVALID_CREDENTIALS');
      return session;
    },
    async changePassword(user, sessionId, { currentPassword, newPassword }, client) {
      const checked = await verifyOwnPassword(user, currentPassword, client.ip);
      const passwordHash = await passwords.hash(newPassword);
      const ended = await knex.transaction(async (trx) => {
        // The checks above ran outside this transaction, two argon2 runs ago. Under the row lock, each in a
        // statement of its own (so each reads what committed before the lock was granted): the account is still
        // there, the caller's session still is (FOR SHARE: a revocation waits for this change, or this change
        // for it), and the password checked is still the stored one (another change committed meanwhile). Else
        // nothing changes: an ended session must not end the sessions of whoever ended it.
        const locked = await User.query(trx)
          .findById(user.id)
          .whereNull('deleted_at')
          .forUpdate()
          .select('password_hash');
        if (!locked) throw new AppError('UNAUTHORIZED');
        await sessions.requireLive(user.id, sessionId, trx);
        if (locked.passwordHash !== checked) throw new AppError('INVALID_CREDENTIALS');
        await User.query(trx).findById(user.id).patch({ passwordHash, updatedAt: new Date() });
        return sessions.endAll(user.id, { except: sessionId, db: trx });
      });
      await sessions.announceEnded(ended, 'password_changed');
    },
    close() {
      limits.close();
      closed = true;
      stopSweeping();
    },
  };
}
