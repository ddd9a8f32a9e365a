import type { Knex } from 'knex';
import { raw } from 'objection';
import { AppError } from '../errors.js';
import { FriendRequest } from '../models/FriendRequest.js';
import { Friendship } from '../models/Friendship.js';
import { areFriends, findUserByUsername, isBlockedEitherWay, lockPair } from './relations.js';

/**
 * The friend-request state machine. Each function runs in the transaction it is given, after locking the pair
 * (see lockPair), and returns the request with both users loaded; the caller emits events after the commit.
 */

export type RequestDirection = 'incoming' | 'outgoing';

/** What sendRequest did: a new pending request, or the other side's pending request accepted. */
export interface RequestOutcome {
  request: FriendRequest;
  created: boolean;
}

/** The request with fromUser and toUser loaded, as toPublic() needs. */
export async function loadRequest(knex: Knex, id: string): Promise<FriendRequest> {
  const request = await FriendRequest.query(knex).findById(id).withGraphFetched('[fromUser, toUser]');
  if (!request) throw new AppError('NOT_FOUND');
  return request;
}

function pendingBetween(knex: Knex, a: string, b: string) {
  return FriendRequest.query(knex)
    .where('status', 'pending')
    .whereIn(
      ['from_user_id', 'to_user_id'],
      [
        [a, b],
        [b, a],
      ],
    );
}

/** Marks a pending request accepted and creates the friendship (one row per pair, whatever the race). */
async function acceptPending(trx: Knex.Transaction, request: FriendRequest): Promise<void> {
  await FriendRequest.query(trx)
    .findById(request.id)
    .patch({ status: 'accepted', respondedAt: raw('statement_timestamp()') });
  // Dated by its own statement, as the request's answer is: the transaction's start (the column's default) may be
  // long before, when the accept waited for the pair's lock, even before the request it accepts was made.
  await Friendship.query(trx)
    .insert({
      ...Friendship.pair(request.fromUserId, request.toUserId),
      createdAt: raw('statement_timestamp()'),
    })
    .onConflict(['user_low', 'user_high'])
    .ignore();
}

/**
 * Deletes the pair's answered requests but the newest, as a new request between them is made (under the pair's
 * locks). Answered requests are read by nothing but the catch-up of acceptances, which tells only one whose
 * friendship still exists (a pair that can ask again has none), and the answer to a late accept, decline or cancel
 * of that request (`REQUEST_NOT_PENDING`; kept for the newest). Kept, a pair that asked and cancelled in a loop left
 * a row a round for ever (DATA hunt): now a pair holds at most its newest answer and its pending request.
 */
async function forgetOlderAnswers(trx: Knex.Transaction, a: string, b: string): Promise<void> {
  const pair = [
    [a, b],
    [b, a],
  ];
  const answered = () =>
    trx('friend_requests').whereIn(['from_user_id', 'to_user_id'], pair).whereNot('status', 'pending');
  await answered()
    .whereNotIn(
      'id',
      answered()
        .select('id')
        .orderBy([
          { column: 'responded_at', order: 'desc', nulls: 'last' },
          { column: 'id', order: 'desc' },
        ])
        .limit(1),
    )
    .delete();
}

/**
 * `me` asks `username` to be friends. If that user already asked `me`, their request is accepted instead
 * (created: false). Throws USER_NOT_FOUND, CANNOT_FRIEND_SELF, BLOCKED, ALREADY_FRIENDS or REQUEST_EXISTS.
 */
export async function sendRequest(
  trx: Knex.Transaction,
  me: string,
  username: string,
): Promise<RequestOutcome> {
  const target = await findUserByUsername(trx, username);
  if (!target) throw new AppError('USER_NOT_FOUND');
  if (target.id === me) throw new AppError('CANNOT_FRIEND_SELF');
  await lockPair(trx, me, target.id, 'USER_NOT_FOUND');

  if (await isBlockedEitherWay(trx, me, target.id)) throw new AppError('BLOCKED');
  if (await areFriends(trx, me, target.id)) throw new AppError('ALREADY_FRIENDS');
  const pending = await pendingBetween(trx, me, target.id).first();
  if (pending) {
    if (pending.fromUserId === me) throw new AppError('REQUEST_EXISTS');
    await acceptPending(trx, pending);
    return { request: await loadRequest(trx, pending.id), created: false };
  }
  await forgetOlderAnswers(trx, me, target.id);
  // Dated when written, after the pair's locks it may have waited for, as its answer is (`respondedAt`): a node's
  // check after a lost LISTEN connection looks for the requests made since the gap began (revalidation.ts).
  const inserted = await FriendRequest.query(trx).insert({
    fromUserId: me,
    toUserId: target.id,
    createdAt: raw('statement_timestamp()'),
  });
  return { request: await loadRequest(trx, inserted.id), created: true };
}

/**
 * A pending request `me` may act on as `role`, locked with its pair. Anyone else's request is NOT_FOUND (its
 * existence is not revealed); a request already answered is REQUEST_NOT_PENDING.
 */
async function ownPendingRequest(
  trx: Knex.Transaction,
  me: string,
  id: string,
  role: 'recipient' | 'sender',
): Promise<FriendRequest> {
  const found = await FriendRequest.query(trx).findById(id);
  const mine = found && (role === 'recipient' ? found.toUserId : found.fromUserId) === me;
  if (!found || !mine) throw new AppError('NOT_FOUND');
  await lockPair(trx, me, role === 'recipient' ? found.fromUserId : found.toUserId, 'NOT_FOUND');
  // Re-read under the pair lock: the status seen above may have changed while we waited for it.
  const current = await FriendRequest.query(trx).findById(id);
  if (!current) throw new AppError('NOT_FOUND');
  if (current.status !== 'pending') throw new AppError('REQUEST_NOT_PENDING');
  return current;
}

/** The recipient accepts: status accepted, and the two become friends. */
export async function acceptRequest(trx: Knex.Transaction, me: string, id: string): Promise<FriendRequest> {
  const request = await ownPendingRequest(trx, me, id, 'recipient');
  await acceptPending(trx, request);
  return loadRequest(trx, id);
}

/** The recipient declines: status declined; the sender may ask again later. */
export async function declineRequest(trx: Knex.Transaction, me: string, id: string): Promise<FriendRequest> {
  await ownPendingRequest(trx, me, id, 'recipient');
  await FriendRequest.query(trx)
    .findById(id)
    .patch({ status: 'declined', respondedAt: raw('statement_timestamp()') });
  return loadRequest(trx, id);
}

/** The sender withdraws: status cancelled. */
export async function cancelRequest(trx: Knex.Transaction, me: string, id: string): Promise<void> {
  await ownPendingRequest(trx, me, id, 'sender');
  await FriendRequest.query(trx)
    .findById(id)
    .patch({ status: 'cancelled', respondedAt: raw('statement_timestamp()') });
}

/** Pending requests to `me` (incoming) or from `me` (outgoing), newest first. */
export async function listPending(
  knex: Knex,
  me: string,
  direction: RequestDirection,
): Promise<FriendRequest[]> {
  return await FriendRequest.query(knex)
    .where(direction === 'incoming' ? 'to_user_id' : 'from_user_id', me)
    .where('status', 'pending')
    .orderBy([
      { column: 'created_at', order: 'desc' },
      { column: 'id', order: 'desc' },
    ])
    .withGraphFetched('[fromUser, toUser]');
}

/**
 * Ends the pending requests between the two, from the blocker's side: the blocker's own requests become
 * cancelled, the ones they received declined.
 */
export async function endPendingRequests(
  trx: Knex.Transaction,
  blocker: string,
  other: string,
): Promise<void> {
  await FriendRequest.query(trx)
    .where({ from_user_id: blocker, to_user_id: other, status: 'pending' })
    .patch({ status: 'cancelled', respondedAt: raw('statement_timestamp()') });
  await FriendRequest.query(trx)
    .where({ from_user_id: other, to_user_id: blocker, status: 'pending' })
    .patch({ status: 'declined', respondedAt: raw('statement_timestamp()') });
}

/**
 * What `userIds` were told of friend requests at or after `since`: requests to them that still wait (from the
 * incoming index), and requests of theirs accepted since then whose friendship still exists; with their users,
 * newest first, at most `limit` of each.
 *
 * An accepted request keeps its status when its friendship ends (an unfriending, or a block), so by the status
 * alone a node that missed the acceptance would announce, after the end, a friendship that no longer exists: a
 * client that takes `friend:accepted` as a new friend would show one the sender does not have, and no event
 * takes it back (an unfriending is told to no one). Told live, the event comes before the end, never after it. A
 * pair that has become friends again since is told (its friendship exists).
 */
export async function requestNoticesSince(
  knex: Knex,
  userIds: readonly string[],
  since: Date,
  limit: number,
): Promise<{ incoming: FriendRequest[]; accepted: FriendRequest[] }> {
  if (userIds.length === 0) return { incoming: [], accepted: [] };
  const [incoming, accepted] = await Promise.all([
    FriendRequest.query(knex)
      .whereRaw('to_user_id = ANY (?::uuid[])', [[...userIds]])
      .where('status', 'pending')
      .where('created_at', '>=', since)
      .orderBy('created_at', 'desc')
      .limit(limit)
      .withGraphFetched('[fromUser, toUser]'),
    FriendRequest.query(knex)
      .whereRaw('from_user_id = ANY (?::uuid[])', [[...userIds]])
      .where('status', 'accepted')
      .where('responded_at', '>=', since)
      .whereExists(
        Friendship.query(knex)
          .whereRaw('friendships.user_low = LEAST(friend_requests.from_user_id, friend_requests.to_user_id)')
          .whereRaw(
            'friendships.user_high = GREATEST(friend_requests.from_user_id, friend_requests.to_user_id)',
          ),
      )
      .orderBy('responded_at', 'desc')
      .limit(limit)
      .withGraphFetched('[fromUser, toUser]'),
  ]);
  return { incoming, accepted };
}
