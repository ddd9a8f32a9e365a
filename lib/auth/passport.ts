import type { Request } from 'express';
import type { Knex } from 'knex';
import { ExtractJwt, Strategy as JwtStrategy } from 'passport-jwt';
import { Strategy as LocalStrategy } from 'passport-local';
import { AppError } from '../errors.js';
import type { User } from '../models/User.js';
import type { AuthService } from './accounts.js';
import {
  claimsFromPayload,
  loadTokenUser,
  MAX_TOKEN_LENGTH,
  verifyOptions,
  type AuthConfig,
} from './tokens.js';

type Done = (err: unknown, user?: User | false) => void;

const fromBearerHeader = ExtractJwt.fromAuthHeaderAsBearerToken();

/**
 * The bearer strategy, with the semantics of `authenticateToken` (the Socket.IO handshake's check):
 * jsonwebtoken verifies with the same pinned options (HS256 only, issuer, audience, expiry), the payload must
 * carry `sub`, `ver` and `exp`, and the user is loaded from PostgreSQL on every request, so a deleted user or a
 * bumped token version (logout) is refused at once on every node.
 */
export function createJwtStrategy(auth: AuthConfig, knex: Knex): JwtStrategy {
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
      issuer: auth.issuer,
      audience: auth.audience,
    },
    (payload: unknown, done: Done) => {
      let claims;
      try {
        claims = claimsFromPayload(payload);
      } catch {
        // A payload without sub/ver/exp is simply not a valid token: a failed authentication, not an error.
        done(null, false);
        return;
      }
      loadTokenUser(claims, knex).then(
        (user) => done(null, user),
        (err: unknown) =>
          err instanceof AppError && err.code === 'UNAUTHORIZED' ? done(null, false) : done(err),
      );
    },
  );
}

/**
 * Username and password from the JSON body (the route validated both first). A failure is `false` with no
 * detail, so an unknown user and a wrong password look the same to the caller.
 */
export function createLocalStrategy(accounts: AuthService): LocalStrategy {
  return new LocalStrategy({ session: false }, (username, password, done) => {
    accounts.checkCredentials(username, password).then(
      (user) => done(null, user ?? false),
      (err: unknown) => done(err),
    );
  });
}
