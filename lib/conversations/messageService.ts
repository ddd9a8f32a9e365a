import type { Knex } from 'knex';
import type { ConversationActor, SendResult } from '../../actors/ConversationActor.js';
import type { ConversationRegistry } from '../../actors/ConversationRegistry.js';
import { AppError } from '../errors.js';
import type { Logger } from '../logger.js';
import { RateLimiter } from '../rateLimiter.js';
import type { AppServer } from '../realtime/io.js';
import { conversationRoom, userRoom } from '../realtime/protocol.js';
import { readHistory, type HistoryPage, type HistoryWindow } from './queries.js';

export type { HistoryPage, HistoryWindow, SendResult };

export interface SendInput {
  conversationId: string;
  clientMsgId: string;
  body: string;
}

/**
 * Messages, read markers and typing, for REST and Socket.IO alike: both interfaces call the same methods, so
 * the same checks (participant, per-user rate limit) and the same actor apply to either. Inputs are validated
 * by the caller.
 */
export interface MessageService {
  /** NOT_FOUND unless `userId` takes part in the conversation (from the node's membership cache). */
  assertParticipant(userId: string, conversationId: string): Promise<void>;
  /** Resolves once the message is committed. RATE_LIMITED, NOT_FOUND, OVERLOADED, IDEMPOTENCY_CONFLICT, ... */
  send(userId: string, input: SendInput): Promise<SendResult>;
  history(userId: string, conversationId: string, window: HistoryWindow): Promise<HistoryPage>;
  /**
   * Moves my read marker forward to `seq` (clamped to the conversation's last seq; never backwards) and
   * broadcasts `conversation:read` when it moved.
   */
  markRead(userId: string, conversationId: string, seq: number): Promise<void>;
  /** Broadcasts `typing` to the room except the typist's own sockets, at most once per interval. */
  typing(userId: string, conversationId: string): Promise<void>;
}

export interface MessageServiceDeps {
  knex: Knex;
  io: AppServer;
  logger: Logger;
  registry: ConversationRegistry<ConversationActor>;
  /** Sends per user per second, bursts of twice that; 0 = off. */
  messagesPerSecond: number;
  /** At most one `typing` broadcast per user and conversation in this time. @default 2000 */
  typingIntervalMs?: number;
  now?: () => number;
}

/** Above this many remembered typists, entries older than the interval are swept. */
const TYPING_SWEEP_AT = 10_000;

/** Builds the message service over the node's actors. */
export function createMessageService(deps: MessageServiceDeps): MessageService {
  const { knex, io, registry } = deps;
  const now = deps.now ?? Date.now;
  const typingIntervalMs = deps.typingIntervalMs ?? 2000;
  // One limiter for both interfaces, so REST and Socket.IO sends of a user share one budget.
  const sendLimiter = new RateLimiter({
    ratePerSecond: deps.messagesPerSecond,
    burst: deps.messagesPerSecond * 2,
    now,
  });
  const lastTyping = new Map<string, number>();

  async function actorFor(userId: string, conversationId: string): Promise<ConversationActor> {
    const actor = await registry.get(conversationId);
    await actor.assertMember(userId);
    return actor;
  }

  function typingAllowed(key: string): boolean {
    const t = now();
    const last = lastTyping.get(key);
    if (last !== undefined && t - last < typingIntervalMs) return false;
    if (lastTyping.size >= TYPING_SWEEP_AT) {
      for (const [k, at] of lastTyping) if (t - at >= typingIntervalMs) lastTyping.delete(k);
    }
    lastTyping.set(key, t);
    return true;
  }

  return {
    async assertParticipant(userId, conversationId) {
      await actorFor(userId, conversationId);
    },

    async send(userId, input) {
      const taken = sendLimiter.take(userId);
      if (!taken.allowed) throw new AppError('RATE_LIMITED', { retryAfter: taken.retryAfterSeconds });
      const actor = await registry.get(input.conversationId);
      // The actor checks membership itself: every send, whatever its interface.
      return await actor.send({ senderId: userId, clientMsgId: input.clientMsgId, body: input.body });
    },

    async history(userId, conversationId, window) {
      await actorFor(userId, conversationId);
      return await readHistory(knex, conversationId, window);
    },

    async markRead(userId, conversationId, seq) {
      await actorFor(userId, conversationId);
      const result = await knex.raw<{ rows: Array<{ last_read_seq: number }> }>(
        `UPDATE conversation_participants p SET last_read_seq = LEAST(?::bigint, c.last_seq)
         FROM conversations c
         WHERE c.id = p.conversation_id AND p.conversation_id = ? AND p.user_id = ?
           AND p.last_read_seq < LEAST(?::bigint, c.last_seq)
         RETURNING p.last_read_seq`,
        [seq, conversationId, userId, seq],
      );
      const moved = result.rows[0]?.last_read_seq;
      if (moved !== undefined) {
        io.to(conversationRoom(conversationId)).emit('conversation:read', {
          conversationId,
          userId,
          seq: moved,
        });
      }
    },

    async typing(userId, conversationId) {
      await actorFor(userId, conversationId);
      if (!typingAllowed(`${userId}:${conversationId}`)) return;
      // socket.to(room) would exclude only the emitting socket; the typist's other devices are excluded too.
      io.to(conversationRoom(conversationId))
        .except(userRoom(userId))
        .emit('typing', { conversationId, userId });
    },
  };
}
