import { authenticateToken } from '../auth/tokens.js';
import { AppError } from '../errors.js';
import type { Services } from '../services.js';
import type { ServerErrorLog } from '../serverErrorLog.js';
import { handle } from './handlers.js';
import { moveToSession } from './notifier.js';
import { endEndedSessions } from './revalidation.js';

/**
 * `auth:refresh {token}`: a client that refreshed its access token hands the new one to its live socket, which
 * then lives until the new token expires instead of being disconnected at the old expiry. The token must be
 * valid now (signature, lifetime, live session) and name the socket's own user; anything else is UNAUTHORIZED
 * and changes nothing, and so does an error answer of any other code (the database failed a check). A token of
 * another session of the user (the client logged in again) moves the socket to that session: its end ends the
 * socket from then on, the first session's no longer does.
 */
export function registerAuthHandlers(services: Services, serverError: ServerErrorLog): void {
  const { config, db, clock } = services;
  services.io.on('connection', (socket) => {
    const log = services.logger.child({ socketId: socket.id, userId: socket.data.userId });
    handle(socket, { log, serverError }, 'auth:refresh', async ({ token }) => {
      const { claims } = await authenticateToken(token, config.auth, db.knex, clock.now());
      if (claims.userId !== socket.data.userId) throw new AppError('UNAUTHORIZED');
      if (claims.sessionId !== socket.data.sessionId) {
        // As at the handshake: an end of that session that committed after the check above but before the join
        // was sent to a room this socket was not in yet. Look once more, once it is; the socket is that session's
        // only when the look answers that it is live (a look the database fails leaves it where it was).
        const sessions = new Map([[claims.sessionId, claims.userId]]);
        await moveToSession(socket, claims.sessionId, async () => {
          if ((await endEndedSessions(services.io, db.knex, sessions)) > 0)
            throw new AppError('UNAUTHORIZED');
        });
      }
      // The expiry timer (lib/realtime/io.ts) reads this each time it fires, so it re-arms by itself. Never
      // earlier than now: an older token handed in late must not cut the socket's life short.
      socket.data.expiresAt = Math.max(socket.data.expiresAt, claims.exp * 1000);
      return {};
    });
  });
}
