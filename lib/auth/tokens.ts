import jwt from 'jsonwebtoken';
import type { Knex } from 'knex';
import type { Config } from '../config.js';
import { AppError } from '../errors.js';
import { User } from '../models/User.js';

/** The only algorithm accepted: pinned, so `alg: none` or an RS/HS confusion never verifies. */
const ALGORITHM = 'HS256';

export type AuthConfig = Config['auth'];

export interface TokenClaims {
  userId: string;
  tokenVersion: number;
  /** Expiry, seconds since the epoch. */
  exp: number;
}

export interface Authenticated {
  user: User;
  claims: TokenClaims;
}

/** Issues an access token carrying the user id and the user's current token version. */
export function signToken(user: Pick<User, 'id' | 'tokenVersion'>, auth: AuthConfig): string {
  return jwt.sign({ ver: user.tokenVersion }, auth.jwtSecret, {
    algorithm: ALGORITHM,
    subject: user.id,
    expiresIn: auth.tokenTtlSeconds,
    issuer: auth.issuer,
    audience: auth.audience,
  });
}

/** Longer bearer strings are refused unparsed; a real token is a few hundred characters. */
export const MAX_TOKEN_LENGTH = 4096;

const unauthorized = (cause?: unknown) => new AppError('UNAUTHORIZED', { cause });

/** Options of jsonwebtoken's verify: the pinned algorithm, issuer and audience. */
export function verifyOptions(auth: AuthConfig): jwt.VerifyOptions & { algorithms: jwt.Algorithm[] } {
  return { algorithms: [ALGORITHM], issuer: auth.issuer, audience: auth.audience };
}

/** The claims of a verified payload; `sub`, `ver` and `exp` are all required. Throws UNAUTHORIZED. */
export function claimsFromPayload(payload: unknown): TokenClaims {
  if (typeof payload !== 'object' || payload === null) throw unauthorized();
  const { sub, ver, exp } = payload as Record<string, unknown>;
  if (
    typeof sub !== 'string' ||
    typeof ver !== 'number' ||
    !Number.isInteger(ver) ||
    typeof exp !== 'number'
  ) {
    throw unauthorized();
  }
  return { userId: sub, tokenVersion: ver, exp };
}

/** Checks signature, algorithm, issuer, audience and expiry; `exp` is required. Throws UNAUTHORIZED. */
export function verifyToken(token: unknown, auth: AuthConfig): TokenClaims {
  if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_LENGTH)
    throw unauthorized();
  let payload: string | jwt.JwtPayload;
  try {
    payload = jwt.verify(token, auth.jwtSecret, verifyOptions(auth));
  } catch (err) {
    throw unauthorized(err);
  }
  return claimsFromPayload(payload);
}

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Loads the token's user from PostgreSQL, so a deleted user or a bumped token version (logout) is refused at
 * once, on every node. Throws UNAUTHORIZED (or DB_UNAVAILABLE while the database is down).
 */
export async function loadTokenUser(claims: TokenClaims, knex: Knex): Promise<User> {
  if (!UUID_PATTERN.test(claims.userId)) throw unauthorized();
  const user = await User.query(knex).findById(claims.userId);
  if (!user || user.tokenVersion !== claims.tokenVersion) throw unauthorized();
  return user;
}

/**
 * True while the user exists and still has `tokenVersion`, i.e. no logout since the token was checked. For a
 * second look after a check that may have raced a logout.
 */
export async function isTokenVersionCurrent(
  knex: Knex,
  userId: string,
  tokenVersion: number,
): Promise<boolean> {
  const user = await User.query(knex).findById(userId).select('token_version');
  return user !== undefined && user.tokenVersion === tokenVersion;
}

/** verifyToken + loadTokenUser: used by the Socket.IO handshake. */
export async function authenticateToken(
  token: unknown,
  auth: AuthConfig,
  knex: Knex,
): Promise<Authenticated> {
  const claims = verifyToken(token, auth);
  return { user: await loadTokenUser(claims, knex), claims };
}
