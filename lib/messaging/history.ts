import type { Knex } from 'knex';
import { MESSAGE_COLUMNS, messageFromRow, type MessageRow } from '../models/Message.js';
import type { PublicMessage } from '../protocol/index.js';

/** Which slice of history to read. */
export type HistoryWindow =
  | { kind: 'after'; seq: number; limit: number }
  | { kind: 'before'; seq: number; limit: number }
  | { kind: 'newest'; limit: number };

export interface HistoryPage {
  /** Ascending by seq. */
  messages: PublicMessage[];
  /** after: newer messages remain; before/newest: older ones exist. */
  hasMore: boolean;
  /** The conversation's last seq, read in the same statement (the same snapshot) as the messages. */
  lastSeq: number;
}

interface HistoryRow extends Omit<MessageRow, 'id'> {
  last_seq: number;
  /** Null when the page is empty (the LEFT JOIN's one row carries only last_seq). */
  id: string | null;
}

/**
 * One page of history by (conversation_id, seq) on the unique index. It reads one row more than asked to know
 * `hasMore`, and the conversation's last_seq in the same statement, so both come from one snapshot.
 */
export async function readHistory(
  knex: Knex,
  conversationId: string,
  window: HistoryWindow,
): Promise<HistoryPage> {
  const ascending = window.kind === 'after';
  const condition = window.kind === 'after' ? 'AND seq > ?' : window.kind === 'before' ? 'AND seq < ?' : '';
  const bindings: Array<string | number> = [conversationId];
  if (window.kind !== 'newest') bindings.push(window.seq);
  bindings.push(window.limit + 1, conversationId);
  const result = await knex.raw<{ rows: HistoryRow[] }>(
    `SELECT c.last_seq, m.id, m.conversation_id, m.sender_id, m.seq, m.client_msg_id, m.body, m.created_at
     FROM conversations c
     LEFT JOIN LATERAL (
       SELECT ${MESSAGE_COLUMNS} FROM messages
       WHERE conversation_id = ? ${condition}
       ORDER BY seq ${ascending ? 'ASC' : 'DESC'} LIMIT ?
     ) m ON true
     WHERE c.id = ?`,
    bindings,
  );
  const lastSeq = result.rows[0]?.last_seq ?? 0;
  const rows = result.rows.filter((r): r is HistoryRow & { id: string } => r.id !== null);
  const hasMore = rows.length > window.limit;
  const page = rows.slice(0, window.limit).map(messageFromRow);
  if (!ascending) page.reverse();
  return { messages: page, hasMore, lastSeq };
}
