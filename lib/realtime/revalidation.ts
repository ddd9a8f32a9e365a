import type { Knex } from 'knex';
import type { DatabaseClock } from '../cluster/clock.js';
import { endedSessions } from '../auth/tokens.js';
import { departedParticipants, joinedSince, removedSince } from '../conversations/queries.js';
import type { Logger } from '../logger.js';
import { requestNoticesSince } from '../social/friendRequests.js';
import type { ConversationEvents } from './conversationEvents.js';
import type { AppServer } from './io.js';
import {
  endSessionLocally,
  localNotices,
  localSockets,
  removeLocally,
  unsubscribeLocally,
} from './notifier.js';

/**
 * Ends on this node those of `sessions` (id to user id) that have ended in the database, as their end would have:
 * `session:ended` (`deleted` for an account deletion, else `revoked`: the end's own reason went with the session),
 * then the disconnect. Answers how many had ended.
 */
export async function endEndedSessions(
  io: AppServer,
  knex: Knex,
  sessions: ReadonlyMap<string, string>,
): Promise<number> {
  const ended = await endedSessions(knex, sessions);
  for (const { sessionId, userDeleted } of ended) {
    endSessionLocally(io, sessionId, userDeleted ? 'deleted' : 'revoked');
  }
  return ended.length;
}

/** How often this node checks its sockets in any case: the longest a missed end or removal can last. */
export const REVALIDATE_EVERY_MS = 60_000;

/**
 * How far before the adapter's LISTEN connection ended the notices are looked for again: broadcasts sent just
 * before the end may not have been read yet, and the times compared are the database's (or another node's) clock
 * against this node's.
 */
export const MISSED_NOTICES_MARGIN_MS = 5000;

/** At most this many conversations, and requests of each kind, are told again after one gap (newest first). */
export const MISSED_NOTICES_LIMIT = 1000;

/** The two LISTEN connections a node hears the cluster's notices on: the adapter's and the control bus's. */
export type ListenSource = 'adapter' | 'control bus';

export interface SocketRevalidation {
  /**
   * Checks this node's sockets against the database soon (now, or once the check running now is over): ends
   * the sockets of ended sessions and takes removed participants out of their conversations' rooms.
   */
  request(): void;
  /**
   * The adapter's LISTEN connection, or the control bus's, ended: the notices sent from `silentAtMostMs` ago on
   * (the longest it can have been silent before its loss was noticed: a half-open link is noticed only by a check
   * that gets no answer) will be looked for when both listen again.
   */
  listenLost(source: ListenSource, silentAtMostMs?: number): void;
  /**
   * The adapter or the control bus listens (again): checks the sockets now, and, once neither is lost, tells them
   * the notices they missed since the first stopped.
   */
  listening(source: ListenSource): void;
  /** The check requested last has finished (for tests). */
  settled(): Promise<void>;
  close(): void;
}

/**
 * Ending a session reaches the other nodes as one broadcast, through the postgres adapter, and removing a
 * participant as one control bus event; each is sent once: a node whose LISTEN connection was down at that moment
 * (a PostgreSQL restart, a connection dropped by the network or killed by an operator, 1-3 s until it listens
 * again) never hears it. Without a second look, that node would keep a logged-out session's sockets sending until
 * their access tokens expired, and a removed participant's socket would keep getting the conversation's messages.
 *
 * So each node checks its own sockets against the database: whenever the adapter listens again or the control bus
 * has connected again (the cluster's events are live from then on, and the database already holds every end and
 * removal made before), and every {@link REVALIDATE_EVERY_MS} whatever happened. Two statements for all the
 * node's sockets; none without sockets. A socket found ended hears `session:ended` (`deleted` if its user
 * deleted the account, else `revoked`: the original reason is gone with the session's row) and is disconnected; a
 * removed participant's sockets on this node leave the room and hear `conversation:removed`.
 *
 * The notices a user's sockets would have heard in the gap are told again, from the database, once the adapter
 * and the control bus both listen again after either lost its connection (additions to groups come on the control
 * bus, the other notices through the adapter): `conversation:removed` for every conversation a user with a socket
 * here was removed from since the connection ended (less {@link MISSED_NOTICES_MARGIN_MS}) and is not back in (a
 * socket that followed its room was found by the check above; one that did not, showing the user's list, would
 * never hear it), `conversation:added` for every conversation such a user joined since then, `friend:request` for every
 * request to them made since then that still waits, `friend:accepted` for every request of theirs accepted since
 * then whose friendship still exists. A socket may hear one of them twice
 * (one sent just before the end); each carries the current state, so hearing it again changes nothing. Notices
 * whose state the database does not date (`conversation:updated`, `user:updated`, `typing`, `conversation:read`)
 * are not told again: clients reload them when they reconnect.
 */
export function createSocketRevalidation(deps: {
  io: AppServer;
  knex: Knex;
  logger: Logger;
  /** PostgreSQL's clock: the gap's start is compared with rows stamped by the database's `now()`. */
  clock: DatabaseClock;
  /** The removals told here, by whichever path: a removal told while the check read is not told again. */
  removalsTold: Pick<
    ConversationEvents,
    'removedHere' | 'toldRemovalAfter' | 'lastRemovalTold' | 'heardAdditionSince'
  >;
  everyMs?: number;
}): SocketRevalidation {
  const { io, knex, logger, clock, removalsTold, everyMs = REVALIDATE_EVERY_MS } = deps;
  let running: Promise<void> = Promise.resolve();
  let again = false;
  let busy = false;
  let closed = false;
  /**
   * When a LISTEN connection (the adapter's or the control bus's) ended, while one has not listened again; then
   * until the notices are told.
   */
  let lostAt: number | undefined;
  /** The LISTEN connections lost and not listening again yet. */
  const lost = new Set<ListenSource>();

  /** The notices the sockets of `users` (this node's) did not hear since `since`, told to them again. */
  async function tellMissedNotices(users: string[], since: Date): Promise<void> {
    const [removed, joined, requests] = await Promise.all([
      removedSince(knex, users, since, MISSED_NOTICES_LIMIT),
      joinedSince(knex, users, since, MISSED_NOTICES_LIMIT),
      requestNoticesSince(knex, users, since, MISSED_NOTICES_LIMIT),
    ]);
    let removedTold = 0;
    for (const { userId, conversationId, removals } of removed) {
      // Added again since, as this node heard (its notice told), or told here already: nothing to tell.
      if (removalsTold.heardAdditionSince(userId, conversationId, removals)) continue;
      if (!removalsTold.removedHere(userId, conversationId, removals)) continue;
      removeLocally(io, userId, conversationId);
      removedTold += 1;
    }
    for (const { conversation, userIds, removals } of joined) {
      const shown = conversation.toPublic();
      for (const userId of userIds) {
        // Removed since the read, and told so here: the addition is over.
        if (removalsTold.toldRemovalAfter(userId, conversation.id, removals)) continue;
        localNotices.conversationAdded(io, userId, shown);
      }
    }
    for (const request of requests.incoming) localNotices.friendRequest(io, request.toPublic());
    for (const request of requests.accepted) localNotices.friendAccepted(io, request.toPublic());
    const told = removedTold + joined.length + requests.incoming.length + requests.accepted.length;
    if (told > 0) {
      logger.info(
        {
          removedFrom: removedTold,
          conversations: joined.length,
          requests: requests.incoming.length,
          accepted: requests.accepted.length,
        },
        'told sockets the notices sent while this node was not listening',
      );
    }
  }

  async function check(): Promise<void> {
    const { sessions, subscriptions } = localSockets(io);
    // The latest removal told here of each subscription's user, as the check starts: one told while it reads (as
    // this node heard it) has taken their sockets out of the room and told them already.
    const toldAtStart = new Map(
      subscriptions.map(({ userId, conversationId }) => [
        `${userId} ${conversationId}`,
        removalsTold.lastRemovalTold(userId, conversationId),
      ]),
    );
    const [ended, found] = await Promise.all([
      endEndedSessions(io, knex, sessions),
      departedParticipants(knex, subscriptions),
    ]);
    // Looked at once more before acting (only when something was found, which is rare): a user removed while the
    // first read ran and added back (and subscribed again) before its answer came is a participant, whom the
    // first answer would take out of the room for good.
    const departed = found.length > 0 ? await departedParticipants(knex, found) : found;
    let removed = 0;
    for (const { userId, conversationId, removals } of departed) {
      const told = removalsTold.lastRemovalTold(userId, conversationId);
      if (told !== toldAtStart.get(`${userId} ${conversationId}`)) continue;
      // Not told here (a socket that unsubscribed meanwhile is told too: nothing else would tell it).
      if (removalsTold.removedHere(userId, conversationId, removals))
        removeLocally(io, userId, conversationId);
      else unsubscribeLocally(io, userId, conversationId);
      removed += 1;
    }
    if (ended > 0 || removed > 0) {
      logger.warn(
        { endedSessions: ended, removedSubscriptions: removed },
        'sockets checked against the database: ended what the cluster events had not',
      );
    }
    if (lost.size === 0 && lostAt !== undefined) {
      const gapStart = lostAt;
      // Taken before the reads: a gap that starts while they run is told at a later check.
      lostAt = undefined;
      try {
        const users = [...new Set(sessions.values())];
        await tellMissedNotices(users, new Date(gapStart - MISSED_NOTICES_MARGIN_MS));
      } catch (err) {
        // Told at the next check (the timer's at the latest), from the earliest gap not told.
        lostAt = Math.min(lostAt ?? gapStart, gapStart);
        throw err;
      }
    }
  }

  async function loop(): Promise<void> {
    busy = true;
    try {
      do {
        again = false;
        try {
          await check();
        } catch (err) {
          // The next request (the adapter listening again, or the timer) tries again.
          logger.warn({ err }, 'checking sockets against the database failed');
        }
      } while (again && !closed);
    } finally {
      busy = false;
    }
  }

  function request(): void {
    if (closed) return;
    if (busy) {
      again = true;
      return;
    }
    running = loop();
  }

  const timer = setInterval(request, everyMs);
  timer.unref();
  return {
    request,
    listenLost(source, silentAtMostMs = 0) {
      lost.add(source);
      // The earliest start: a second loss noticed later may have begun earlier (its connection silent longer).
      lostAt = Math.min(lostAt ?? Number.POSITIVE_INFINITY, clock.now() - silentAtMostMs);
    },
    listening(source) {
      lost.delete(source);
      request();
    },
    settled: () => running,
    close() {
      closed = true;
      clearInterval(timer);
    },
  };
}
