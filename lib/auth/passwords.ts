import { randomBytes } from 'node:crypto';
import argon2 from 'argon2';
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

export interface PasswordHasher {
  /** A PHC string (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`) of the whole password, never truncated. */
  hash(password: string): Promise<string>;
  /**
   * True when `password` matches `stored`. With no stored hash (unknown user) or an unreadable one, it verifies
   * against a dummy hash of the same parameters and answers false, so every failure costs the same time.
   */
  verify(stored: string | undefined, password: string): Promise<boolean>;
  /** True when `stored` was made with other parameters than today's. */
  needsRehash(stored: string): boolean;
}

/**
 * Builds the hasher and, once, the dummy hash used for unknown users (one argon2 run at startup, ~50 ms).
 * Passwords never leave this module's callers in lib/auth and are never logged.
 */
export async function createPasswordHasher(logger: Logger): Promise<PasswordHasher> {
  // The dummy's password is random and thrown away: nothing can ever match it.
  const dummyHash = await argon2.hash(randomBytes(32).toString('hex'), HASH_OPTIONS);

  async function burnDummy(password: string): Promise<false> {
    await argon2.verify(dummyHash, password);
    return false;
  }

  return {
    hash(password) {
      return argon2.hash(password, HASH_OPTIONS);
    },
    async verify(stored, password) {
      if (stored === undefined) return burnDummy(password);
      try {
        return await argon2.verify(stored, password);
      } catch (err) {
        // A malformed stored hash (a row written by hand): refuse the login, but in the usual time.
        logger.warn({ err }, 'stored password hash is unreadable; login refused');
        return burnDummy(password);
      }
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
