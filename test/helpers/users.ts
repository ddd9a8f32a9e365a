import { randomBytes } from 'node:crypto';
import type { Knex } from 'knex';
import { signAccessToken } from '../../lib/auth/tokens.js';
import type { Config } from '../../lib/config.js';
import { Friendship, User } from '../../lib/models/index.js';

export interface TestUser {
  id: string;
  username: string;
  token: string;
  /** The session the token belongs to. */
  sessionId: string;
}

/** A unique valid username. */
export function uniqueUsername(prefix = 'u'): string {
  return `${prefix}_${randomBytes(5).toString('hex')}`;
}

/**
 * Inserts a user and a session straight into the database and signs an access token for that session, for
 * tests of features other than signup (the hash is not a real one: such a user cannot log in with a password,
 * and the session has no refresh token).
 */
export async function insertUser(
  knex: Knex,
  config: Readonly<Config>,
  username = uniqueUsername(),
): Promise<TestUser> {
  const user = await User.query(knex).insertAndFetch({
    username,
    displayName: username,
    passwordHash: 'not-a-real-hash',
  });
  const sessionId = await insertSession(knex, user.id);
  return {
    id: user.id,
    username,
    token: signAccessToken({ userId: user.id, sessionId }, config.auth, Date.now()).token,
    sessionId,
  };
}

/** A session row for `userId` (no refresh token); `lastUsedAt` to age it. */
export async function insertSession(knex: Knex, userId: string, lastUsedAt?: Date): Promise<string> {
  const [row] = await knex('sessions')
    .insert({ user_id: userId, ...(lastUsedAt ? { last_used_at: lastUsedAt, created_at: lastUsedAt } : {}) })
    .returning<Array<{ id: string }>>('id');
  return row!.id;
}

/** Makes two users friends directly in the database. */
export async function insertFriendship(knex: Knex, a: string, b: string): Promise<void> {
  await Friendship.query(knex).insert(Friendship.pair(a, b));
}
