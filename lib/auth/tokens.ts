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

const unauthorized = (cause?: unknown) => new AppError('UNAUTHORIZED', { cause });

/** Checks signature, algorithm, issuer, audience and expiry; `exp` is required. Throws UNAUTHORIZED. */
export function verifyToken(token: unknown, auth: AuthConfig): TokenClaims {
  if (typeof token !== 'string' || token.length === 0 || token.length > 4096) throw unauthorized();
  let payload: string | jwt.JwtPayload;
  try {
    payload = jwt.verify(token, auth.jwtSecret, {
      algorithms: [ALGORITHM],
      issuer: auth.issuer,
      audience: auth.audience,
    });
  } catch (err) {
    throw unauthorized(err);
  }
  if (typeof payload === 'string') throw unauthorized();
  const { sub, ver, exp } = payload as jwt.JwtPayload & { ver?: unknown };
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

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Verifies a token and loads its user from PostgreSQL on every call, so a deleted user or a bumped token
 * version (logout) is refused at once, on every node.
 */
export async function authenticateToken(
  token: unknown,
  auth: AuthConfig,
  knex: Knex,
): Promise<Authenticated> {
  const claims = verifyToken(token, auth);
  if (!UUID_PATTERN.test(claims.userId)) throw unauthorized();
  const user = await User.query(knex).findById(claims.userId);
  if (!user || user.tokenVersion !== claims.tokenVersion) throw unauthorized();
  return { user, claims };
}
