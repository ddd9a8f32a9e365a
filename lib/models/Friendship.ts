import { BaseModel } from './BaseModel.js';

/** One row per friendship; userLow < userHigh, so the pair has one canonical form. */
export class Friendship extends BaseModel {
  static override tableName = 'friendships';
  static override idColumn = ['user_low', 'user_high'];

  userLow!: string;
  userHigh!: string;
  createdAt!: Date;

  static pair(a: string, b: string): { userLow: string; userHigh: string } {
    return a < b ? { userLow: a, userHigh: b } : { userLow: b, userHigh: a };
  }
}
