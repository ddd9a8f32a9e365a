import type { Knex } from 'knex';
import {
  CLUSTER_LIMITS_TABLE,
  type ClusterCounter,
  LimitReached,
  clusterLimiter,
  retryAfterSeconds,
  sweepClusterLimits,
  takePoint,
} from '../clusterLimits.js';
import { AppError } from '../errors.js';
import { addressKey } from '../requestOrigin.js';
import type { Logger } from '../logger.js';
import { sweepPeriodically } from '../periodic.js';

/**
 * How the login limits scale with RATE_LIMIT_AUTH_PER_MIN (N). Chosen so that one IP can never trip the
 * per-username ceiling: a pair (username and IP) has 5N failures an hour, half the ceiling of 10N, however they are
 * spread (N a minute for ten minutes never trips a lockout, and would otherwise reach the ceiling). And so that
 * one client behind a shared address cannot lock out the others there: a pair that has logged in before is not
 * held to the IP's caps.
 */
export const LOGIN_LIMITS = Object.freeze({
  /** Failed logins of one username from one IP, per minute: N; then the pair is locked out. */
  pairWindowSeconds: 60,
  /** The first lockout of a pair; each further one within a day doubles it. */
  firstLockoutSeconds: 60,
  longestLockoutSeconds: 3600,
  lockoutMemorySeconds: 24 * 3600,
  /** Failed logins of one username from one IP, per hour: 5N, so one IP stays below the username ceiling. */
  pairHourFactor: 5,
  pairHourWindowSeconds: 3600,
  /** How long a pair that logged in stays known, and so outside the IP's cap. */
  knownPairSeconds: 30 * 24 * 3600,
  /** Failed logins of one username from all IPs together, per hour: 10N (a distributed guesser). */
  usernameFactor: 10,
  usernameWindowSeconds: 3600,
  /**
   * Failed logins from one IP, any usernames: N per minute (the contract's per-IP login limit) and 10N per hour
   * (credential stuffing); known pairs count in neither.
   */
  ipMinuteWindowSeconds: 60,
  ipFactor: 10,
  ipWindowSeconds: 3600,
  /** Signups from one IP, per minute: N. */
  signupWindowSeconds: 60,
  /**
   * Right passwords of one username from one IP, per minute: N. Each check costs an argon2 run whatever it
   * answers, and right ones give their failure points back: without this, a client with a password of its own
   * could keep a node's password checks busy for ever. Each check takes a point here before it runs (a wrong or
   * unchecked password gives it back), so checks in flight at once cannot overrun it.
   */
  pairSuccessWindowSeconds: 60,
});

/**
 * Expired counters are deleted this often, the first time within that of a node's start (the table never grows with
 * one-off keys, however often nodes restart).
 */
const SWEEP_INTERVAL_MS = 5 * 60_000;

/**
 * The abuse limits of signup and the password checks (login, password change, account deletion), counted in
 * PostgreSQL so that every node shares them: a per-node count would multiply an attacker's budget by the number
 * of nodes. See docs/api-auth-friends.md ("Abuse limits").
 *
 * A password check first takes one attempt from each of its counters, in the order pair (username and IP, by the
 * minute and by the hour), IP (likewise), username, stopping at the first refusal: a refused pair never reaches the
 * username's counter, which is how one IP is kept from locking an account out for everyone. A pair that has
 * signed up or logged in within {@link LOGIN_LIMITS.knownPairSeconds} skips the IP's counters. A success gives the
 * IP and username attempts back, clears the pair and makes it known, so only failures count there. Right passwords
 * have a counter of their own per pair (N a minute), taken first: every check takes a point there before it runs,
 * which a wrong password ({@link AuthLimits.passwordRejected}) or one never checked gives back, so only successes
 * stay counted and overlapping checks cannot all see the same count.
 */
export interface AuthLimits {
  /** Counts a signup attempt from `ip`; throws RATE_LIMITED (with Retry-After) past the limit. */
  takeSignup(ip: string): Promise<void>;
  /**
   * Counts a password attempt for `username` from `ip` before the password is checked (so parallel guesses
   * cannot overrun the limit); throws RATE_LIMITED. Hand what it answers to {@link passwordAccepted} when the
   * password turns out right.
   */
  takePasswordAttempt(username: string, ip: string): Promise<PasswordAttempt>;
  /**
   * The password of account `userId` was right: the attempt does not count as a failure, and its pair becomes known
   * (while that account is live).
   */
  passwordAccepted(attempt: PasswordAttempt, userId: string): Promise<void>;
  /**
   * The password was wrong: the attempt stays counted as the failure it is, and gives back the point it took from
   * the pair's right passwords.
   */
  passwordRejected(attempt: PasswordAttempt): Promise<void>;
  /**
   * The password was never checked (the node's password checks were full: `OVERLOADED`): the attempt gives back
   * what it took, so a client retrying through an overload is not locked out for guesses it never made.
   */
  passwordNotChecked(attempt: PasswordAttempt): Promise<void>;
  /** `username` signed up from `ip` as account `userId`: the pair is known, as after a login (while it is live). */
  signedUp(username: string, ip: string, userId: string): Promise<void>;
  /** Stops the sweep timer; idempotent. */
  close(): void;
}

/** One counted password attempt, and what it took (so that a success gives back exactly that). */
export interface PasswordAttempt {
  readonly username: string;
  readonly ip: string;
  /** Whether it took a point from the address's and the username's counters (a known pair does not). */
  readonly tookShared: boolean;
  /**
   * The window each point went to (`CounterState.window` in lib/clusterLimits.ts): a point is given back to its own
   * window only, never to the next one of the same key (which would then allow one more than the limit). A counter
   * absent here took no point (the IP's, for a known pair).
   */
  readonly windows: AttemptWindows;
}

/** The windows of a password attempt's points, by counter. */
export interface AttemptWindows {
  readonly success?: string | null;
  readonly pair?: string | null;
  readonly pairHour?: string | null;
  readonly ipMinute?: string | null;
  readonly ip?: string | null;
  readonly username?: string | null;
}

/**
 * For an attempt that failed (`err`) before a right password was accepted: when the password was never checked
 * (the node's password checks were full: `OVERLOADED`), gives all its points back; otherwise (a wrong password, or
 * any other failure on the way: the database, say) gives back its point of the pair's right passwords, so that
 * counter holds right passwords only. Never throws: the caller answers with `err`, and a failure here is only logged.
 */
export async function giveBackAfterRefusal(
  limits: AuthLimits,
  attempt: PasswordAttempt,
  err: unknown,
  logger: Logger,
): Promise<void> {
  try {
    if (err instanceof AppError && err.code === 'OVERLOADED') await limits.passwordNotChecked(attempt);
    else await limits.passwordRejected(attempt);
  } catch (rewardErr) {
    logger.warn({ err: rewardErr }, 'giving back a login attempt failed');
  }
}

export interface AuthLimitsDeps {
  /** RATE_LIMIT_AUTH_PER_MIN; 0 turns every limit off. */
  perMinute: number;
  knex: Knex;
  logger: Logger;
}

const NO_LIMITS: AuthLimits = {
  takeSignup: () => Promise.resolve(),
  takePasswordAttempt: (username, ip) => Promise.resolve({ username, ip, tookShared: false, windows: {} }),
  passwordAccepted: () => Promise.resolve(),
  passwordRejected: () => Promise.resolve(),
  passwordNotChecked: () => Promise.resolve(),
  signedUp: () => Promise.resolve(),
  close: () => undefined,
};

/** The counter of the pairs a username signed in from (within {@link LOGIN_LIMITS.knownPairSeconds}). */
const KNOWN_PAIRS = 'login_known_pair';

// Usernames match case-insensitively, so "Alice" and "alice" share their counters. Addresses are counted by their
// network where one host has many (an IPv6 /64: addressKey()).
const pairKeyStart = (username: string) => `${username.toLowerCase()}|`;

/**
 * Forgets the addresses `username` signed in from, as part of its account's deletion: the name is free, and whoever
 * takes it next never signed in there, so those addresses must not skip the new account's username ceiling.
 * The name's failure counters and lockouts stay (they only hold guessers back, and end within hours).
 */
export async function forgetKnownAddresses(db: Knex | Knex.Transaction, username: string): Promise<void> {
  await db(CLUSTER_LIMITS_TABLE)
    .whereRaw('starts_with(key, ?)', [`${KNOWN_PAIRS}:${pairKeyStart(username)}`])
    .delete();
}

/** Builds the limits over the app's knex pool. */
export function createAuthLimits(deps: AuthLimitsDeps): AuthLimits {
  const { perMinute: n, knex, logger } = deps;
  if (n <= 0) return NO_LIMITS;

  const limiter = (keyPrefix: string, points: number, durationSeconds: number) =>
    clusterLimiter(knex, { keyPrefix, points, durationSeconds });
  const pair = limiter('login_pair', n, LOGIN_LIMITS.pairWindowSeconds);
  const lockouts = limiter('login_pair_lockouts', 1_000_000, LOGIN_LIMITS.lockoutMemorySeconds);
  const pairHour = limiter(
    'login_pair_hour',
    LOGIN_LIMITS.pairHourFactor * n,
    LOGIN_LIMITS.pairHourWindowSeconds,
  );
  const knownPairs = limiter(KNOWN_PAIRS, 1, LOGIN_LIMITS.knownPairSeconds);
  const byUsername = limiter(
    'login_user',
    LOGIN_LIMITS.usernameFactor * n,
    LOGIN_LIMITS.usernameWindowSeconds,
  );
  const byIpMinute = limiter('login_ip_minute', n, LOGIN_LIMITS.ipMinuteWindowSeconds);
  const byIp = limiter('login_ip', LOGIN_LIMITS.ipFactor * n, LOGIN_LIMITS.ipWindowSeconds);
  const signups = limiter('signup_ip', n, LOGIN_LIMITS.signupWindowSeconds);
  const pairSuccesses = limiter('login_pair_ok', n, LOGIN_LIMITS.pairSuccessWindowSeconds);

  const take = (target: ClusterCounter, key: string) => takePoint(target, key);

  /** The pair's counter, locking the pair out for longer each time it runs over; answers the point's window. */
  async function takePair(key: string): Promise<string | null> {
    try {
      return (await pair.consume(key)).window;
    } catch (err) {
      if (!(err instanceof LimitReached)) throw err;
      // Only the attempt that ran over starts a lockout; later ones wait for it to end.
      if (err.state.consumedPoints !== n + 1) {
        throw new AppError('RATE_LIMITED', { retryAfter: retryAfterSeconds(err.state) });
      }
    }
    const count = (await lockouts.penalty(key)).consumedPoints;
    const seconds = Math.min(
      LOGIN_LIMITS.longestLockoutSeconds,
      LOGIN_LIMITS.firstLockoutSeconds * 2 ** Math.min(count - 1, 20),
    );
    await pair.block(key, seconds);
    throw new AppError('RATE_LIMITED', { retryAfter: seconds });
  }

  /**
   * A point of the pair's right passwords, taken before the check: a refused one is given straight back (it was no
   * check), so that the counter holds the pair's successes and its checks in flight, and never more.
   */
  async function takeSuccess(key: string): Promise<string | null> {
    try {
      return (await pairSuccesses.consume(key)).window;
    } catch (err) {
      if (!(err instanceof LimitReached)) throw err;
      await pairSuccesses.reward(key, 1, err.state.window);
      throw new AppError('RATE_LIMITED', { retryAfter: retryAfterSeconds(err.state) });
    }
  }

  const pairKey = (username: string, ip: string) => `${pairKeyStart(username)}${addressKey(ip)}`;

  /** The points an attempt of an unknown pair took from the address's and the username's counters, given back. */
  const giveSharedBack = (username: string, ip: string, windows: AttemptWindows): Array<Promise<unknown>> => [
    byIpMinute.reward(addressKey(ip), 1, windows.ipMinute),
    byIp.reward(addressKey(ip), 1, windows.ip),
    byUsername.reward(username.toLowerCase(), 1, windows.username),
  ];

  const stopSweeping = sweepPeriodically(() => {
    sweepClusterLimits(knex).catch((err: unknown) =>
      logger.warn({ err }, 'sweeping expired auth limit counters failed'),
    );
  }, SWEEP_INTERVAL_MS);

  return {
    async takeSignup(ip) {
      await take(signups, addressKey(ip));
    },
    async takePasswordAttempt(username, ip) {
      const key = pairKey(username, ip);
      // First, so that a pair past its right passwords takes no failure points (the owner is not locked out).
      const success = await takeSuccess(key);
      try {
        const pairWindow = await takePair(key);
        const pairHourWindow = await take(pairHour, key);
        // Someone who signed in from this address before (an office, a carrier's NAT) is not refused because
        // another client there spent the address's failures, nor because guessers elsewhere spent the username's:
        // their own pair's limits hold them.
        const tookShared = (await knownPairs.get(key)) === null;
        const shared = tookShared
          ? await (async () => {
              const taken: Array<() => Promise<unknown>> = [];
              const takeShared = async (limiter: typeof byIp, counterKey: string) => {
                const window = await take(limiter, counterKey);
                taken.push(() => limiter.reward(counterKey, 1, window));
                return window;
              };
              try {
                return {
                  ipMinute: await takeShared(byIpMinute, addressKey(ip)),
                  ip: await takeShared(byIp, addressKey(ip)),
                  username: await takeShared(byUsername, username.toLowerCase()),
                };
              } catch (err) {
                // Refused by the address's or the username's counters, which others spend (a NAT's other users,
                // guessers elsewhere): no password was checked, so the points this attempt took go back, the pair's
                // and the shared ones before the refusing one. Kept, the pair's locked out a user who only met the
                // address's cap, and the address's turned away its other newcomers when the username's refused.
                await Promise.all([
                  pair.reward(key, 1, pairWindow),
                  pairHour.reward(key, 1, pairHourWindow),
                  ...taken.map((giveBack) => giveBack()),
                ]);
                throw err;
              }
            })()
          : {};
        const windows: AttemptWindows = { success, pair: pairWindow, pairHour: pairHourWindow, ...shared };
        return { username, ip, tookShared, windows };
      } catch (err) {
        // Refused (or failed) before the check: no password was checked, so its point of the right passwords goes
        // back. The failure points already taken stay, as every refusal leaves them.
        await pairSuccesses.reward(key, 1, success).catch((rewardErr: unknown) => {
          logger.warn({ err: rewardErr }, 'giving back a refused login attempt failed');
        });
        throw err;
      }
    },
    async passwordAccepted({ username, ip, tookShared, windows }, userId) {
      const key = pairKey(username, ip);
      // The point of the pair's right passwords that the attempt took before the check stays: it was one.
      await Promise.all([
        pair.delete(key),
        lockouts.delete(key),
        pairHour.delete(key),
        ...(tookShared ? giveSharedBack(username, ip, windows) : []),
        // Only while the account is live: a password checked just before the account's deletion (a login, a
        // password change, a second deletion from another device) would otherwise write back, after the deletion
        // forgot them, an address the name's next owner never signed in from (by the account's id: the next owner
        // of the name is another account).
        knownPairs.setWhileUserLive(key, 1, LOGIN_LIMITS.knownPairSeconds, userId),
      ]);
    },
    async passwordRejected({ username, ip, windows }) {
      await pairSuccesses.reward(pairKey(username, ip), 1, windows.success);
    },
    async passwordNotChecked({ username, ip, tookShared, windows }) {
      const key = pairKey(username, ip);
      await Promise.all([
        pairSuccesses.reward(key, 1, windows.success),
        pair.reward(key, 1, windows.pair),
        pairHour.reward(key, 1, windows.pairHour),
        ...(tookShared ? giveSharedBack(username, ip, windows) : []),
      ]);
    },
    async signedUp(username, ip, userId) {
      await knownPairs.setWhileUserLive(pairKey(username, ip), 1, LOGIN_LIMITS.knownPairSeconds, userId);
    },
    close() {
      stopSweeping();
    },
  };
}
