import { expect } from 'chai';
import type { Browser, BrowserContext, BrowserContextOptions } from 'playwright-core';
import { XFChatClient, type PublicConversation } from '../../lib/client/index.js';
import type { RunningServer } from '../../lib/server.js';
import { buildWeb } from '../../web/build.js';
import { createTestDatabase } from '../helpers/postgres.js';
import { startTestServer } from '../helpers/server.js';
import { uniqueUsername } from '../helpers/users.js';
import { launchBrowser, openPage, watchProblems, type TestPage } from './browser.js';
import { ChatPage } from './chatPage.js';

export const PASSWORD = 'correct horse battery';

/** A person made through the SDK, with a signed-in SDK client of their own. */
export interface Person {
  username: string;
  displayName: string;
  id: string;
  client: XFChatClient;
}

/** One server node, one Chromium, and the people and pages a test makes (closed after each test). */
export interface WebApp {
  readonly server: RunningServer;
  readonly databaseUrl: string;
  readonly browser: Browser;
  /** A new browser context (its own storage: a separate person, or a private window) on `url` (the node's). */
  open(options?: { url?: string; context?: BrowserContextOptions }): Promise<ChatPage>;
  /** A new page (tab) in the context of `page`: the same storage. */
  openTab(page: ChatPage): Promise<ChatPage>;
  /** A new page (tab) on `url` (the node's) in `context`, e.g. after its other tabs were closed. */
  openTabIn(context: BrowserContext, url?: string): Promise<ChatPage>;
  /** A new account (a unique username from the display name, or `options.username`) with a signed-up client. */
  person(displayName: string, options?: { username?: string }): Promise<Person>;
  /** Makes every pair of `people` friends. */
  befriend(...people: Person[]): Promise<void>;
  /**
   * Two people, `first` and `second` (display names), made friends, and their direct conversation, started by the
   * second (by the first with `startedByFirst`): the set-up of most tests of one conversation.
   */
  friendsInConversation(
    first: string,
    second: string,
    options?: { startedByFirst?: boolean },
  ): Promise<[Person, Person, PublicConversation]>;
  /**
   * No uncaught error and no console error (a CSP violation, an exception) in any page so far, but those that
   * match `ignore`.
   */
  expectNoProblems(ignore?: RegExp): void;
}

/**
 * Registers the hooks of a browser test file (or of one `describe` in it) and returns its fixture. `env`
 * overrides the node's settings (e.g. `JWT_TTL_SECONDS`).
 */
export function useWebApp(options: { browserArgs?: string[]; env?: Record<string, string> } = {}): WebApp {
  const pages: TestPage[] = [];
  const clients: XFChatClient[] = [];
  let server: RunningServer | undefined;
  let databaseUrl: string | undefined;
  let browser: Browser | undefined;

  before(async () => {
    await buildWeb();
    databaseUrl = await createTestDatabase();
    server = await startTestServer(databaseUrl, options.env);
    browser = await launchBrowser(options.browserArgs);
  });

  afterEach(async () => {
    for (const { context } of pages.splice(0)) await context.close();
    for (const client of clients.splice(0)) client.close();
  });

  after(async () => {
    await browser?.close();
    await server?.close();
  });

  const need = <T>(value: T | undefined, what: string): T => {
    if (value === undefined) throw new Error(`${what} is not started (before hook)`);
    return value;
  };

  const app: WebApp = {
    get server() {
      return need(server, 'the server');
    },
    get databaseUrl() {
      return need(databaseUrl, 'the database');
    },
    get browser() {
      return need(browser, 'the browser');
    },
    async open({ url, context } = {}) {
      const opened = await openPage(app.browser, url ?? app.server.url, context);
      pages.push(opened);
      return new ChatPage(opened.page);
    },
    async openTab(page) {
      return app.openTabIn(page.page.context(), page.page.url());
    },
    async openTabIn(context, url) {
      const tab = await context.newPage();
      const problems = pages.find((p) => p.context === context)?.problems ?? [];
      watchProblems(tab, problems);
      await tab.goto(url ?? app.server.url);
      return new ChatPage(tab);
    },
    async person(displayName, options) {
      const client = new XFChatClient({ baseUrl: app.server.url });
      clients.push(client);
      const username = options?.username ?? uniqueUsername(displayName.toLowerCase());
      const { user } = await client.signup({ username, password: PASSWORD, displayName });
      return { username, displayName, id: user.id, client };
    },
    async befriend(...people) {
      for (const [i, a] of people.entries()) {
        for (const b of people.slice(i + 1)) {
          const request = await a.client.friends.sendRequest(b.username);
          await b.client.friends.accept(request.id);
        }
      }
    },
    async friendsInConversation(first, second, options) {
      const a = await app.person(first);
      const b = await app.person(second);
      await app.befriend(a, b);
      const [starter, other] = options?.startedByFirst ? [a, b] : [b, a];
      return [a, b, await starter.client.conversations.createDirect(other.id)];
    },
    expectNoProblems(ignore) {
      const problems = pages.flatMap((p) => p.problems);
      expect(problems.filter((problem) => !ignore?.test(problem))).to.deep.equal([]);
    },
  };
  return app;
}
