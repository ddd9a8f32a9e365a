import { expect } from 'chai';
import knex from 'knex';
import type { Page } from 'playwright-core';
import { untilAStatementWaitsForALock } from '../helpers/postgres.js';
import { waitFor } from '../helpers/waitFor.js';
import { fail, routeSockets } from './browser.js';
import type { ChatPage } from './chatPage.js';
import { PASSWORD, useWebApp, type Person } from './fixture.js';

/**
 * Holds the page's Socket.IO connect (the `40` frame it sends once its websocket is open) until released: the
 * server puts the socket in its user's room only then, and what it tells that room meanwhile reaches nobody here.
 * The page is loaded again so that it connects through the route.
 */
async function holdConnect(page: Page): Promise<{ readonly held: number; release(): void }> {
  const waiting: Array<() => void> = [];
  let holding = true;
  await routeSockets(page, {
    fromPage(text, pass) {
      if (holding && text.startsWith('40')) waiting.push(pass);
      else pass();
    },
  });
  await page.reload();
  return {
    get held() {
      return waiting.length;
    },
    release() {
      holding = false;
      for (const send of waiting.splice(0)) send();
    },
  };
}

/** Resolves once the page has had the answer of a GET whose path is `path` (query string aside). */
function answered(page: ChatPage, path: string): Promise<unknown> {
  return page.page.waitForResponse(
    (response) => response.request().method() === 'GET' && new URL(response.url()).pathname === path,
  );
}

/** Resolves once the page's connection banner says it is connected. */
async function connected(page: ChatPage): Promise<void> {
  await waitFor(async () => (await page.banner.getAttribute('data-state')) === 'connected', {
    what: 'connected',
  });
}

// The page reads its lists while its socket connects: a friend request, an answer to one, a new conversation or my
// own new name told after those reads and before the socket joined its user's room reached nobody on the page, and
// the page showed none of it until a reload (the friend request of accessibilityFocus.e2e.ts, sent right after the
// login, failed so on a slow machine; my name: LOAD hunt).
describe('web app: what is told while the page connects', function () {
  const app = useWebApp();

  /**
   * `person`'s page, signed in, its Socket.IO connect held back (`holdConnect`) until the page has had the answer of
   * its read of `path`: what is told to the person from now until `connect.release()` reaches no socket of the page.
   */
  async function signedInBeforeConnecting(person: Person, path: string) {
    const page = await app.open();
    const connect = await holdConnect(page.page);
    const read = answered(page, path);
    await page.logIn(person.username, PASSWORD);
    await read;
    await waitFor(() => connect.held > 0, { what: 'the connect held back' });
    return { page, connect };
  }

  it('shows a friend request sent after the page read its requests, before its socket connected', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    const { page, connect } = await signedInBeforeConnecting(ann, '/friends/requests');

    await bob.client.friends.sendRequest(ann.username);
    connect.release();
    await connected(page);
    await page.page
      .getByRole('button', { name: 'Accept friend request from Bob' })
      .waitFor({ timeout: 10_000 });
    await page.acceptFriendRequest('Bob');
    app.expectNoProblems();
  });

  it('shows a conversation started after the page read its (empty) list, before its socket connected', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    const { page, connect } = await signedInBeforeConnecting(ann, '/conversations');

    const withBob = (await bob.client.conversations.createDirect(ann.id)).id;
    await bob.client.messages.put(withBob, 'hello', 'hello Ann');
    connect.release();
    await page.conversationButton('Bob').waitFor({ timeout: 10_000 });
    await waitFor(async () => (await page.page.title()) === '(1) XFChat', { what: 'one unread message' });
    await page.openConversation('Bob');
    await page.log.getByText('hello Ann').waitFor();
    app.expectNoProblems();
  });

  it('shows my own new name, set on another device after the login, before the socket connected', async () => {
    const ann = await app.person('Ann');
    const { page, connect } = await signedInBeforeConnecting(ann, '/conversations');

    // Ann's phone (another session of hers) renames her.
    await ann.client.updateProfile({ displayName: 'Annie' });
    connect.release();
    await connected(page);
    await page.meName.getByText('Annie', { exact: false }).waitFor({ timeout: 10_000 });
    app.expectNoProblems();
  });

  it('shows my own new name though the read of my profile at the connection failed first (database down)', async () => {
    const ann = await app.person('Ann');
    const { page, connect } = await signedInBeforeConnecting(ann, '/conversations');
    // The page's next read of its profile (the one at the connection) is answered 503, as when the database is down.
    const reads: number[] = [];
    await page.page.route(
      (url) => url.pathname === '/auth/me',
      async (route) => {
        if (route.request().method() !== 'GET') return route.continue();
        reads.push(reads.length === 0 ? 503 : 200);
        return reads.length === 1 ? fail(route, 503, 'DB_UNAVAILABLE') : route.continue();
      },
    );

    await ann.client.updateProfile({ displayName: 'Annie' });
    connect.release();
    await connected(page);
    await page.meName.getByText('Annie', { exact: false }).waitFor({ timeout: 10_000 });
    // Then read again by itself (and once more at a reconnection, should a loaded machine cause one).
    expect(reads.slice(0, 2), 'the reads of my profile').to.deep.equal([503, 200]);
    app.expectNoProblems();
  });
});

// With the production read budget (RATE_LIMIT_READS_PER_SEC=20: at most 4 reads of a user at once on a node), the
// four reads of friends, requests and blocks at the first connection may hold every slot when the page reads the
// details of the conversation it opened: that read was refused (429) and the page showed "Too many reads at once;
// retry later." It is tried again by itself now, as the lists are (LOAD hunt).
describe('web app: reads at the first connection, under the read budget', function () {
  const app = useWebApp({ env: { RATE_LIMIT_READS_PER_SEC: '20' } });

  it('reads the open conversation’s details again by itself when they are refused for the budget', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    const withBob = (await bob.client.conversations.createDirect(ann.id)).id;
    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);
    await page.openConversation('Bob');
    await waitFor(() => page.page.url().includes(`/c/${withBob}`), { what: 'the URL of the conversation' });

    // At the reload the page's details read of the open conversation waits in the browser until released.
    let releaseDetails: (() => void) | undefined;
    await page.page.route(`**/conversations/${withBob}`, async (route) => {
      if (route.request().method() === 'GET' && releaseDetails === undefined)
        await new Promise<void>((resolve) => (releaseDetails = resolve));
      await route.continue();
    });
    const answers: number[] = [];
    page.page.on('response', (response) => {
      const { pathname } = new URL(response.url());
      if (response.request().method() === 'GET' && pathname === `/conversations/${withBob}`)
        answers.push(response.status());
    });
    const connect = await holdConnect(page.page);
    await waitFor(() => releaseDetails !== undefined && connect.held > 0, {
      what: 'the details read and the connect held back',
    });

    // The reads of friends, requests and blocks at the first connection stay on the server (a slow database)
    // while the details read goes out.
    const db = knex({ client: 'pg', connection: app.databaseUrl, pool: { min: 1, max: 2 } });
    let unlock!: () => void;
    let locked!: () => void;
    const isLocked = new Promise<void>((resolve) => (locked = resolve));
    const lock = db.transaction(async (trx) => {
      await trx.raw('LOCK TABLE friendships, friend_requests, blocks IN ACCESS EXCLUSIVE MODE');
      locked();
      await new Promise<void>((resolve) => (unlock = resolve));
    });
    try {
      await isLocked;
      connect.release();
      await untilAStatementWaitsForALock(db, 'the reads at the first connection', 4);
      releaseDetails?.();
      await waitFor(() => answers.includes(429), { what: 'the details read refused for the budget' });
    } finally {
      unlock();
      await lock;
      await db.destroy();
    }
    await connected(page);
    await waitFor(() => answers.at(-1) === 200, {
      what: 'the details read again, answered',
      timeoutMs: 15_000,
    });
    expect(await page.page.locator('#app-error').isVisible(), 'an error shown').to.equal(false);
    app.expectNoProblems();
  });
});
