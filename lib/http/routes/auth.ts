import { Router, type Request, type RequestHandler } from 'express';
import passport from 'passport';
import type { AuthService } from '../../auth/accounts.js';
import { createLocalStrategy } from '../../auth/passport.js';
import { AppError } from '../../errors.js';
import type { User } from '../../models/User.js';
import type { Services } from '../../services.js';
import { currentUser, requireAuth } from '../auth.js';
import { restSchemas } from '../../protocol/schemas.js';
import { parse } from '../../validation.js';

/** The client address the per-IP limits count (behind TRUST_PROXY_HOPS proxies: the forwarded one). */
function clientIp(req: Request): string {
  return req.ip ?? req.socket.remoteAddress ?? 'unknown';
}

/** passport-local for `POST /auth/login`, on an Authenticator of this router's own. */
function loginAuthenticator(accounts: AuthService): RequestHandler {
  const authenticator = new passport.Passport();
  authenticator.use('local', createLocalStrategy(accounts));
  return (req, res, next) => {
    const authenticate = authenticator.authenticate(
      'local',
      { session: false },
      (err: unknown, user: User | false | null | undefined) => {
        if (err !== null && err !== undefined) {
          next(err);
          return;
        }
        // One answer for an unknown user and a wrong password: the body is byte-identical.
        if (!user) {
          next(new AppError('INVALID_CREDENTIALS'));
          return;
        }
        req.user = user;
        next();
      },
    ) as RequestHandler;
    void authenticate(req, res, next);
  };
}

/**
 * `POST /auth/signup`, `POST /auth/login`, `GET /auth/me`, `POST /auth/logout`. Signup and login count against
 * the per-IP limit before anything else; login also against the per-username limit.
 */
export function authRoutes(services: Services): Router {
  const { auth: accounts } = services;
  const router = Router();
  const bearer = requireAuth(services);

  router.post('/auth/signup', async (req, res) => {
    accounts.limits.takeIp(clientIp(req));
    const { username, password, displayName } = parse(restSchemas.signup, req.body);
    const { user, token } = await accounts.signup({
      username,
      password,
      displayName: displayName ?? username,
    });
    res.status(201).json({ user: user.toPublic(), token });
  });

  const validateLogin: RequestHandler = (req, _res, next) => {
    accounts.limits.takeIp(clientIp(req));
    const { username } = parse(restSchemas.login, req.body);
    accounts.limits.takeUsername(username);
    next();
  };

  router.post('/auth/login', validateLogin, loginAuthenticator(accounts), (req, res) => {
    const user = currentUser(req);
    res.json({ user: user.toPublic(), token: accounts.issueToken(user) });
  });

  router.get('/auth/me', bearer, (req, res) => {
    res.json({ user: currentUser(req).toPublic() });
  });

  router.post('/auth/logout', bearer, async (req, res) => {
    await accounts.logout(currentUser(req).id);
    res.status(204).end();
  });

  return router;
}
