import { BaseModel } from './BaseModel.js';

export interface PublicMessage {
  id: string;
  conversationId: string;
  seq: number;
  senderId: string | null;
  clientMsgId: string;
  body: string;
  createdAt: string;
}

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
