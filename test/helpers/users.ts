import { randomBytes } from 'node:crypto';
import type { Knex } from 'knex';
import { signToken } from '../../lib/auth/tokens.js';
import type { Config } from '../../lib/config.js';
import { Friendship, User } from '../../lib/models/index.js';

export interface TestUser {
  id: string;
  username: string;
  token: string;
}

/** A unique valid username. */
export function uniqueUsername(prefix = 'u'): string {
  return `${prefix}_${randomBytes(5).toString('hex')}`;
}

/**
 * Inserts a user straight into the database and signs a token for it, for tests of features other than
 * signup (the hash is not a real one: such a user cannot log in with a password).
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
  return { id: user.id, username: user.username, token: signToken(user, config.auth) };
}

/** Makes two users friends directly in the database. */
export async function insertFriendship(knex: Knex, a: string, b: string): Promise<void> {
  await Friendship.query(knex).insert(Friendship.pair(a, b));
}
