import type { Knex } from 'knex';
import { raw } from 'objection';
import type { Config } from '../config.js';
import { AppError, constraintName, sqlState } from '../errors.js';
import type { Logger } from '../logger.js';
import { User } from '../models/User.js';
import type { Notifier } from '../notifier.js';
import { createAuthLimits, type AuthLimits } from './authLimits.js';
import type { PasswordHasher } from './passwords.js';
import { signToken } from './tokens.js';

/** The unique index that makes usernames unique case-insensitively (migrations/…_initial_schema.ts). */
const USERNAME_UNIQUE_INDEX = 'users_username_lower_unique';
const UNIQUE_VIOLATION = '23505';

export interface NewAccount {
  username: string;
  password: string;
  displayName: string;
}

export interface AuthService {
  /** Per-IP and per-username limits of signup and login, per node. */
  readonly limits: AuthLimits;
  /** Creates the account (username as typed) and its first token. Throws USERNAME_TAKEN. */
  signup(input: NewAccount): Promise<{ user: User; token: string }>;
  /**
   * The user whose username (case-insensitively) and password match, else undefined. An unknown user and a
   * wrong password take the same time: both run one argon2 verification.
   */
  checkCredentials(username: string, password: string): Promise<User | undefined>;
  /** A new access token carrying the user's current token version. */
  issueToken(user: Pick<User, 'id' | 'tokenVersion'>): string;
  /**
   * Revokes every token of the user (bumps the token version, which every request and handshake checks) and
   * disconnects the user's sockets on every node (through the postgres adapter).
   */
  logout(userId: string): Promise<void>;
}

export interface AuthDeps {
  config: Readonly<Config>;
  knex: Knex;
  notify: Notifier;
  logger: Logger;
  /** Made once at startup (createPasswordHasher hashes its dummy password then). */
  passwords: PasswordHasher;
}

/** Builds the accounts service over the app's knex and Socket.IO server. */
export function createAuthService(deps: AuthDeps): AuthService {
  const { config, knex, notify, logger, passwords } = deps;
  const limits = createAuthLimits(config.limits.authPerMinute);

  async function findByUsername(username: string): Promise<User | undefined> {
    // lower(username) = lower(?) is what the unique index covers, so this is an index lookup.
    return await User.query(knex).whereRaw('lower(username) = lower(?)', [username]).first();
  }

  async function rehashIfNeeded(user: User, password: string): Promise<void> {
    if (!passwords.needsRehash(user.passwordHash)) return;
    try {
      const passwordHash = await passwords.hash(password);
      await User.query(knex).findById(user.id).patch({ passwordHash });
    } catch (err) {
      // The login itself succeeded; the old hash still works and is retried at the next login.
      logger.warn({ err, userId: user.id }, 'upgrading a password hash failed');
    }
  }

  return {
    limits,
    async signup({ username, password, displayName }) {
      const passwordHash = await passwords.hash(password);
      let user: User;
      try {
        user = await User.query(knex).insertAndFetch({ username, displayName, passwordHash });
      } catch (err) {
        // Two signups of one name (in any case) race to this insert; the index decides, the loser gets 409.
        if (sqlState(err) === UNIQUE_VIOLATION && constraintName(err) === USERNAME_UNIQUE_INDEX) {
          throw new AppError('USERNAME_TAKEN', { cause: err });
        }
        throw err;
      }
      return { user, token: signToken(user, config.auth) };
    },
    async checkCredentials(username, password) {
      const user = await findByUsername(username);
      const ok = await passwords.verify(user?.passwordHash, password);
      if (!user || !ok) return undefined;
      await rehashIfNeeded(user, password);
      return user;
    },
    issueToken(user) {
      return signToken(user, config.auth);
    },
    async logout(userId) {
      await User.query(knex)
        .findById(userId)
        .patch({ tokenVersion: raw('token_version + 1'), updatedAt: raw('now()') });
      // After the commit: a handshake racing this sees the new version or is already in the room.
      notify.disconnectUser(userId);
    },
  };
}
