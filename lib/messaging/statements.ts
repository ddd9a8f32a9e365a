import type { Knex } from 'knex';
import type pg from 'pg';
import { AppError } from '../errors.js';
import type { PublicMessage } from '../protocol/index.js';
import type { ConversationBatch, Outcome, Stored } from './types.js';

/**
 * The node's half of the write path: one call of `xfchat_send()` (migrations/20261130000050_write_path.ts) per
 * group commit, as a named (prepared) statement on a connection of Knex's own pool, in autocommit: one round
 * trip is the whole transaction.
 */

/** Where committed messages are announced to other nodes (LISTENed to by lib/messaging/fanout.ts). */
export const MESSAGES_CHANNEL = 'xfchat_messages';

const SEND = {
  name: 'xfchat_send_v1',
  text: `SELECT r_ord, r_status, r_id, r_seq, r_created_ms
         FROM xfchat_send($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text, $6::text)`,
};

interface SendRow {
  r_ord: number;
  r_status: 0 | 1 | 2 | 3 | 4;
  r_id: string | null;
  r_seq: number | null;
  r_created_ms: number | null;
}

/** The node's announcement settings for one call: announce to the other nodes, as this node. */
export interface Announce {
  node: string;
}

const REFUSALS: Record<2 | 3 | 4, () => AppError> = {
  2: () => new AppError('IDEMPOTENCY_CONFLICT'),
  3: () => new AppError('NOT_FOUND'),
  4: () => new AppError('BLOCKED'),
};

/**
 * Writes the sends of every batch in one call (one transaction) and answers each batch's outcomes, in order.
 * Rejects when the call fails; nothing of it is then committed.
 */
export async function writeBatches(
  client: pg.ClientBase,
  batches: readonly ConversationBatch[],
  announce: Announce | undefined,
): Promise<Array<Array<Outcome<Stored>>>> {
  const conversationIds: string[] = [];
  const senderIds: string[] = [];
  const clientMsgIds: string[] = [];
  const bodies: string[] = [];
  for (const batch of batches) {
    for (const command of batch.commands) {
      conversationIds.push(batch.conversationId);
      senderIds.push(command.senderId);
      clientMsgIds.push(command.clientMsgId);
      bodies.push(command.body);
    }
  }
  const result = await client.query<SendRow>({
    ...SEND,
    values: [
      conversationIds,
      senderIds,
      clientMsgIds,
      bodies,
      announce ? MESSAGES_CHANNEL : null,
      announce?.node ?? null,
    ],
  });
  const rows = result.rows;
  if (rows.length !== conversationIds.length) {
    throw new Error(`xfchat_send answered ${rows.length} rows for ${conversationIds.length} sends`);
  }
  let index = 0;
  return batches.map((batch) =>
    batch.commands.map((command): Outcome<Stored> => {
      const row = rows[index++];
      if (row === undefined || row.r_status > 1) {
        return { ok: false, error: REFUSALS[(row?.r_status ?? 3) as 2 | 3 | 4]() };
      }
      const message: PublicMessage = {
        id: row.r_id ?? '',
        conversationId: batch.conversationId,
        seq: row.r_seq ?? 0,
        senderId: command.senderId,
        clientMsgId: command.clientMsgId,
        body: command.body,
        createdAt: new Date(row.r_created_ms ?? 0).toISOString(),
      };
      return { ok: true, value: { message, duplicate: row.r_status === 1 } };
    }),
  );
}

/** A connection of Knex's own pool (its acquire timeout and its types apply), for the writer's calls. */
export interface PoolConnections {
  acquire(): Promise<pg.ClientBase>;
  release(client: pg.ClientBase): void;
}

export function knexConnections(knex: Knex): PoolConnections {
  return {
    acquire: () => knex.client.acquireConnection() as Promise<pg.ClientBase>,
    release: (client) => {
      void knex.client.releaseConnection(client);
    },
  };
}
