import { expect } from 'chai';
import type { Page, Route } from 'playwright-core';
import { XFChatClient } from '../../lib/client/index.js';
import { uniqueUsername } from '../helpers/users.js';
import { waitFor } from '../helpers/waitFor.js';
import { PASSWORD, useWebApp } from './fixture.js';

/**
 * What the app shows and sends stays faithful: text typed into a form reaches the server whole (its limits count
 * characters, not the UTF-16 units a browser's `maxlength` counts), a rename heard while a read was on its way is
 * not undone by that read's answer, and a lookup lost to the network is made again.
 */
describe('forms keep what is typed whole: the server counts characters, the browser’s maxlength UTF-16 units', function () {
  const app = useWebApp();

  it('signs up with the password and display name as typed (characters outside the BMP): the password typed logs in', async () => {
    const page = await app.open();
    const username = uniqueUsername('emoji');
    const password = '🐴'.repeat(70); // 70 code points (server: 8-128), 140 UTF-16 units
    const displayName = '🎉'.repeat(40); // 40 code points (server: 1-64), 80 UTF-16 units
    const form = page.page.locator('#signup-form');
    await form.getByLabel('Choose a username').fill(username);
    await form.getByLabel('Display name (optional)').focus();
    await page.page.keyboard.insertText(displayName);
    await form.getByLabel('Choose a password').focus();
    await page.page.keyboard.insertText(password);
    const typed = await form.getByLabel('Choose a password').inputValue();
    await form.getByRole('button', { name: 'Sign up' }).click();
    await page.page.locator('#chat-view').waitFor();
    await page.meName.getByText(/🎉/).waitFor();

    const shown = (await page.meName.textContent()) ?? '';
    const client = new XFChatClient({ baseUrl: app.server.url });
    let loggedIn: boolean;
    try {
      loggedIn = await client.login(username, password).then(
        () => true,
        () => false,
      );
    } finally {
      client.close();
    }
    expect({
      passwordKept: [...typed].length,
      loginWithTypedPassword: loggedIn,
      displayNameShown: [...shown.replace(/ \(@.*\)$/, '')].length,
    }).to.deep.equal({ passwordKept: 70, loginWithTypedPassword: true, displayNameShown: 40 });
  });

  it('creates a group with the name as typed (non-BMP characters)', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);
    await page.page.getByRole('button', { name: 'New group' }).click();
    const title = '🚀'.repeat(60); // 60 code points (server: 1-100), 120 UTF-16 units
    await page.page.getByLabel('Group name').focus();
    await page.page.keyboard.insertText(title);
    await page.page.locator('#new-group-friends').getByText('Bob').click();
    await page.page.getByRole('button', { name: 'Create group' }).click();
    await page.page.locator('#conversation-title').getByText(/🚀/).waitFor();
    const [group] = (await ann.client.conversations.list()).filter((c) => c.type === 'group');
    expect([...(group?.title ?? '')].length).to.equal(60);
  });
});

describe('a rename stands over a read answered after it', function () {
  const app = useWebApp();

  /** Holds the answer of the next GET matching `path` (read from the server at once) until `release()`. */
  async function holdNext(page: Page, path: RegExp): Promise<{ held: Promise<void>; release: () => void }> {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let heldResolve!: () => void;
    const held = new Promise<void>((resolve) => (heldResolve = resolve));
    let armed = true;
    const handler = async (route: Route) => {
      if (!armed || route.request().method() !== 'GET') return route.continue();
      armed = false;
      const response = await route.fetch(); // the server answers now, before the rename
      heldResolve();
      await gate;
      await route.fulfill({ response });
    };
    await page.route(path, handler);
    return { held, release };
  }

  it('keeps the new name in the title when the conversation re-read on opening answers late', async () => {
    const [ann, bob, direct] = await app.friendsInConversation('Ann', 'Bob', { startedByFirst: true });

    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);
    const { held, release } = await holdNext(page.page, new RegExp(`/conversations/${direct.id}$`));
    await page.openConversation('Bob');
    await held;

    await bob.client.updateProfile({ displayName: 'Robert' });
    await page.waitForTitle('Robert');
    await page.conversationButton('Robert').waitFor();

    const answered = page.page.waitForResponse((r) => r.url().endsWith(`/conversations/${direct.id}`));
    release();
    await answered;
    await page.page.waitForTimeout(500);
    expect((await page.title.textContent())?.trim()).to.equal('Robert');
    const list = await page.page.locator('#conversations li .title').allTextContents();
    expect(list).to.deep.equal(['Robert']);
  });

  it('keeps the new name in the friends list when a friends read answers late', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    const carol = await app.person('Carol');
    await app.befriend(ann, bob);

    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);
    await page.page.getByRole('button', { name: 'Message Bob' }).waitFor();
    const { held, release } = await holdNext(page.page, /\/friends$/);
    // Carol's request makes the page read friends, requests and blocks again.
    await carol.client.friends.sendRequest(ann.username);
    await held;

    await bob.client.updateProfile({ displayName: 'Robert' });
    await page.page.getByRole('button', { name: 'Message Robert' }).waitFor();

    release();
    await page.page.getByRole('button', { name: 'Accept friend request from Carol' }).waitFor();
    await page.page.waitForTimeout(300);
    const names = await page.page.locator('#friends .who .name').allTextContents();
    expect(names).to.deep.equal(['Robert']);
  });
});

describe('a sender lookup that failed', function () {
  const app = useWebApp();

  it('asks again the next time the sender is drawn, and names them', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    const carol = await app.person('Carol');
    await app.befriend(ann, bob, carol);
    const group = await ann.client.conversations.createGroup('Team', [bob.id, carol.id]);
    await ann.client.conversations.createDirect(bob.id);
    await carol.client.connect();
    await carol.client.send(group.id, 'hello from carol');
    await carol.client.conversations.leave(group.id);

    const page = await app.open();
    let lookups = 0;
    await page.page.route(new RegExp(`/users/${carol.id}$`), (route) => {
      lookups += 1;
      // The first one is lost to the network.
      if (lookups === 1) return route.abort('connectionreset');
      return route.continue();
    });
    await page.logIn(ann.username, PASSWORD);
    await page.openConversation('Team');
    await page.waitForMessage('hello from carol');
    await waitFor(() => lookups >= 1, { what: 'the first lookup' });
    // Drawn again (at once, or when the conversation is opened again): asked again, and named.
    await page.openConversation('Bob');
    await page.openConversation('Team');
    await page.waitForMessage('hello from carol');
    await page.log.locator('li[data-seq] .meta .sender').first().getByText('Carol').waitFor();
    expect(lookups).to.be.at.least(2);
  });
});
