import type { Knex } from 'knex';

/**
 * Prefix search of usernames (`GET /users?q=`): `lower(username) COLLATE "C" LIKE 'abc%'` is a range of this
 * index, and `ORDER BY lower(username) COLLATE "C"` its order, so a search reads only the rows it returns. The
 * unique index on `lower(username)` cannot serve LIKE under the database's (usually non-C) collation.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw('CREATE INDEX users_username_prefix_idx ON users ((lower(username)) COLLATE "C")');
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP INDEX users_username_prefix_idx');
}
