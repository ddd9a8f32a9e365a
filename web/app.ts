import {
  XFChatClient,
  XFChatError,
  type AuthResult,
  type ConnectionState,
  type PublicUser,
  type SessionEndReason,
} from '../lib/client/index.js';
import type { SignOut, SignedOut } from './account.js';
import { ChatSession } from './chat.js';
import { byId } from './dom.js';
import { Drafts } from './drafts.js';
import { showNotice } from './notice.js';
import { fieldProblems, problemFields, waitWords } from './text.js';
import { Outbox } from './outbox.js';
import { SharedSession, endReasonOf, isSessionChange, readStoredSession } from './sharedSession.js';

/**
 * The login survives reloads and browser restarts in this browser profile: its refresh token is in
 * localStorage (see sharedSession.ts for how the profile's tabs share it), and every tab and window of the
 * profile shares it (one account per profile; a private window is another profile). Logout ends it on the
 * server.
 */

/** A sentence to show after this tab reloads itself (sessionStorage: this tab only). */
const NOTICE_KEY = 'xfchat.notice';
/** Why this tab's session ended, for the login screen after the reload (sessionStorage: this tab only). */
const ENDED_NOTE_KEY = 'xfchat.ended-note';

/** What the login screen says when the server ended the session (the reasons of lib/protocol). */
const SESSION_ENDED: Record<SessionEndReason, string> = {
  // A logout here, or "log out everywhere" from another device (`POST /auth/logout-all`).
  logged_out: 'You were logged out.',
  revoked: 'You were logged out on this device from another of your devices.',
  password_changed: 'Your password was changed, so this device was logged out. Log in with the new password.',
  // Also what a refused refresh without a known reason is reported as (a login ended while the browser was closed:
  // the server keeps no trace of why, once the session is gone), so it claims no cause.
  expired: 'Your session has ended. Log in again.',
  reused:
    'You were signed out for security reasons: this login was used from two places. Log in again, and change ' +
    'your password if you did not expect this.',
  deleted: 'Your account was deleted.',
};

function endedNote(reason: string | undefined): string | undefined {
  return reason !== undefined && Object.hasOwn(SESSION_ENDED, reason)
    ? SESSION_ENDED[reason as SessionEndReason]
    : undefined;
}

const SHARED_LOGIN =
  'All windows of a browser share one login: to use two accounts at the same time, open the second one ' +
  'in a private window (or another browser).';

/** Who this tab is signed in as, once it is. */
let signedIn: string | undefined;
/** Whose stored login this tab is continuing at startup, before it is signed in (see `resume`). */
let resuming: string | undefined;
/** Set once this tab's session is ending (by the user or the server): nothing else may act on it then. */
let ending = false;
/** Set while the user's own logout or deletion runs: the server's word that the session ended is expected. */
let leaving = false;
/**
 * Set once this tab reloads itself (`restart`): a message still on its way is then the next page's to send (kept), or
 * was forgotten with the session, so the page must not ask "Leave site?" (staying would keep a closed client).
 */
let restarting = false;

/** Errors the user can do nothing about right now and that fix themselves: not worth a popup. */
const TRANSIENT = new Set(['NETWORK_ERROR', 'NOT_CONNECTED', 'DISCONNECTED', 'TIMEOUT', 'CLIENT_CLOSED']);

const BANNER: Record<ConnectionState, string> = {
  connecting: 'Connecting…',
  connected: '',
  reconnecting: 'Reconnecting… Messages you send now will be delivered once the connection is back.',
  disconnected: 'Disconnected.',
};

const AUTH_ERRORS: Partial<Record<string, string>> = {
  INVALID_CREDENTIALS: 'Wrong username or password.',
  USERNAME_TAKEN: 'That username is taken; pick another one.',
  VALIDATION_FAILED:
    'Check the fields: usernames are 3-32 letters, digits, _ . or -; passwords 8-128 characters.',
};

/** The fields of each form, as the server names them in a VALIDATION_FAILED's details and as the form calls them. */
const FORM_FIELDS: Record<'login' | 'signup', Record<string, { label: string; id: string }>> = {
  login: {
    username: { label: 'Username', id: 'login-username' },
    password: { label: 'Password', id: 'login-password' },
  },
  signup: {
    username: { label: 'Username', id: 'signup-username' },
    displayName: { label: 'Display name', id: 'signup-display-name' },
    password: { label: 'Password', id: 'signup-password' },
  },
};

/**
 * What the login screen says about a refusal: how long to wait when rate limited (the server's Retry-After),
 * which field is wrong and how when the server names it; the fields it names are returned to be marked.
 */
function authProblem(err: unknown, form: 'login' | 'signup'): { text: string | undefined; fields: string[] } {
  if (!(err instanceof XFChatError)) return { text: undefined, fields: [] };
  if (err.code === 'RATE_LIMITED') {
    const wait = err.retryAfter === undefined ? 'a minute' : waitWords(err.retryAfter);
    return { text: `Too many attempts. Try again in ${wait}.`, fields: [] };
  }
  if (err.code === 'VALIDATION_FAILED') {
    const fields = FORM_FIELDS[form];
    const labels = Object.fromEntries(Object.entries(fields).map(([name, field]) => [name, field.label]));
    const problems = fieldProblems(err.details, labels);
    if (problems.length > 0)
      return {
        text: problems.join(' '),
        fields: problemFields(err.details, labels).map((name) => fields[name]?.id ?? ''),
      };
  }
  // The one refusal that names a field without details: the username the user typed is the one to change.
  if (err.code === 'USERNAME_TAKEN' && form === 'signup')
    return { text: AUTH_ERRORS[err.code], fields: [FORM_FIELDS.signup.username!.id] };
  return { text: AUTH_ERRORS[err.code], fields: [] };
}

/** A user's drafts and unsent messages go when they sign out (the next person at this computer must not see them). */
function forgetUnsent(userId: string): void {
  Drafts.forget(userId);
  Outbox.forget(userId);
}

let toastTimer: ReturnType<typeof setTimeout> | undefined;

/** Shows what went wrong (briefly), and keeps the details in the console for whoever debugs it. */
function report(error: unknown): void {
  console.error(error);
  if (error instanceof XFChatError && TRANSIENT.has(error.code)) return;
  const toast = byId('app-error', HTMLParagraphElement);
  toast.textContent = error instanceof XFChatError ? error.message : 'Something went wrong.';
  toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (toast.hidden = true), 6000);
}

/** Reads and removes a sentence this tab left itself before reloading. */
function takeNote(key: string): string | undefined {
  const text = sessionStorage.getItem(key);
  if (text !== null) sessionStorage.removeItem(key);
  return text ?? undefined;
}

/** A fresh page is the simplest way to drop every piece of the old session's state. */
function restart(client: XFChatClient, keys: { notice?: string; endedNote?: string } = {}): void {
  if (keys.notice !== undefined) sessionStorage.setItem(NOTICE_KEY, keys.notice);
  if (keys.endedNote !== undefined) sessionStorage.setItem(ENDED_NOTE_KEY, keys.endedNote);
  restarting = true;
  client.close();
  location.reload();
}

/**
 * Every tab of a browser profile shares the stored login. A refresh by another tab needs nothing here (this
 * tab's next refresh picks it up). When another tab signs in to another account, or the session ends, this one
 * follows (reloading, and saying why), rather than acting for one account while storage holds another's (which
 * would swap accounts at the next reload).
 */
function followOtherTabs(client: XFChatClient, shared: SharedSession): void {
  window.addEventListener('storage', (event) => {
    // This tab's own logout or deletion is under way: it starts over by itself.
    if (!isSessionChange(event) || ending || leaving) return;
    const stored = readStoredSession();
    if (stored !== undefined && stored.sid === shared.sessionId) return;
    if (stored === undefined && signedIn === undefined) return;
    ending = true;
    if (stored === undefined) {
      // The session ended: another tab may know why (the server told it, or refused its refresh).
      const note = endedNote(endReasonOf(shared.sessionId));
      if (note !== undefined) restart(client, { endedNote: note });
      else
        restart(client, { notice: `You were signed out in another window of this browser. ${SHARED_LOGIN}` });
    } else if (stored.userId === signedIn) {
      // The same person signed in again in another tab (a new session): take it up quietly.
      restart(client);
    } else {
      restart(client, {
        notice: `This window now uses the account signed in in another window of this browser. ${SHARED_LOGIN}`,
      });
    }
  });
}

/**
 * What the banner says while the server refuses this tab's connection (the SDK's `connectRefused`), by the refusal's
 * code; the SDK keeps trying meanwhile. Others (DB_UNAVAILABLE) are an outage like any: the state's words.
 */
const REFUSED: Partial<Record<string, string>> = {
  // MAX_SOCKETS_PER_USER (or MAX_CONNECTIONS_PER_IP): every tab and device of the account holds a connection, and
  // only the user can free one. "Connecting…" for ever would not tell them.
  RATE_LIMITED: 'Too many open windows or devices for this account: close one. Trying again…',
};

/** The connection's last state shown, and whether it was ever connected (for "Connected again."). */
let shownState: ConnectionState | undefined;
let everConnected = false;
/** Why the server refuses the connection, as the banner says it, until the next connection. */
let refusal: string | undefined;

/** The connection banner (a status region): what is wrong, and "Connected again." (unseen) once it is over. */
function showBanner(state: ConnectionState): void {
  const banner = byId('connection-banner', HTMLDivElement);
  const recovered = state === 'connected' && everConnected && shownState !== 'connected';
  if (state === 'connected' || state === 'disconnected') refusal = undefined;
  if (state === 'connected') everConnected = true;
  shownState = state;
  banner.dataset.state = state;
  banner.textContent = recovered ? 'Connected again.' : (refusal ?? BANNER[state]);
}

/**
 * The login screen; `reason` says why the last session ended, if it did (an alert, and the username field's
 * description, so a screen reader reads it with the field).
 */
function showAuth(client: XFChatClient, shared: SharedSession, reason = ''): void {
  byId('chat-view', HTMLDivElement).hidden = true;
  byId('auth-view', HTMLElement).hidden = false;
  byId('auth-reason', HTMLParagraphElement).textContent = reason;
  byId('auth-error', HTMLParagraphElement).textContent = '';
  const done = (result: AuthResult) => {
    shared.signedIn(result).then(
      () => startChat(client, shared, result.user, true),
      (err: unknown) => {
        report(err);
        byId('auth-error', HTMLParagraphElement).textContent = 'Could not keep the login; try again.';
      },
    );
  };
  const invalid = new Set<HTMLInputElement>();
  const fail = (form: 'login' | 'signup') => (err: unknown) => {
    const { text, fields } = authProblem(err, form);
    byId('auth-error', HTMLParagraphElement).textContent = text ?? 'Could not reach the server; try again.';
    if (text === undefined) report(err);
    // The field the server names is marked, described by the reason, and focused.
    for (const [i, id] of fields.filter((f) => f !== '').entries()) {
      const input = byId(id, HTMLInputElement);
      input.setAttribute('aria-invalid', 'true');
      const described = input.getAttribute('aria-describedby') ?? '';
      if (!described.split(' ').includes('auth-error'))
        input.setAttribute('aria-describedby', `${described} auth-error`.trim());
      invalid.add(input);
      if (i === 0) input.focus();
    }
  };
  const clearInvalid = () => {
    for (const input of invalid) input.removeAttribute('aria-invalid');
    invalid.clear();
  };
  byId('login-form', HTMLFormElement).onsubmit = (event) => {
    event.preventDefault();
    const username = byId('login-username', HTMLInputElement).value.trim();
    const password = byId('login-password', HTMLInputElement).value;
    clearInvalid();
    client.login(username, password).then(done, fail('login'));
  };
  byId('signup-form', HTMLFormElement).onsubmit = (event) => {
    event.preventDefault();
    const username = byId('signup-username', HTMLInputElement).value.trim();
    const displayName = byId('signup-display-name', HTMLInputElement).value.trim();
    const password = byId('signup-password', HTMLInputElement).value;
    clearInvalid();
    client.signup({ username, password, ...(displayName ? { displayName } : {}) }).then(done, fail('signup'));
  };
  byId('login-username', HTMLInputElement).focus();
}

/**
 * The server ended this tab's session (another device logged it out, the password changed, the refresh token
 * came back twice, the account is gone, or it expired): the stored login and the drafts go, and the login
 * screen says why.
 */
async function sessionEnded(
  client: XFChatClient,
  shared: SharedSession,
  reason: SessionEndReason,
): Promise<void> {
  if (ending || leaving) return;
  ending = true;
  // A stored login refused at startup is over as well: what it left unsent must not go out at the next login.
  const userId = signedIn ?? resuming;
  if (userId !== undefined) forgetUnsent(userId);
  resuming = undefined;
  try {
    await shared.forget(reason);
  } catch (err) {
    report(err);
  }
  if (signedIn !== undefined) {
    restart(client, { endedNote: SESSION_ENDED[reason] });
    return;
  }
  // Still starting (the stored login was refused): the login screen, in this same page.
  ending = false;
  showAuth(client, shared, SESSION_ENDED[reason]);
}

/**
 * This device signs out by the user's own doing: `work` does it on the server (if it fails, the user stays
 * signed in and the error goes to the caller); then the stored login and the drafts go (leaving `after.reason`
 * for the profile's other tabs), and the page starts over, `after.note` on its login screen.
 */
async function signOut(
  client: XFChatClient,
  shared: SharedSession,
  work: () => Promise<void>,
  after: SignedOut = {},
): Promise<void> {
  if (ending) return;
  leaving = true;
  try {
    await work();
  } catch (err) {
    leaving = false;
    throw err;
  }
  ending = true;
  if (signedIn !== undefined) forgetUnsent(signedIn);
  try {
    await shared.forget(after.reason);
  } catch (err) {
    report(err);
  }
  restart(client, after.note === undefined ? {} : { endedNote: after.note });
}

/** `fromLogin`: the login form had focus, and it is gone: focus moves into the app. */
function startChat(client: XFChatClient, shared: SharedSession, me: PublicUser, fromLogin = false): void {
  signedIn = me.id;
  byId('auth-view', HTMLElement).hidden = true;
  byId('chat-view', HTMLDivElement).hidden = false;
  const leave: SignOut = (work, after) => signOut(client, shared, work, after);
  byId('logout-button', HTMLButtonElement).onclick = () => {
    // Signed out here even if the server cannot be told now (its session then simply expires).
    leave(() => client.logout().catch(report)).catch(report);
  };
  client.connect().catch((err: unknown) => {
    if (!(err instanceof XFChatError && err.code === 'UNAUTHORIZED')) report(err);
  });
  new ChatSession(
    client,
    me,
    report,
    leave,
    (notice) => restart(client, { notice }),
    () => ending || leaving,
    () => restarting,
  )
    .start(fromLogin)
    .catch(report);
}

/**
 * The socket was refused and no session end was announced (a refused handshake whose renewal was refused too,
 * or a token the server would not take): ask the server who we are, which refreshes if it can. If the session
 * is over that ends it (with its reason); if not, connect again. A few times in a row at most.
 */
function recheckAfterRefusal(client: XFChatClient, shared: SharedSession): () => void {
  let rechecks = 0;
  client.on('state', (state) => {
    if (state === 'connected') rechecks = 0;
  });
  return () => {
    // After the event that stopped the socket, the SDK may announce the end: that path takes over then.
    setTimeout(() => {
      if (ending || leaving || signedIn === undefined) return;
      if (++rechecks > 3) {
        report(new XFChatError('UNAUTHORIZED', 'The server keeps refusing the connection; reload the page.'));
        return;
      }
      client.me().then(
        () => client.connect().catch(report),
        (err: unknown) => {
          if (err instanceof XFChatError && err.code === 'UNAUTHORIZED')
            void sessionEnded(client, shared, 'expired');
          else report(err);
        },
      );
    }, 0);
  };
}

/** Longest wait between two tries to reach the server at startup. */
const RESUME_RETRY_MAX_MS = 30_000;
/** The longest `Retry-After` a page load waits out before it tries again (a proxy's may say more). */
const RESUME_RATE_LIMITED_MAX_MS = 3_600_000;

/**
 * Continues the stored login: trades the newest stored refresh token for fresh tokens. A refused one ends it
 * (the `sessionEnded` event says why); a server that cannot be reached is tried again, keeping the login, and so
 * is one that asks to wait (RATE_LIMITED), after the wait it names.
 */
async function resume(client: XFChatClient, shared: SharedSession, attempt = 0): Promise<void> {
  const stored = readStoredSession();
  if (stored === undefined) {
    showAuth(client, shared);
    return;
  }
  shared.adopt(stored);
  resuming = stored.userId;
  try {
    const me = await client.resume(stored.refreshToken);
    byId('connection-banner', HTMLDivElement).textContent = '';
    startChat(client, shared, me);
  } catch (err) {
    if (err instanceof XFChatError && err.code === 'UNAUTHORIZED') {
      await sessionEnded(client, shared, 'expired');
      return;
    }
    console.error(err);
    const banner = byId('connection-banner', HTMLDivElement);
    banner.dataset.state = 'reconnecting';
    let wait = Math.min(RESUME_RETRY_MAX_MS, 1000 * 2 ** attempt);
    if (err instanceof XFChatError && err.code === 'RATE_LIMITED') {
      // The server was reached, and limits the refreshes of a session: every tab of this browser shares one, and
      // each load takes one (a browser restoring many tabs at once). Trying sooner than it says is refused again.
      if (err.retryAfter !== undefined)
        wait = Math.min(Math.max(err.retryAfter * 1000, 1000), RESUME_RATE_LIMITED_MAX_MS);
      banner.textContent = `Too many sign-ins from this browser; trying again in ${waitWords(wait / 1000)}.`;
    } else banner.textContent = 'Cannot reach the server. Trying again…';
    setTimeout(() => void resume(client, shared, attempt + 1).catch(report), wait);
  }
}

async function main(): Promise<void> {
  const shared = new SharedSession();
  // Every refresh of this tab goes through the profile's shared store (sharedSession.ts).
  const client = new XFChatClient({ fetch: shared.fetch, transports: ['websocket'] });
  const notice = takeNote(NOTICE_KEY);
  if (notice !== undefined) showNotice(notice);
  followOtherTabs(client, shared);
  client.on('state', showBanner);
  client.on('connectRefused', (error) => {
    refusal = REFUSED[error.code];
    showBanner(client.state);
  });
  client.on('sessionEnded', ({ reason }) => void sessionEnded(client, shared, reason).catch(report));
  client.on('unauthorized', recheckAfterRefusal(client, shared));
  const ended = takeNote(ENDED_NOTE_KEY);
  // A login stored meanwhile (another tab signed in again) wins over the note about the one that ended.
  if (readStoredSession() === undefined) showAuth(client, shared, ended);
  else await resume(client, shared);
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', () => void main());
else void main();
