import type { AuthTokens, SessionEndReason } from '../lib/client/index.js';

/**
 * The login of this browser profile, kept in localStorage and shared by all its tabs and windows.
 *
 * What is kept: the session's current refresh token (the long-lived secret: it keeps the profile signed in for
 * `REFRESH_TTL_DAYS` after its last use), with the access token that came with it and when that one expires.
 * A reload trades the stored refresh token for fresh tokens (`client.resume()`).
 *
 * Why tabs must cooperate: a refresh token works once. Every tab has its own SDK client, and each refreshes
 * shortly before its access token expires; two tabs presenting the same stored token would make the second a
 * "reuse", and the server would end the session for both (that is how it spots a stolen token). So every
 * `POST /auth/refresh` of every tab goes through {@link SharedSession.fetch}, which runs it as one critical
 * section across the profile's tabs:
 *
 * 1. take the profile-wide lock (the Web Locks API; see {@link withProfileLock} for plain-HTTP pages);
 * 2. read the stored pair. If it belongs to this tab's session but is newer than the token this tab's client
 *    presents, another tab has refreshed already: hand that pair to this client (if its access token has at least
 *    half its life left, by a clock not set back since: see {@link handOverSeconds}) without asking the server;
 *    if it is older than that, refresh with the stored (newest) token instead of the presented one;
 * 3. store the new pair, and give the write a moment to reach the other tabs, before releasing the lock.
 *
 * A tab that may be leaving (a reload, a close) starts no refresh: see {@link LEAVING_MS}.
 *
 * So a refresh token is presented at most once: whichever tab holds the lock finds the newest token in storage
 * and leaves the next one there. The tabs' SDK clients never know: to them the refresh simply answered. Tokens
 * are written only inside the lock (never from the SDK's `tokens` event, which could arrive after another tab
 * has stored a newer pair and overwrite it with a spent one).
 */

const SESSION_KEY = 'xfchat.session';
/** Why the stored session ended, for the other tabs of the profile (`{sid, reason}`). */
const ENDED_KEY = 'xfchat.ended';
/** Version 1 kept only the access token here; such tokens name no session and servers refuse them. */
const LEGACY_TOKEN_KEY = 'xfchat.token';
/** The Web Lock (or storage lease) every refresh, login and logout of the profile takes. */
const LOCK_NAME = 'xfchat.session';
const LEASE_KEY = 'xfchat.session-lease';
/** How long a storage lease holds if its tab dies while holding it. */
const LEASE_MS = 20_000;
/** How long a tab waits after writing a lease before reading it back (other tabs' writes arrive meanwhile). */
const LEASE_SETTLE_MS = 60;
/**
 * How long a tab keeps the lock after storing a new pair. localStorage is not shared memory: Chromium hands a
 * tab's write to the other tabs' processes a moment later, so a tab that took the lock at once could still read
 * the spent pair and present its refresh token again, a reuse that ends the session (seen in the browser tests:
 * the next tab's refresh 29 ms after this one's, with the old token).
 */
const STORE_SETTLE_MS = 250;

/**
 * How long a tab holds back refreshes once it may be leaving (`beforeunload`: a reload, a navigation away, a
 * close). The page keeps running until the next one replaces it, and a refresh it started meanwhile would be cut
 * off with its answer: the server rotates the token, the new pair never reaches storage, and the next tab to
 * refresh presents the spent token, a reuse that ends the session (seen in the browser tests: a refresh 15 ms
 * after a reload began, its answer lost, the reloaded page presenting the old token 80 ms later). A navigation
 * that does not happen (stopped, failed) leaves the page here: its refreshes go ahead after this long.
 */
const LEAVING_MS = 1000;

/** The profile's login as stored. */
export interface StoredSession {
  userId: string;
  /** The session (the access token's `sid` claim). */
  sid: string;
  token: string;
  refreshToken: string;
  /** Lifetime of `token` in seconds, as the server gave it. */
  expiresIn: number;
  /** When `token` expires, ms since the epoch by this machine's clock. */
  expiresAt: number;
}

/** The `sub` and `sid` claims of an access token, read without verifying it (the server does that). */
export function tokenClaims(token: string): { sub: string; sid: string } | undefined {
  const payload = token.split('.')[1];
  if (payload === undefined) return undefined;
  try {
    const claims = JSON.parse(atob(payload.replace(/-/g, '+').replace(/_/g, '/'))) as Record<string, unknown>;
    const { sub, sid } = claims;
    return typeof sub === 'string' && typeof sid === 'string' ? { sub, sid } : undefined;
  } catch (err) {
    console.error('an access token that is not a readable JWT', err);
    return undefined;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

function isTokens(value: unknown): value is AuthTokens {
  return (
    isRecord(value) &&
    typeof value.token === 'string' &&
    typeof value.refreshToken === 'string' &&
    typeof value.expiresIn === 'number'
  );
}

function parseJson(text: string | null): unknown {
  if (text === null) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    console.error('unreadable JSON in storage', err);
    return undefined;
  }
}

/** The stored login, if there is a well-formed one. */
export function readStoredSession(): StoredSession | undefined {
  const value = parseJson(localStorage.getItem(SESSION_KEY));
  if (
    !isRecord(value) ||
    typeof value.userId !== 'string' ||
    typeof value.sid !== 'string' ||
    typeof value.expiresAt !== 'number' ||
    !isTokens(value)
  )
    return undefined;
  return {
    userId: value.userId,
    sid: value.sid,
    token: value.token,
    refreshToken: value.refreshToken,
    expiresIn: value.expiresIn,
    expiresAt: value.expiresAt,
  };
}

function storedFrom(tokens: AuthTokens): StoredSession | undefined {
  const claims = tokenClaims(tokens.token);
  if (!claims) return undefined;
  return {
    userId: claims.sub,
    sid: claims.sid,
    token: tokens.token,
    refreshToken: tokens.refreshToken,
    expiresIn: tokens.expiresIn,
    expiresAt: Date.now() + tokens.expiresIn * 1000,
  };
}

function write(session: StoredSession): void {
  localStorage.setItem(SESSION_KEY, JSON.stringify(session));
}

/** Whether `event` (a `storage` event) is about the stored login. */
export function isSessionChange(event: StorageEvent): boolean {
  return event.storageArea === localStorage && (event.key === SESSION_KEY || event.key === null);
}

/** Why session `sid` ended (a SessionEndReason), if a tab of this profile noted it. */
export function endReasonOf(sid: string | undefined): string | undefined {
  const value = parseJson(localStorage.getItem(ENDED_KEY));
  if (sid === undefined || !isRecord(value) || value.sid !== sid) return undefined;
  return typeof value.reason === 'string' ? value.reason : undefined;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** This tab, for storage leases. */
const TAB_ID = crypto.getRandomValues(new Uint32Array(2)).join('-');

/**
 * Whether a storage lease (`"<tab> <until>"`) no longer holds: it is none, this tab's, or past its time. A lease is
 * timed by the wall clock, the only clock the tabs share, and a computer's clock can be set back (NTP stepping a
 * drifted clock after a resume, a user by hand): a lease left by a tab that died holding it would then hold for the
 * step on top of its {@link LEASE_MS}, locking every other tab out of refreshing (for an hour after a one-hour step).
 * So a lease this tab has seen unchanged for `LEASE_MS` by its own monotonic clock (`seenForMs`) is over too, whatever
 * the wall clock says; a live tab's lease is not cut short by a clock set back, as it would be by merely bounding
 * the lease's remaining time (a clock set forward past a lease's end does end it early: then two tabs may both
 * refresh once, the second refusal ending the session as a reuse would; the lease narrows races, see above).
 */
function leaseIsFree(lease: string, seenForMs: number): boolean {
  const [owner, until] = lease.split(' ');
  if (owner === undefined || owner === '' || owner === TAB_ID) return true;
  return Number(until) < Date.now() || seenForMs >= LEASE_MS;
}

/**
 * Runs `work` while no other tab of the profile runs its own: under a Web Lock where the browser offers them
 * (HTTPS and localhost, i.e. secure contexts). Plain HTTP on another host name has no Web Locks; there a lease
 * in localStorage stands in: a tab writes its claim, waits for other tabs' writes to arrive, and goes ahead only
 * if its claim is still the one stored. localStorage is not atomic across tabs, so this narrows the race rather
 * than closing it; a lost race shows as "signed out for security reasons". Serve XFChat over HTTPS.
 */
export async function withProfileLock<T>(work: () => Promise<T>): Promise<T> {
  if (window.isSecureContext && 'locks' in navigator) return navigator.locks.request(LOCK_NAME, work);
  /** The lease stored when this tab last looked, and since when (performance.now()) it has been that one. */
  let seen = { lease: '', since: performance.now() };
  for (;;) {
    const lease = localStorage.getItem(LEASE_KEY) ?? '';
    if (lease !== seen.lease) seen = { lease, since: performance.now() };
    if (leaseIsFree(lease, performance.now() - seen.since)) {
      localStorage.setItem(LEASE_KEY, `${TAB_ID} ${Date.now() + LEASE_MS}`);
      await sleep(LEASE_SETTLE_MS);
      if (localStorage.getItem(LEASE_KEY)?.startsWith(`${TAB_ID} `)) break;
    }
    await sleep(50 + Math.random() * 100);
  }
  try {
    return await work();
  } finally {
    if (localStorage.getItem(LEASE_KEY)?.startsWith(`${TAB_ID} `)) localStorage.removeItem(LEASE_KEY);
  }
}

/**
 * The seconds left to the access token of a pair another tab stored, if this tab's client may be handed that pair
 * instead of refreshing: at least half its life (so that the client's next timed refresh, at about half of what it
 * is told, still comes before the token expires), and never more than its whole life (`expiresIn`). More than its
 * life left cannot be: `expiresAt` was counted by the wall clock when the pair was stored, so the clock has been set
 * back since (NTP stepping a drifted clock after a resume, a user by hand), and how long the token really has is
 * unknown. Handed over as it is, the client would plan its refresh as much too late as the step, and the server end
 * its socket at the token's real expiry; capped at its life, it could still be late, by what had passed before the
 * step. So such a pair is due for a refresh (with its refresh token, the session's newest), which also stores the
 * next pair with an `expiresAt` by the clock as it is now.
 */
function handOverSeconds(stored: StoredSession): number | undefined {
  const lifetimeMs = stored.expiresIn * 1000;
  const left = stored.expiresAt - Date.now();
  return left >= lifetimeMs / 2 && left <= lifetimeMs ? Math.floor(left / 1000) : undefined;
}

function jsonResponse(body: AuthTokens): Response {
  return new Response(JSON.stringify(body), {
    status: 200,
    headers: { 'content-type': 'application/json' },
  });
}

function isRefreshRequest(input: RequestInfo | URL, init: RequestInit | undefined): boolean {
  if (init?.method !== 'POST') return false;
  const url = input instanceof Request ? input.url : String(input);
  return new URL(url, location.href).pathname === '/auth/refresh';
}

/** The profile's stored login as one tab uses it. */
export class SharedSession {
  /** The session this tab is signed in to (set by login, signup and resume). */
  private sid: string | undefined;
  /** Until when this tab may be leaving (performance.now()); see {@link LEAVING_MS}. */
  private leavingUntil = 0;

  constructor() {
    localStorage.removeItem(LEGACY_TOKEN_KEY);
    addEventListener('beforeunload', () => {
      this.leavingUntil = performance.now() + LEAVING_MS;
    });
  }

  /** Waits while this tab may be leaving: a refresh must not start in a page about to be replaced. */
  private async notWhileLeaving(): Promise<void> {
    let left = this.leavingUntil - performance.now();
    while (left > 0) {
      await sleep(left);
      left = this.leavingUntil - performance.now();
    }
  }

  /** The session this tab belongs to. */
  get sessionId(): string | undefined {
    return this.sid;
  }

  /** The fetch this tab's SDK client uses: refreshes go through the profile's store, the rest straight out. */
  readonly fetch: typeof fetch = (input, init) =>
    isRefreshRequest(input, init) ? this.refresh(input, init) : fetch(input, init);

  /** This tab resumes the stored login (a reload): refreshes are now this session's. */
  adopt(stored: StoredSession): void {
    this.sid = stored.sid;
  }

  /** A login or signup of this tab: the new session becomes the profile's. */
  async signedIn(tokens: AuthTokens): Promise<void> {
    const stored = storedFrom(tokens);
    if (!stored) throw new Error('the server gave an access token without user and session');
    this.sid = stored.sid;
    await withProfileLock(() => {
      write(stored);
      localStorage.removeItem(ENDED_KEY);
      return Promise.resolve();
    });
  }

  /**
   * This tab's session is over (logged out, ended by the server, account deleted): the stored login goes if it
   * is still this session's (another tab may already have signed in again), and `reason`, if given, is left
   * for the other tabs to show.
   */
  async forget(reason?: SessionEndReason): Promise<void> {
    const sid = this.sid;
    if (sid === undefined) return;
    await withProfileLock(() => {
      // The reason first: the other tabs read it when they hear that the login is gone.
      if (reason !== undefined) localStorage.setItem(ENDED_KEY, JSON.stringify({ sid, reason }));
      if (readStoredSession()?.sid === sid) localStorage.removeItem(SESSION_KEY);
      return Promise.resolve();
    });
  }

  /** A `POST /auth/refresh` of this tab's client, run as the profile's critical section (see the top). */
  private async refresh(input: RequestInfo | URL, init: RequestInit | undefined): Promise<Response> {
    const sent = typeof init?.body === 'string' ? parseJson(init.body) : undefined;
    const presented = isRecord(sent) && typeof sent.refreshToken === 'string' ? sent.refreshToken : undefined;
    await this.notWhileLeaving();
    return withProfileLock(async () => {
      // The lock may have come while the page began to leave.
      await this.notWhileLeaving();
      const stored = readStoredSession();
      const ours = stored !== undefined && stored.sid === this.sid;
      if (ours && stored.refreshToken !== presented) {
        // Another tab refreshed already: its pair is this session's newest; if its access token still has time
        // (and how much is known), this client takes it as the answer.
        const expiresIn = handOverSeconds(stored);
        if (expiresIn !== undefined)
          return jsonResponse({ token: stored.token, refreshToken: stored.refreshToken, expiresIn });
      }
      // Only the newest token of the session may be presented; another session's (a sign-in in another tab,
      // which this tab is about to follow) is left alone, and so is storage.
      const refreshToken = ours ? stored.refreshToken : presented;
      const response = await fetch(input, { ...init, body: JSON.stringify({ refreshToken }) });
      if (!ours || !response.ok) return response;
      const tokens: unknown = await response.clone().json();
      const next = isTokens(tokens) ? storedFrom(tokens) : undefined;
      if (next && next.sid === this.sid) {
        write(next);
        await sleep(STORE_SETTLE_MS);
      }
      return response;
    });
  }
}
