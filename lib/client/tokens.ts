import type { AuthTokens, SessionEndReason } from '../protocol/index.js';
import { callSafely } from './emitter.js';
import { toXFChatError, type XFChatError } from './errors.js';
import type { HttpRequest, RequestOptions, Session } from './http.js';
import { backoffDelay, type BackoffOptions } from './retry.js';

/** Refresh this long before expiry (or at half the lifetime, for short tokens). */
const REFRESH_AHEAD_MS = 60_000;
/**
 * JWT times are whole seconds: a token issued at 12:00:00.999 with a 2 s lifetime expires at 12:00:02.000, so
 * up to a second of `expiresIn` may already be gone when it arrives.
 */
const WHOLE_SECOND_LOSS_MS = 1000;

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
  private inFlight: Promise<boolean> | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private failures = 0;
  /** A reason the server gave (`session:ended`) before a refresh was refused. */
  private knownReason: SessionEndReason | undefined;
  private closed = false;

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
    callSafely(this.deps.onTokens, tokens);
  }

  /** Forgets every token (logout, session ended) and stops refreshing. */
  clear(): void {
    const { session } = this.deps;
    session.token = undefined;
    session.refreshToken = undefined;
    session.expiresAt = undefined;
    clearTimeout(this.timer);
  }

  /** Whether a refresh token is held. */
  get canRefresh(): boolean {
    return this.deps.session.refreshToken !== undefined;
  }

  /** The reason the server announced on the socket, if any, for the next end. */
  noteEndReason(reason: SessionEndReason): void {
    this.knownReason = reason;
  }

  /**
   * Trades the refresh token for new tokens (one refresh at a time: concurrent callers share it). Resolves
   * true with new tokens, false when the server refused (the session is over: tokens are cleared and the end
   * reported); rejects on a network or server failure, keeping the tokens for a later try.
   */
  refresh(): Promise<boolean> {
    this.inFlight ??= this.doRefresh().finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
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

  private async doRefresh(): Promise<boolean> {
    const refreshToken = this.deps.session.refreshToken;
    if (refreshToken === undefined) return false;
    const options: RequestOptions = { body: { refreshToken }, anonymous: true };
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
      // The server could not be reached or could not answer: keep the tokens and try again soon.
      this.schedule(backoffDelay(this.failures++, this.deps.backoff));
      throw error;
    }
    // A logout or close while the refresh was on its way: the new tokens are not wanted.
    if (this.closed || this.deps.session.refreshToken !== refreshToken) return false;
    this.set(tokens);
    return true;
  }

  private schedule(ms: number): void {
    clearTimeout(this.timer);
    if (this.closed) return;
    const timer = setTimeout(() => {
      // A failed timed refresh has rescheduled itself (doRefresh); the application hears of the failure.
      this.refresh().catch((err: unknown) => callSafely(this.deps.onRefreshError, toXFChatError(err)));
    }, ms);
    // In Node.js the timer alone does not keep the process running: a script that logged in, made its REST calls
    // and forgot close() still exits (a connected socket, or a request on its way, keeps it running as before).
    (timer as { unref?: () => void }).unref?.();
    this.timer = timer;
  }
}
