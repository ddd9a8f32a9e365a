import type { Knex } from 'knex';

/**
 * `cluster_settings`: facts every node of the cluster (every node on this database) must agree on, one row each.
 *
 * - `jwt_secret_fingerprint`: an HMAC-SHA256 keyed by JWT_SECRET over a fixed label (lib/auth/secretFingerprint.ts),
 *   which reveals nothing of the secret. The first node to start stores it; a node whose JWT_SECRET gives another
 *   one refuses to start, instead of refusing every other node's tokens and refresh tokens while answering
 *   `/readyz`. `xfchat jwt-secret adopt` replaces it when the secret is changed on purpose.
 *
 * A database migrated before this has no row: the next node to start stores its fingerprint.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('cluster_settings', (t) => {
    t.text('name').primary();
    t.text('value').notNullable();
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
}

/** Drops the table: the nodes of the previous release do not read it, and the next start stores a new row. */
export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('cluster_settings');
}
