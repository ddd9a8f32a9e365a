import type { Knex } from 'knex';
import { AppError } from '../errors.js';
import type { Logger } from '../logger.js';
import { DELETED_USER_DISPLAY_NAME, User } from '../models/User.js';
import type { Notifier } from '../notifier.js';
import type { PublicUser } from '../protocol/index.js';
import { forgetKnownAddresses } from './authLimits.js';
import type { SessionService } from './sessions.js';

/** What account deletion needs of the conversation service (lib/conversations). */
export interface ConversationLeaver {
  /** The user leaves every group, each like a leave of their own (the owner hands over). */
  leaveAllGroups(userId: string): Promise<void>;
}

export interface ProfileService {
  /** Renames the user; friends and co-participants (and the user's own sockets) get `user:updated`. */
  updateDisplayName(userId: string, displayName: string): Promise<PublicUser>;
  /**
   * Deletes the account after checking its password (counted like a login). Every session ends, the user
   * leaves every group, friendships, requests and blocks go, the username is free again; the row stays as
   * "Deleted user" so messages and conversations keep their sender and creator. `sessionId` is the caller's:
   * UNAUTHORIZED, and nothing deleted, when it ended while the password was checked.
   */
  deleteAccount(user: User, sessionId: string, password: string, client: { ip: string }): Promise<void>;
}

export interface ProfileDeps {
  knex: Knex;
  notify: Notifier;
  logger: Logger;
  sessions: SessionService;
  conversations: ConversationLeaver;
  /** Answers the hash the password was checked against; throws INVALID_CREDENTIALS or RATE_LIMITED. */
  verifyOwnPassword(user: User, password: string, ip: string): Promise<string>;
}

/**
 * Everyone who may show this user: their friends and everyone who shares a conversation with them (one
 * statement; the indexes on friendships' two columns and on participants by user serve it).
 */
async function audienceOf(db: Knex, userId: string): Promise<string[]> {
  const result = await db.raw<{ rows: Array<{ id: string }> }>(
    `SELECT user_high AS id FROM friendships WHERE user_low = ?
     UNION SELECT user_low FROM friendships WHERE user_high = ?
     UNION SELECT other.user_id FROM conversation_participants AS mine
       JOIN conversation_participants AS other ON other.conversation_id = mine.conversation_id
       WHERE mine.user_id = ? AND other.user_id <> ?`,
    [userId, userId, userId, userId],
  );
  return result.rows.map((r) => r.id);
}

/** Display names and account deletion. */
export function createProfileService(deps: ProfileDeps): ProfileService {
  const { knex, notify, sessions, conversations } = deps;
  const logger = deps.logger.child({ component: 'profile' });

  return {
    async updateDisplayName(userId, displayName) {
      // Objection types this as always found; a deleted account (no session, so unlikely here) finds nothing.
      // The audience is read with the rename, in its transaction: read after the commit, a failure of that read
      // answered DB_UNAVAILABLE for a rename that was made, and that no one was told of.
      const { user, audience } = await knex.transaction(async (trx) => {
        const renamed: User | undefined = await User.query(trx)
          .patchAndFetchById(userId, { displayName, updatedAt: new Date() })
          .whereNull('deleted_at');
        if (!renamed) throw new AppError('UNAUTHORIZED');
        return { user: renamed, audience: await audienceOf(trx, userId) };
      });
      // Told as the row is now, read last: a deletion, or another rename, that committed since this one is not
      // undone in the others' eyes by a notice of this one arriving after its own. A deleted account's notice is
      // the deletion's. The rename is made by now: if this read fails, it is logged, and told as it was made.
      const current: User | undefined = await User.query(knex)
        .findById(userId)
        .catch((err: unknown) => {
          logger.warn({ err, userId }, 'reading a renamed user again failed: told as renamed');
          return user;
        });
      if (current && current.deletedAt === null) notify.userUpdated(audience, current.toPublic());
      return user.toPublic();
    },

    async deleteAccount(user, sessionId, password, client) {
      await deps.verifyOwnPassword(user, password, client.ip);
      // Before the groups are left: a session revoked while the password was checked leaves nothing behind (the
      // transaction below checks again, under the row lock).
      await sessions.requireLive(user.id, sessionId, knex);
      // Who shares a group with the user must hear of it too, and after the groups are left nobody does.
      const groupmates = await audienceOf(knex, user.id);
      // Groups first, each through the conversation service (locks, owner hand-over, notices): if this fails
      // half-way, the account still exists and the user can simply try again.
      await conversations.leaveAllGroups(user.id);
      const outcome = await knex.transaction(async (trx) => {
        // The row lock orders this against a concurrent deletion and a friend request or block being made.
        const locked = await User.query(trx).findById(user.id).whereNull('deleted_at').forUpdate();
        if (!locked) return undefined;
        // A session revoked while the password was checked (in its own statement, after the lock: it reads what
        // committed before) does not delete the account of whoever revoked it.
        await sessions.requireLive(user.id, sessionId, trx);
        // Before the friendships go: they are part of who must hear about it.
        const audience = await audienceOf(trx, user.id);
        await removeTies(trx, user.id);
        if (locked.username !== null) await forgetKnownAddresses(trx, locked.username);
        const deleted = await User.query(trx).patchAndFetchById(user.id, {
          username: null,
          passwordHash: null,
          displayName: DELETED_USER_DISPLAY_NAME,
          deletedAt: new Date(),
          updatedAt: new Date(),
        });
        await sessions.endAll(user.id, { db: trx });
        return { audience, deleted };
      });
      if (!outcome) return;
      await notify.disconnectUser(user.id, 'deleted');
      notify.userUpdated([...new Set([...groupmates, ...outcome.audience])], outcome.deleted.toPublic());
      // A group add that committed while the above ran (it needed a friendship, which is gone now) is undone.
      try {
        await conversations.leaveAllGroups(user.id);
      } catch (err) {
        logger.error({ err, userId: user.id }, 'leaving groups after account deletion failed');
      }
    },
  };
}

/** Deletes a user's friendships, friend requests of every status and blocks, both ways (an account deletion). */
export async function removeTies(trx: Knex.Transaction, userId: string): Promise<void> {
  await trx('friendships').where('user_low', userId).orWhere('user_high', userId).delete();
  await trx('friend_requests').where('from_user_id', userId).orWhere('to_user_id', userId).delete();
  await trx('blocks').where('blocker_id', userId).orWhere('blocked_id', userId).delete();
}
