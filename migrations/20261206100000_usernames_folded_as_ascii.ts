import type { Knex } from 'knex';

/**
 * Usernames (only `A-Z a-z 0-9 _ . -`) are unique and matched case-insensitively. The case was folded with
 * `lower(username)`, which follows the database's locale: in a database created with a Turkish one (ICU `tr-TR`,
 * glibc `tr_TR.UTF-8`), `lower('I')` is `ı`, so "IVAN" and "ivan" were two accounts, "LIZ" could not log in as
 * "liz", and a search for "IRIS" found nobody. `lower(username COLLATE "C")` folds A-Z alone, in every database.
 *
 * This unique index is that key. Its collation is "C", so it also serves the prefix search (a LIKE range) and its
 * order. The indexes on `lower(username)` (unique) and `(lower(username)) COLLATE "C"` stay: a node of release
 * 0.2.0 still looks users up by them during a rolling upgrade, and the unique one never refuses a name this one
 * takes (folded by any locale, two names of these characters that are equal are equal folded as ASCII too).
 *
 * A database where two usernames differ only in the case of their letters (one made with a Turkish locale) cannot
 * take the index: the migration stops before it and names them, for an operator to rename one of each pair.
 * `down()` drops the index.
 */
export const USERNAME_ASCII_UNIQUE = 'users_username_ascii_unique';

export async function up(knex: Knex): Promise<void> {
  // The lock the index's build takes anyway, taken before the check: no signup comes between the two.
  await knex.raw('LOCK TABLE users IN SHARE MODE');
  const { rows } = await knex.raw<{ rows: Array<{ names: string[] }> }>(
    `SELECT array_agg(username ORDER BY username) AS names FROM users WHERE username IS NOT NULL
     GROUP BY lower(username COLLATE "C") HAVING count(*) > 1 LIMIT 20`,
  );
  if (rows.length > 0) {
    const pairs = rows.map((r) => r.names.join(' / ')).join(', ');
    throw new Error(
      `usernames that differ only in the case of their letters exist (${pairs}): rename all but one of each ` +
        '(UPDATE users SET username = ... WHERE id = ...), then start again',
    );
  }
  await knex.raw(`CREATE UNIQUE INDEX ${USERNAME_ASCII_UNIQUE} ON users (lower(username COLLATE "C"))`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP INDEX ${USERNAME_ASCII_UNIQUE}`);
}
