import type { Request, RequestHandler } from 'express';
import passport from 'passport';
import { createJwtStrategy } from '../auth/passport.js';
import type { PasswordAttempt } from '../auth/authLimits.js';
import type { TokenClaims } from '../auth/tokens.js';
import { AppError } from '../errors.js';
import type { User as UserModel } from '../models/User.js';
import type { Services } from '../services.js';

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    // passport's Express.User is the authenticated row.
    // eslint-disable-next-line @typescript-eslint/no-empty-object-type
    interface User extends UserModel {}
    interface Request {
      /** The verified claims of the bearer token (its session among them), set by requireAuth. */
      auth?: TokenClaims;
      /** A login's counted password attempt, set before the password is checked (routes/auth.ts). */
      passwordAttempt?: PasswordAttempt;
    }
  }
}

/**
 * Bearer authentication with passport-jwt (no sessions, no global passport state: an Authenticator of its own).
 * Every request loads the user and the token's session from PostgreSQL in one statement (see
 * {@link createJwtStrategy}), so a token of an ended session gets 401 UNAUTHORIZED on every node. A database outage answers DB_UNAVAILABLE, not 401.
 */
export function requireAuth(services: Services): RequestHandler {
  const authenticator = new passport.Passport();
  authenticator.use('jwt', createJwtStrategy(services.config.auth, services.db.knex, services.clock));
  return (req, res, next) => {
    // The custom callback (instead of failWithError) lets the catalog, not passport, shape every failure.
    const authenticate = authenticator.authenticate(
      'jwt',
      { session: false },
      (err: unknown, user: UserModel | false | null | undefined, claims: TokenClaims | undefined) => {
        if (err !== null && err !== undefined) {
          next(err);
          return;
        }
        if (!user || !claims) {
          next(new AppError('UNAUTHORIZED'));
          return;
        }
        req.user = user;
        req.auth = claims;
        next();
      },
    ) as RequestHandler;
    void authenticate(req, res, next);
  };
}

/** The authenticated user of a request behind requireAuth. */
export function currentUser(req: Request): UserModel {
  if (!req.user) throw new AppError('UNAUTHORIZED');
  return req.user;
}

/** The session of the bearer token of a request behind requireAuth. */
export function currentSessionId(req: Request): string {
  if (!req.auth) throw new AppError('UNAUTHORIZED');
  return req.auth.sessionId;
}
