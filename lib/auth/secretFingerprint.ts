import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Knex } from 'knex';
import { CONTROL_APPLICATION_NAME } from '../cluster/controlBus.js';
import { StartupError } from '../startupErrors.js';

/**
 * Every node on one database must use the same JWT_SECRET: a node with another one verifies no other node's access
 * token, and matches no refresh token (their stored hash is keyed by the secret, lib/auth/refreshTokens.ts), so
 * users would be logged out by whichever node they reach. The database keeps a fingerprint of the cluster's secret
 * (`cluster_settings`, migrations/20261203120000_cluster_secret.ts); a node whose secret gives another one refuses
 * to start. Neither the secret nor its fingerprint is ever logged.
 */

/** The `cluster_settings` row holding the fingerprint. */
export const JWT_SECRET_SETTING = 'jwt_secret_fingerprint';

/**
 * A fixed label, so the fingerprint is used for nothing else. It is not a JWT's signing input (that has two dots
 * and no spaces), so the fingerprint is never a token signature.
 */
const FINGERPRINT_LABEL = 'xfchat JWT_SECRET fingerprint v1';

/** HMAC-SHA256 keyed by the secret over a fixed label, hex: equal for equal secrets, and reveals nothing of them. */
export function jwtSecretFingerprint(jwtSecret: string): string {
  return createHmac('sha256', jwtSecret).update(FINGERPRINT_LABEL, 'utf8').digest('hex');
}

function sameFingerprint(stored: string, current: string): boolean {
  const a = Buffer.from(stored, 'utf8');
  const b = Buffer.from(current, 'utf8');
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The line a node with another secret refuses to start with: the cause, then the two fixes. */
export const JWT_SECRET_MISMATCH =
  'JWT_SECRET differs from the one this database\'s cluster uses: give every node the same JWT_SECRET, or, to change it on purpose (every session ends), stop every node and run "xfchat jwt-secret adopt" with the new JWT_SECRET';

/** How the current secret relates to the stored fingerprint. */
export type SecretState = 'none stored' | 'matches' | 'differs';

async function storedFingerprint(knex: Knex): Promise<string | undefined> {
  const row = await knex<{ name: string; value: string }>('cluster_settings')
    .where('name', JWT_SECRET_SETTING)
    .first('value');
  return row?.value;
}

/** Compares the secret with the stored fingerprint, changing nothing (`xfchat jwt-secret adopt` without --yes). */
export async function jwtSecretState(knex: Knex, jwtSecret: string): Promise<SecretState> {
  const stored = await storedFingerprint(knex);
  if (stored === undefined) return 'none stored';
  return sameFingerprint(stored, jwtSecretFingerprint(jwtSecret)) ? 'matches' : 'differs';
}

/**
 * At startup, after the migrations: stores the secret's fingerprint if none is stored yet (the first node; nodes
 * starting together store one of theirs and compare with it), else compares it with the stored one. A node told
 * `differs` must not start ({@link JWT_SECRET_MISMATCH}).
 */
export async function checkJwtSecret(
  knex: Knex,
  jwtSecret: string,
): Promise<'stored' | 'matches' | 'differs'> {
  const current = jwtSecretFingerprint(jwtSecret);
  // ON CONFLICT waits for a concurrent insert to commit; the read after it (a new snapshot) sees that row.
  const inserted = await knex('cluster_settings')
    .insert({ name: JWT_SECRET_SETTING, value: current })
    .onConflict('name')
    .ignore()
    .returning('name');
  if (inserted.length > 0) return 'stored';
  const stored = await storedFingerprint(knex);
  if (stored === undefined) {
    // Deleted between the two statements (by hand): stored again at the next start rather than guessed now.
    throw new StartupError(
      `the cluster's JWT_SECRET record (cluster_settings, ${JWT_SECRET_SETTING}) was deleted while this node started: start it again`,
    );
  }
  return sameFingerprint(stored, current) ? 'matches' : 'differs';
}

export interface Adopted {
  /** `unchanged`: it was already the cluster's secret; `stored`: none was stored; `replaced`: another one was. */
  outcome: 'unchanged' | 'stored' | 'replaced';
  /** Sessions deleted: every one, when another secret was replaced (none of them can refresh any more). */
  endedSessions: number;
}

/**
 * Makes the current secret the cluster's (`xfchat jwt-secret adopt`), in one transaction. Replacing another
 * secret's fingerprint also deletes every session (their refresh tokens go with them): their access tokens and
 * refresh tokens were made with the old secret and no node accepts them any more, so they would only be listed,
 * dead, in `GET /auth/sessions`. A secret that is already the cluster's changes nothing; with none stored, the
 * sessions are left as they are (whether they were made with this secret is unknown).
 */
export async function adoptJwtSecret(knex: Knex, jwtSecret: string): Promise<Adopted> {
  const current = jwtSecretFingerprint(jwtSecret);
  return knex.transaction(async (trx) => {
    const row = await trx<{ name: string; value: string }>('cluster_settings')
      .where('name', JWT_SECRET_SETTING)
      .forUpdate()
      .first('value');
    if (row !== undefined && sameFingerprint(row.value, current)) {
      return { outcome: 'unchanged', endedSessions: 0 };
    }
    await trx('cluster_settings')
      .insert({ name: JWT_SECRET_SETTING, value: current, updated_at: trx.fn.now() })
      .onConflict('name')
      .merge(['value', 'updated_at']);
    if (row === undefined) return { outcome: 'stored', endedSessions: 0 };
    const endedSessions = await trx('sessions').delete();
    return { outcome: 'replaced', endedSessions };
  });
}

/**
 * The nodes running on this database now: each holds its control-bus connection for as long as it runs. A node
 * still running when the secret changes keeps answering with the old one, refusing every token of the new one.
 */
export async function runningNodes(knex: Knex): Promise<number> {
  const { rows } = await knex.raw<{ rows: Array<{ nodes: number }> }>(
    'SELECT count(*)::int AS nodes FROM pg_stat_activity WHERE datname = current_database() AND application_name = ?',
    [CONTROL_APPLICATION_NAME],
  );
  return rows[0]?.nodes ?? 0;
}
