import type { RelationMappings } from 'objection';
import { BaseModel } from './BaseModel.js';
import type { FriendRequestStatus, PublicFriendRequest } from '../protocol/shapes.js';
import { User } from './User.js';

export class FriendRequest extends BaseModel {
  static override tableName = 'friend_requests';

  id!: string;
  fromUserId!: string;
  toUserId!: string;
  status!: FriendRequestStatus;
  createdAt!: Date;
  respondedAt!: Date | null;
  fromUser?: User;
  toUser?: User;

  static override get relationMappings(): RelationMappings {
    return {
      fromUser: {
        relation: BaseModel.BelongsToOneRelation,
        modelClass: User,
        modify: 'public',
        join: { from: 'friend_requests.from_user_id', to: 'users.id' },
      },
      toUser: {
        relation: BaseModel.BelongsToOneRelation,
        modelClass: User,
        modify: 'public',
        join: { from: 'friend_requests.to_user_id', to: 'users.id' },
      },
    };
  }

  toPublic(): PublicFriendRequest {
    if (!this.fromUser || !this.toUser)
      throw new Error('FriendRequest.toPublic needs fromUser and toUser loaded');
    return {
      id: this.id,
      from: this.fromUser.toPublic(),
      to: this.toUser.toPublic(),
      status: this.status,
      createdAt: this.createdAt.toISOString(),
      respondedAt: this.respondedAt ? this.respondedAt.toISOString() : null,
    };
  }
}
