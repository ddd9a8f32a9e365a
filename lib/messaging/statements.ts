import type pg from 'pg';
import type { StatementTarget } from '../db.js';
import { AppError, validationError } from '../errors.js';
import type { PublicMessage } from '../protocol/index.js';
import { MAX_REACTIONS_PER_MESSAGE } from '../protocol/schemas.js';
import {
  isSameSend,
  type ChangeCommand,
  type ConversationBatch,
  type Outcome,
  type SendCommand,
  type Stored,
} from './types.js';

/**
 * The node's half of the write path: one call of `xfchat_write()` (migrations/20261130000050_message_writes.ts,
 * with each command's session checked since migrations/20261203130000_session_checked_under_lock.ts, and the
 * conversation's removals answered since migrations/20261204000000_removals_known_to_writes.ts)
 * per group commit, as a named (prepared) statement on a connection of Knex's own pool, in autocommit: one round
 * trip is the whole transaction. A group commit of a single send that announces nothing in its transaction (every
 * message at light load) calls `xfchat_send_one()` instead (migrations/20261201000000_send_one.ts): the same
 * answer in the same row shape, without starting the set-based statement (0.6-1.4 ms less per message at light
 * load in the bench; docs/performance.md).
 */

/** Where committed writes are announced to other nodes (LISTENed to by lib/messaging/fanout.ts). */
export const MESSAGES_CHANNEL = 'xfchat_messages';

const WRITE = {
  name: 'xfchat_write_v4',
  text: `SELECT r_ord, r_status, r_id, r_seq, r_version, r_created_ms, r_message, r_removals
         FROM xfchat_write($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::bigint[],
                           $6::smallint[], $7::uuid[], $8::uuid[], $9::bigint[], $10::text[], $11::text, $12::text,
                           $13::boolean, $14::uuid[], $15::uuid[])`,
};

const SEND_ONE = {
  name: 'xfchat_send_one_v3',
  text: `SELECT r_ord, r_status, r_id, r_seq, r_version, r_created_ms, r_message, r_removals
         FROM xfchat_send_one($1::uuid, $2::uuid, $3::text, $4::text, $5::bigint, $6::boolean, $7::uuid)`,
};

/**
 * `xfchat_write()`'s answers (migrations/20261130000050_message_writes.ts; 9 since 20261202200000_reaction_cap, 10
 * since 20261203130000_session_checked_under_lock).
 */
type Status = 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 10;
/** Every command of a conversation another transaction held: nothing of it was written. */
const BUSY_STATUS = 8;

interface WriteRow {
  r_ord: number;
  r_status: Status;
  r_id: string | null;
  r_seq: number | null;
  r_version: number | null;
  r_created_ms: number | null;
  /** A stored or changed message, in the contract's shape (pg parses the JSON). */
  r_message: PublicMessage | null;
  /** On a new or changed message's row: how many participants the conversation has lost so far. */
  r_removals: number | null;
}

/** The node's announcement settings for one call: announce to the other nodes, as this node. */
export interface Announce {
  node: string;
  /**
   * The call itself announces (NOTIFY inside the transaction, MESSAGE_ANNOUNCE=commit); otherwise the node does
   * right after the commit (lib/messaging/fanout.ts).
   */
  inCommit: boolean;
}

const REFUSALS: Record<Exclude<Status, 0 | 1 | 8>, () => AppError> = {
  2: () => new AppError('IDEMPOTENCY_CONFLICT'),
  3: () => new AppError('NOT_FOUND'),
  4: () => new AppError('BLOCKED'),
  5: () => new AppError('FORBIDDEN'),
  6: () => new AppError('MESSAGE_DELETED'),
  7: () => validationError({ replyToSeq: 'must be an earlier seq of this conversation' }),
  9: () =>
    new AppError('FORBIDDEN', {
      message: `A message has at most ${MAX_REACTIONS_PER_MESSAGE} different reactions.`,
    }),
  10: () => new AppError('UNAUTHORIZED'),
};

const CHANGE_KINDS: Record<ChangeCommand['kind'], number> = { edit: 1, delete: 2, react: 3, unreact: 4 };

/** The columns of one call, filled batch by batch. */
class WriteCall {
  readonly conversationIds: string[] = [];
  readonly senderIds: string[] = [];
  readonly clientMsgIds: string[] = [];
  readonly bodies: string[] = [];
  readonly replyTo: Array<number | null> = [];
  readonly sessionIds: Array<string | null> = [];
  readonly changeKinds: number[] = [];
  readonly changeConversationIds: string[] = [];
  readonly changeUserIds: string[] = [];
  readonly changeSeqs: number[] = [];
  readonly changeTexts: Array<string | null> = [];
  readonly changeSessionIds: Array<string | null> = [];

  /** Adds a send and returns the 1-based row it answers in (sends come first). */
  addSend(conversationId: string, send: SendCommand): number {
    this.conversationIds.push(conversationId);
    this.senderIds.push(send.senderId);
    this.clientMsgIds.push(send.clientMsgId);
    this.bodies.push(send.body);
    this.replyTo.push(send.replyToSeq);
    this.sessionIds.push(send.sessionId ?? null);
    return this.conversationIds.length;
  }

  /** Adds a change and returns its index among the changes (rows follow the sends). */
  addChange(conversationId: string, change: ChangeCommand): number {
    this.changeKinds.push(CHANGE_KINDS[change.kind]);
    this.changeConversationIds.push(conversationId);
    this.changeUserIds.push(change.userId);
    this.changeSeqs.push(change.seq);
    this.changeTexts.push(
      change.kind === 'edit' ? change.body : change.kind === 'delete' ? null : change.emoji,
    );
    this.changeSessionIds.push(change.sessionId ?? null);
    return this.changeKinds.length;
  }

  /** The call: `xfchat_send_one()` for a lone send that announces nothing in its transaction, else `xfchat_write()`. */
  query(announce: Announce | undefined, wait: boolean): pg.QueryConfig {
    if (this.conversationIds.length === 1 && this.changeKinds.length === 0 && announce?.inCommit !== true) {
      const { conversationIds, senderIds, clientMsgIds, bodies, replyTo, sessionIds } = this;
      return {
        ...SEND_ONE,
        values: [
          conversationIds[0],
          senderIds[0],
          clientMsgIds[0],
          bodies[0],
          replyTo[0] ?? null,
          wait,
          sessionIds[0] ?? null,
        ],
      };
    }
    return { ...WRITE, values: this.values(announce, wait) };
  }

  private values(announce: Announce | undefined, wait: boolean): unknown[] {
    return [
      this.conversationIds,
      this.senderIds,
      this.clientMsgIds,
      this.bodies,
      this.replyTo,
      this.changeKinds,
      this.changeConversationIds,
      this.changeUserIds,
      this.changeSeqs,
      this.changeTexts,
      announce?.inCommit === true ? MESSAGES_CHANNEL : null,
      announce?.inCommit === true ? announce.node : null,
      wait,
      this.sessionIds,
      this.changeSessionIds,
    ];
  }
}

/** How one command will be answered from the call's rows. */
type Plan =
  | { row: 'send'; index: number; send: SendCommand }
  | { row: 'change'; index: number }
  /** The same clientMsgId again in this batch: answered like the first (`of`), or a conflict. */
  | { row: 'repeat'; of: number };

/** A new message from its send and the ids the database gave it; nothing else can be set on a new message. */
function newMessage(conversationId: string, send: SendCommand, row: WriteRow): PublicMessage {
  return {
    id: row.r_id ?? '',
    conversationId,
    seq: row.r_seq ?? 0,
    senderId: send.senderId,
    clientMsgId: send.clientMsgId,
    body: send.body,
    createdAt: new Date(row.r_created_ms ?? 0).toISOString(),
    replyToSeq: send.replyToSeq,
    editedAt: null,
    deletedAt: null,
    reactions: [],
    version: row.r_version ?? 0,
  };
}

function outcomeOf(conversationId: string, row: WriteRow | undefined, send?: SendCommand): Outcome<Stored> {
  if (row === undefined) return { ok: false, error: new AppError('INTERNAL') };
  if (row.r_status > 1 && row.r_status !== BUSY_STATUS)
    return { ok: false, error: REFUSALS[row.r_status as Exclude<Status, 0 | 1 | 8>]() };
  const message = row.r_message ?? (send ? newMessage(conversationId, send, row) : undefined);
  if (message === undefined) return { ok: false, error: new AppError('INTERNAL') };
  const stored: Stored = { message, duplicate: row.r_status === 1 };
  if (typeof row.r_removals === 'number') stored.removals = row.r_removals;
  return { ok: true, value: stored };
}

/** A batch whose conversation another transaction held (only when not waiting): nothing of it was written. */
export const BUSY = 'busy';

/**
 * Writes every batch in one call (one transaction) and answers each batch's outcomes, in command order, or
 * {@link BUSY}. With `wait`, the call waits for conversations other transactions hold; without, it skips them.
 * Rejects when the call fails; nothing of it is then committed.
 */
export async function writeBatches(
  client: StatementTarget,
  batches: readonly ConversationBatch[],
  announce: Announce | undefined,
  wait: boolean,
): Promise<Array<Array<Outcome<Stored>> | typeof BUSY>> {
  const call = new WriteCall();
  const plans = batches.map((batch) => {
    const firstOf = new Map<string, number>();
    return batch.commands.map((command, position): Plan => {
      if (command.kind !== 'send')
        return { row: 'change', index: call.addChange(batch.conversationId, command) };
      // A clientMsgId repeated within one batch is one message: the repeat is answered like the first. Batches
      // repeat one only with the same body, reply and session (messageBatchRule), which makes that answer right.
      const key = `${command.senderId}|${command.clientMsgId}`;
      const first = firstOf.get(key);
      if (first !== undefined) {
        if (!isSameSend(batch.commands[first] as SendCommand, command)) {
          throw new Error(
            'a batch repeats a clientMsgId with another body, reply or session (see messageBatchRule)',
          );
        }
        return { row: 'repeat', of: first };
      }
      firstOf.set(key, position);
      return { row: 'send', index: call.addSend(batch.conversationId, command), send: command };
    });
  });
  const result = await client.query<WriteRow>(call.query(announce, wait));
  const sends = call.conversationIds.length;
  const expected = sends + call.changeKinds.length;
  if (result.rows.length !== expected) {
    throw new Error(`xfchat_write answered ${result.rows.length} rows for ${expected} commands`);
  }
  const rowAt = (ord: number): WriteRow | undefined => result.rows[ord - 1];
  return batches.map((batch, b) => {
    const outcomes: Array<Outcome<Stored>> = [];
    const first = plans[b]?.[0];
    // A conversation is locked whole or skipped whole: its first command tells which.
    if (first && first.row !== 'repeat') {
      const row = rowAt(first.row === 'send' ? first.index : sends + first.index);
      if (row?.r_status === BUSY_STATUS) return BUSY;
    }
    for (const plan of plans[b] ?? []) {
      if (plan.row === 'send') outcomes.push(outcomeOf(batch.conversationId, rowAt(plan.index), plan.send));
      else if (plan.row === 'change')
        outcomes.push(outcomeOf(batch.conversationId, rowAt(sends + plan.index)));
      else {
        const original = outcomes[plan.of];
        outcomes.push(
          original?.ok
            ? { ok: true, value: { message: original.value.message, duplicate: true } }
            : (original ?? { ok: false, error: new AppError('INTERNAL') }),
        );
      }
    }
    return outcomes;
  });
}
