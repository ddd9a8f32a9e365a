import type { AuthTokens, SessionEndReason } from '../protocol/index.js';
import { callSafely } from './emitter.js';
import { toXFChatError, type XFChatError } from './errors.js';
import type { AnswerShape, HttpRequest, Session } from './http.js';
import { backoffDelay, MAX_TIMER_MS, retryAfterMs, type BackoffOptions } from './retry.js';

/** Refresh this long before expiry (or at half the lifetime, for short tokens). */
const REFRESH_AHEAD_MS = 60_000;
/**
 * JWT times are whole seconds: a token issued at 12:00:00.999 with a 2 s lifetime expires at 12:00:02.000, so
 * up to a second of `expiresIn` may already be gone when it arrives.
 */
const WHOLE_SECOND_LOSS_MS = 1000;

/** The answer of `POST /auth/refresh`, and the tokens part of signup's and login's. */
export const TOKENS_ANSWER: AnswerShape<AuthTokens> = {
  token: 'string',
  refreshToken: 'string',
  expiresIn: 'number',
};

/** When to refresh a token that arrived now with `expiresIn` seconds to live. */
export function refreshDelayMs(expiresIn: number): number {
  const lifetime = Math.max(0, expiresIn * 1000 - WHOLE_SECOND_LOSS_MS);
  return Math.max(100, Math.max(lifetime / 2, lifetime - REFRESH_AHEAD_MS));
}

export interface TokenKeeperDeps {
  session: Session;
  /** The plain transport (no refresh logic), for `POST /auth/refresh`. */
  http: HttpRequest;
  backoff: BackoffOptions;
  /** New tokens (after login, signup, resume or a refresh): persist the refresh token here. */
  onTokens: (tokens: AuthTokens) => void;
  /** The server ended the session, or refused its refresh token. */
  onEnded: (reason: SessionEndReason) => void;
  /** A timed refresh failed for another reason (network, server); it is retried with backoff. */
  onRefreshError: (error: XFChatError) => void;
  /**
   * After a refused refresh: the reason the live socket announces, if there is one (the server's 401 is the same for
   * an unknown, expired or reused refresh token).
   */
  awaitEndReason?: () => Promise<SessionEndReason | undefined>;
}

/**
 * Keeps the access token fresh: it refreshes shortly before expiry (and on demand after an UNAUTHORIZED), one
 * refresh at a time, because the server treats a refresh token presented twice as stolen and ends the
 * session. A refused refresh ends the session locally and reports why.
 */
export class TokenKeeper {
  /** The refresh on its way, and the refresh token it presents: only callers that hold that token share it. */
  private inFlight: { refreshToken: string; promise: Promise<boolean> } | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private failures = 0;
  /**
   * A reason the server gave (`session:ended`) for the session held now, before a refresh was refused. Forgotten with
   * that session's tokens (clear()), so that a later session's refused refresh never reports it.
   */
  private knownReason: SessionEndReason | undefined;
  private closed = false;
  /**
   * The refresh token the held session was resumed from (resume()), until that session ends or another starts:
   * resuming from it again must not present it a second time.
   */
  private resumedFrom: string | undefined;

  constructor(private readonly deps: TokenKeeperDeps) {}

  /** Takes new tokens, schedules the next refresh, and tells the application. */
  set(tokens: AuthTokens): void {
    const { session } = this.deps;
    session.token = tokens.token;
    session.refreshToken = tokens.refreshToken;
    session.expiresAt = Date.now() + tokens.expiresIn * 1000 - WHOLE_SECOND_LOSS_MS;
    this.knownReason = undefined;
    this.failures = 0;
    this.schedule(refreshDelayMs(tokens.expiresIn));
    // The three fields alone: a signup's or login's answer holds the user too, which AuthTokens does not declare.
    const { token, refreshToken, expiresIn } = tokens;
    callSafely(this.deps.onTokens, { token, refreshToken, expiresIn });
  }

  /** Takes the tokens of a new session (signup, login), in place of any session held before. */
  start(tokens: AuthTokens): void {
    this.resumedFrom = undefined;
    this.set(tokens);
  }

  /**
   * Continues a session from a stored refresh token (resume()): resolves true once its fresh tokens are held, false
   * when the server refused the token (the session is over, and reported as such).
   *
   * A refresh token works once, and the server takes a second use for a theft and ends the session. So:
   * - the same token again, while this keeper holds the session it was traded for (a resume() whose `GET
   *   /auth/me` failed after the refresh went through, then retried), is not presented again: that session is it;
   * - the same token again while its trade is on its way joins that trade;
   * - a trade that fails for a network or server reason forgets the token and leaves no retry on a timer: the
   *   caller was told it failed, and may try again (with this client or another) without racing a refresh of the
   *   same token behind its back.
   */
  async resume(refreshToken: string): Promise<boolean> {
    const { session } = this.deps;
    if (refreshToken === this.resumedFrom && this.canRefresh && session.refreshToken !== refreshToken)
      return true;
    // The held session's own refresh token: a reason the server already gave for that session still stands. Any
    // other token is another session, which no reason heard so far is about.
    const heard = refreshToken === session.refreshToken ? this.knownReason : undefined;
    this.clear();
    this.knownReason = heard;
    this.resumedFrom = refreshToken;
    session.refreshToken = refreshToken;
    try {
      return await this.refresh();
    } catch (err) {
      // Unless something else took over the client meanwhile (a login), forget the token and its retry timer.
      if (session.refreshToken === refreshToken) this.clear();
      throw err;
    }
  }

  /**
   * Whether resume() from `refreshToken` goes on with the session held: the one it was traded for (a resume() retried
   * after its `GET /auth/me` failed), or the one whose current token it is.
   */
  continues(refreshToken: string): boolean {
    return (
      this.canRefresh &&
      (refreshToken === this.resumedFrom || refreshToken === this.deps.session.refreshToken)
    );
  }

  /** Forgets every token (logout, session ended) and stops refreshing. */
  clear(): void {
    const { session } = this.deps;
    session.token = undefined;
    session.refreshToken = undefined;
    session.expiresAt = undefined;
    this.resumedFrom = undefined;
    this.knownReason = undefined;
    clearTimeout(this.timer);
  }

  /** Whether a refresh token is held. */
  get canRefresh(): boolean {
    return this.deps.session.refreshToken !== undefined;
  }

  /** The reason the server announced on the socket, if any, for the end of the session held now. */
  noteEndReason(reason: SessionEndReason): void {
    // No session held (its tokens already dropped): the reason is about one that is over, not a later one.
    if (!this.canRefresh && this.deps.session.token === undefined) return;
    this.knownReason = reason;
  }

  /**
   * Trades the refresh token for new tokens (one refresh at a time: concurrent callers share it). Resolves
   * true with new tokens, false when the server refused (the session is over: tokens are cleared and the end
   * reported); rejects on a network or server failure, keeping the tokens for a later try.
   *
   * A refresh on its way is shared only if it presents the refresh token held now. One started for an earlier
   * session (before a resume() or login) answers for that session, whose tokens are no longer wanted: the current
   * token gets a refresh of its own, at once, which cannot be a reuse since the two tokens differ.
   */
  refresh(): Promise<boolean> {
    const { refreshToken } = this.deps.session;
    if (refreshToken === undefined) return Promise.resolve(false);
    if (this.inFlight?.refreshToken === refreshToken) return this.inFlight.promise;
    const promise = this.doRefresh(refreshToken).finally(() => {
      if (this.inFlight?.promise === promise) this.inFlight = undefined;
    });
    this.inFlight = { refreshToken, promise };
    return promise;
  }

  /**
   * Before a request: refreshes first if the access token has expired (e.g. after the machine slept), joining a
   * refresh already in flight. While the access token is still valid the request goes ahead with it, neither
   * waiting for a timed refresh in flight nor failing with it.
   */
  async ensureFresh(): Promise<void> {
    const { expiresAt } = this.deps.session;
    if (!this.canRefresh || expiresAt === undefined || Date.now() < expiresAt) return;
    await this.refresh();
  }

  /** Ends the session locally: tokens gone, the application told why. */
  end(reason: SessionEndReason): void {
    if (!this.canRefresh && this.deps.session.token === undefined) return;
    this.clear();
    callSafely(this.deps.onEnded, reason);
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
  }

  private async doRefresh(refreshToken: string): Promise<boolean> {
    const options = { body: { refreshToken }, anonymous: true, answer: TOKENS_ANSWER };
    let tokens: AuthTokens;
    try {
      tokens = await this.deps.http<AuthTokens>('POST', '/auth/refresh', options);
    } catch (err) {
      const error = toXFChatError(err);
      if (error.code === 'UNAUTHORIZED') {
        // Expired, revoked while offline, or already used: this session is over either way. A connected socket
        // hears why in a moment (a reuse ends the session on every node): report that reason if it comes.
        const announced = this.knownReason ?? (await this.deps.awaitEndReason?.());
        // Logged out or in again meanwhile: that is not the session that was refused.
        if (this.deps.session.refreshToken !== refreshToken) return false;
        this.end(announced ?? this.knownReason ?? 'expired');
        return false;
      }
      // The server could not be reached, could not answer or asked to wait (RATE_LIMITED with Retry-After): keep the
      // tokens and try again then (unless the client has moved on to another session meanwhile, whose own timer
      // must stay as it is).
      if (this.deps.session.refreshToken === refreshToken)
        this.schedule(Math.max(backoffDelay(this.failures++, this.deps.backoff), retryAfterMs(error)));
      throw error;
    }
    // A logout or close while the refresh was on its way: the new tokens are not wanted.
    if (this.closed || this.deps.session.refreshToken !== refreshToken) return false;
    this.set(tokens);
    return true;
  }

  /** Refreshes in `ms` (a refresh token's timed refresh, or the retry of a failed one). */
  private schedule(ms: number): void {
    clearTimeout(this.timer);
    if (this.closed) return;
    const dueAt = Date.now() + ms;
    // The server allows access tokens of up to 30 days, longer than one timer waits: a longer wait is made of several.
    const wait = Math.min(ms, MAX_TIMER_MS);
    const timer = setTimeout(() => {
      // Too long for one timer: wait for the rest. It is measured by the clock, so a machine that slept through
      // part of the wait does not add the time it slept.
      if (wait < ms) {
        this.schedule(Math.max(0, dueAt - Date.now()));
        return;
      }
      // A failed timed refresh has rescheduled itself (doRefresh); the application hears of the failure.
      this.refresh().catch((err: unknown) => callSafely(this.deps.onRefreshError, toXFChatError(err)));
    }, wait);
    // In Node.js the timer alone does not keep the process running: a script that logged in, made its REST calls
    // and forgot close() still exits (a connected socket, or a request on its way, keeps it running as before).
    (timer as { unref?: () => void }).unref?.();
    this.timer = timer;
  }
}
