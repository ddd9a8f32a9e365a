import type { PublicUser } from '../protocol/shapes.js';
import { BaseModel } from './BaseModel.js';

export class User extends BaseModel {
  static override tableName = 'users';

  id!: string;
  username!: string;
  passwordHash!: string;
  displayName!: string;
  tokenVersion!: number;
  createdAt!: Date;
  updatedAt!: Date;

  toPublic(): PublicUser {
    return toPublicUser(this);
  }
}

export function toPublicUser(u: Pick<User, 'id' | 'username' | 'displayName' | 'createdAt'>): PublicUser {
  return { id: u.id, username: u.username, displayName: u.displayName, createdAt: u.createdAt.toISOString() };
}
