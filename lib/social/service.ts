import type { Knex } from 'knex';
import { AppError } from '../errors.js';
import type { ControlBus } from '../cluster/controlBus.js';
import type { Notifier } from '../notifier.js';
import type { PublicFriend, PublicFriendRequest, PublicUser } from '../protocol/index.js';
import * as requests from './friendRequests.js';
import * as friendships from './friendships.js';
import { findUserByUsername, searchUsersByPrefix } from './relations.js';

export type { RequestDirection } from './friendRequests.js';

/**
 * Friends and blocks. Every change runs in one transaction under the pair lock; events go out after the commit.
 */
export interface SocialService {
  /** USER_NOT_FOUND when no user has this username (case-insensitively). */
  findUser(username: string): Promise<PublicUser>;
  /**
   * Up to `limit` users whose username starts with `prefix` (case-insensitively), by username; never `me`, nor
   * anyone `me` blocked or who blocked `me`.
   */
  searchUsers(me: string, prefix: string, limit: number): Promise<PublicUser[]>;
  /** 201-style `created: true` for a new request; `false` when the other side's request was accepted instead. */
  sendRequest(me: string, username: string): Promise<{ request: PublicFriendRequest; created: boolean }>;
  listRequests(me: string, direction: requests.RequestDirection): Promise<PublicFriendRequest[]>;
  acceptRequest(me: string, requestId: string): Promise<PublicFriendRequest>;
  declineRequest(me: string, requestId: string): Promise<PublicFriendRequest>;
  cancelRequest(me: string, requestId: string): Promise<void>;
  listFriends(me: string): Promise<PublicFriend[]>;
  removeFriend(me: string, userId: string): Promise<void>;
  block(me: string, userId: string): Promise<void>;
  unblock(me: string, userId: string): Promise<void>;
  listBlocked(me: string): Promise<PublicUser[]>;
}

export interface SocialDeps {
  knex: Knex;
  notify: Notifier;
  /** A block tells every node, in its transaction, through `membership.changed` of the pair's conversation. */
  controlBus: Pick<ControlBus, 'publishWithin'>;
}

/** Builds the friends-and-blocks service over the app's knex and Socket.IO server. */
export function createSocialService(deps: SocialDeps): SocialService {
  const { knex, notify } = deps;

  return {
    async findUser(username) {
      const user = await findUserByUsername(knex, username);
      if (!user) throw new AppError('USER_NOT_FOUND');
      return user.toPublic();
    },
    async searchUsers(me, prefix, limit) {
      return (await searchUsersByPrefix(knex, me, prefix, limit)).map((u) => u.toPublic());
    },
    async sendRequest(me, username) {
      const outcome = await knex.transaction((trx) => requests.sendRequest(trx, me, username));
      const request = outcome.request.toPublic();
      if (outcome.created) notify.friendRequest(request);
      else notify.friendAccepted(request);
      return { request, created: outcome.created };
    },
    async listRequests(me, direction) {
      return (await requests.listPending(knex, me, direction)).map((r) => r.toPublic());
    },
    async acceptRequest(me, requestId) {
      const request = (
        await knex.transaction((trx) => requests.acceptRequest(trx, me, requestId))
      ).toPublic();
      notify.friendAccepted(request);
      return request;
    },
    async declineRequest(me, requestId) {
      return (await knex.transaction((trx) => requests.declineRequest(trx, me, requestId))).toPublic();
    },
    async cancelRequest(me, requestId) {
      await knex.transaction((trx) => requests.cancelRequest(trx, me, requestId));
    },
    async listFriends(me) {
      return (await friendships.listFriends(knex, me)).map(({ user, since }) => ({
        user: user.toPublic(),
        since: since.toISOString(),
      }));
    },
    async removeFriend(me, userId) {
      await knex.transaction((trx) => friendships.removeFriend(trx, me, userId));
    },
    async block(me, userId) {
      if (userId === me) {
        throw new AppError('VALIDATION_FAILED', { details: { userId: 'cannot block yourself' } });
      }
      await knex.transaction(async (trx) => {
        const conversationId = await friendships.block(trx, me, userId);
        // Who may act in the pair's conversation changed: every node hears it if the block commits, and drops
        // what it remembers of the conversation (its cached members, and the typings it answers without a
        // look at the blocks for 2 s after one went out).
        if (conversationId !== undefined) {
          await deps.controlBus.publishWithin(trx, {
            type: 'membership.changed',
            conversationId,
            userId: me,
          });
        }
      });
    },
    async unblock(me, userId) {
      await friendships.unblock(knex, me, userId);
    },
    async listBlocked(me) {
      return (await friendships.listBlocked(knex, me)).map((u) => u.toPublic());
    },
  };
}
