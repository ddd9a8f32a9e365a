import type { Request } from 'express';
import type { Knex } from 'knex';
import { ExtractJwt, Strategy as JwtStrategy } from 'passport-jwt';
import { Strategy as LocalStrategy } from 'passport-local';
import type { DatabaseClock } from '../cluster/clock.js';
import { AppError } from '../errors.js';
import type { User } from '../models/User.js';
import type { AuthService } from './accounts.js';
import {
  claimsFromPayload,
  loadTokenUser,
  MAX_TOKEN_LENGTH,
  verifyOptions,
  type AuthConfig,
  type TokenClaims,
} from './tokens.js';

/** passport's verify callback; the third argument reaches the route's custom callback as `info`. */
type Done = (err: unknown, user?: User | false, claims?: TokenClaims) => void;

const fromBearerHeader = ExtractJwt.fromAuthHeaderAsBearerToken();

/**
 * The bearer strategy, with the semantics of `authenticateToken` (the Socket.IO handshake's check):
 * jsonwebtoken verifies with the same pinned options (HS256 only, issuer, audience, expiry), the payload must
 * carry `sub`, `sid`, `iat` and `exp` within the lifetime cap, and the user and the session are loaded from
 * PostgreSQL on every request (one statement), so an ended session or a deleted user is refused at once on
 * every node. The verified claims are passed on as passport's `info`.
 */
export function createJwtStrategy(auth: AuthConfig, knex: Knex, clock: DatabaseClock): JwtStrategy {
  const { algorithms } = verifyOptions(auth);
  return new JwtStrategy(
    {
      jwtFromRequest: (req: Request) => {
        const token = fromBearerHeader(req);
        // The same bound as verifyToken: an oversized header is refused before any parsing.
        return token !== null && token.length <= MAX_TOKEN_LENGTH ? token : null;
      },
      secretOrKey: auth.jwtSecret,
      // Top-level, not jsonWebTokenOptions: passport-jwt overwrites those with its top-level options.
      algorithms,
      // Expiry is checked by claimsFromPayload, by PostgreSQL's clock rather than this process's.
      ignoreExpiration: true,
      issuer: auth.issuer,
      audience: auth.audience,
    },
    (payload: unknown, done: Done) => {
      let claims;
      try {
        claims = claimsFromPayload(payload, auth, clock.now());
      } catch {
        // A payload without sub/sid/iat/exp is simply not a valid token: a failed authentication, not an error.
        done(null, false);
        return;
      }
      loadTokenUser(claims, knex).then(
        (user) => done(null, user, claims),
        (err: unknown) =>
          err instanceof AppError && err.code === 'UNAUTHORIZED' ? done(null, false) : done(err),
      );
    },
  );
}

/**
 * Username and password from the JSON body (the route validated both first and counted the attempt against
 * the login limits). A failure is `false` with no detail, so an unknown user and a wrong password look the same
 * to the caller.
 */
export function createLocalStrategy(accounts: Pick<AuthService, 'checkCredentials'>): LocalStrategy {
  return new LocalStrategy({ session: false }, (username, password, done) => {
    accounts.checkCredentials(username, password).then(
      (user) => done(null, user ?? false),
      (err: unknown) => done(err),
    );
  });
}
