import type { RelationMappings } from 'objection';
import type { ParticipantRole, PublicParticipant } from '../protocol/shapes.js';
import { BaseModel } from './BaseModel.js';
import { User } from './User.js';

export class Participant extends BaseModel {
  static override tableName = 'conversation_participants';
  static override idColumn = ['conversation_id', 'user_id'];

  conversationId!: string;
  userId!: string;
  role!: ParticipantRole;
  lastReadSeq!: number;
  joinedAt!: Date;
  user?: User;

  static override get relationMappings(): RelationMappings {
    return {
      user: {
        relation: BaseModel.BelongsToOneRelation,
        modelClass: User,
        modify: 'public',
        join: { from: 'conversation_participants.user_id', to: 'users.id' },
      },
    };
  }

  toPublic(): PublicParticipant {
    if (!this.user) throw new Error('Participant.toPublic needs the user relation loaded');
    return {
      userId: this.userId,
      username: this.user.username,
      displayName: this.user.displayName,
      role: this.role,
      lastReadSeq: this.lastReadSeq,
      joinedAt: this.joinedAt.toISOString(),
    };
  }
}
