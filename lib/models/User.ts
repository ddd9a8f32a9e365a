import type { Modifiers, QueryBuilder } from 'objection';
import type { PublicUser } from '../protocol/shapes.js';
import { BaseModel } from './BaseModel.js';

/** The display name every deleted account shows (its row stays, so history keeps its sender). */
export const DELETED_USER_DISPLAY_NAME = 'Deleted user';

/** The columns a public user is made of (toPublic): never the password hash. */
export const PUBLIC_USER_COLUMNS = Object.freeze([
  'users.id',
  'users.username',
  'users.display_name',
  'users.created_at',
]);

export class User extends BaseModel {
  static override tableName = 'users';

  /** `public`: only {@link PUBLIC_USER_COLUMNS}; every relation to users and every list outside lib/auth uses it. */
  static override modifiers: Modifiers<QueryBuilder<User>> = {
    public(builder) {
      void builder.select(...PUBLIC_USER_COLUMNS);
    },
  };

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
