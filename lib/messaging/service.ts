import type { Knex } from 'knex';
import type { ConversationRegistry } from '../../actors/ConversationRegistry.js';
import { AppError } from '../errors.js';
import type { Notifier } from '../notifier.js';
import type { ClientEventInput } from '../protocol/schemas.js';
import { RateLimiter } from '../rateLimiter.js';
import { createReadBudget } from '../readBudget.js';
import { readHistory, type HistoryPage, type HistoryWindow } from './history.js';
import type { Membership } from './membership.js';
import type { MessageActor, Stored } from './types.js';

export type { HistoryPage, HistoryWindow };

/** A send as the interfaces hand it over, validated. */
export type SendInput = ClientEventInput<'message:send'>;

/**
 * Messages, read markers and typing, for REST and Socket.IO alike: both interfaces call the same methods, so
 * the same checks (participant, per-user rate limit) and the same actor apply to either.
 */
export interface MessageService {
  /** NOT_FOUND unless `userId` takes part in the conversation. */
  assertParticipant(userId: string, conversationId: string): Promise<void>;
  /** Resolves once the message is committed. RATE_LIMITED, NOT_FOUND, OVERLOADED, IDEMPOTENCY_CONFLICT, ... */
  send(userId: string, input: SendInput): Promise<Stored>;
  history(userId: string, conversationId: string, window: HistoryWindow): Promise<HistoryPage>;
  /**
   * Moves my read marker forward to `seq` (clamped to the conversation's last seq; never backwards) and tells
   * the subscribers when it moved.
   */
  markRead(userId: string, conversationId: string, seq: number): Promise<void>;
  /** Tells the subscribers (not the typist's own sockets), at most once per interval. */
  typing(userId: string, conversationId: string): Promise<void>;
}

export interface MessageServiceDeps {
  knex: Knex;
  notify: Notifier;
  membership: Membership;
  registry: ConversationRegistry<MessageActor>;
  /** Sends per user per second, bursts of twice that; 0 = off. */
  messagesPerSecond: number;
  /** History reads per user per second (REST and Socket.IO together), bursts of twice that; 0 = off. */
  readsPerSecond: number;
  /** At most one `typing` per user and conversation in this time. @default 2000 */
  typingIntervalMs?: number;
  now?: () => number;
}

/** Above this many remembered typists, entries older than the interval are swept. */
const TYPING_SWEEP_AT = 10_000;

export function createMessageService(deps: MessageServiceDeps): MessageService {
  const { knex, notify, membership, registry } = deps;
  const now = deps.now ?? Date.now;
  const typingIntervalMs = deps.typingIntervalMs ?? 2000;
  // One limiter for both interfaces, so REST and Socket.IO sends of a user share one budget.
  const sendLimiter = new RateLimiter({
    ratePerSecond: deps.messagesPerSecond,
    burst: deps.messagesPerSecond * 2,
    now,
  });
  const reads = createReadBudget({ perSecond: deps.readsPerSecond, now });
  const lastTyping = new Map<string, number>();

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
    assertParticipant: (userId, conversationId) => membership.assert(conversationId, userId),

    async send(userId, input) {
      const taken = sendLimiter.take(userId);
      if (!taken.allowed) throw new AppError('RATE_LIMITED', { retryAfter: taken.retryAfterSeconds });
      // Checked before any actor exists: probing random ids leaves nothing behind. The writer checks again
      // under the conversation lock.
      await membership.assert(input.conversationId, userId);
      const actor = await registry.get(input.conversationId);
      return await actor.submit({
        kind: 'send',
        senderId: userId,
        clientMsgId: input.clientMsgId,
        body: input.body,
      });
    },

    history(userId, conversationId, window) {
      // Within the user's read budget, checked first: probing ids costs budget too.
      return reads.run(userId, async () => {
        await membership.assert(conversationId, userId);
        return await readHistory(knex, conversationId, window);
      });
    },

    async markRead(userId, conversationId, seq) {
      await membership.assert(conversationId, userId);
      const result = await knex.raw<{ rows: Array<{ last_read_seq: number }> }>(
        `UPDATE conversation_participants p SET last_read_seq = LEAST(?::bigint, c.last_seq)
         FROM conversations c
         WHERE c.id = p.conversation_id AND p.conversation_id = ? AND p.user_id = ?
           AND p.last_read_seq < LEAST(?::bigint, c.last_seq)
         RETURNING p.last_read_seq`,
        [seq, conversationId, userId, seq],
      );
      const moved = result.rows[0]?.last_read_seq;
      if (moved !== undefined) notify.readMoved({ conversationId, userId, seq: moved });
    },

    async typing(userId, conversationId) {
      await membership.assert(conversationId, userId);
      if (!typingAllowed(`${userId}:${conversationId}`)) return;
      notify.typing({ conversationId, userId });
    },
  };
}
