import type { Request, RequestHandler } from 'express';
import passport from 'passport';
import { ExtractJwt, Strategy as JwtStrategy } from 'passport-jwt';
import { claimsFromPayload, loadTokenUser } from '../auth/tokens.js';
import { AppError } from '../errors.js';
import type { User as UserModel } from '../models/User.js';
import type { Services } from '../services.js';

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    // passport's Express.User is the authenticated row.
    // eslint-disable-next-line @typescript-eslint/no-empty-object-type
    interface User extends UserModel {}
  }
}

/**
 * Bearer authentication with passport-jwt (no sessions): jsonwebtoken checks the pinned algorithm, issuer,
 * audience and expiry; the verify callback requires `exp` and loads the user from PostgreSQL every time.
 */
export function requireAuth(services: Services): RequestHandler {
  const authenticator = new passport.Passport();
  const { auth } = services.config;
  authenticator.use(
    'jwt',
    new JwtStrategy(
      {
        jwtFromRequest: ExtractJwt.fromAuthHeaderAsBearerToken(),
        secretOrKey: auth.jwtSecret,
        algorithms: ['HS256'],
        issuer: auth.issuer,
        audience: auth.audience,
      },
      (payload: unknown, done: (err: unknown, user?: UserModel | false) => void) => {
        let claims;
        try {
          claims = claimsFromPayload(payload);
        } catch {
          done(null, false);
          return;
        }
        loadTokenUser(claims, services.db.knex).then(
          (user) => done(null, user),
          (err: unknown) => (err instanceof AppError && err.code === 'UNAUTHORIZED' ? done(null, false) : done(err)),
        );
      },
    ),
  );
  const middleware = authenticator.authenticate('jwt', { session: false, failWithError: true }) as RequestHandler;
  return (req, res, next) => {
    middleware(req, res, (err?: unknown) => {
      if (err === undefined || err === null) {
        next();
        return;
      }
      // passport reports a failed strategy as an AuthenticationError (status 401): the catalog's UNAUTHORIZED.
      const status = (err as { status?: unknown }).status;
      next(status === 401 ? new AppError('UNAUTHORIZED', { cause: err }) : err);
    });
  };
}

/** The authenticated user of a request behind requireAuth. */
export function currentUser(req: Request): UserModel {
  if (!req.user) throw new AppError('UNAUTHORIZED');
  return req.user;
}
