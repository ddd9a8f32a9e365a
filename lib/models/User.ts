import type { PublicUser } from '../protocol/shapes.js';
import { BaseModel } from './BaseModel.js';

/** The display name every deleted account shows (its row stays, so history keeps its sender). */
export const DELETED_USER_DISPLAY_NAME = 'Deleted user';

export class User extends BaseModel {
  static override tableName = 'users';

  id!: string;
  /** NULL once the account is deleted: the name is free again. */
  username!: string | null;
  /** NULL once the account is deleted. Never leaves lib/auth. */
  passwordHash!: string | null;
  displayName!: string;
  createdAt!: Date;
  updatedAt!: Date;
  deletedAt!: Date | null;

  toPublic(): PublicUser {
    return toPublicUser(this);
  }
}

export function toPublicUser(u: Pick<User, 'id' | 'username' | 'displayName' | 'createdAt'>): PublicUser {
  return { id: u.id, username: u.username, displayName: u.displayName, createdAt: u.createdAt.toISOString() };
}
