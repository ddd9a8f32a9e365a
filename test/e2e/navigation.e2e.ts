import { expect } from 'chai';
import { waitFor } from '../helpers/waitFor.js';
import type { ChatPage } from './chatPage.js';
import { PASSWORD, useWebApp, type Person } from './fixture.js';

/** Makes the page believe its tab is hidden (another tab in front) or visible again. */
async function setVisibility(page: ChatPage, state: 'hidden' | 'visible'): Promise<void> {
  await page.page.evaluate((s) => {
    Object.defineProperty(document, 'visibilityState', { value: s, configurable: true });
    Object.defineProperty(document, 'hidden', { value: s === 'hidden', configurable: true });
    document.dispatchEvent(new Event('visibilitychange'));
  }, state);
}

describe('web app: finding your place', function () {
  const app = useWebApp();

  /** Ann and her direct conversations with the others. */
  async function annWith(...names: string[]): Promise<{ ann: Person; others: Person[]; ids: string[] }> {
    const ann = await app.person('Ann');
    const others = await Promise.all(names.map((name) => app.person(name)));
    await app.befriend(ann, ...others);
    const ids: string[] = [];
    for (const other of others) ids.push((await ann.client.conversations.createDirect(other.id)).id);
    return { ann, others, ids };
  }

  it('gives every conversation its own URL, which survives a reload and works with back and forward', async () => {
    const { ann, ids } = await annWith('Bob', 'Cat');
    const [withBob, withCat] = ids as [string, string];
    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);
    expect(page.path()).to.equal('/');

    await page.openConversation('Bob');
    expect(page.path()).to.equal(`/c/${withBob}`);
    await page.openConversation('Cat');
    expect(page.path()).to.equal(`/c/${withCat}`);
    await page.page.reload();
    await page.waitForTitle('Cat');
    expect(page.path()).to.equal(`/c/${withCat}`);

    await page.page.goBack();
    await page.waitForTitle('Bob');
    expect(page.path()).to.equal(`/c/${withBob}`);
    await page.page.goBack();
    await page.page.locator('#empty-state').waitFor();
    expect(page.path()).to.equal('/');
    await page.page.goForward();
    await page.waitForTitle('Bob');
    await page.page.goForward();
    await page.waitForTitle('Cat');

    // A link to a conversation works from a fresh window too, once logged in.
    const fresh = await app.open({ url: `${app.server.url}/c/${withBob}` });
    await fresh.logIn(ann.username, PASSWORD);
    await fresh.waitForTitle('Bob');
    expect(fresh.path()).to.equal(`/c/${withBob}`);
    // The same link with the id in capitals (retyped, or from a tool that upper-cases UUIDs) opens it too, and the
    // address bar shows the id as the app writes it, without a history entry of its own.
    await fresh.page.goto(`${app.server.url}/c/${withCat.toUpperCase()}`);
    await fresh.waitForTitle('Cat');
    expect(fresh.path()).to.equal(`/c/${withCat}`);
    await fresh.page.goBack();
    await fresh.waitForTitle('Bob');
    // One that is not mine says so and shows the list.
    await fresh.page.goto(`${app.server.url}/c/00000000-0000-4000-8000-000000000000`);
    await fresh.page
      .getByRole('alert')
      .getByText('That conversation does not exist, or you are not in it.')
      .waitFor();
    await fresh.page.locator('#empty-state').waitFor();
    expect(fresh.path()).to.equal('/');
    app.expectNoProblems();
  });

  it('opens at a "New messages" line above the first unread message, and offers a jump to the latest', async () => {
    const { ann, others, ids } = await annWith('Bob');
    const [bob] = others as [Person];
    const [conversationId] = ids as [string];
    for (let batch = 0; batch < 6; batch++) {
      const seqs = Array.from({ length: 25 }, (_v, i) => batch * 25 + i + 1);
      await Promise.all(seqs.map((i) => bob.client.messages.put(conversationId, `m-${i}`, `message ${i}`)));
    }
    // Ann read the first 30 of the 150.
    await ann.client.messages.read(conversationId, 30);

    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);
    await page.page.getByRole('button', { name: 'Bob, 120 unread' }).waitFor();
    await page.openConversation('Bob');
    const divider = page.log.locator('.new-divider');
    await divider.waitFor();
    expect(await page.log.locator('.new-divider + li').getAttribute('data-seq')).to.equal('31');
    const last = page.log.locator('li[data-seq="150"]');
    await last.waitFor({ state: 'attached' });
    await waitFor(() => page.inView(divider), { what: 'the "New messages" line in view' });
    expect(await page.inView(last)).to.equal(false);
    const jump = page.page.getByRole('button', { name: /^Jump to latest/ });
    expect(await jump.textContent()).to.equal('Jump to latest (120 new)');
    expect(await page.page.title()).to.equal('(120) Bob – XFChat');

    await jump.click();
    await waitFor(() => page.inView(last), { what: 'the newest message in view' });
    await jump.waitFor({ state: 'hidden' });
    await waitFor(async () => (await page.page.title()) === 'Bob – XFChat', { what: 'everything read' });
    // The page shows it read before its marker reaches the server (a socket request after the redraw): wait for it.
    await waitFor(async () => (await ann.client.conversations.list())[0]?.unreadCount === 0, {
      what: 'everything read on the server',
    });

    // Scrolled up, a new message does not move the view; the button says it is there.
    await page.scroller.evaluate((scroller) => (scroller.scrollTop = 0));
    await jump.waitFor();
    expect(await jump.textContent()).to.equal('Jump to latest');
    await bob.client.messages.put(conversationId, 'late', 'a late one');
    await waitFor(async () => (await jump.textContent()) === 'Jump to latest (1 new)', { what: 'the count' });
    const late = page.log.locator('li[data-seq="151"]');
    expect(await page.inView(late)).to.equal(false);
    expect(await page.page.title()).to.equal('(1) Bob – XFChat');
    await jump.click();
    await waitFor(() => page.inView(late), { what: 'the late message in view' });
    await waitFor(async () => (await page.page.title()) === 'Bob – XFChat', {
      what: 'the late message read',
    });
    app.expectNoProblems();
  });

  it('shows the list and the conversation one at a time on a phone-sized screen, with a back button', async () => {
    const { ann } = await annWith('Bob');
    const page = await app.open({ context: { viewport: { width: 390, height: 780 }, isMobile: true } });
    await page.logIn(ann.username, PASSWORD);
    const list = page.page.getByRole('complementary', { name: 'People and conversations' });
    await list.waitFor();
    expect(await page.page.locator('#conversation-view').isVisible()).to.equal(false);
    await page.openConversation('Bob');
    await list.waitFor({ state: 'hidden' });
    await page.send('from the phone');
    await page.waitForMessage('from the phone');
    await page.page.getByRole('button', { name: 'Back to conversations' }).click();
    await list.waitFor();
    expect(page.path()).to.equal('/');
    expect(await page.page.locator('#conversation-view').isVisible()).to.equal(false);
    // The browser's back button goes back into the conversation.
    await page.page.goBack();
    await page.waitForTitle('Bob');
    await list.waitFor({ state: 'hidden' });
    app.expectNoProblems();
  });

  it('puts the "New messages" line above what came while the tab was hidden, not above messages read long ago', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    const id = (await bob.client.conversations.createDirect(ann.id)).id;
    for (const i of [1, 2, 3]) await bob.client.messages.put(id, `m${i}`, `old ${i}`);

    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);
    await page.openConversation('Bob');
    await page.waitForMessage('old 3');
    // Opened at the line above the first unread message, then read (the whole conversation fits).
    expect(await page.log.locator('.new-divider + li').getAttribute('data-seq')).to.equal('1');
    await waitFor(async () => (await page.page.title()) === 'Bob – XFChat', { what: 'all read' });

    // Ann switches to another tab; Bob writes twice meanwhile.
    await setVisibility(page, 'hidden');
    await bob.client.messages.put(id, 'n1', 'new 1');
    await bob.client.messages.put(id, 'n2', 'new 2');
    await page.waitForMessage('new 2');
    await waitFor(async () => (await page.page.title()) === '(2) Bob – XFChat', { what: 'two unread' });

    // Back to the tab: the line says where the new ones start.
    await setVisibility(page, 'visible');
    await waitFor(async () => (await page.page.title()) === 'Bob – XFChat', { what: 'read on return' });
    expect(await page.log.locator('.new-divider + li').getAttribute('data-seq')).to.equal('4');
    app.expectNoProblems();
  });

  it('moves the "New messages" line again each time the tab is hidden and new messages come', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    const id = (await bob.client.conversations.createDirect(ann.id)).id;
    await bob.client.messages.put(id, 'm1', 'first');
    await ann.client.messages.read(id, 1);

    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);
    await page.openConversation('Bob');
    await page.waitForMessage('first');
    expect(await page.log.locator('.new-divider').count()).to.equal(0);

    await setVisibility(page, 'hidden');
    await bob.client.messages.put(id, 'a', 'while away 1');
    await page.waitForMessage('while away 1');
    await setVisibility(page, 'visible');
    await waitFor(async () => (await page.page.title()) === 'Bob – XFChat', { what: 'read on return' });
    expect(await page.log.locator('.new-divider + li').getAttribute('data-seq')).to.equal('2');

    await setVisibility(page, 'hidden');
    await bob.client.messages.put(id, 'b', 'while away 2');
    await page.waitForMessage('while away 2');
    await setVisibility(page, 'visible');
    await waitFor(async () => (await page.page.title()) === 'Bob – XFChat', { what: 'read on return' });
    expect(await page.log.locator('.new-divider + li').getAttribute('data-seq')).to.equal('3');
    app.expectNoProblems();
  });
});
