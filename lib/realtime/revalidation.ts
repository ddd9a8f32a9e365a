import type { Knex } from 'knex';
import { endedSessions } from '../auth/tokens.js';
import { departedParticipants } from '../conversations/queries.js';
import type { Logger } from '../logger.js';
import type { AppServer } from './io.js';
import { endSessionLocally, localSockets, removeLocally } from './notifier.js';

/** How often this node checks its sockets in any case: the longest a missed end or removal can last. */
export const REVALIDATE_EVERY_MS = 60_000;

export interface SocketRevalidation {
  /**
   * Checks this node's sockets against the database soon (now, or once the check running now is over): ends
   * the sockets of ended sessions and takes removed participants out of their conversations' rooms.
   */
  request(): void;
  /** The check requested last has finished (for tests). */
  settled(): Promise<void>;
  close(): void;
}

/**
 * Ending a session and removing a participant reach the other nodes as one broadcast each, through the postgres
 * adapter, which sends it once: a node whose LISTEN connection was down at that moment (a PostgreSQL restart, a
 * connection dropped by the network or killed by an operator, 1-3 s until the adapter listens again) never hears
 * it. Without a second look, that node would keep a logged-out session's sockets sending until their access
 * tokens expired, and a removed participant's socket would keep getting the conversation's messages.
 *
 * So each node checks its own sockets against the database: whenever the adapter listens again (the cluster's
 * events are live from then on, and the database already holds every end and removal made before), and every
 * {@link REVALIDATE_EVERY_MS} whatever happened. Two statements for all the node's sockets; none without sockets.
 * A socket found ended hears `session:ended` (`deleted` if its user deleted the account, else `revoked`: the
 * original reason is gone with the session's row) and is disconnected; a removed participant's sockets on this
 * node leave the room and hear `conversation:removed`.
 */
export function createSocketRevalidation(deps: {
  io: AppServer;
  knex: Knex;
  logger: Logger;
  everyMs?: number;
}): SocketRevalidation {
  const { io, knex, logger, everyMs = REVALIDATE_EVERY_MS } = deps;
  let running: Promise<void> = Promise.resolve();
  let again = false;
  let busy = false;
  let closed = false;

  async function check(): Promise<void> {
    const { sessions, subscriptions } = localSockets(io);
    const [ended, departed] = await Promise.all([
      endedSessions(knex, sessions),
      departedParticipants(knex, subscriptions),
    ]);
    for (const { sessionId, userDeleted } of ended) {
      endSessionLocally(io, sessionId, userDeleted ? 'deleted' : 'revoked');
    }
    for (const { userId, conversationId } of departed) removeLocally(io, userId, conversationId);
    if (ended.length > 0 || departed.length > 0) {
      logger.warn(
        { endedSessions: ended.length, removedSubscriptions: departed.length },
        'sockets checked against the database: ended what the cluster events had not',
      );
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
    settled: () => running,
    close() {
      closed = true;
      clearInterval(timer);
    },
  };
}
