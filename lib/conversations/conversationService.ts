import type { Knex } from 'knex';
import { raw } from 'objection';
import { AppError, validationError } from '../errors.js';
import type { Logger } from '../logger.js';
import { Conversation } from '../models/Conversation.js';
import { Participant } from '../models/Participant.js';
import type { Notifier } from '../notifier.js';
import type { ConversationListItem, PublicConversation, PublicParticipant } from '../protocol/index.js';
import { isUuid, MAX_GROUP_PARTICIPANTS } from '../protocol/schemas.js';
import { ClusterBucket } from '../clusterLimits.js';
import type { ControlBus } from '../cluster/controlBus.js';
import { areFriends, isBlockedEitherWay, shareLockUsers } from '../social/relations.js';
import {
  listConversations,
  loadConversation,
  loadVisibleConversation,
  nonFriendsOf,
  recordRemoval,
  type ListCursor,
} from './queries.js';

/**
 * Conversations and their participants. Inputs are validated by the caller; every rule of the contract (friends
 * only, owner only, existence hidden from non-participants) is checked here.
 *
 * Membership changes and renames run in a transaction that first locks the conversation row (the lock message
 * writers take too), and send `membership.changed` on the control bus inside it: every node hears the
 * conversation's changes in commit order, drops its cached participants, and tells its sockets the group's new
 * details (lib/realtime/conversationEvents.ts).
 *
 * Rules the contract leaves open: a direct conversation has two members and no owner, and cannot be renamed,
 * extended or left (403 FORBIDDEN). When a group's owner leaves, the member who joined first (ties by user id)
 * becomes owner; when the last participant leaves, the conversation stays, empty and invisible to everyone.
 */
export interface ConversationService {
  /** The pair's direct conversation: `created` false when it already existed (200 instead of 201). */
  createDirect(me: string, otherId: string): Promise<{ conversation: PublicConversation; created: boolean }>;
  createGroup(me: string, title: string, participantIds: readonly string[]): Promise<PublicConversation>;
  /** One page of my conversations, most recent activity first; `nextCursor` null on the last page. */
  list(
    me: string,
    page: { limit: number; cursor?: string | undefined },
  ): Promise<{ conversations: ConversationListItem[]; nextCursor: string | null }>;
  get(me: string, conversationId: string): Promise<PublicConversation>;
  rename(me: string, conversationId: string, title: string): Promise<PublicConversation>;
  addParticipant(me: string, conversationId: string, userId: string): Promise<PublicParticipant>;
  /** The owner removes someone, or a user leaves (userId === me). */
  removeParticipant(me: string, conversationId: string, userId: string): Promise<void>;
  /** Account deletion: the user leaves every group, each exactly like a leave (owner hand-over, notices). */
  leaveAllGroups(userId: string): Promise<void>;
}

export interface ConversationServiceDeps {
  knex: Knex;
  notify: Notifier;
  logger: Logger;
  controlBus: Pick<ControlBus, 'publishWithin'>;
  /** Drops this node's cached participants of a conversation at once (the bus does it on every node, later). */
  invalidateLocal: (conversationId: string) => void;
  /**
   * Conversations created, participants added or removed (not leaving) and groups renamed per user per minute, on
   * every node together; 0 = off.
   */
  creationsPerMinute: number;
  /**
   * How long a change of a group waits for the changes of it ahead on this node before it is answered
   * `DB_UNAVAILABLE`, nothing written: the pool's acquire timeout, as long as a request waits for a connection.
   */
  turnTimeoutMs: number;
}

/**
 * The caller's participant row after locking the conversation row (the lock message writers take), so a
 * membership change and a message batch of one conversation never interleave. NOT_FOUND for a non-participant.
 */
async function lockAsParticipant(
  trx: Knex.Transaction,
  conversationId: string,
  me: string,
): Promise<{ conversation: Conversation; mine: Participant }> {
  const conversation = await Conversation.query(trx).findById(conversationId).forNoKeyUpdate();
  const mine = conversation ? await Participant.query(trx).findById([conversationId, me]) : undefined;
  if (!conversation || !mine) throw new AppError('NOT_FOUND');
  return { conversation, mine };
}

/**
 * A membership's date: when its row is written (`statement_timestamp()`, one for every row of the statement: a new
 * group's members joined together, and are told apart by user id), not when its transaction began (`now()`, the
 * column's default). An addition waits for the group's lock first: dated at its start, one that waited longer than
 * the margin that a node's check after a lost LISTEN connection looks back by (lib/realtime/revalidation.ts) and
 * committed in the gap was never told there, and the heir of a group's ownership is chosen by this date.
 */
const joinedNow = () => raw('statement_timestamp()');

function requireGroupOwner(conversation: Conversation, mine: Participant): void {
  if (conversation.type !== 'group') {
    throw new AppError('FORBIDDEN', { message: 'A direct conversation cannot be changed.' });
  }
  if (mine.role !== 'owner')
    throw new AppError('FORBIDDEN', { message: 'Only the group owner can do this.' });
}

/**
 * Runs the tasks of each key one at a time, in call order, and keeps nothing for a key with none running or waiting.
 * A task whose turn has not come within `startWithinMs` is not run: its caller gets `late()` then (a task ahead
 * that waits long, for a lock held elsewhere, must not make every one behind it wait its time again).
 */
export function oneAtATime(
  startWithinMs: number,
  late: () => Error,
): <T>(key: string, task: () => Promise<T>) => Promise<T> {
  const tails = new Map<string, Promise<void>>();
  return <T>(key: string, task: () => Promise<T>): Promise<T> => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    let gaveUp = false;
    const deadline = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => {
        gaveUp = true;
        reject(late());
      }, startWithinMs);
    });
    const run = (tails.get(key) ?? Promise.resolve()).then(() => {
      clearTimeout(timer);
      // Its caller has had its answer: the task is skipped, and the next one's turn comes at once.
      if (gaveUp) return undefined as never;
      return task();
    });
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    tails.set(key, settled);
    void settled.then(() => {
      if (tails.get(key) === settled) tails.delete(key);
    });
    return Promise.race([run, deadline]);
  };
}

/** Builds the conversation service. */
export function createConversationService(deps: ConversationServiceDeps): ConversationService {
  const { knex, notify } = deps;
  /**
   * A group's changes (renames, adds, removals and leaves) made on this node, one at a time. Each locks the group's
   * row first, in a transaction that holds a pool connection while it waits: a thousand removals of one group at
   * once held every connection of the pool waiting for that one lock, and everyone else's requests on the node
   * waited seconds for a connection. Queued here, they wait without one.
   */
  const inTurn = oneAtATime(
    deps.turnTimeoutMs,
    () =>
      new AppError('DB_UNAVAILABLE', {
        message: 'Other changes of this group are waiting for the database; retry shortly.',
      }),
  );
  // Each of these writes one row per participant and tells each of them: counted on every node together, as a
  // bucket (the limit at once, then its rate), so that no minute's boundary lets twice the limit through.
  const creations =
    deps.creationsPerMinute > 0
      ? new ClusterBucket(knex, {
          keyPrefix: 'conversation_writes_bucket',
          points: deps.creationsPerMinute,
          durationSeconds: 60,
        })
      : undefined;
  const takeCreation = (me: string) => (creations ? creations.take(me) : Promise.resolve());

  /**
   * The conversation as it now is. A change reads its answer within its own transaction (`db`): read after the
   * commit, a failure of that read answered DB_UNAVAILABLE for a change that was made, and the client's retry made
   * it again (a second group).
   */
  async function reload(conversationId: string, db: Knex = knex): Promise<PublicConversation> {
    const conversation = await loadConversation(db, conversationId);
    if (!conversation) throw new AppError('NOT_FOUND');
    return conversation.toPublic();
  }

  const service: ConversationService = {
    async createDirect(me, otherId) {
      if (otherId === me) throw validationError({ userId: 'must be another user' });
      const directKey = Conversation.directKeyFor(me, otherId);
      // The pair's conversation, if it exists, is answered as it is: opening a chat again creates nothing, so it
      // spends no creation budget, and it needs no friendship (an unfriending does not close the conversation,
      // whose messages can still be sent). A block still refuses it, as it refuses a new one.
      const found = await Conversation.query(knex).select('id').where('direct_key', directKey).first();
      if (found) {
        if (await isBlockedEitherWay(knex, me, otherId)) throw new AppError('BLOCKED');
        return { conversation: await reload(found.id), created: false };
      }
      await takeCreation(me);
      return await knex.transaction(async (trx) => {
        // Checked with both users' rows share-locked: a block or an unfriending racing this is seen or waits.
        await shareLockUsers(trx, [me, otherId]);
        if (await isBlockedEitherWay(trx, me, otherId)) throw new AppError('BLOCKED');
        if (!(await areFriends(trx, me, otherId))) throw new AppError('NOT_FRIENDS');
        // ON CONFLICT: a concurrent creation of the same pair waits for the other's commit, then finds its row.
        const inserted = await trx.raw<{ rows: Array<{ id: string }> }>(
          `INSERT INTO conversations (type, created_by, direct_key) VALUES ('direct', ?, ?)
           ON CONFLICT (direct_key) DO NOTHING RETURNING id`,
          [me, directKey],
        );
        const id = inserted.rows[0]?.id;
        if (id !== undefined) {
          await Participant.query(trx).insert([
            { conversationId: id, userId: me, role: 'member', joinedAt: joinedNow() },
            { conversationId: id, userId: otherId, role: 'member', joinedAt: joinedNow() },
          ]);
          // With the commit, as a new group's: every node tells both users' sockets `conversation:added`. Told after
          // the commit instead, a failure in between (the read of the answer timing out) told no one, ever: the
          // client's retry finds the conversation, which is not new any more.
          await deps.controlBus.publishWithin(trx, {
            type: 'membership.changed',
            conversationId: id,
            userId: me,
            change: 'created',
          });
          return { conversation: await reload(id, trx), created: true };
        }
        const existing = await Conversation.query(trx).select('id').where('direct_key', directKey).first();
        if (!existing) throw new Error('direct conversation vanished after a conflicting insert');
        return { conversation: await reload(existing.id, trx), created: false };
      });
    },

    async createGroup(me, title, participantIds) {
      await takeCreation(me);
      const others = [...new Set(participantIds)].filter((id) => id !== me);
      if (others.length + 1 > MAX_GROUP_PARTICIPANTS) {
        throw validationError({ participantIds: `at most ${MAX_GROUP_PARTICIPANTS - 1} other participants` });
      }
      return await knex.transaction(async (trx) => {
        // Checked with the members' rows share-locked: an unfriending, a block or an account deletion racing this
        // committed before (and is seen) or waits until the group exists (and removes the member then). The
        // creator's row too: a deletion of the creator's own account either came first (refused here) or waits
        // for the group and then leaves it with the rest.
        const live = await shareLockUsers(trx, [me, ...others]);
        if (!live.has(me)) throw new AppError('UNAUTHORIZED');
        const strangers = await nonFriendsOf(trx, me, others);
        if (strangers.length > 0) throw new AppError('NOT_FRIENDS', { details: { userIds: strangers } });
        const conversation = await Conversation.query(trx).insert({ type: 'group', title, createdBy: me });
        await Participant.query(trx).insert([
          { conversationId: conversation.id, userId: me, role: 'owner', joinedAt: joinedNow() },
          ...others.map((userId) => ({
            conversationId: conversation.id,
            userId,
            role: 'member' as const,
            joinedAt: joinedNow(),
          })),
        ]);
        // With the commit, first of the group's changes: every node tells its participants' sockets
        // `conversation:added` in the chain the group's later changes follow (lib/realtime/conversationEvents.ts).
        await deps.controlBus.publishWithin(trx, {
          type: 'membership.changed',
          conversationId: conversation.id,
          userId: me,
          change: 'created',
        });
        return await reload(conversation.id, trx);
      });
    },

    async list(me, page) {
      const { conversations, next } = await listConversations(knex, me, {
        limit: page.limit,
        after: page.cursor === undefined ? undefined : decodeCursor(page.cursor),
      });
      return { conversations, nextCursor: next && encodeCursor(next) };
    },

    async get(me, conversationId) {
      const conversation = await loadVisibleConversation(knex, conversationId, me);
      if (!conversation) throw new AppError('NOT_FOUND');
      return conversation.toPublic();
    },

    async rename(me, conversationId, title) {
      // A rename tells every member the whole group, as an addition does: the same budget.
      await takeCreation(me);
      return await inTurn(conversationId, () =>
        knex.transaction(async (trx) => {
          const { conversation, mine } = await lockAsParticipant(trx, conversationId, me);
          requireGroupOwner(conversation, mine);
          await Conversation.query(trx).findById(conversationId).patch({ title, updatedAt: new Date() });
          // Every node tells its sockets, in the order of the conversation's changes.
          await deps.controlBus.publishWithin(trx, {
            type: 'membership.changed',
            conversationId,
            userId: me,
            change: 'renamed',
          });
          return await reload(conversationId, trx);
        }),
      );
    },

    async addParticipant(me, conversationId, userId) {
      await takeCreation(me);
      const added = await inTurn(conversationId, () =>
        knex.transaction(async (trx) => {
          // With the new member's row share-locked, as for a new group; before the group's lock, in the order every
          // transaction takes them (users, then conversations): a block takes the pair's rows, then their direct
          // conversation, and a write that holds that conversation may wait for this group.
          await shareLockUsers(trx, [userId]);
          const { conversation, mine } = await lockAsParticipant(trx, conversationId, me);
          requireGroupOwner(conversation, mine);
          if (await Participant.query(trx).findById([conversationId, userId])) {
            throw new AppError('ALREADY_PARTICIPANT');
          }
          if (!(await areFriends(trx, me, userId))) throw new AppError('NOT_FRIENDS');
          // Under the conversation's lock, which every add takes: two adds cannot both take the last place.
          if (
            (await Participant.query(trx).where('conversation_id', conversationId).resultSize()) >=
            MAX_GROUP_PARTICIPANTS
          ) {
            throw new AppError('FORBIDDEN', {
              message: `A group has at most ${MAX_GROUP_PARTICIPANTS} participants.`,
            });
          }
          await Participant.query(trx).insert({
            conversationId,
            userId,
            role: 'member',
            joinedAt: joinedNow(),
          });
          // The removals before this addition: a node that told the user of a later removal tells them nothing of it.
          const [counted] = await trx('conversations')
            .where('id', conversationId)
            .select<Array<{ removals: number }>>('removals');
          // With the commit: every node drops its cached participants, and tells its sockets (the user's
          // `conversation:added`, the others' `conversation:updated`) in the order of the conversation's changes.
          await deps.controlBus.publishWithin(trx, {
            type: 'membership.changed',
            conversationId,
            userId,
            change: 'added',
            ...(counted === undefined ? {} : { removals: counted.removals }),
          });
          // The answer is the row this addition wrote, read under its lock: read after the commit, a removal that
          // committed in between turned an addition that went through into a 404.
          return await Participant.query(trx)
            .findById([conversationId, userId])
            .withGraphFetched('user')
            .throwIfNotFound();
        }),
      );
      // At once here; the other nodes when they hear the event (until then their writers check under the lock).
      deps.invalidateLocal(conversationId);
      return added.toPublic();
    },

    async removeParticipant(me, conversationId, userId) {
      // Removing someone else tells every remaining member the whole group, as an addition does: the same budget,
      // refused attempts included. Leaving is never refused so.
      if (userId !== me) await takeCreation(me);
      const leaving = { undo: (): void => undefined };
      const removals = await inTurn(conversationId, () =>
        knex
          .transaction(async (trx) => {
            const { conversation, mine } = await lockAsParticipant(trx, conversationId, me);
            if (userId === me) {
              if (conversation.type !== 'group') {
                throw new AppError('FORBIDDEN', { message: 'A direct conversation cannot be left.' });
              }
            } else {
              requireGroupOwner(conversation, mine);
            }
            const removed = await Participant.query(trx).deleteById([conversationId, userId]);
            if (removed === 0) throw new AppError('NOT_FOUND');
            if (userId === me && mine.role === 'owner') await handOverOwnership(trx, conversationId);
            // Counted, so that a node whose own write reads this count before it hears of the removal knows of it
            // (lib/messaging/removals.ts).
            const [counted] = await trx('conversations')
              .where('id', conversationId)
              .increment('removals', 1)
              .returning<Array<{ removals: number }>>('removals');
            // For the nodes that miss the event below: they tell it from the database when they listen again.
            if (counted !== undefined) await recordRemoval(trx, conversationId, userId, counted.removals);
            // With the commit, not after it: every node takes the user's sockets out of the room before it hears of
            // any message committed after the removal (docs/messaging.md, "A node's own sockets first").
            await deps.controlBus.publishWithin(trx, {
              type: 'membership.changed',
              conversationId,
              userId,
              removed: true,
              ...(counted === undefined ? {} : { removals: counted.removals }),
            });
            // Last, still under the lock: a message committed after the removal may be read here before the commit.
            leaving.undo = notify.participantLeaving(userId, conversationId, conversation.version);
            return counted?.removals;
          })
          .catch((err: unknown) => {
            leaving.undo();
            throw err;
          }),
      );
      // First: it also ends what participantLeaving() started. The remaining participants hear of it from the
      // control bus, in the order of the conversation's changes.
      notify.conversationRemoved(userId, conversationId, removals);
      deps.invalidateLocal(conversationId);
    },

    async leaveAllGroups(userId) {
      const groups = await Participant.query(knex)
        .select('conversation_participants.conversation_id')
        .join('conversations', 'conversations.id', 'conversation_participants.conversation_id')
        .where('conversation_participants.user_id', userId)
        .where('conversations.type', 'group');
      for (const { conversationId } of groups) {
        try {
          await service.removeParticipant(userId, conversationId, userId);
        } catch (err) {
          // Removed by the owner meanwhile: already out.
          if (!(err instanceof AppError && err.code === 'NOT_FOUND')) throw err;
        }
      }
    },
  };
  return service;
}

/** A list cursor as clients see it: opaque (base64url of "activity.id"). */
function encodeCursor(cursor: ListCursor): string {
  return Buffer.from(`${cursor.activityUs}.${cursor.id}`).toString('base64url');
}

/**
 * The latest activity a cursor may name, in microseconds since 1970: the year 10000. Every real one is far below;
 * a forged one above would overflow PostgreSQL's timestamp arithmetic (a 500 instead of a 400).
 */
const MAX_ACTIVITY_US = BigInt(Date.UTC(10000, 0, 1)) * 1000n;

function decodeCursor(text: string): ListCursor {
  const match = /^(\d{1,20})\.([0-9a-f-]{36})$/.exec(Buffer.from(text, 'base64url').toString());
  if (!match?.[1] || !match[2] || !isUuid(match[2]) || BigInt(match[1]) > MAX_ACTIVITY_US) {
    throw validationError({ cursor: 'must be a nextCursor from an earlier page' });
  }
  return { activityUs: match[1], id: match[2] };
}

/** The member who joined first (ties by user id) becomes owner; an empty group stays ownerless. */
async function handOverOwnership(trx: Knex.Transaction, conversationId: string): Promise<void> {
  const heir = await Participant.query(trx)
    .where('conversation_id', conversationId)
    .orderBy([{ column: 'joined_at' }, { column: 'user_id' }])
    .first();
  if (heir) await Participant.query(trx).findById([conversationId, heir.userId]).patch({ role: 'owner' });
}
