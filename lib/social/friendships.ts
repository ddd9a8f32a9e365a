import type { Knex } from 'knex';
import { AppError } from '../errors.js';
import { Block } from '../models/Block.js';
import { Conversation } from '../models/Conversation.js';
import { Friendship } from '../models/Friendship.js';
import { User } from '../models/User.js';
import { endPendingRequests } from './friendRequests.js';
import { lockPair } from './relations.js';

/** Friendships and blocks. Writers take the pair lock (lockPair) like the request state machine does. */

export interface FriendEntry {
  user: User;
  since: Date;
}

/** `me`'s friends, by username (case-insensitively), each with when the friendship began. */
export async function listFriends(knex: Knex, me: string): Promise<FriendEntry[]> {
  const rows = (await User.query(knex)
    .modify('public')
    .select('friendships.created_at as friends_since')
    .join('friendships', (join) => {
      join
        .on((low) =>
          low.on('friendships.user_low', '=', 'users.id').andOnVal('friendships.user_high', '=', me),
        )
        .orOn((high) =>
          high.on('friendships.user_high', '=', 'users.id').andOnVal('friendships.user_low', '=', me),
        );
    })
    .orderByRaw('lower(users.username COLLATE "C"), users.id')) as Array<User & { friendsSince: Date }>;
  return rows.map((row) => ({ user: row, since: row.friendsSince }));
}

/** Ends the friendship; NOT_FOUND when there is none. */
export async function removeFriend(trx: Knex.Transaction, me: string, other: string): Promise<void> {
  await lockPair(trx, me, other, 'NOT_FOUND');
  const { userLow, userHigh } = Friendship.pair(me, other);
  const deleted = await Friendship.query(trx).where({ user_low: userLow, user_high: userHigh }).delete();
  if (deleted === 0) throw new AppError('NOT_FOUND');
}

/**
 * `me` blocks `other`: idempotent; ends their friendship and every pending request between them, both ways.
 * Throws USER_NOT_FOUND for an unknown user. Answers the pair's direct conversation, if they have one.
 */
export async function block(trx: Knex.Transaction, me: string, other: string): Promise<string | undefined> {
  await lockPair(trx, me, other, 'USER_NOT_FOUND');
  // The pair's direct conversation too, the lock its writers take: a send or change that commits after this
  // block sees it, one that committed before it came first (lock order: users, then conversations, as writers
  // take no user locks).
  const direct = await trx.raw<{ rows: Array<{ id: string }> }>(
    'SELECT id FROM conversations WHERE direct_key = ? FOR NO KEY UPDATE',
    [Conversation.directKeyFor(me, other)],
  );
  await Block.query(trx)
    .insert({ blockerId: me, blockedId: other })
    .onConflict(['blocker_id', 'blocked_id'])
    .ignore();
  const { userLow, userHigh } = Friendship.pair(me, other);
  await Friendship.query(trx).where({ user_low: userLow, user_high: userHigh }).delete();
  await endPendingRequests(trx, me, other);
  return direct.rows[0]?.id;
}

/**
 * Lifts `me`'s block of `other`, if any (idempotent). A block the other placed stays. One DELETE of one row:
 * no pair lock needed, nothing else changes with it.
 */
export async function unblock(knex: Knex, me: string, other: string): Promise<void> {
  await Block.query(knex).where({ blocker_id: me, blocked_id: other }).delete();
}

/** The users `me` has blocked (never the ones who blocked `me`), by username. */
export async function listBlocked(knex: Knex, me: string): Promise<User[]> {
  return await User.query(knex)
    .modify('public')
    .join('blocks', 'blocks.blocked_id', 'users.id')
    .where('blocks.blocker_id', me)
    .orderByRaw('lower(users.username COLLATE "C"), users.id');
}
