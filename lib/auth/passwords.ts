import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import argon2 from 'argon2';
import { AppError } from '../errors.js';
import type { Logger } from '../logger.js';

/**
 * argon2id at OWASP's minimum (19 MiB, 2 passes, 1 lane). Raising any of these later is safe: old hashes still
 * verify (the PHC string carries its own parameters) and are re-hashed at the next successful login.
 */
export const PASSWORD_HASH_PARAMS = Object.freeze({
  memoryCost: 19_456,
  timeCost: 2,
  parallelism: 1,
});

const HASH_OPTIONS = { type: argon2.argon2id, ...PASSWORD_HASH_PARAMS } as const;

/**
 * How a password matched its stored hash: `'current'` as today's hash of it would be made, `'outdated'` only as
 * sent, not normalized (a hash made before passwords were normalized: to be made again); false: no match.
 */
export type PasswordMatch = 'current' | 'outdated' | false;

/**
 * The password as it is hashed: in Unicode's composed form (NFC), so that "é" typed as one code point (most
 * keyboards) or as "e" and a combining accent (some, and text pasted from macOS file names) is one password, as
 * RFC 8265 (OpaqueString) and NIST SP 800-63B ask. Nothing else is changed: no trimming, no case, no truncation.
 */
export function normalizedPassword(password: string): string {
  return password.normalize('NFC');
}

export interface PasswordHasher {
  /**
   * A PHC string (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`) of the whole password ({@link normalizedPassword}),
   * never truncated.
   */
  hash(password: string): Promise<string>;
  /**
   * How `password` matches `stored` ({@link PasswordMatch}). With no stored hash (unknown user) or an unreadable
   * one, it verifies against a dummy hash of the same parameters and answers false, as many times as a stored hash
   * would be tried, so every failure costs the same time.
   */
  verify(stored: string | undefined, password: string): Promise<PasswordMatch>;
  /** True when `stored` was made with other parameters than today's. */
  needsRehash(stored: string): boolean;
}

/** Runs at most `running` tasks at once, queues `waiting` more, and refuses the rest with OVERLOADED. */
export interface Gate {
  run<T>(task: () => Promise<T>): Promise<T>;
}

/** How many tasks a {@link Gate} runs at once and how many more wait. */
export interface GateLimits {
  readonly running: number;
  readonly waiting: number;
}

export function createGate(limits: GateLimits): Gate {
  let running = 0;
  const queue: Array<() => void> = [];
  const release = () => {
    running--;
    const next = queue.shift();
    if (next) {
      running++;
      next();
    }
  };
  return {
    async run(task) {
      if (running >= limits.running) {
        if (queue.length >= limits.waiting) {
          throw new AppError('OVERLOADED', {
            message: 'Too many password checks at once; retry later.',
            retryAfter: 1,
          });
        }
        await new Promise<void>((resolve) => queue.push(resolve));
      } else {
        running++;
      }
      try {
        return await task();
      } finally {
        release();
      }
    },
  };
}

/**
 * argon2 runs on libuv's thread pool, 19 MiB and tens of milliseconds of a core per password. Without a bound, a
 * flood of logins (right passwords are not rate-limited, and an attacker may own many accounts) would take every
 * core and every thread of the pool (which also decompresses request bodies): password checks run at most one
 * fewer than the cores at once, at least one, and at most 64 wait ({@link PASSWORD_CHECKS}); more are
 * refused with `503 OVERLOADED` and `Retry-After: 1`.
 */
export const PASSWORD_CHECKS: GateLimits = Object.freeze({
  running: Math.max(1, availableParallelism() - 1),
  waiting: 64,
});

/**
 * Builds the hasher and, once, the dummy hash used for unknown users (one argon2 run at startup, ~50 ms).
 * Passwords never leave this module's callers in lib/auth and are never logged.
 */
export async function createPasswordHasher(
  logger: Logger,
  checks: GateLimits = PASSWORD_CHECKS,
): Promise<PasswordHasher> {
  // The dummy's password is random and thrown away: nothing can ever match it.
  const dummyHash = await argon2.hash(randomBytes(32).toString('hex'), HASH_OPTIONS);

  const gate = createGate(checks);

  async function burnDummy(forms: readonly string[]): Promise<false> {
    for (const form of forms) await argon2.verify(dummyHash, form);
    return false;
  }

  async function check(stored: string | undefined, password: string): Promise<PasswordMatch> {
    // The normalized form first; the password as sent too where it differs (a hash from before normalizing),
    // tried for an unknown user as well, so that the time of a failure tells nothing of the account.
    const normalized = normalizedPassword(password);
    const forms = normalized === password ? [password] : [normalized, password];
    if (stored === undefined) return burnDummy(forms);
    try {
      if (await argon2.verify(stored, normalized)) return 'current';
      return forms.length > 1 && (await argon2.verify(stored, password)) ? 'outdated' : false;
    } catch (err) {
      // A malformed stored hash (a row written by hand): refuse the login, but in the usual time.
      logger.warn({ err }, 'stored password hash is unreadable; login refused');
      return burnDummy(forms);
    }
  }

  return {
    hash(password) {
      return gate.run(() => argon2.hash(normalizedPassword(password), HASH_OPTIONS));
    },
    verify(stored, password) {
      return gate.run(() => check(stored, password));
    },
    needsRehash(stored) {
      try {
        return argon2.needsRehash(stored, PASSWORD_HASH_PARAMS);
      } catch (err) {
        logger.warn({ err }, 'stored password hash is unreadable; it will be replaced');
        return true;
      }
    },
  };
}
