import {
  XFChatClient,
  XFChatError,
  tokenSubject,
  type ConnectionState,
  type PublicUser,
} from '../lib/client/index.js';
import { ChatSession } from './chat.js';
import { byId } from './dom.js';
import { Drafts } from './drafts.js';

/**
 * The token survives reloads in this browser profile, and every tab and window of the profile shares it (one
 * account per profile; a private window is another profile). Logout revokes it on the server.
 */
const TOKEN_KEY = 'xfchat.token';
/** A sentence to show after this tab reloads itself (sessionStorage: this tab only). */
const NOTICE_KEY = 'xfchat.notice';

/** Who this tab is signed in as, once it is. */
let signedIn: string | undefined;

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
  RATE_LIMITED: 'Too many attempts; wait a minute and try again.',
};

function readToken(): string | undefined {
  return localStorage.getItem(TOKEN_KEY) ?? undefined;
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

/** A sentence for the user that stays until dismissed (not an error). */
function showNotice(text: string): void {
  const notice = byId('app-notice', HTMLDivElement);
  byId('app-notice-text', HTMLParagraphElement).textContent = text;
  notice.hidden = false;
  byId('app-notice-close', HTMLButtonElement).onclick = () => (notice.hidden = true);
}

/**
 * Every tab of a browser profile shares the stored token. When another tab signs in to another account, or
 * out, this one follows (reloading), rather than acting for one account while storage holds another's token
 * (which would swap accounts at the next reload). A newer token of the same account is simply adopted.
 */
function followOtherTabs(client: XFChatClient): void {
  window.addEventListener('storage', (event) => {
    if (event.storageArea !== localStorage || (event.key !== TOKEN_KEY && event.key !== null)) return;
    const token = readToken();
    const user = tokenSubject(token);
    if (user !== undefined && user === signedIn) {
      client.token = token;
      return;
    }
    if (user === undefined && signedIn === undefined) return;
    sessionStorage.setItem(
      NOTICE_KEY,
      `${user === undefined ? 'You were signed out in another window of this browser.' : 'This window now uses the account signed in in another window of this browser.'} ` +
        'All windows of a browser share one login: to use two accounts at the same time, open the second one ' +
        'in a private window (or another browser).',
    );
    client.close();
    location.reload();
  });
}

function showBanner(state: ConnectionState): void {
  const banner = byId('connection-banner', HTMLDivElement);
  banner.dataset.state = state;
  banner.textContent = BANNER[state];
}

function showAuth(client: XFChatClient, message = ''): void {
  byId('chat-view', HTMLDivElement).hidden = true;
  byId('auth-view', HTMLElement).hidden = false;
  byId('auth-error', HTMLParagraphElement).textContent = message;
  const done = (user: PublicUser) => {
    localStorage.setItem(TOKEN_KEY, client.token ?? '');
    startChat(client, user);
  };
  const fail = (err: unknown) => {
    const known = err instanceof XFChatError ? AUTH_ERRORS[err.code] : undefined;
    byId('auth-error', HTMLParagraphElement).textContent = known ?? 'Could not reach the server; try again.';
    if (known === undefined) report(err);
  };
  byId('login-form', HTMLFormElement).onsubmit = (event) => {
    event.preventDefault();
    const username = byId('login-username', HTMLInputElement).value.trim();
    const password = byId('login-password', HTMLInputElement).value;
    client.login(username, password).then(({ user }) => done(user), fail);
  };
  byId('signup-form', HTMLFormElement).onsubmit = (event) => {
    event.preventDefault();
    const username = byId('signup-username', HTMLInputElement).value.trim();
    const displayName = byId('signup-display-name', HTMLInputElement).value.trim();
    const password = byId('signup-password', HTMLInputElement).value;
    client
      .signup({ username, password, ...(displayName ? { displayName } : {}) })
      .then(({ user }) => done(user), fail);
  };
  byId('login-username', HTMLInputElement).focus();
}

function startChat(client: XFChatClient, me: PublicUser): void {
  signedIn = me.id;
  byId('auth-view', HTMLElement).hidden = true;
  byId('chat-view', HTMLDivElement).hidden = false;
  byId('logout-button', HTMLButtonElement).onclick = () => {
    localStorage.removeItem(TOKEN_KEY);
    Drafts.forget(me.id);
    // A fresh page is the simplest way to drop every piece of the old session's state.
    client.logout().then(
      () => location.reload(),
      (err: unknown) => {
        report(err);
        location.reload();
      },
    );
  };
  client.connect().catch((err: unknown) => {
    if (!(err instanceof XFChatError && err.code === 'UNAUTHORIZED')) report(err);
  });
  new ChatSession(client, me, report).start().catch(report);
}

async function main(): Promise<void> {
  const client = new XFChatClient({ token: readToken(), transports: ['websocket'] });
  const notice = sessionStorage.getItem(NOTICE_KEY);
  if (notice !== null) {
    sessionStorage.removeItem(NOTICE_KEY);
    showNotice(notice);
  }
  followOtherTabs(client);
  client.on('state', showBanner);
  client.on('unauthorized', () => {
    localStorage.removeItem(TOKEN_KEY);
    client.close();
    location.reload();
  });
  if (client.token === undefined) {
    showAuth(client);
    return;
  }
  try {
    startChat(client, await client.me());
  } catch (err) {
    if (!(err instanceof XFChatError && err.code === 'UNAUTHORIZED')) report(err);
    localStorage.removeItem(TOKEN_KEY);
    client.token = undefined;
    showAuth(
      client,
      err instanceof XFChatError && err.code === 'UNAUTHORIZED'
        ? 'Your session has ended; log in again.'
        : '',
    );
  }
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', () => void main());
else void main();
