import { expect } from 'chai';
import { waitFor } from '../helpers/waitFor.js';
import { holdSubscribes } from './browser.js';
import type { ChatPage } from './chatPage.js';
import { PASSWORD, useWebApp, type Person } from './fixture.js';

/** The unread badges the list shows, by conversation. */
async function badges(page: ChatPage): Promise<string[]> {
  return page.page.locator('#conversations .unread').allTextContents();
}

// UNREAD hunt: a read made on another device (my phone, an SDK client) after the page read its list and before its
// subscriptions joined was told to nobody on the page, so the tab title and the list counted those messages until a
// reload (at load and after a reconnection); and "Jump to latest (N new)" kept its count after such a read.
describe('UNREAD hunt: unread counts follow reads made on other devices', function () {
  const app = useWebApp();

  /**
   * `person`'s page through `holdSubscribes`, signed in, its conversation with Bob listed; with `holding`, its
   * subscribes are held back from the load on.
   */
  async function signedInHolding(person: Person, { holding = false } = {}) {
    const page = await app.open();
    const sockets = await holdSubscribes(page.page);
    sockets.holding = holding;
    await page.page.reload();
    await page.logIn(person.username, PASSWORD);
    await page.conversationButton('Bob').waitFor();
    return { page, sockets };
  }

  it('takes a read made on my phone while the page was still subscribing at load', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    const withBob = (await bob.client.conversations.createDirect(ann.id)).id;
    for (const text of ['one', 'two', 'three']) await bob.client.messages.put(withBob, text, text);

    const { page, sockets } = await signedInHolding(ann, { holding: true });
    await waitFor(async () => (await page.page.title()) === '(3) XFChat', { what: 'three unread at load' });
    await waitFor(() => sockets.held > 0, { what: 'the subscribe held back' });

    // Read on the phone after the page read the list, before its subscription joined.
    await ann.client.messages.read(withBob, 3);
    sockets.release();
    await waitFor(async () => (await page.page.title()) === 'XFChat', {
      what: 'the tab title to take the read made on the phone',
      timeoutMs: 10_000,
    });
    expect(await badges(page)).to.deep.equal([]);

    // Live from here: Bob's next message counts one, and a read on the phone after the join clears it.
    await bob.client.messages.put(withBob, 'four', 'four');
    await waitFor(async () => (await page.page.title()) === '(1) XFChat', { what: 'one new message' });
    expect(await badges(page)).to.deep.equal(['1']);
    await ann.client.messages.read(withBob, 4);
    await waitFor(async () => (await page.page.title()) === 'XFChat', { what: 'a live read' });
  });

  it('takes a read made on my phone while the page re-subscribed after a drop', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    const withBob = (await bob.client.conversations.createDirect(ann.id)).id;

    const { page, sockets } = await signedInHolding(ann);
    for (const text of ['one', 'two', 'three']) await bob.client.messages.put(withBob, text, text);
    await waitFor(async () => (await page.page.title()) === '(3) XFChat', { what: 'three unread' });

    await sockets.offline();
    await page.banner.getByText(/Reconnecting/).waitFor();
    sockets.holding = true;
    const listRead = page.page.waitForResponse(
      (r) => new URL(r.url()).pathname === '/conversations' && r.request().method() === 'GET',
    );
    sockets.online();
    await waitFor(async () => (await page.banner.getAttribute('data-state')) === 'connected', {
      what: 'reconnected',
      timeoutMs: 30_000,
    });
    await waitFor(() => sockets.held > 0, { what: 'the re-subscribe held back' });
    // The list read again after the reconnection has answered: the read below is not in it.
    await listRead;
    await ann.client.messages.read(withBob, 3);
    sockets.release();
    await waitFor(async () => (await page.page.title()) === 'XFChat', {
      what: 'the tab title to take the read made on the phone',
      timeoutMs: 10_000,
    });
    expect(await badges(page)).to.deep.equal([]);
    await bob.client.messages.put(withBob, 'four', 'four');
    await waitFor(async () => (await page.page.title()) === '(1) XFChat', { what: 'one new message' });
  });

  it('lets the list read again after the subscriptions joined undo nothing newer', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    const cat = await app.person('Cat');
    await app.befriend(ann, bob, cat);
    const withBob = (await bob.client.conversations.createDirect(ann.id)).id;
    const withCat = (await cat.client.conversations.createDirect(ann.id)).id;
    const hike = (await bob.client.conversations.createGroup('Hike', [ann.id])).id;
    for (const text of ['one', 'two', 'three']) await bob.client.messages.put(withBob, text, text);
    for (const text of ['hi', 'there']) await cat.client.messages.put(withCat, text, text);
    await bob.client.messages.put(hike, 'h1', 'see you there');

    // The list read once the subscriptions have joined is answered as the server had it then, and handed to the
    // page only after newer things were heard: a group I was removed from, a read on my phone, one made here.
    const page = await app.open();
    let reads = 0;
    let fetched = false;
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    await page.page.route(
      (url) => url.pathname === '/conversations',
      async (route) => {
        if (route.request().method() !== 'GET' || ++reads !== 2) return route.continue();
        const response = await route.fetch();
        fetched = true;
        await released;
        await route.fulfill({ response });
      },
    );
    await page.logIn(ann.username, PASSWORD);
    await waitFor(async () => (await page.page.title()) === '(6) XFChat', { what: 'six unread at load' });
    await waitFor(() => fetched, { what: 'the list read again once the subscriptions joined' });

    await page.openConversation('Bob');
    await waitFor(async () => (await page.page.title()) === '(3) Bob – XFChat', { what: 'Bob’s read here' });
    await bob.client.conversations.removeParticipant(hike, ann.id);
    await page.conversationButton('Hike').waitFor({ state: 'detached' });
    await ann.client.messages.read(withCat, 2);
    await waitFor(async () => (await page.page.title()) === 'Bob – XFChat', { what: 'the phone’s read' });
    await bob.client.messages.put(withBob, 'four', 'four');
    await page.waitForMessage('four');

    release();
    // Give the older answer its chance to be drawn.
    await page.page.waitForTimeout(1000);
    expect(await page.page.title()).to.equal('Bob – XFChat');
    expect(await badges(page)).to.deep.equal([]);
    expect(await page.conversationButton('Hike').count()).to.equal(0);
  });

  it('counts on "Jump to latest" only what my phone has not read', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    const id = (await bob.client.conversations.createDirect(ann.id)).id;
    for (let batch = 0; batch < 2; batch++) {
      const seqs = Array.from({ length: 25 }, (_v, i) => batch * 25 + i + 1);
      await Promise.all(seqs.map((i) => bob.client.messages.put(id, `m-${i}`, `message ${i}`)));
    }
    await ann.client.messages.read(id, 50);
    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);
    await page.openConversation('Bob');
    await page.log.locator('li[data-seq="50"]').waitFor({ state: 'attached' });
    await page.scroller.evaluate((scroller) => (scroller.scrollTop = 0));
    const jump = page.page.getByRole('button', { name: /^Jump to latest/ });
    await jump.waitFor();
    for (const text of ['a', 'b', 'c']) await bob.client.messages.put(id, text, `late ${text}`);
    await waitFor(async () => (await jump.textContent()) === 'Jump to latest (3 new)', { what: 'the count' });
    expect(await page.page.title()).to.equal('(3) Bob – XFChat');

    // Two of them read on the phone, then the third: the button follows the title.
    await ann.client.connect();
    await ann.client.markRead(id, 52);
    await waitFor(async () => (await page.page.title()) === '(1) Bob – XFChat', {
      what: 'the title follows',
    });
    await waitFor(async () => (await jump.textContent()) === 'Jump to latest (1 new)', {
      what: 'the button to follow the phone’s read',
      timeoutMs: 3000,
    });
    await ann.client.markRead(id, 53);
    await waitFor(async () => (await jump.textContent()) === 'Jump to latest', {
      what: 'the button once the phone read them all',
      timeoutMs: 3000,
    });
    expect(await page.page.title()).to.equal('Bob – XFChat');
  });
});
