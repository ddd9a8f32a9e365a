import type { Page } from 'playwright-core';
import { waitFor } from '../helpers/waitFor.js';
import { routeSockets } from './browser.js';
import type { ChatPage } from './chatPage.js';
import { PASSWORD, useWebApp } from './fixture.js';

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

// The page reads its lists while its socket connects: a friend request, an answer to one or a new conversation
// told after those reads and before the socket joined its user's room reached nobody on the page, and the page
// showed none of it until a reload (the friend request of accessibilityFocus.e2e.ts, sent right after the login,
// failed so on a slow machine).
describe('web app: what is told while the page connects', function () {
  const app = useWebApp();

  it('shows a friend request sent after the page read its requests, before its socket connected', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    const page = await app.open();
    const connect = await holdConnect(page.page);
    const requestsRead = answered(page, '/friends/requests');
    await page.logIn(ann.username, PASSWORD);
    await requestsRead;
    await waitFor(() => connect.held > 0, { what: 'the connect held back' });

    await bob.client.friends.sendRequest(ann.username);
    connect.release();
    await waitFor(async () => (await page.banner.getAttribute('data-state')) === 'connected', {
      what: 'connected',
    });
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
    const page = await app.open();
    const connect = await holdConnect(page.page);
    const listRead = answered(page, '/conversations');
    await page.logIn(ann.username, PASSWORD);
    await listRead;
    await waitFor(() => connect.held > 0, { what: 'the connect held back' });

    const withBob = (await bob.client.conversations.createDirect(ann.id)).id;
    await bob.client.messages.put(withBob, 'hello', 'hello Ann');
    connect.release();
    await page.conversationButton('Bob').waitFor({ timeout: 10_000 });
    await waitFor(async () => (await page.page.title()) === '(1) XFChat', { what: 'one unread message' });
    await page.openConversation('Bob');
    await page.log.getByText('hello Ann').waitFor();
    app.expectNoProblems();
  });
});
