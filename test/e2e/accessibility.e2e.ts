import { expect } from 'chai';
import type { Locator, Page } from 'playwright-core';
import { routeSockets } from './browser.js';
import { PASSWORD, useWebApp } from './fixture.js';
import { waitFor } from '../helpers/waitFor.js';

/** The red, green and blue of a computed CSS colour ("rgb(1, 2, 3)" or "rgba(1, 2, 3, 0.5)"). */
function rgb(color: string): [number, number, number] {
  const [r = 0, g = 0, b = 0] = (color.match(/[\d.]+/g) ?? []).map(Number);
  return [r, g, b];
}

/** WCAG relative luminance of a colour. */
function luminance(color: string): number {
  const [r, g, b] = rgb(color).map((value) => {
    const s = value / 255;
    return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
  }) as [number, number, number];
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

/** WCAG contrast ratio of two colours. */
function contrast(a: string, b: string): number {
  const [light, dark] = [luminance(a), luminance(b)].sort((x, y) => y - x) as [number, number];
  return (light + 0.05) / (dark + 0.05);
}

/**
 * The colour of an element's focus ring or border, and the opaque background it is drawn on (that of its
 * parent: the ring and the border are outside the element's own fill).
 */
async function edge(
  element: Locator,
  property: 'outlineColor' | 'borderTopColor',
): Promise<{ color: string; background: string }> {
  return element.evaluate((target, which) => {
    let from: Element | null = target.parentElement;
    let background = 'rgb(255, 255, 255)';
    while (from) {
      const color = getComputedStyle(from).backgroundColor;
      if (color !== 'transparent' && !/rgba\(.*, 0\)$/.test(color)) {
        background = color;
        break;
      }
      from = from.parentElement;
    }
    return { color: getComputedStyle(target)[which], background };
  }, property);
}

/** Tabs (at most 40 times) until `target` has keyboard focus. */
async function tabTo(page: Page, target: Locator): Promise<void> {
  for (let i = 0; i < 40; i++) {
    if (await target.evaluate((element) => element === document.activeElement)) return;
    await page.keyboard.press('Tab');
  }
  throw new Error('Tab never reached the element');
}

describe('web app: accessibility', function () {
  const app = useWebApp();

  for (const scheme of ['light', 'dark'] as const) {
    it(`${scheme} theme: the focus ring and the edges of text fields keep 3:1 contrast with what is around them`, async () => {
      const ann = await app.person('Ann');
      const page = await app.open({ context: { colorScheme: scheme } });
      const problems: string[] = [];
      const check = async (name: string, field: Locator) => {
        const border = await edge(field, 'borderTopColor');
        const ratio = contrast(border.color, border.background);
        if (ratio < 3)
          problems.push(`${name} border ${border.color} on ${border.background}: ${ratio.toFixed(2)}`);
        await tabTo(page.page, field);
        const ring = await edge(field, 'outlineColor');
        const ringRatio = contrast(ring.color, ring.background);
        if (ringRatio < 3)
          problems.push(`${name} focus ring ${ring.color} on ${ring.background}: ${ringRatio.toFixed(2)}`);
      };
      const login = page.page.locator('#login-form');
      await check('login username', login.getByLabel('Username'));
      await check('login password', login.getByLabel('Password'));
      await check('signup username', page.page.locator('#signup-form').getByLabel('Choose a username'));
      await page.logIn(ann.username, PASSWORD);
      await check('find username', page.page.locator('#find-form').getByLabel('Username'));
      await check('new group', page.page.getByRole('button', { name: 'New group' }));
      expect(problems).to.deep.equal([]);
      app.expectNoProblems();
    });
  }

  it('the tab title names the open conversation, and counts the unread messages', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    const cat = await app.person('Cat');
    await app.befriend(ann, bob, cat);
    const withBob = await bob.client.conversations.createDirect(ann.id);
    const withCat = await cat.client.conversations.createDirect(ann.id);
    await bob.client.connect();
    await bob.client.send(withBob.id, 'hello from Bob');
    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);
    const title = (expected: string) =>
      waitFor(async () => (await page.page.title()) === expected, { timeoutMs: 5000, what: expected });
    await title('(1) XFChat');
    await page.openConversation('Cat');
    await title('(1) Cat – XFChat');
    await page.openConversation('Bob');
    await page.waitForMessage('hello from Bob');
    await title('Bob – XFChat');
    await cat.client.connect();
    await cat.client.send(withCat.id, 'hello from Cat');
    await title('(1) Bob – XFChat');
    await page.page.goBack();
    await title('Cat – XFChat');
    await page.page.goBack();
    await title('XFChat');
    app.expectNoProblems();
  });

  it('a conversation in the list is read with its last message (or draft) and when, not only its name', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    const cat = await app.person('Cat');
    await app.befriend(ann, bob, cat);
    await ann.client.conversations.createDirect(cat.id);
    const withBob = await bob.client.conversations.createDirect(ann.id);
    await bob.client.connect();
    await bob.client.send(withBob.id, 'see you at noon');
    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);
    await page.page.getByRole('button', { name: 'Bob, 1 unread' }).waitFor();
    // What the browser gives a screen reader: the accessible tree, as Chromium computes it.
    const cdp = await page.page.context().newCDPSession(page.page);
    // The entry whose name starts with `name` (a direct conversation's name ends with the other's username).
    const read = async (name: string) => {
      const { nodes } = (await cdp.send('Accessibility.getFullAXTree')) as {
        nodes: { role?: { value?: string }; name?: { value?: string }; description?: { value?: string } }[];
      };
      const entry = nodes.find(
        (node) => node.role?.value === 'button' && node.name?.value?.startsWith(`${name}, `),
      );
      return entry?.description?.value;
    };
    const time = await page.conversationButton('Bob').locator('time').textContent();
    expect(await read('Bob, 1 unread')).to.equal(`Bob: see you at noon ${time ?? ''}`);

    await page.openConversation('Bob');
    await page.waitForMessage('see you at noon');
    await page.composer.fill('a draft');
    await page.openConversation('Cat');
    await waitFor(async () => (await read('Bob, draft')) === `Draft: a draft ${time ?? ''}`, {
      timeoutMs: 5000,
      what: 'the draft read as the description',
    });
    await cdp.detach();
    app.expectNoProblems();
  });

  it('a friend’s “More” menu closes with Escape (focus back on “More”) and when focus leaves it', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);
    // The conversation open: there is something to Tab to after the sidebar.
    await page.openChatWith('Bob');
    const summary = page.page.locator('summary', { hasText: 'More' });
    const unfriend = page.page.getByRole('button', { name: 'Unfriend Bob' });
    const block = page.page.getByRole('button', { name: 'Block Bob' });

    await tabTo(page.page, summary);
    await page.page.keyboard.press('Enter');
    await unfriend.waitFor();
    await page.page.keyboard.press('Tab');
    expect(await unfriend.evaluate((element) => element === document.activeElement)).to.equal(true);
    await page.page.keyboard.press('Escape');
    await unfriend.waitFor({ state: 'hidden' });
    expect(await summary.evaluate((element) => element === document.activeElement)).to.equal(true);

    // Open again, and Tab past its last button: it closes rather than float over what comes next.
    await page.page.keyboard.press('Enter');
    await block.waitFor();
    await page.page.keyboard.press('Tab');
    await page.page.keyboard.press('Tab');
    expect(await block.evaluate((element) => element === document.activeElement)).to.equal(true);
    await page.page.keyboard.press('Tab');
    await block.waitFor({ state: 'hidden' });
    app.expectNoProblems();
  });

  it('live updates of the friends list keep focus on a friend’s “More”, and in its open menu (which stays open)', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    const cat = await app.person('Cat');
    const dan = await app.person('Dan');
    await app.befriend(ann, bob);
    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);
    await page.waitForConnected();
    const summary = page.page.locator('summary[aria-label="More for Bob"]');
    const unfriend = page.page.getByRole('button', { name: 'Unfriend Bob' });
    const hasFocus = (target: typeof summary) =>
      target.evaluate((element) => element === document.activeElement);

    // Focus on "More": a friend request comes in, and the friends list is drawn again.
    await tabTo(page.page, summary);
    await cat.client.friends.sendRequest(ann.username);
    await page.page.getByRole('button', { name: 'Accept friend request from Cat' }).waitFor();
    expect(await hasFocus(summary), 'focus on “More for Bob”').to.equal(true);

    // Focus in the open menu: another request, and the menu is still open with focus where it was.
    await page.page.keyboard.press('Enter');
    await page.page.keyboard.press('Tab');
    expect(await hasFocus(unfriend)).to.equal(true);
    await dan.client.friends.sendRequest(ann.username);
    await page.page.getByRole('button', { name: 'Accept friend request from Dan' }).waitFor();
    expect(await hasFocus(unfriend), 'focus on “Unfriend Bob”').to.equal(true);
    expect(await unfriend.isVisible(), 'the menu open').to.equal(true);
    app.expectNoProblems();
  });

  it('screen readers find the page heading, the messages as a list inside the log, and how Enter and Shift+Enter work', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);
    // The signed-in view has a level-1 heading of its own (the login view's is hidden with it).
    expect(await page.page.getByRole('heading', { level: 1, name: 'XFChat' }).count()).to.equal(1);

    await page.openChatWith('Bob');
    const description = () =>
      page.composer.evaluate((input) =>
        (input.getAttribute('aria-describedby') ?? '')
          .split(' ')
          .map((id) => document.getElementById(id)?.textContent?.trim() ?? '')
          .join(' ')
          .replace(/\s+/g, ' '),
      );
    expect(await description()).to.equal('Enter sends, Shift+Enter starts a new line.');
    await page.composer.focus();
    await page.page.keyboard.type('line one');
    await page.page.keyboard.press('Shift+Enter');
    await page.page.keyboard.type('line two');
    await page.page.keyboard.press('Enter');
    await page.waitForMessage('line two');
    expect(await page.shownMessages()).to.deep.equal(['line one\nline two']);
    await page.send('second');
    await page.waitForMessage('second');

    // The log (read out as messages arrive) holds a list: "list, 2 items", each with its sender and time.
    const items = page.log.getByRole('list', { name: 'Messages' }).getByRole('listitem');
    const stored = items.filter({ has: page.page.locator('.body') });
    expect(await stored.count()).to.equal(2);
    expect(await stored.first().locator('.sender').textContent()).to.equal('You');
    expect(await stored.first().locator('time').getAttribute('datetime')).to.match(/^\d{4}-/);

    // Replying keeps the hint in the description, after the quote.
    await page.page
      .getByRole('button', { name: /^Actions for your message/ })
      .first()
      .click();
    await page.page.getByRole('button', { name: 'Reply' }).click();
    expect(await description()).to.equal(
      'Replying to yourself line one line two Enter sends, Shift+Enter starts a new line.',
    );
    app.expectNoProblems();
  });

  it('says when the connection is lost and when it is back, through a status region that is always there', async () => {
    const ann = await app.person('Ann');
    const page = await app.open();
    const network = await routeSockets(page.page);
    await page.page.reload();
    await page.logIn(ann.username, PASSWORD);
    await waitFor(async () => (await page.banner.getAttribute('data-state')) === 'connected', {
      what: 'connected',
    });
    // Connected, the region is out of sight but in the accessibility tree, ready to speak.
    const statuses = () => page.page.getByRole('status').evaluateAll((found) => found.map((e) => e.id));
    expect(await statuses()).to.include('connection-banner');
    expect((await page.banner.boundingBox())?.height).to.be.at.most(1);

    await network.offline();
    await page.page
      .getByRole('status')
      .filter({ hasText: /^Reconnecting…/ })
      .waitFor();
    network.online();
    await page.page
      .getByRole('status')
      .filter({ hasText: 'Connected again.' })
      .waitFor({ state: 'attached' });
    expect((await page.banner.boundingBox())?.height).to.be.at.most(1);
    app.expectNoProblems();
  });

  it('reads out new messages from others through a polite live region, not the history nor my own', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    const cat = await app.person('Cat');
    await app.befriend(ann, bob, cat);
    const group = await bob.client.conversations.createGroup('Team', [ann.id, cat.id]);
    await bob.client.connect();
    await cat.client.connect();
    for (const text of ['one', 'two', 'three']) await bob.client.send(group.id, text);
    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);
    await page.openConversation('Team');
    await page.waitForMessage('three');

    // The log itself is not live: opening the conversation (or loading older messages) reads nothing out.
    const announcer = page.page.locator('#message-announcer');
    expect(await page.log.getAttribute('aria-live')).to.equal('off');
    expect(await announcer.getAttribute('aria-live')).to.equal('polite');
    expect(await announcer.textContent()).to.equal('');

    await bob.client.send(group.id, 'see you at noon');
    await page.waitForMessage('see you at noon');
    await announcer.getByText('Bob: see you at noon', { exact: true }).waitFor({ state: 'attached' });
    await cat.client.send(group.id, 'me too');
    await announcer.getByText('Cat: me too', { exact: true }).waitFor({ state: 'attached' });

    // My own message is not read back to me.
    await page.send('great');
    await page.waitForMessage('great');
    expect(await announcer.innerText()).to.equal('Cat: me too');
    app.expectNoProblems();
  });

  it('the skip link goes to the conversation list when no conversation is open, and to the message box when one is', async () => {
    const [ann] = await app.friendsInConversation('Ann', 'Bob');
    const page = await app.open();
    const p = page.page;
    const fromTheTop = async () => {
      // Focus on the document itself, as after loading the page: the next Tab goes to the first control.
      await p.evaluate(() => {
        document.body.tabIndex = -1;
        document.body.focus();
        document.body.removeAttribute('tabindex');
      });
      await p.keyboard.press('Tab');
      return p.evaluate(() => document.activeElement?.textContent?.trim());
    };
    const focused = () =>
      p.evaluate(() => document.activeElement?.getAttribute('aria-label') ?? document.activeElement?.id);
    // Nothing to skip to on the login page.
    await page.page.locator('#login-form').waitFor();
    expect(await fromTheTop()).to.not.match(/^Skip/);

    await page.logIn(ann.username, PASSWORD);
    await page.conversationButton('Bob').waitFor();
    // The page's start ends by putting focus on the list (once friends, requests and blocks are read): waited for,
    // or it could land between the focus put on the page below and the Tab.
    await waitFor(async () => /^Bob,/.test((await focused()) ?? ''), {
      what: 'focus on the list after login',
    });
    expect(await fromTheTop()).to.equal('Skip to the conversations');
    await p.keyboard.press('Enter');
    expect(await focused()).to.match(/^Bob,/);

    await p.keyboard.press('Enter');
    await page.waitForTitle('Bob');
    expect(await fromTheTop()).to.equal('Skip to the message box');
    await p.keyboard.press('Enter');
    expect(await focused()).to.equal('composer-input');
    app.expectNoProblems();
  });

  it('every action works from the keyboard alone, with focus where the next step is', async () => {
    const bob = await app.person('Bob');
    const cat = await app.person('Cat');
    const page = await app.open();
    page.acceptDialogs();
    const p = page.page;
    const key = (name: string) => p.keyboard.press(name);
    const focused = () =>
      p.evaluate(() => {
        const active = document.activeElement;
        return active?.getAttribute('aria-label') ?? active?.id ?? '';
      });
    const press = async (target: Locator, name = 'Enter') => {
      await target.focus();
      await key(name);
    };

    // Sign up: type, Tab, Enter.
    const username = `kb${Date.now().toString(36)}`;
    await p.locator('#signup-form').getByLabel('Choose a username').focus();
    await p.keyboard.type(username);
    await key('Tab');
    await p.keyboard.type('Kay');
    await key('Tab');
    await p.keyboard.type(PASSWORD);
    await key('Enter');
    await page.meName.getByText('Kay').waitFor();

    // Friend requests: accept one, decline the other.
    await bob.client.friends.sendRequest(username);
    await cat.client.friends.sendRequest(username);
    await press(p.getByRole('button', { name: 'Accept friend request from Bob' }));
    await press(p.getByRole('button', { name: 'Decline friend request from Cat' }));
    await p.getByRole('button', { name: 'Decline friend request from Cat' }).waitFor({ state: 'detached' });

    // Open the conversation: focus lands in the message box; Enter sends.
    await press(p.getByRole('button', { name: 'Message Bob' }));
    await page.waitForTitle('Bob');
    expect(await focused()).to.equal('composer-input');
    await p.keyboard.type('hi');
    await key('Enter');
    await page.waitForMessage('hi');

    // React and reply to Bob's message through its actions menu.
    const direct = (await bob.client.conversations.list())[0];
    if (!direct) throw new Error('no conversation');
    await bob.client.connect();
    await bob.client.send(direct.id, 'lunch?');
    await page.waitForMessage('lunch?');
    const bobsActions = p.getByRole('button', { name: /^Actions for Bob’s message/ });
    await press(bobsActions);
    expect(await focused()).to.equal('React with 👍');
    await key('Enter');
    await p.getByRole('button', { name: '👍 1 reaction, yours' }).waitFor();
    expect(await focused()).to.match(/^Actions for Bob’s message/);
    await key('Enter');
    await key('End');
    expect(await p.evaluate(() => document.activeElement?.textContent)).to.equal('Reply');
    await key('Enter');
    expect(await focused()).to.equal('composer-input');
    await p.keyboard.type('yes');
    await key('Enter');
    await page.waitForMessage('yes');

    // Edit my first message, then delete it (Cancel is focused first; Shift+Tab goes to the confirmation).
    const mine = p.getByRole('button', { name: /^Actions for your message/ }).first();
    await press(mine);
    await key('End');
    await key('ArrowUp');
    expect(await p.evaluate(() => document.activeElement?.textContent)).to.equal('Edit');
    await key('Enter');
    expect(await focused()).to.equal('Edit your message');
    await key('Control+A');
    await p.keyboard.type('hi there');
    await key('Enter');
    await page.waitForMessage('hi there');
    expect(await focused()).to.match(/^Actions for your message/);
    await key('Enter');
    await key('End');
    await key('Enter');
    const dialog = p.getByRole('dialog', { name: 'Delete your message?' });
    await dialog.waitFor();
    expect(await p.evaluate(() => document.activeElement?.textContent)).to.equal('Cancel');
    await key('Shift+Tab');
    await key('Enter');
    await page.log.getByText('message deleted').waitFor();
    await dialog.waitFor({ state: 'hidden' });

    // A group: the dialog from the keyboard (name, Tab, Space on a friend, Tab, Enter).
    await press(p.getByRole('button', { name: 'New group' }));
    expect(await focused()).to.equal('new-group-name');
    await p.keyboard.type('Crew');
    await key('Tab');
    await key('Space');
    await key('Tab');
    await key('Enter');
    await page.waitForTitle('Crew');

    // Members: remove Bob, then add him back with the select and "Add".
    await press(p.getByRole('button', { name: /^Members/ }));
    await press(p.getByRole('button', { name: 'Remove Bob from the group' }));
    await p.getByRole('button', { name: 'Remove Bob from the group' }).waitFor({ state: 'detached' });
    const select = p.getByRole('combobox', { name: 'Add a friend' });
    await waitFor(async () => !(await select.isDisabled()), { what: 'the select enabled' });
    await select.focus();
    await key('Tab');
    expect(await p.evaluate(() => document.activeElement?.textContent)).to.equal('Add');
    await key('Enter');
    await p.getByRole('button', { name: 'Remove Bob from the group' }).waitFor();

    // Block from a friend's "More" menu.
    await press(p.locator('summary[aria-label="More for Bob"]'));
    await key('Tab');
    await key('Tab');
    expect(await focused()).to.equal('Block Bob');
    await key('Enter');
    await p.getByRole('button', { name: 'Unblock Bob' }).waitFor();

    // Sign out.
    await press(p.getByRole('button', { name: 'Log out' }));
    await p.locator('#login-form').waitFor();
    app.expectNoProblems();
  });

  it('who reacted (shown on hover and focus) can be hidden with Escape, and pointed at without vanishing', async () => {
    const [ann, bob, direct] = await app.friendsInConversation('Ann', 'Bob');
    await bob.client.connect();
    const sent = await bob.client.send(direct.id, 'react to me');
    await bob.client.react(direct.id, sent.seq, '👍');
    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);
    await page.openConversation('Bob');
    const chip = page.page.getByRole('button', { name: '👍 1 reaction' });
    await chip.waitFor();
    const tip = page.page.getByRole('tooltip');

    // Keyboard: from the actions button, Shift+Tab to the chip shows the names; Escape hides them, focus stays.
    await page.page.getByRole('button', { name: /^Actions for Bob’s message/ }).focus();
    await page.page.keyboard.press('Shift+Tab');
    expect(await chip.evaluate((element) => element === document.activeElement)).to.equal(true);
    await tip.waitFor();
    expect(await tip.textContent()).to.equal('Bob');
    await page.page.keyboard.press('Escape');
    await tip.waitFor({ state: 'hidden' });
    expect(await chip.evaluate((element) => element === document.activeElement)).to.equal(true);
    // Leaving the chip and coming back shows them again.
    await page.page.keyboard.press('Tab');
    await page.page.keyboard.press('Shift+Tab');
    await tip.waitFor();

    // Pointer: from the chip onto the names, which stay.
    await page.composer.focus();
    await chip.hover();
    await tip.waitFor();
    const box = await tip.boundingBox();
    if (!box) throw new Error('no tooltip box');
    await page.page.mouse.move(box.x + box.width / 2, box.y + box.height + 2, { steps: 4 });
    await page.page.mouse.move(box.x + box.width / 2, box.y + box.height / 2, { steps: 4 });
    expect(await tip.isVisible()).to.equal(true);
    app.expectNoProblems();
  });
});
