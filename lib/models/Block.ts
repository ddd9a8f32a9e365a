import { BaseModel } from './BaseModel.js';

export class Block extends BaseModel {
  static override tableName = 'blocks';
  static override idColumn = ['blocker_id', 'blocked_id'];

  blockerId!: string;
  blockedId!: string;
  createdAt!: Date;
}
