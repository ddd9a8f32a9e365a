import type { Knex } from 'knex';
import { setBounded } from '../boundedMap.js';
import type { Notifier } from '../notifier.js';

/**
 * The removals of participants this node has heard of, so that it never delivers a message it wrote itself to a
 * participant removed before that message, on whichever node the removal was made.
 *
 * Each removal counts itself in `conversations.removals`, in its transaction, and sends the count with its
 * `membership.changed` on the control bus (lib/conversations/conversationService.ts). Every write answers the
 * count it read under the conversation's lock (migrations/20261204000000_removals_known_to_writes.ts). A node
 * hears the removals on the control bus in commit order with the other nodes' messages, so those never overtake
 * a removal; but it delivers its own writes at their commit. When a write read more removals than the node has
 * heard of, a removal committed before it has not reached this node yet: the node reads the conversation's
 * participants and takes every other user's sockets out of the room here (telling them `conversation:removed`)
 * before delivering. At light load and with one node, a write reads what the node has heard already, and this
 * costs one map lookup per delivery.
 */
export interface Removals {
  /** A removal's count, heard on the control bus (another node's or this one's). */
  heard(conversationId: string, removals: number): void;
  /**
   * Before delivering what a write committed with `removals` read under the lock: nothing to wait for (undefined)
   * when this node has heard of as many, else the check above, which rejects if the participants cannot be read.
   */
  beforeDelivering(conversationId: string, removals: number): Promise<void> | undefined;
  /**
   * Before a catch-up delivers what it read from `messages` (a write of another node whose announcement never
   * came, heard of by no event): reads the conversation's count of removals, which includes every removal
   * committed before that read, then does the check above. Rejects if the count or the participants cannot be read.
   */
  beforeCatchUp(conversationId: string): Promise<void>;
}

/**
 * Past this many conversations the one counted first is forgotten for each new one: its next write with a removal
 * reads the participants once more. A bound, not a policy.
 */
const MAX_CONVERSATIONS = 100_000;

export function createRemovals(
  knex: Knex,
  notify: Pick<Notifier, 'keepParticipantsOnly'>,
  {
    maxConversations = MAX_CONVERSATIONS,
    membersChanged,
  }: {
    maxConversations?: number;
    /**
     * A removal not heard of yet was found: the node's cache of who takes part in the conversation is out of date
     * (lib/messaging/membership.ts), and must not let the removed user subscribe again before the event comes.
     */
    membersChanged?: (conversationId: string) => void;
  } = {},
): Removals {
  const counts = new Map<string, number>();

  function heard(conversationId: string, removals: number): void {
    const known = counts.get(conversationId);
    if (known !== undefined && known >= removals) return;
    setBounded(counts, conversationId, removals, maxConversations);
  }

  async function catchUp(conversationId: string, removals: number): Promise<void> {
    // The participants and the count in one snapshot: the participants as they are after exactly that many
    // removals (a later one may have committed since the write).
    const result = await knex.raw<{ rows: Array<{ removals: number; participants: string[] }> }>(
      `SELECT c.removals,
         array(SELECT p.user_id FROM conversation_participants p WHERE p.conversation_id = c.id) AS participants
       FROM conversations c WHERE c.id = ?`,
      [conversationId],
    );
    const [now] = result.rows;
    membersChanged?.(conversationId);
    const counted = Math.max(now?.removals ?? 0, removals);
    notify.keepParticipantsOnly(conversationId, new Set(now?.participants ?? []), counted);
    heard(conversationId, counted);
  }

  function beforeDelivering(conversationId: string, removals: number): Promise<void> | undefined {
    if (removals <= (counts.get(conversationId) ?? 0)) return undefined;
    return catchUp(conversationId, removals);
  }

  return {
    heard,
    beforeDelivering,
    async beforeCatchUp(conversationId) {
      const result = await knex.raw<{ rows: Array<{ removals: number }> }>(
        'SELECT removals FROM conversations WHERE id = ?',
        [conversationId],
      );
      await beforeDelivering(conversationId, result.rows[0]?.removals ?? 0);
    },
  };
}
