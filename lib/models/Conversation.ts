import type { RelationMappings } from 'objection';
import { BaseModel } from './BaseModel.js';
import type { ConversationType, PublicConversation } from '../protocol/shapes.js';
import { Participant } from './Participant.js';

export class Conversation extends BaseModel {
  static override tableName = 'conversations';

  id!: string;
  type!: ConversationType;
  title!: string | null;
  createdBy!: string | null;
  directKey!: string | null;
  lastSeq!: number;
  version!: number;
  lastActivityAt!: Date;
  createdAt!: Date;
  updatedAt!: Date;
  participants?: Participant[];

  static override get relationMappings(): RelationMappings {
    return {
      participants: {
        relation: BaseModel.HasManyRelation,
        modelClass: Participant,
        join: { from: 'conversations.id', to: 'conversation_participants.conversation_id' },
      },
    };
  }

  /** The key that makes a direct conversation unique per pair, whichever side created it. */
  static directKeyFor(a: string, b: string): string {
    return a < b ? `${a}:${b}` : `${b}:${a}`;
  }

  toPublic(): PublicConversation {
    if (!this.participants) throw new Error('Conversation.toPublic needs the participants relation loaded');
    return {
      id: this.id,
      type: this.type,
      title: this.title,
      createdBy: this.createdBy,
      createdAt: this.createdAt.toISOString(),
      lastSeq: this.lastSeq,
      version: this.version,
      participants: [...this.participants]
        .sort((a, b) => a.joinedAt.getTime() - b.joinedAt.getTime() || a.userId.localeCompare(b.userId))
        .map((p) => p.toPublic()),
    };
  }
}
