import { expect } from 'chai';
import { startProxy, type FaultProxy } from '../helpers/proxy.js';
import { waitFor } from '../helpers/waitFor.js';
import { routeSockets } from './browser.js';
import { PASSWORD, useWebApp } from './fixture.js';

/**
 * docs/messaging.md: "`conversation:updated`, `user:updated`, `typing` and `conversation:read` are not told again:
 * clients reload titles, names and read markers when they reconnect." Friend requests and their answers are not
 * told again either. The web app reads its list, its friends and its requests again when its socket is back: what
 * was told while it was away (a read on another device, a group it was added to, a request or an answer) shows.
 */
describe('web app: what changed while the tab was disconnected', function () {
  const app = useWebApp();
  let proxy: FaultProxy | undefined;
  afterEach(async () => {
    await proxy?.close();
    proxy = undefined;
  });

  it('shows no unread messages after my other device read them while this tab was disconnected', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    const withBob = (await bob.client.conversations.createDirect(ann.id)).id;

    proxy = await startProxy(app.server.url);
    const page = await app.open({ url: proxy.url });
    await page.logIn(ann.username, PASSWORD);
    await page.conversationButton('Bob').waitFor();
    for (const text of ['one', 'two', 'three']) await bob.client.messages.put(withBob, text, text);
    await waitFor(async () => (await page.page.title()) === '(3) XFChat', { what: 'three unread' });

    await proxy.stop();
    await page.banner.getByText(/Reconnecting/).waitFor();
    // Ann reads them on her phone meanwhile.
    await ann.client.messages.read(withBob, 3);
    expect((await ann.client.conversations.list())[0]?.unreadCount).to.equal(0);
    await proxy.start();
    await waitFor(async () => (await page.banner.getAttribute('data-state')) === 'connected', {
      what: 'reconnected',
    });
    let title = '';
    try {
      await waitFor(async () => (title = await page.page.title()) === 'XFChat', {
        what: 'the unread count to follow the read made elsewhere',
        timeoutMs: 8000,
      });
    } finally {
      console.log('title after reconnect:', title);
    }
  });

  /** Ann, signed in through the proxy with her direct conversation with Bob listed; Bob, her friend. */
  async function annBehindTheProxy() {
    const [ann, bob] = await app.friendsInConversation('Ann', 'Bob');
    const started = await startProxy(app.server.url);
    proxy = started; // closed after the test
    const page = await app.open({ url: started.url });
    await page.logIn(ann.username, PASSWORD);
    await page.conversationButton('Bob').waitFor();
    return { ann, bob, page, proxy: started };
  }

  it('lists a group I was added to while this tab was disconnected, once it is connected again', async () => {
    const { ann, bob, page, proxy } = await annBehindTheProxy();
    await proxy.stop();
    await page.banner.getByText(/Reconnecting/).waitFor();
    const hike = await bob.client.conversations.createGroup('Hike', [ann.id]);
    await bob.client.messages.put(hike.id, 'h1', 'see you there');
    await proxy.start();
    await waitFor(async () => (await page.banner.getAttribute('data-state')) === 'connected', {
      what: 'reconnected',
    });
    await page.conversationButton('Hike').waitFor({ timeout: 8000 });
  });

  it('lists a group I was added to while disconnected, though the first read of the list after the reconnection failed', async () => {
    const { ann, bob, page, proxy } = await annBehindTheProxy();

    let failNext = false;
    let failed = 0;
    await page.page.route(
      (url) => url.pathname === '/conversations',
      async (route) => {
        if (route.request().method() !== 'GET' || !failNext) return route.continue();
        failNext = false;
        failed += 1;
        return route.fulfill({
          status: 503,
          headers: { 'content-type': 'application/json', 'retry-after': '1' },
          body: JSON.stringify({
            error: { code: 'DB_UNAVAILABLE', message: 'The database is unavailable.' },
          }),
        });
      },
    );

    await proxy.stop();
    await page.banner.getByText(/Reconnecting/).waitFor();
    await bob.client.conversations.createGroup('Hike', [ann.id]);
    failNext = true;
    await proxy.start();
    await waitFor(async () => (await page.banner.getAttribute('data-state')) === 'connected', {
      what: 'reconnected',
      timeoutMs: 30_000,
    });
    await waitFor(() => failed === 1, { what: 'the list read again, and refused once' });
    // Read again by itself after the server's Retry-After (1 s).
    await page.conversationButton('Hike').waitFor({ timeout: 15_000 });
  });

  it('shows a request accepted, and one received, while this tab was disconnected, once it is connected again', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    const carol = await app.person('Carol');
    proxy = await startProxy(app.server.url);
    const page = await app.open({ url: proxy.url });
    await page.logIn(ann.username, PASSWORD);
    await page.addFriend(bob.username, 'Bob');
    const outgoing = page.page.getByRole('list', { name: 'Sent friend requests' });
    await outgoing.getByText('Waiting for an answer.').waitFor();

    await proxy.stop();
    await page.banner.getByText(/Reconnecting/).waitFor();
    // While Ann's laptop sleeps: Bob accepts on his phone, Carol asks to be her friend.
    const [request] = await bob.client.friends.listRequests('incoming');
    await bob.client.friends.accept(request!.id);
    await carol.client.friends.sendRequest(ann.username);
    await proxy.start();
    await waitFor(async () => (await page.banner.getAttribute('data-state')) === 'connected', {
      what: 'reconnected',
    });

    const shows = async () => ({
      bobIsAFriend: (await page.page.getByRole('button', { name: 'Message Bob' }).count()) === 1,
      stillWaitingForBob: (await outgoing.getByText('Waiting for an answer.').count()) > 0,
      carolsRequest:
        (await page.page.getByRole('button', { name: 'Accept friend request from Carol' }).count()) === 1,
    });
    const want = { bobIsAFriend: true, stillWaitingForBob: false, carolsRequest: true };
    let shown = await shows();
    await waitFor(async () => JSON.stringify((shown = await shows())) === JSON.stringify(want), {
      what: 'the friends and requests as they stand',
      timeoutMs: 8000,
    }).catch(() => undefined);
    expect(shown).to.deep.equal(want);
    app.expectNoProblems();
  });

  it('moves a conversation that got a message while this tab was disconnected to the top, also when the list answers before its catch-up', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    const carol = await app.person('Carol');
    await app.befriend(ann, bob, carol);
    const withBob = (await bob.client.conversations.createDirect(ann.id)).id;
    await bob.client.messages.put(withBob, 'b1', 'an old one');
    const withCarol = (await carol.client.conversations.createDirect(ann.id)).id;
    await carol.client.messages.put(withCarol, 'c1', 'a newer one');

    const page = await app.open();
    // Ann's websockets, through a line that can drop them, and that holds the subscriptions' answers (acks carrying
    // a page of messages) a moment after the reconnection, as a slow or busy server would: the list read again
    // answers first.
    let slowAcks = false;
    let held = 0;
    let released = 0;
    const sockets = await routeSockets(page.page, {
      fromServer(text, pass) {
        if (!slowAcks || !/^43\d+\[\{"ok":true,"messages"/.test(text)) {
          pass();
          return;
        }
        held += 1;
        setTimeout(() => {
          pass();
          released += 1;
        }, 1500);
      },
    });
    await page.page.reload();
    await page.logIn(ann.username, PASSWORD);
    const order = () =>
      page.page
        .locator('#conversations li[data-key]')
        .evaluateAll((items) => items.map((i) => i.querySelector('.title')?.textContent ?? ''));
    await waitFor(async () => JSON.stringify(await order()) === JSON.stringify(['Carol', 'Bob']), {
      what: 'Carol first',
    });

    await sockets.offline();
    await page.banner.getByText(/Reconnecting/).waitFor();
    await bob.client.messages.put(withBob, 'b2', 'the newest one');
    slowAcks = true;
    sockets.online();
    await waitFor(async () => (await page.banner.getAttribute('data-state')) === 'connected', {
      what: 'reconnected',
      timeoutMs: 30_000,
    });
    // The list's preview, then the caught-up message: both there.
    await page.page.locator('#conversations').getByText('the newest one').waitFor();
    await waitFor(() => held > 0 && released === held, { what: 'the subscriptions’ answers handed over' });
    let shown: string[] = [];
    await waitFor(async () => JSON.stringify((shown = await order())) === JSON.stringify(['Bob', 'Carol']), {
      what: 'Bob first',
      timeoutMs: 3000,
    }).catch(() => undefined);
    expect(shown).to.deep.equal(['Bob', 'Carol']);
    app.expectNoProblems();
  });
});
