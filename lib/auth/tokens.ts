import jwt from 'jsonwebtoken';
import type { Knex } from 'knex';
import type { Config } from '../config.js';
import { AppError } from '../errors.js';
import { User } from '../models/User.js';

/** The only algorithm accepted: pinned, so `alg: none` or an RS/HS confusion never verifies. */
const ALGORITHM = 'HS256';

/**
 * How far a token's lifetime (`exp - iat`) may exceed JWT_TTL_SECONDS, and how far in the future its `iat` may
 * lie. Nodes issue and check tokens by PostgreSQL's clock (lib/cluster/clock.ts), so their own clocks' differences
 * do not count; this is a margin, nothing more. A correctly signed token that claims a longer life (a
 * ten-year token minted with a leaked secret or by an old configuration) is refused.
 */
export const TOKEN_LIFETIME_SLACK_SECONDS = 30;

export type AuthConfig = Config['auth'];

export interface TokenClaims {
  userId: string;
  /** The session the token belongs to (claim `sid`). */
  sessionId: string;
  /** Issued at, seconds since the epoch. */
  iat: number;
  /** Expiry, seconds since the epoch. */
  exp: number;
}

export interface Authenticated {
  user: User;
  claims: TokenClaims;
}

export interface SignedToken {
  token: string;
  /** Seconds until it expires: JWT_TTL_SECONDS. */
  expiresIn: number;
}

/** Issues an access token for one session of a user, issued at `nowMs` (PostgreSQL's clock). */
export function signAccessToken(
  subject: { userId: string; sessionId: string },
  auth: AuthConfig,
  nowMs: number,
): SignedToken {
  // jsonwebtoken counts `exp` from the payload's `iat` when it has one, instead of this process's clock.
  const payload = { sid: subject.sessionId, iat: Math.floor(nowMs / 1000) };
  const token = jwt.sign(payload, auth.jwtSecret, {
    algorithm: ALGORITHM,
    subject: subject.userId,
    expiresIn: auth.tokenTtlSeconds,
    issuer: auth.issuer,
    audience: auth.audience,
  });
  return { token, expiresIn: auth.tokenTtlSeconds };
}

/** Longer bearer strings are refused unparsed; a real token is a few hundred characters. */
export const MAX_TOKEN_LENGTH = 4096;

const unauthorized = (cause?: unknown) => new AppError('UNAUTHORIZED', { cause });

/**
 * Options of jsonwebtoken's verify: the pinned algorithm, issuer and audience. Expiry is left to
 * {@link claimsFromPayload}, which checks it by PostgreSQL's clock rather than this process's.
 */
export function verifyOptions(
  auth: AuthConfig,
): jwt.VerifyOptions & { algorithms: jwt.Algorithm[]; ignoreExpiration: true } {
  return { algorithms: [ALGORITHM], issuer: auth.issuer, audience: auth.audience, ignoreExpiration: true };
}

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const isWholeNumber = (value: unknown): value is number =>
  typeof value === 'number' && Number.isSafeInteger(value);

/**
 * The claims of a payload whose signature, issuer and audience were verified. `sub` and `sid` must be UUIDs,
 * `iat` and `exp` whole numbers, `exp` after `nowMs` (PostgreSQL's clock), the lifetime `exp - iat` at most
 * JWT_TTL_SECONDS and `iat` not in the future (both within {@link TOKEN_LIFETIME_SLACK_SECONDS}). Throws
 * UNAUTHORIZED.
 */
export function claimsFromPayload(payload: unknown, auth: AuthConfig, nowMs: number): TokenClaims {
  const nowSeconds = Math.floor(nowMs / 1000);
  if (typeof payload !== 'object' || payload === null) throw unauthorized();
  const { sub, sid, iat, exp } = payload as Record<string, unknown>;
  if (typeof sub !== 'string' || !UUID_PATTERN.test(sub)) throw unauthorized();
  if (typeof sid !== 'string' || !UUID_PATTERN.test(sid)) throw unauthorized();
  if (!isWholeNumber(iat) || !isWholeNumber(exp)) throw unauthorized();
  if (exp <= nowSeconds) throw unauthorized();
  if (exp - iat > auth.tokenTtlSeconds + TOKEN_LIFETIME_SLACK_SECONDS) throw unauthorized();
  if (iat > nowSeconds + TOKEN_LIFETIME_SLACK_SECONDS) throw unauthorized();
  return { userId: sub.toLowerCase(), sessionId: sid.toLowerCase(), iat, exp };
}

/** Checks signature, algorithm, issuer, audience, expiry (at `nowMs`) and lifetime. Throws UNAUTHORIZED. */
export function verifyToken(token: unknown, auth: AuthConfig, nowMs: number): TokenClaims {
  if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_LENGTH)
    throw unauthorized();
  let payload: string | jwt.JwtPayload;
  try {
    payload = jwt.verify(token, auth.jwtSecret, verifyOptions(auth));
  } catch (err) {
    throw unauthorized(err);
  }
  return claimsFromPayload(payload, auth, nowMs);
}

/**
 * Loads the token's user together with its session, in one statement (one round trip): a token whose session
 * ended (logout, revoke, password change, refresh-token reuse, account deletion) or whose user is gone is
 * refused at once, on every node. Throws UNAUTHORIZED (or DB_UNAVAILABLE while the database is down).
 */
export async function loadTokenUser(claims: TokenClaims, knex: Knex): Promise<User> {
  const user = await User.query(knex)
    .modify('public')
    .join('sessions', 'sessions.user_id', 'users.id')
    .where('users.id', claims.userId)
    .where('sessions.id', claims.sessionId)
    .whereNull('users.deleted_at')
    .first();
  if (!user) throw unauthorized();
  return user;
}

/**
 * Of the given sessions (id to user id), those that have ended, each with whether its user deleted the account
 * (the reason its sockets are told): one statement for any number of sessions.
 */
export async function endedSessions(
  knex: Knex,
  sessions: ReadonlyMap<string, string>,
): Promise<Array<{ sessionId: string; userDeleted: boolean }>> {
  if (sessions.size === 0) return [];
  const result = await knex.raw<{ rows: Array<{ session_id: string; user_deleted: boolean }> }>(
    `SELECT q.session_id, u.deleted_at IS NOT NULL AS user_deleted
       FROM unnest(?::uuid[], ?::uuid[]) AS q(session_id, user_id)
       LEFT JOIN users u ON u.id = q.user_id
      WHERE NOT EXISTS (SELECT 1 FROM sessions s WHERE s.id = q.session_id)`,
    [[...sessions.keys()], [...sessions.values()]],
  );
  return result.rows.map((r) => ({ sessionId: r.session_id, userDeleted: r.user_deleted }));
}

/** verifyToken + loadTokenUser: used by the Socket.IO handshake and `auth:refresh`. */
export async function authenticateToken(
  token: unknown,
  auth: AuthConfig,
  knex: Knex,
  nowMs: number,
): Promise<Authenticated> {
  const claims = verifyToken(token, auth, nowMs);
  return { user: await loadTokenUser(claims, knex), claims };
}
