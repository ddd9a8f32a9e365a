import type { Knex } from 'knex';
import type { PublicMessage } from '../protocol/index.js';
import { AppError } from '../errors.js';
import { PAGE_LIMIT } from '../protocol/schemas.js';

/**
 * Reads of stored messages. Each message comes out of PostgreSQL already in the contract's shape, built by
 * `xfchat_message_json()` (migrations/20261130000050_message_writes.ts): one definition of the shape for every
 * read, reactions included.
 */

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
  /** The conversation's last seq and version, read in the same statement (the same snapshot) as the messages. */
  lastSeq: number;
  version: number;
}

export interface ChangesPage {
  /** Every message changed (or created) after the cursor, by version ascending, in its current state. */
  messages: PublicMessage[];
  hasMore: boolean;
  /** The conversation's version in the same snapshot: the next cursor once `hasMore` is false. */
  version: number;
}

/**
 * The most a page of messages carries, as JSON, unless its first message alone is more: past it the page ends early,
 * with `hasMore` (a short page is allowed). Bodies of control characters (six bytes each as JSON) and reactions of
 * many users made a page of 200 messages 4.8 MB, or 7.8 MB for 10 messages with 20 reactions of 1000 users each:
 * over a socket's `SOCKET_MAX_BUFFERED_BYTES`, which cut the reading socket with the next packet queued beside it,
 * and a REST page of hundreds of megabytes in the node's memory.
 */
export const PAGE_MAX_BYTES = 1024 * 1024;

interface PageRow {
  last_seq: number;
  version: number;
  /** Null when the page is empty (the LEFT JOIN's one row carries only the conversation's counters). */
  message: PublicMessage | null;
}

interface PageOrder {
  key: 'seq' | 'version';
  descending: boolean;
}

async function readPage(
  knex: Knex,
  conversationId: string,
  readerId: string,
  where: string,
  order: PageOrder,
  bindings: ReadonlyArray<string | number>,
  limit: number,
  maxBytes: number,
): Promise<{ rows: PublicMessage[]; lastSeq: number; version: number; hasMore: boolean }> {
  // `where` is a fixed fragment chosen by the callers below, never input; values are bound. The
  // conversation id is bound inside the subquery too: against a constant the planner walks the index in order
  // and stops at the limit, where `= c.id` let it sort every matching row.
  // The reader's membership is part of the statement: a node's cache of who takes part (lib/messaging/membership.ts)
  // learns of a removal on another node a moment after it, and a read in that moment must not get through.
  const result = await knex.raw<{ rows: PageRow[] }>(
    `SELECT c.last_seq, c.version, CASE WHEN m.id IS NULL THEN NULL ELSE xfchat_message_json(m) END AS message
     FROM conversations c
     JOIN conversation_participants p ON p.conversation_id = c.id AND p.user_id = ?
     LEFT JOIN LATERAL (
       SELECT * FROM messages WHERE conversation_id = ? AND ${where} ORDER BY ${order.key} ${order.descending ? 'DESC' : 'ASC'} LIMIT ?
     ) m ON true
     WHERE c.id = ?`,
    [readerId, conversationId, ...bindings, limit + 1, conversationId],
  );
  const first = result.rows[0];
  if (first === undefined) throw new AppError('NOT_FOUND');
  // Sorted here again: SQL keeps a subquery's order through a join only by how a plan happens to run, and an
  // ORDER BY outside it would sort where the plan now reads the index in order.
  const sign = order.descending ? -1 : 1;
  const rows = result.rows
    .flatMap((r) => (r.message === null ? [] : [r.message]))
    .sort((a, b) => sign * (a[order.key] - b[order.key]));
  // In the order read: a page of the newest (or before a seq) keeps its newest messages, the others their oldest.
  let kept = Math.min(rows.length, limit);
  let bytes = 0;
  for (let i = 0; i < kept; i++) {
    bytes += Buffer.byteLength(JSON.stringify(rows[i])) + 1;
    if (bytes > maxBytes && i > 0) kept = i;
  }
  return {
    rows: rows.slice(0, kept),
    hasMore: rows.length > kept,
    lastSeq: first?.last_seq ?? 0,
    version: first?.version ?? 0,
  };
}

/**
 * One page of history by (conversation_id, seq) on the unique index. It reads one row more than asked to know
 * `hasMore`, and the conversation's counters in the same statement, so all come from one snapshot.
 */
export async function readHistory(
  knex: Knex,
  conversationId: string,
  readerId: string,
  window: HistoryWindow,
  maxBytes = PAGE_MAX_BYTES,
): Promise<HistoryPage> {
  const read = (where: string, order: PageOrder, bindings: number[]) =>
    readPage(knex, conversationId, readerId, where, order, bindings, window.limit, maxBytes);
  const page =
    window.kind === 'after'
      ? await read('seq > ?', { key: 'seq', descending: false }, [window.seq])
      : window.kind === 'before'
        ? await read('seq < ?', { key: 'seq', descending: true }, [window.seq])
        : await read('true', { key: 'seq', descending: true }, []);
  const messages = window.kind === 'after' ? page.rows : page.rows.reverse();
  return { messages, hasMore: page.hasMore, lastSeq: page.lastSeq, version: page.version };
}

/** What changed after version `since`, by (conversation_id, version). */
export async function readChanges(
  knex: Knex,
  conversationId: string,
  readerId: string,
  since: number,
  limit: number,
  maxBytes = PAGE_MAX_BYTES,
): Promise<ChangesPage> {
  const page = await readPage(
    knex,
    conversationId,
    readerId,
    'version > ?',
    { key: 'version', descending: false },
    [since],
    limit,
    maxBytes,
  );
  return { messages: page.rows, hasMore: page.hasMore, version: page.version };
}

/** The current state of some messages of one conversation, by seq ascending. */
export async function readMessages(
  knex: Knex,
  conversationId: string,
  seqs: { first: number; last: number } | readonly number[],
): Promise<PublicMessage[]> {
  const [where, bindings] =
    'first' in seqs
      ? ['m.seq BETWEEN ? AND ?', [seqs.first, seqs.last]]
      : ['m.seq = ANY(?::bigint[])', [[...seqs]]];
  const result = await knex.raw<{ rows: Array<{ message: PublicMessage }> }>(
    `SELECT xfchat_message_json(m) AS message FROM messages m WHERE m.conversation_id = ? AND ${where}
     ORDER BY m.seq`,
    [conversationId, ...bindings],
  );
  return result.rows.map((r) => r.message);
}

/** Up to a page of messages after `seq`, by seq: what a node's subscribers missed while it heard nothing. */
export async function readMessagesAfter(
  knex: Knex,
  conversationId: string,
  seq: number,
): Promise<PublicMessage[]> {
  const result = await knex.raw<{ rows: Array<{ message: PublicMessage }> }>(
    `SELECT xfchat_message_json(m) AS message FROM messages m WHERE m.conversation_id = ? AND m.seq > ?
     ORDER BY m.seq LIMIT ?`,
    [conversationId, seq, PAGE_LIMIT.max],
  );
  return result.rows.map((r) => r.message);
}

/**
 * Messages changed (or sent) after `version`, by version, in their current state: what a node's subscribers
 * missed.
 */
export async function readChangedAfter(
  knex: Knex,
  conversationId: string,
  version: number,
): Promise<PublicMessage[]> {
  const result = await knex.raw<{ rows: Array<{ message: PublicMessage }> }>(
    `SELECT xfchat_message_json(m) AS message FROM messages m
     WHERE m.conversation_id = ? AND m.version > ? ORDER BY m.version LIMIT ?`,
    [conversationId, version, PAGE_LIMIT.max],
  );
  return result.rows.map((r) => r.message);
}
