import type { Knex } from 'knex';
import { AppError } from '../errors.js';
import { Block } from '../models/Block.js';
import { Friendship } from '../models/Friendship.js';
import { User } from '../models/User.js';

/**
 * Queries about a pair of users, usable inside or outside a transaction (pass the transaction as `knex`).
 * Other features (direct and group conversations) use these for NOT_FRIENDS and BLOCKED.
 */

/** True when an accepted friendship joins `a` and `b`. */
export async function areFriends(knex: Knex, a: string, b: string): Promise<boolean> {
  const { userLow, userHigh } = Friendship.pair(a, b);
  const row = await Friendship.query(knex).where({ user_low: userLow, user_high: userHigh }).first();
  return row !== undefined;
}

/** True when either user has blocked the other. */
export async function isBlockedEitherWay(knex: Knex, a: string, b: string): Promise<boolean> {
  const row = await Block.query(knex)
    .whereIn(
      ['blocker_id', 'blocked_id'],
      [
        [a, b],
        [b, a],
      ],
    )
    .first();
  return row !== undefined;
}

/**
 * Locks both users' rows, always in id order, for the rest of the transaction. Every change to a pair's
 * requests, friendship or blocks takes this lock first, so two such changes on one pair (two users asking each
 * other at the same moment, a block racing an accept) run one after the other and see each other's result;
 * the fixed order rules out deadlocks. NO KEY UPDATE does not block foreign-key checks of other writers (a new
 * message referencing the user), only other lockers of the same users.
 *
 * Returns the locked users by id; a missing one is absent, and so is a deleted account (its row stays for the
 * history's senders): PostgreSQL checks `deleted_at` again on the row version it locks, so an account deletion that
 * commits while this waits for its row is seen, and no request or block is written against the deleted account.
 */
export async function lockUsers(trx: Knex.Transaction, ids: readonly string[]): Promise<Map<string, User>> {
  const locked = new Map<string, User>();
  for (const id of [...new Set(ids)].sort()) {
    const user = await User.query(trx)
      .modify('public')
      .findById(id)
      .whereNull('users.deleted_at')
      .forNoKeyUpdate();
    if (user) locked.set(id, user);
  }
  return locked;
}

/**
 * Share-locks the users' rows (in id order, one statement) for the rest of the transaction, before a check that
 * relies on their friendships or blocks (a group created with them, a member added, a direct conversation). Those
 * change under {@link lockUsers} (unfriend, block) or the account deletion's row lock, which conflict with this
 * one: such a change either committed before, and the check sees it, or waits until this transaction ends. Share
 * locks do not conflict with each other, so two groups made with the same people do not wait for each other.
 *
 * Returns the ids of the accounts that exist and are not deleted, checked on the row versions locked (so after
 * any deletion this waited for).
 */
export async function shareLockUsers(trx: Knex.Transaction, ids: readonly string[]): Promise<Set<string>> {
  if (ids.length === 0) return new Set();
  const { rows } = await trx.raw<{ rows: Array<{ id: string }> }>(
    'SELECT id FROM users WHERE id = ANY(?::uuid[]) AND deleted_at IS NULL ORDER BY id FOR SHARE',
    [[...new Set(ids)]],
  );
  return new Set(rows.map((row) => row.id));
}

/** lockUsers for the caller and another user: UNAUTHORIZED if the caller is gone, `missing` if the other is. */
export async function lockPair(
  trx: Knex.Transaction,
  me: string,
  other: string,
  missing: 'USER_NOT_FOUND' | 'NOT_FOUND',
): Promise<{ me: User; other: User }> {
  const locked = await lockUsers(trx, [me, other]);
  const meUser = locked.get(me);
  const otherUser = locked.get(other);
  if (!meUser) throw new AppError('UNAUTHORIZED');
  if (!otherUser) throw new AppError(missing);
  return { me: meUser, other: otherUser };
}

/**
 * A user by username, matched case-insensitively: A-Z folded alone, whatever the database's locale (the unique
 * index's key, migration 20261206100000_usernames_folded_as_ascii).
 */
export async function findUserByUsername(knex: Knex, username: string): Promise<User | undefined> {
  return await User.query(knex)
    .modify('public')
    .whereRaw('lower(username COLLATE "C") = lower(? COLLATE "C")', [username])
    .first();
}

/** `prefix` as a LIKE pattern matching the lower-cased usernames that start with it: wildcards are escaped. */
function likePrefix(prefix: string): string {
  return `${prefix.toLowerCase().replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

/**
 * Up to `limit` users whose username starts with `prefix` (case-insensitively), by username: never `me`, nor
 * anyone `me` blocked or who blocked `me`. The unique index on `lower(username COLLATE "C")` (collation "C") serves
 * both the prefix range and the order, so a short prefix reads `limit` index entries, not every match.
 */
export async function searchUsersByPrefix(
  knex: Knex,
  me: string,
  prefix: string,
  limit: number,
): Promise<User[]> {
  return await User.query(knex)
    .modify('public')
    .whereRaw(`lower(username COLLATE "C") LIKE ? ESCAPE '\\'`, [likePrefix(prefix)])
    .whereNot('users.id', me)
    // NOT IN over each side's blocks (both columns NOT NULL: the same as NOT EXISTS), which PostgreSQL reads once
    // into a hash: as NOT EXISTS it could plan an anti join that read a user's whole block list again for each
    // match (5000 blocks: 1.5 s a search, SEARCH hunt).
    .whereNotIn('users.id', Block.query(knex).select('blocked_id').where('blocker_id', me))
    .whereNotIn('users.id', Block.query(knex).select('blocker_id').where('blocked_id', me))
    .orderByRaw('lower(username COLLATE "C")')
    .limit(limit);
}
