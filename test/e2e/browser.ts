import {
  chromium,
  type Browser,
  type BrowserContext,
  type BrowserContextOptions,
  type Page,
  type Route,
  type WebSocketRoute,
} from 'playwright-core';

/** Debian's chromium (CI installs it with apt); no browser is ever downloaded. */
export const CHROMIUM = '/usr/bin/chromium';

const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** One headless Chromium per test file, with `extraArgs` on its command line; close it in an after hook. */
export function launchBrowser(extraArgs: string[] = []): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: [...ARGS, ...extraArgs], headless: true });
}

/** A tab in a fresh context (its own storage, like a separate person), with problems recorded. */
export interface TestPage {
  readonly context: BrowserContext;
  readonly page: Page;
  /** Uncaught page errors and console errors (CSP violations show up here). */
  readonly problems: string[];
}

/** Opens `url` in a new context of `browser` (a desktop-sized window unless `options` say otherwise). */
export async function openPage(
  browser: Browser,
  url: string,
  options: BrowserContextOptions = {},
): Promise<TestPage> {
  const context = await browser.newContext({ viewport: { width: 1100, height: 720 }, ...options });
  const page = await context.newPage();
  const problems: string[] = [];
  watchProblems(page, problems);
  await page.goto(url);
  return { context, page, problems };
}

/** Records `page`'s uncaught errors and console errors in `problems`. */
export function watchProblems(page: Page, problems: string[]): void {
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error' && !isExpectedNoise(message.text()))
      problems.push(`console: ${message.text()}`);
  });
}

/**
 * Console errors a browser prints by itself for things the app deliberately lives through: refused
 * connections and dropped websockets while a test cuts the network, and the SDK logging the failures it
 * retries. Everything else (a CSP violation, an exception) counts as a problem.
 */
function isExpectedNoise(text: string): boolean {
  return /ERR_CONNECTION_REFUSED|ERR_CONNECTION_RESET|ERR_INTERNET_DISCONNECTED|WebSocket connection to .* failed|XFChatError|Failed to load resource/.test(
    text,
  );
}

/** The page's Socket.IO websockets, routed through Playwright (see `routeSockets`). */
export interface RoutedSockets {
  /** Closes every open websocket and refuses new ones, until `online()`. */
  offline(): Promise<void>;
  online(): void;
}

/**
 * Decides the fate of one engine.io text frame on its way: `pass()` sends it on (now, or later to hold it back); a
 * frame never passed is dropped. `route` is the page's side of its websocket: `route.send()` answers the page as
 * the server would.
 */
export type FrameFilter = (text: string, pass: () => void, route: WebSocketRoute) => void;

export interface RouteSocketsOptions {
  /** Only `page`'s own websockets (default: those of every tab of its context). */
  thisTab?: boolean;
  /** Frames the page sends (default: all passed at once). */
  fromPage?: FrameFilter;
  /** Frames the server sends (default: all passed at once). */
  fromServer?: FrameFilter;
}

/**
 * Routes the Socket.IO websockets of `page`'s context (or, with `thisTab`, of `page` alone) through Playwright, so
 * that a test can take the page offline (every open one closed, new ones refused) and online again, and hold back,
 * drop or answer frames either way (`fromPage`, `fromServer`). Reload the page afterwards so that it connects
 * through the route.
 */
export async function routeSockets(page: Page, options: RouteSocketsOptions = {}): Promise<RoutedSockets> {
  const { fromPage, fromServer } = options;
  let refusing = false;
  const open = new Set<WebSocketRoute>();
  const text = (message: string | Buffer) => (typeof message === 'string' ? message : message.toString());
  await (options.thisTab ? page : page.context()).routeWebSocket(/\/socket\.io\//, (ws) => {
    if (refusing) {
      void ws.close();
      return;
    }
    const server = ws.connectToServer();
    open.add(ws);
    ws.onClose(() => open.delete(ws));
    // Without a filter, frames go on by themselves (Playwright forwards a side that has no handler).
    if (fromPage) ws.onMessage((message) => fromPage(text(message), () => server.send(message), ws));
    if (fromServer) server.onMessage((message) => fromServer(text(message), () => ws.send(message), ws));
  });
  return {
    async offline() {
      refusing = true;
      for (const ws of [...open]) await ws.close();
    },
    online() {
      refusing = false;
    },
  };
}

/** The page's websockets routed through Playwright, to hold its subscribes back or take it offline. */
export interface HeldSubscribes extends RoutedSockets {
  /** While true, the page's `conversation:subscribe` requests wait (a slow network, or a spent read budget). */
  holding: boolean;
  /** How many subscribes wait. */
  readonly held: number;
  /** Sends the subscribes that wait, and holds no more. */
  release(): void;
}

/**
 * Routes the Socket.IO websockets of `page`'s context through Playwright (reload the page afterwards so that it
 * connects through the route). A subscribe held back joins its conversation's room only once released: what is
 * told to that room meanwhile (a `conversation:read`) does not reach the page.
 */
export async function holdSubscribes(page: Page): Promise<HeldSubscribes> {
  const waiting: Array<() => void> = [];
  const sockets = await routeSockets(page, {
    fromPage(text, pass) {
      if (held.holding && text.includes('"conversation:subscribe"')) waiting.push(pass);
      else pass();
    },
  });
  const held: HeldSubscribes = {
    holding: false,
    get held() {
      return waiting.length;
    },
    release() {
      held.holding = false;
      for (const send of waiting.splice(0)) send();
    },
    offline: () => sockets.offline(),
    online: () => sockets.online(),
  };
  return held;
}

/** Answers a routed request with an error of the contract's shape (`code`), as the server would. */
export function fail(
  route: Route,
  status: number,
  code: string,
  headers: Record<string, string> = {},
): Promise<void> {
  return route.fulfill({
    status,
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ error: { code, message: `${code} (test)` } }),
  });
}
