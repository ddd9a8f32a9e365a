import type { PublicMessage } from '../protocol/shapes.js';
import { BaseModel } from './BaseModel.js';

export class Message extends BaseModel {
  static override tableName = 'messages';

  id!: string;
  conversationId!: string;
  senderId!: string | null;
  seq!: number;
  clientMsgId!: string;
  body!: string;
  createdAt!: Date;

  toPublic(): PublicMessage {
    return toPublicMessage(this);
  }
}

export function toPublicMessage(
  m: Pick<Message, 'id' | 'conversationId' | 'seq' | 'senderId' | 'clientMsgId' | 'body' | 'createdAt'>,
): PublicMessage {
  return {
    id: m.id,
    conversationId: m.conversationId,
    seq: m.seq,
    senderId: m.senderId,
    clientMsgId: m.clientMsgId,
    body: m.body,
    createdAt: m.createdAt.toISOString(),
  };
}

/** A messages row as raw SQL (knex.raw) returns it, for the hot paths that bypass the model. */
export interface MessageRow {
  id: string;
  conversation_id: string;
  sender_id: string | null;
  seq: number;
  client_msg_id: string;
  body: string;
  created_at: Date;
}

/** The columns of {@link MessageRow}, for SELECT and RETURNING lists. */
export const MESSAGE_COLUMNS = 'id, conversation_id, sender_id, seq, client_msg_id, body, created_at';

export function messageFromRow(row: MessageRow): PublicMessage {
  return toPublicMessage({
    id: row.id,
    conversationId: row.conversation_id,
    senderId: row.sender_id,
    seq: row.seq,
    clientMsgId: row.client_msg_id,
    body: row.body,
    createdAt: row.created_at,
  });
}
