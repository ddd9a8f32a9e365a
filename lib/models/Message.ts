import { BaseModel } from './BaseModel.js';

/**
 * A stored message. Reads return messages in the contract's shape straight from PostgreSQL
 * (`xfchat_message_json`, lib/messaging/reads.ts) and writes go through `xfchat_write`, so this model serves
 * only ad-hoc queries.
 */
export class Message extends BaseModel {
  static override tableName = 'messages';

  id!: string;
  conversationId!: string;
  senderId!: string | null;
  seq!: number;
  clientMsgId!: string;
  body!: string;
  replyToSeq!: number | null;
  editedAt!: Date | null;
  deletedAt!: Date | null;
  version!: number;
  createdAt!: Date;
}
