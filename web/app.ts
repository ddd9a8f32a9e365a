import { XFChatClient, XFChatError, type ConnectionState, type PublicUser } from '../lib/client/index.js';
import { ChatSession } from './chat.js';
import { byId } from './dom.js';

/** The token survives reloads in this browser profile; logout revokes it on the server. */
const TOKEN_KEY = 'xfchat.token';

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
  byId('auth-view', HTMLElement).hidden = true;
  byId('chat-view', HTMLDivElement).hidden = false;
  byId('logout-button', HTMLButtonElement).onclick = () => {
    localStorage.removeItem(TOKEN_KEY);
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
