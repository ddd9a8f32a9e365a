import { isUtf8 } from 'node:buffer';
import { Router, type ErrorRequestHandler, type Request, type RequestHandler } from 'express';
import passport from 'passport';
import type { AuthService, ClientInfo } from '../../auth/accounts.js';
import { giveBackAfterRefusal } from '../../auth/authLimits.js';
import { createLocalStrategy } from '../../auth/passport.js';
import type { StartedSession } from '../../auth/sessions.js';
import { AppError } from '../../errors.js';
import { RateLimiter } from '../../rateLimiter.js';
import { addressKey } from '../../requestOrigin.js';
import type { User } from '../../models/User.js';
import type { AuthResponse, AuthTokens } from '../../protocol/index.js';
import { restSchemas } from '../../protocol/schemas.js';
import type { Services } from '../../services.js';
import { parse, pathId } from '../../validation.js';
import { currentSessionId, currentUser, requireAuth } from '../auth.js';

/** The client address the per-IP limits count (behind TRUST_PROXY_HOPS proxies: the forwarded one). */
export function clientIp(req: Request): string {
  return req.ip ?? req.socket.remoteAddress ?? 'unknown';
}

/** The address and the user agent of a request. */
export function clientInfo(req: Request): ClientInfo {
  return { ip: clientIp(req), userAgent: headerText(req.get('user-agent')) };
}

/**
 * A header's text. Node reads a header's bytes as latin1, one character each: beyond ASCII a client sends UTF-8
 * ("Zürich" arrived as "ZÃ¼rich", its second byte then dropped as a C1 control), decoded here as such when its
 * bytes are valid UTF-8; others stay as latin1 read them.
 */
function headerText(value: string | undefined): string | undefined {
  if (value === undefined || /^[\p{ASCII}]*$/u.test(value)) return value;
  const bytes = Buffer.from(value, 'latin1');
  return isUtf8(bytes) ? bytes.toString('utf8') : value;
}

/** The tokens of a new or refreshed session, as the contract answers them. */
function tokensOf(session: AuthTokens): AuthTokens {
  return { token: session.token, refreshToken: session.refreshToken, expiresIn: session.expiresIn };
}

function authResponse(user: User, session: StartedSession): AuthResponse {
  return { user: user.toPublic(), ...tokensOf(session) };
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
 * Signup, login and the session routes: `POST /auth/signup`, `/auth/login`, `/auth/refresh`, `/auth/logout`,
 * `/auth/logout-all`, `/auth/password`, `GET /auth/me`, `GET /auth/sessions`, `DELETE /auth/sessions/:id`.
 * Signup counts against the per-IP signup limit before anything else; login counts its attempt against the
 * login limits before the password is checked (docs/api-auth-friends.md).
 */
export function authRoutes(services: Services): Router {
  const { auth: accounts } = services;
  const router = Router();
  const bearer = requireAuth(services);

  router.post('/auth/signup', async (req, res) => {
    await accounts.limits.takeSignup(clientIp(req));
    const { username, password, displayName } = parse(restSchemas.signup, req.body);
    const { user, session } = await accounts.signup(
      { username, password, displayName: displayName ?? username },
      clientInfo(req),
    );
    // Its first login from this address must not wait behind another client's failures there. The account exists
    // by now: a failure here must not turn its signup into an error (a retry would find the name taken).
    await accounts.limits.signedUp(username, clientIp(req), user.id).catch((err: unknown) => {
      req.log.warn({ err }, 'remembering the address of a signup failed');
    });
    res.status(201).json(authResponse(user, session));
  });

  const countLogin: RequestHandler = async (req, _res, next) => {
    const { username } = parse(restSchemas.login, req.body);
    req.passwordAttempt = await accounts.limits.takePasswordAttempt(username, clientIp(req));
    next();
  };

  // A login the password gate refused (OVERLOADED) was never checked: its counted attempt is given back. Any other
  // failure (a wrong password, the database) gives back its point of the pair's right passwords.
  const giveBack: ErrorRequestHandler = async (err: unknown, req, _res, next) => {
    if (req.passwordAttempt) await giveBackAfterRefusal(accounts.limits, req.passwordAttempt, err, req.log);
    next(err);
  };

  const login: RequestHandler = async (req, res) => {
    const user = currentUser(req);
    if (!req.passwordAttempt) throw new Error('login reached without its counted attempt');
    // First the session: a password changed while this login ran refuses it (INVALID_CREDENTIALS), and its attempt
    // stays counted as the failure it is.
    const session = await accounts.startLogin(user, clientInfo(req).userAgent);
    // Committed: the sessions it ended are told now, whatever becomes of the rest of this login.
    await accounts.sessions.announceEnded(session.evicted, 'revoked');
    // The session exists by now: a failure here must not turn its login into an error (the client would never get
    // the tokens of a session that stays, one more toward MAX_SESSIONS_PER_USER with each retry). The attempt then
    // stays counted.
    await accounts.limits.passwordAccepted(req.passwordAttempt, user.id).catch((err: unknown) => {
      req.log.warn({ err }, 'giving back the attempt of an accepted login failed');
    });
    res.json(authResponse(user, session));
  };

  router.post('/auth/login', countLogin, loginAuthenticator(accounts), login, giveBack);

  // Refused refreshes, RATE_LIMIT_AUTH_PER_MIN a minute on each node. A token this cluster issued carries its mark
  // (lib/auth/refreshTokens.ts), which no one can make up: such a token is never refused for its address (users
  // behind one NAT address are not held by what another sends), only for refusals of that very token (a spent or
  // expired one sent again and again). Tokens without the mark (made up, or issued before the mark) cost two
  // statements each: their refusals are counted per address. A token of the wrong shape costs nothing and counts
  // for nothing.
  const perMinute = services.config.limits.authPerMinute;
  const refusedRefreshes = new RateLimiter({ ratePerSecond: perMinute / 60, burst: perMinute });
  const refusedTokens = new RateLimiter({ ratePerSecond: perMinute / 60, burst: perMinute });

  router.post('/auth/refresh', async (req, res) => {
    const { refreshToken } = parse(restSchemas.refresh, req.body);
    const kind = accounts.sessions.refreshTokenKind(refreshToken);
    if (kind === 'malformed') throw new AppError('UNAUTHORIZED');
    const [limiter, key] =
      kind === 'marked' ? [refusedTokens, refreshToken] : [refusedRefreshes, addressKey(clientIp(req))];
    // Taken before the statements and given back unless refused: refreshes sent at once cannot all pass one look.
    const budget = limiter.take(key);
    if (!budget.allowed) throw new AppError('RATE_LIMITED', { retryAfter: budget.retryAfterSeconds });
    // A client that goes away mid-request (a page reloaded during its refresh) would never get the new pair and
    // keep only the spent token: its rotation is rolled back instead (SessionService.refresh).
    let gone = false;
    res.once('close', () => {
      gone = !res.writableFinished;
    });
    let tokens;
    try {
      tokens = await accounts.sessions.refresh(refreshToken, () => gone);
    } catch (err) {
      if (!(err instanceof AppError && err.code === 'UNAUTHORIZED')) limiter.giveBack(key);
      throw err;
    }
    limiter.giveBack(key);
    if (tokens !== undefined) res.json(tokensOf(tokens));
  });

  router.get('/auth/me', bearer, (req, res) => {
    res.json({ user: currentUser(req).toPublic() });
  });

  router.post('/auth/logout', bearer, async (req, res) => {
    await accounts.sessions.end(currentUser(req).id, currentSessionId(req), 'logged_out');
    res.status(204).end();
  });

  router.post('/auth/logout-all', bearer, async (req, res) => {
    await accounts.sessions.endEverySession(currentUser(req).id, 'logged_out');
    res.status(204).end();
  });

  router.get('/auth/sessions', bearer, async (req, res) => {
    res.json({ sessions: await accounts.sessions.list(currentUser(req).id, currentSessionId(req)) });
  });

  router.delete('/auth/sessions/:id', bearer, async (req, res) => {
    const sessionId = pathId(req.params.id);
    const ended = await accounts.sessions.end(
      currentUser(req).id,
      sessionId,
      sessionId === currentSessionId(req) ? 'logged_out' : 'revoked',
    );
    // Another user's session is as missing as one that never existed.
    if (!ended) throw new AppError('NOT_FOUND');
    res.status(204).end();
  });

  router.post('/auth/password', bearer, async (req, res) => {
    const passwords = parse(restSchemas.changePassword, req.body);
    await accounts.changePassword(currentUser(req), currentSessionId(req), passwords, clientInfo(req));
    res.status(204).end();
  });

  return router;
}
