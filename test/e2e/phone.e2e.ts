import { expect } from 'chai';
import type { BrowserContextOptions, Page } from 'playwright-core';
import { waitFor } from '../helpers/waitFor.js';
import { PASSWORD, useWebApp, type Person } from './fixture.js';

// Phones: narrow windows, touch, a keyboard that takes half the screen, a phone turned (MOBILE hunt). The document
// not scrolling sideways is layout.e2e.ts's; here, the panels that scroll by themselves, and room for the messages.

/** A browser context like a phone's: a window `width` x `height` CSS px, touch. */
function onPhone(width: number, height: number): BrowserContextOptions {
  return { viewport: { width, height }, hasTouch: true, isMobile: true };
}

/**
 * Each word (two characters or more) of the visible text drawn on more than one line: a word broken inside. The long
 * names made of W's and T's, which must wrap, are left out, and so is the members line of a conversation's header: at
 * 320 CSS px it sits in a column between two buttons a few words wide, two lines at most, where a word is cut
 * rather than the header made taller (the members panel lists everyone whole).
 */
function wordsBrokenInside(page: Page): Promise<string[]> {
  return page.evaluate(() => {
    const out: string[] = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const text = n.textContent!.trim();
      const el = n.parentElement!;
      if (!el.checkVisibility?.() || el.closest('.conversation-header .members')) continue;
      const re = /\S+/g;
      for (let m = re.exec(n.textContent!); m; m = re.exec(n.textContent!)) {
        if (m[0].length < 2 || /^(W+|T+)$/.test(m[0])) continue;
        const range = document.createRange();
        range.setStart(n, m.index);
        range.setEnd(n, m.index + m[0].length);
        const lines = new Set(
          Array.from(range.getClientRects())
            .filter((x) => x.width > 0)
            .map((x) => Math.round(x.top)),
        );
        if (lines.size > 1)
          out.push(
            `${el.tagName}.${el.className}: "${m[0]}" of "${text.slice(0, 60)}" on ${lines.size} lines`,
          );
      }
    }
    return out;
  });
}

describe('web app on a phone: the sidebar (the list view) on a phone', function () {
  const app = useWebApp();

  for (const viewport of [
    { width: 375, height: 667 },
    { width: 320, height: 568 },
  ]) {
    it(`an incoming friend request says who it is from at ${viewport.width}x${viewport.height}`, async () => {
      const ann = await app.person('Ann');
      const alex = await app.person('Alex');
      await alex.client.updateProfile({ displayName: 'Alexandra Johnson' });
      await alex.client.friends.sendRequest(ann.username);

      const page = await app.open({ context: onPhone(viewport.width, viewport.height) });
      await page.logIn(ann.username, PASSWORD);
      const row = page.page.locator('#incoming-requests li', { hasText: 'Wants to be friends.' });
      await row.waitFor();
      const measured = await row.locator('.who').evaluate((who) => {
        const [name, username] = ['.name', '.username'].map((selector) => {
          const e = who.querySelector<HTMLElement>(selector)!;
          return { shown: e.clientWidth, whole: e.scrollWidth, text: e.textContent };
        });
        return { name: name!, username: username!, column: who.getBoundingClientRect().width };
      });
      const detail = JSON.stringify(measured);
      expect(measured.name.whole, `the name is cut: ${detail}`).to.be.at.most(measured.name.shown);
      expect(measured.username.whole, `the username is cut: ${detail}`).to.be.at.most(
        measured.username.shown,
      );
      app.expectNoProblems();
    });
  }

  it('my own long unbroken display name does not make the list view scroll sideways at 320x568', async () => {
    const ann = await app.person('Ann');
    // The longest display name the server takes, with nowhere to break (as layout.e2e.ts uses for others).
    await ann.client.updateProfile({ displayName: 'W'.repeat(64) });
    const page = await app.open({ context: onPhone(320, 568) });
    await page.logIn(ann.username, PASSWORD);
    await page.meName.getByText('W'.repeat(64)).waitFor();
    const measured = await page.page.evaluate(() => {
      const sidebar = document.querySelector<HTMLElement>('.sidebar')!;
      return {
        sidebar: [sidebar.scrollWidth, sidebar.clientWidth],
        meNameRight: Math.round(document.getElementById('me-name')!.getBoundingClientRect().right),
        window: innerWidth,
      };
    });
    expect(measured.sidebar[0]!, `sideways: ${JSON.stringify(measured)}`).to.be.at.most(measured.sidebar[1]!);
    expect(measured.meNameRight, `past the window: ${JSON.stringify(measured)}`).to.be.at.most(
      measured.window,
    );
    app.expectNoProblems();
  });

  it('"Friend request sent to …" for a long unbroken name does not make the list view scroll sideways at 320x568', async () => {
    const ann = await app.person('Ann');
    const long = await app.person('Long');
    await long.client.updateProfile({ displayName: 'W'.repeat(64) });
    const page = await app.open({ context: onPhone(320, 568) });
    await page.logIn(ann.username, PASSWORD);
    await page.page.locator('#find-form').getByLabel('Username').fill(long.username);
    await page.page.getByRole('button', { name: 'Find' }).tap();
    await page.page.getByRole('button', { name: `Add ${'W'.repeat(64)} as a friend` }).tap();
    await page.page.locator('#find-results').getByText('Friend request sent to').waitFor();
    const sideways = await page.page.evaluate(() => {
      const sidebar = document.querySelector<HTMLElement>('.sidebar')!;
      return [sidebar.scrollWidth, sidebar.clientWidth];
    });
    expect(sideways[0]!, `the sidebar ${sideways[0]!}px wide in ${sideways[1]!}px`).to.be.at.most(
      sideways[1]!,
    );
    app.expectNoProblems();
  });
});

/**
 * layout.e2e.ts checks that the members panel does not widen the document with a 45-character unbroken name;
 * the panel is its own scroll container (overflow-y: auto, so overflow-x computes to auto), and it is the panel
 * that scrolls sideways.
 */
describe('web app on a phone: long unbroken names inside scrolling panels on a phone', function () {
  const app = useWebApp();

  it('the group members panel does not scroll sideways with a long unbroken member name (390x844, as layout.e2e.ts)', async () => {
    const ann = await app.person('Ann');
    const long = await app.person('Long');
    await long.client.updateProfile({ displayName: 'W'.repeat(45) });
    await app.befriend(ann, long);
    await ann.client.conversations.createGroup('Team', [long.id]);

    const page = await app.open({ context: onPhone(390, 844) });
    await page.logIn(ann.username, PASSWORD);
    await page.conversationButton('Team').tap();
    await page.waitForTitle('Team');
    await page.page.getByRole('button', { name: /^Members/ }).tap();
    const panel = page.page.locator('#details-panel');
    await panel.getByText('W'.repeat(45)).waitFor();
    const measured = await panel.evaluate((p) => ({
      panel: [p.scrollWidth, p.clientWidth],
      doc: document.documentElement.scrollWidth,
      removeRight: Math.round(p.querySelector('button')?.getBoundingClientRect().right ?? 0),
    }));
    expect(measured.panel[0]!, `panel ${JSON.stringify(measured)}`).to.be.at.most(measured.panel[1]!);
    app.expectNoProblems();
  });

  it('the new group dialog does not scroll sideways with a friend of a long unbroken name (320x568)', async () => {
    const ann = await app.person('Ann');
    const long = await app.person('Long');
    await long.client.updateProfile({ displayName: 'W'.repeat(45) });
    await app.befriend(ann, long);

    const page = await app.open({ context: onPhone(320, 568) });
    await page.logIn(ann.username, PASSWORD);
    await page.page.getByRole('button', { name: 'New group' }).tap();
    const dialog = page.page.locator('#new-group-dialog');
    await dialog.getByText('W'.repeat(45)).waitFor();
    const measured = await dialog.evaluate((d) => {
      const f = d.querySelector('fieldset')!;
      return { dialog: [d.scrollWidth, d.clientWidth], fieldset: [f.scrollWidth, f.clientWidth] };
    });
    expect(measured.dialog[0]!, JSON.stringify(measured)).to.be.at.most(measured.dialog[1]!);
    expect(measured.fieldset[0]!, JSON.stringify(measured)).to.be.at.most(measured.fieldset[1]!);
    app.expectNoProblems();
  });
});

/**
 * The conversation header of a group lists every member ("N members: Ann, Bob @bob, …") on a line that never
 * shrinks; on a phone it takes the room of the message log.
 */
describe('web app on a phone: a group header on a phone', function () {
  const app = useWebApp({ env: { RATE_LIMIT_MESSAGES_PER_SEC: '0', RATE_LIMIT_CONVERSATIONS_PER_MIN: '0' } });

  async function group(size: number) {
    const ann = await app.person('Ann');
    const others: Person[] = [];
    for (let i = 0; i < size - 1; i++) {
      const p = await app.person(`Friend${i + 1}`);
      const request = await ann.client.friends.sendRequest(p.username);
      await p.client.friends.accept(request.id);
      others.push(p);
    }
    const g = await ann.client.conversations.createGroup(
      'Team',
      others.map((p) => p.id),
    );
    let last = 0;
    for (let i = 1; i <= 20; i++)
      last = (await others[0]!.client.messages.put(g.id, `m-${i}`, `message number ${i}`)).seq;
    await ann.client.markRead(g.id, last);
    return { ann, last };
  }

  async function measure(viewport: { width: number; height: number }, size: number) {
    const { ann, last } = await group(size);
    const page = await app.open({ context: onPhone(viewport.width, viewport.height) });
    await page.logIn(ann.username, PASSWORD);
    await page.conversationButton('Team').tap();
    await page.waitForMessage('message number 20');
    const header = await page.page.locator('.conversation-header').boundingBox();
    const log = await page.scroller.boundingBox();
    const newest = page.log.locator(`li[data-seq="${last}"]`);
    const newestBox = await newest.boundingBox();
    const doc = await page.page.evaluate(() => [document.scrollingElement!.scrollHeight, innerHeight]);
    return { page, header: header!, log: log!, newest, newestBox: newestBox!, doc };
  }

  it('a group of 20 on a 360x740 phone leaves the message log room for the newest message', async () => {
    const { page, header, log, newest, newestBox, doc } = await measure({ width: 360, height: 740 }, 20);
    const detail = `header ${Math.round(header.height)}px tall, message log ${Math.round(log.height)}px, newest message ${Math.round(newestBox.height)}px, page ${doc[0]}px in a ${doc[1]}px window`;
    expect(log.height, detail).to.be.at.least(newestBox.height);
    expect(await page.inView(newest), detail).to.equal(true);
    app.expectNoProblems();
  });

  it('a group of 3 at 400% zoom (1280x1024 window: 320x256 CSS px) leaves the message log room for the newest message', async () => {
    const { page, header, log, newest, newestBox, doc } = await measure({ width: 320, height: 256 }, 3);
    const detail = `header ${Math.round(header.height)}px tall, message log ${Math.round(log.height)}px, newest message ${Math.round(newestBox.height)}px, page ${doc[0]}px in a ${doc[1]}px window`;
    expect(log.height, detail).to.be.at.least(newestBox.height);
    expect(await page.inView(newest), detail).to.equal(true);
    app.expectNoProblems();
  });
});

/**
 * A reader at the bottom of a conversation on a phone stays at the bottom when the window gets shorter: the
 * virtual keyboard opening (browsers that resize the layout viewport for it: Firefox for Android, Chrome with
 * interactive-widget=resizes-content, an installed app) or the phone turned to landscape. The app keeps the
 * reader at the bottom when its own reply preview takes room from the log ("a reader at the bottom stays there",
 * conversationView.ts renderReply); a shorter window takes the same room.
 */
describe('web app on a phone: the window gets shorter under a reader at the bottom', function () {
  const app = useWebApp({ env: { RATE_LIMIT_MESSAGES_PER_SEC: '0' } });

  async function setUp(viewport: { width: number; height: number }) {
    const [ann, bob, direct] = await app.friendsInConversation('Ann', 'Bob');
    let last = 0;
    for (let i = 1; i <= 30; i++)
      last = (await bob.client.messages.put(direct.id, `b-${i}`, `message number ${i}`)).seq;
    await ann.client.markRead(direct.id, last);
    const page = await app.open({ context: onPhone(viewport.width, viewport.height) });
    await page.logIn(ann.username, PASSWORD);
    await page.conversationButton('Bob').tap();
    await page.waitForMessage('message number 30');
    const newest = page.log.locator(`li[data-seq="${last}"]`);
    return { page, newest, bob, direct };
  }

  it('the virtual keyboard opening (window 375x667 to 375x300, message box focused) keeps the newest message in view', async () => {
    const { page, newest } = await setUp({ width: 375, height: 667 });
    await page.composer.tap();
    expect(await page.inView(newest), 'in view before').to.equal(true);
    await page.page.setViewportSize({ width: 375, height: 300 });
    await page.page.waitForTimeout(300);
    const composer = await page.composer.boundingBox();
    expect(composer!.y + composer!.height, 'the message box in the window').to.be.at.most(300);
    const measured = await page.scroller.evaluate((s) => ({
      below: s.scrollHeight - s.scrollTop - s.clientHeight,
      clientHeight: s.clientHeight,
    }));
    expect(
      await page.inView(newest),
      `newest message in view (log ${measured.clientHeight}px tall, ${measured.below}px of it below the view)`,
    ).to.equal(true);
    expect(
      await page.page.locator('#jump-latest').isVisible(),
      '"Jump to latest" shown though nothing new came',
    ).to.equal(false);
    app.expectNoProblems();
  });

  it('with the keyboard open (375x300), a message that then comes is shown, as it would be at full height', async () => {
    const { page, bob, direct } = await setUp({ width: 375, height: 667 });
    await page.composer.tap();
    await page.page.setViewportSize({ width: 375, height: 300 });
    await page.page.waitForTimeout(300);
    await bob.client.messages.put(direct.id, 'b-new', 'a reply while you type');
    await page.waitForMessage('a reply while you type');
    await page.page.waitForTimeout(300);
    const item = page.log.locator('li[data-seq]', { hasText: 'a reply while you type' });
    expect(await page.inView(item), 'the new message in view').to.equal(true);
    app.expectNoProblems();
  });

  it('turning the phone to landscape (320x568 to 568x320) keeps the newest message in view', async () => {
    const { page, newest } = await setUp({ width: 320, height: 568 });
    expect(await page.inView(newest), 'in view before').to.equal(true);
    await page.page.setViewportSize({ width: 568, height: 320 });
    await page.page.waitForTimeout(300);
    const below = await page.scroller.evaluate((s) => s.scrollHeight - s.scrollTop - s.clientHeight);
    expect(
      await page.inView(newest),
      `newest message in view (${below}px of the log below the view)`,
    ).to.equal(true);
    app.expectNoProblems();
  });
});

describe('web app on a phone: who reacted', function () {
  const app = useWebApp();

  // Under a chip, who reacted is a tooltip of hover and keyboard focus; a phone has neither, and a tap on the chip
  // adds or takes back my own reaction. The message's menu says it.
  it('the message’s menu says who reacted with each emoji, the names of the first six and a count of the others', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    const cy = await app.person('Cy');
    const many: Person[] = [];
    for (let i = 0; i < 6; i++) many.push(await app.person(`Fan${i}`));
    await app.befriend(ann, bob, cy, ...many);
    const group = await ann.client.conversations.createGroup('Team', [
      bob.id,
      cy.id,
      ...many.map((p) => p.id),
    ]);
    const hello = await bob.client.messages.put(group.id, 'b-1', 'who likes this?');
    await bob.client.messages.react(group.id, hello.seq, '👍');
    await cy.client.messages.react(group.id, hello.seq, '👍');
    await ann.client.messages.react(group.id, hello.seq, '🎉');
    for (const fan of many) await fan.client.messages.react(group.id, hello.seq, '🎉');

    const page = await app.open({ context: onPhone(375, 667) });
    await page.logIn(ann.username, PASSWORD);
    await page.conversationButton('Team').tap();
    await page.waitForMessage('who likes this?');
    const item = page.log.locator(`li[data-seq="${hello.seq}"]`);
    await item.getByRole('button', { name: /^Actions for/ }).tap();
    const list = page.page.getByRole('list', { name: 'Who reacted' });
    await list.waitFor();
    const lines = await list.getByRole('listitem').allTextContents();
    expect(lines[0]).to.equal('👍 Bob and Cy');
    expect(lines[1]).to.match(/^🎉 (Fan\d, ){5}you,? and 1 other$/);
    expect(await list.isVisible()).to.equal(true);
    const stored = (await bob.client.messages.before(group.id)).messages.find((m) => m.seq === hello.seq);
    expect(stored?.reactions.find((r) => r.emoji === '👍')?.userIds, 'nothing changed').to.have.length(2);
    app.expectNoProblems();
  });
});

// REV2: review of a66c3d1 (web app on phones).

describe('web app on a phone (review): the actions menu with many reactions', function () {
  const app = useWebApp({ env: { RATE_LIMIT_MESSAGES_PER_SEC: '0' } });

  it('menu: Reply, Edit and Delete stay inside the window for a message with 20 reactions (375x667)', async () => {
    const ann = await app.person('Ann');
    const people: Person[] = [];
    for (const name of ['Alexandra Johnson', 'Bartholomew Smith', 'Cyrielle Dupont']) {
      const p = await app.person(name.split(' ')[0]!);
      await p.client.updateProfile({ displayName: name });
      people.push({ ...p, displayName: name });
    }
    await app.befriend(ann, ...people);
    const group = await ann.client.conversations.createGroup(
      'Team',
      people.map((p) => p.id),
    );
    const mine = await ann.client.messages.put(group.id, 'a-1', 'my message');
    const emoji = [...'😀😁😂🤣😃😄😅😆😉😊😋😎😍😘🥰😗😙😚🙂🤗'];
    expect(emoji).to.have.length(20);
    for (const e of emoji) for (const p of people) await p.client.messages.react(group.id, mine.seq, e);

    const page = await app.open({ context: onPhone(375, 667) });
    await page.logIn(ann.username, PASSWORD);
    await page.conversationButton('Team').tap();
    await page.waitForMessage('my message');
    const item = page.log.locator(`li[data-seq="${mine.seq}"]`);
    await item.locator('.chip').nth(19).waitFor();
    await item.getByRole('button', { name: /^Actions for/ }).tap();
    await page.page.getByRole('list', { name: 'Who reacted' }).waitFor();
    const measured = await page.page.evaluate(() => {
      const menu = document.querySelector<HTMLElement>('.tools .menu')!;
      const r = menu.getBoundingClientRect();
      const buttons = Array.from(menu.querySelectorAll<HTMLButtonElement>(':scope > button')).map((b) => ({
        text: b.textContent,
        top: Math.round(b.getBoundingClientRect().top),
        bottom: Math.round(b.getBoundingClientRect().bottom),
      }));
      return {
        menu: {
          top: Math.round(r.top),
          height: Math.round(r.height),
          overflowY: getComputedStyle(menu).overflowY,
        },
        buttons,
        window: innerHeight,
      };
    });
    const detail = JSON.stringify(measured);
    for (const b of measured.buttons)
      expect(b.bottom, `${b.text} out of the window: ${detail}`).to.be.at.most(measured.window);
    app.expectNoProblems();
  });

  it('menu: who reacted follows a reaction that comes while the menu is open', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    const cy = await app.person('Cy');
    await app.befriend(ann, bob, cy);
    const group = await ann.client.conversations.createGroup('Team', [bob.id, cy.id]);
    const hello = await bob.client.messages.put(group.id, 'b-1', 'who likes this?');
    await bob.client.messages.react(group.id, hello.seq, '👍');

    const page = await app.open({ context: onPhone(375, 667) });
    await page.logIn(ann.username, PASSWORD);
    await page.conversationButton('Team').tap();
    await page.waitForMessage('who likes this?');
    const item = page.log.locator(`li[data-seq="${hello.seq}"]`);
    await item.locator('.chip').first().waitFor();
    await item.getByRole('button', { name: /^Actions for/ }).tap();
    const list = page.page.getByRole('list', { name: 'Who reacted' });
    await list.waitFor();
    expect(await list.getByRole('listitem').allTextContents()).to.deep.equal(['👍 Bob']);
    await cy.client.messages.react(group.id, hello.seq, '👍');
    // The chip under the message shows the change...
    await item.locator('.chip .count', { hasText: '2' }).waitFor();
    await page.page.waitForTimeout(500);
    expect(await list.isVisible(), 'the menu is still open').to.equal(true);
    const chipLabel = await item.locator('.chip').first().getAttribute('aria-label');
    const lines = await list.getByRole('listitem').allTextContents();
    expect(
      lines,
      `the menu says ${JSON.stringify(lines)} while the chip says ${chipLabel}`,
    ).to.not.deep.equal(['👍 Bob']);
    app.expectNoProblems();
  });
});

describe('web app on a phone (review): the log getting shorter', function () {
  const app = useWebApp({ env: { RATE_LIMIT_MESSAGES_PER_SEC: '0' } });

  async function setUp(viewport: { width: number; height: number }, unreadFrom?: number) {
    const [ann, bob, direct] = await app.friendsInConversation('Ann', 'Bob');
    let last = 0;
    const seqs: number[] = [];
    for (let i = 1; i <= 40; i++) {
      const m =
        i % 2 === 0 && (unreadFrom === undefined || i < unreadFrom)
          ? await ann.client.messages.put(direct.id, `a-${i}`, `message number ${i}`)
          : await bob.client.messages.put(direct.id, `b-${i}`, `message number ${i}`);
      last = m.seq;
      seqs.push(m.seq);
    }
    await ann.client.markRead(direct.id, unreadFrom === undefined ? last : seqs[unreadFrom - 2]!);
    const page = await app.open({ context: onPhone(viewport.width, viewport.height) });
    await page.logIn(ann.username, PASSWORD);
    await page.conversationButton('Bob').tap();
    await page.waitForMessage('message number 40');
    await page.page.waitForTimeout(300);
    return { page, seqs, bob, ann, direct };
  }

  it('log: a reader scrolled up stays where they are when the window gets shorter', async () => {
    const { page } = await setUp({ width: 375, height: 667 });
    await page.scroller.evaluate((s) => (s.scrollTop = s.scrollHeight - s.clientHeight - 300));
    await page.page.waitForTimeout(200);
    const before = await page.scroller.evaluate((s) => s.scrollTop);
    await page.page.setViewportSize({ width: 375, height: 300 });
    await page.page.waitForTimeout(300);
    const after = await page.scroller.evaluate((s) => s.scrollTop);
    expect(after, 'moved').to.equal(before);
  });

  it('log: opened at its "New messages" line, the line stays in view when the window gets shorter', async () => {
    const { page } = await setUp({ width: 375, height: 667 }, 25);
    const divider = page.page.locator('#new-messages');
    await divider.waitFor();
    expect(await page.inView(divider), 'in view before').to.equal(true);
    await page.page.setViewportSize({ width: 375, height: 300 });
    await page.page.waitForTimeout(300);
    expect(await page.inView(divider), 'the New messages line in view after').to.equal(true);
  });

  it('log: the message being edited stays in view when the window gets shorter (keyboard opening)', async () => {
    const { page } = await setUp({ width: 375, height: 667 });
    // My message near the top of the view, the reader at the bottom.
    const seq = await page.scroller.evaluate((s) => {
      const top = s.getBoundingClientRect().top;
      const mine = Array.from(s.querySelectorAll<HTMLElement>('li.mine[data-seq]')).find(
        (li) => li.getBoundingClientRect().top > top + 10,
      )!;
      return Number(mine.dataset.seq);
    });
    const item = page.log.locator(`li[data-seq="${seq}"]`);
    expect(await page.inView(item), 'in view').to.equal(true);
    await item.getByRole('button', { name: /^Actions for/ }).tap();
    await page.page.getByRole('button', { name: 'Edit' }).tap();
    const editor = item.locator('textarea.edit-input');
    await editor.waitFor();
    await page.page.waitForTimeout(300);
    expect(await page.inView(editor), 'the editor in view before').to.equal(true);
    const focused = await editor.evaluate((e) => e === document.activeElement);
    expect(focused, 'focused').to.equal(true);
    const scrollBefore = await page.scroller.evaluate((s) => s.scrollTop);
    await page.page.setViewportSize({ width: 375, height: 300 });
    await page.page.waitForTimeout(400);
    const detail =
      `seq ${seq}, scrollTop before ${scrollBefore}, ` +
      (await page.scroller.evaluate(
        (s) =>
          `scrollTop ${s.scrollTop}, below ${s.scrollHeight - s.scrollTop - s.clientHeight}, height ${s.clientHeight}`,
      ));
    const nowInView = await page.inView(editor);
    // Control: where the reader was (the scroll position before the window got shorter, which nothing but the
    // app's new ResizeObserver changes), the editor is in view.
    await page.scroller.evaluate((s, top) => (s.scrollTop = top), scrollBefore);
    await page.page.waitForTimeout(100);
    expect(await page.inView(editor), `control: in view at the old scroll position (${detail})`).to.equal(
      true,
    );
    expect(nowInView, `the editor typed in is out of view (${detail})`).to.equal(true);
  });
});

describe('web app on a phone (review): words broken inside', function () {
  const app = useWebApp();

  it('words: no single word (a badge, a time, a status) breaks in the middle in the phone members panel and list (320x568)', async () => {
    const ann = await app.person('Ann');
    const long = await app.person('Long');
    await long.client.updateProfile({ displayName: 'W'.repeat(45) });
    const other = await app.person('Other');
    await app.befriend(ann, long, other);
    await ann.client.conversations.createGroup('T'.repeat(60), [long.id, other.id]);
    const page = await app.open({ context: onPhone(320, 568) });
    await page.logIn(ann.username, PASSWORD);
    await page.conversationButton('T'.repeat(60)).tap();
    await page.page.getByRole('button', { name: /^Members/ }).tap();
    await page.page.locator('#details-panel').getByText('W'.repeat(45)).waitFor();
    await page.page.waitForTimeout(300);
    const broken = await wordsBrokenInside(page.page);
    expect(broken).to.deep.equal([]);
  });

  it('words: nothing of one word breaks in the middle in the list view (320x568) and on a desktop (1280x720)', async () => {
    const ann = await app.person('Ann');
    const long = await app.person('Long');
    await long.client.updateProfile({ displayName: 'W'.repeat(45) });
    const asker = await app.person('Asker');
    await asker.client.updateProfile({ displayName: 'W'.repeat(40) });
    await app.befriend(ann, long);
    await asker.client.friends.sendRequest(ann.username);
    const g = await ann.client.conversations.createGroup('T'.repeat(60), [long.id]);
    await long.client.messages.put(g.id, 'l-1', 'hello there');

    const phone = await app.open({ context: onPhone(320, 568) });
    await phone.logIn(ann.username, PASSWORD);
    await phone.page.locator('#incoming-requests li').first().waitFor();
    await phone.conversationButton('T'.repeat(60)).waitFor();
    await phone.page.waitForTimeout(300);
    const phoneBroken = await wordsBrokenInside(phone.page);
    const desk = await app.open({ context: { viewport: { width: 1280, height: 720 } } });
    await desk.logIn(ann.username, PASSWORD);
    await desk.conversationButton('T'.repeat(60)).click();
    await desk.waitForMessage('hello there');
    await desk.page.getByRole('button', { name: /^Members/ }).click();
    await desk.page.waitForTimeout(300);
    const deskBroken = await wordsBrokenInside(desk.page);
    expect({ phone: phoneBroken, desk: deskBroken }).to.deep.equal({ phone: [], desk: [] });
  });
});

describe('web app on a phone (review): the reader place carried from another conversation', function () {
  const app = useWebApp({ env: { RATE_LIMIT_MESSAGES_PER_SEC: '0' } });

  it('carry: a short conversation opened after reading another scrolled up keeps its newest message in view when the keyboard opens', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    const cy = await app.person('Cy');
    await app.befriend(ann, bob, cy);
    const a = await bob.client.conversations.createDirect(ann.id);
    let last = 0;
    for (let i = 1; i <= 30; i++) last = (await bob.client.messages.put(a.id, `b-${i}`, `long one ${i}`)).seq;
    await ann.client.markRead(a.id, last);
    const b = await cy.client.conversations.createDirect(ann.id);
    for (let i = 1; i <= 5; i++) last = (await cy.client.messages.put(b.id, `c-${i}`, `short one ${i}`)).seq;
    await ann.client.markRead(b.id, last);
    const newestSeq = last;

    const page = await app.open({ context: onPhone(375, 667) });
    await page.logIn(ann.username, PASSWORD);
    await page.conversationButton('Bob').tap();
    await page.waitForMessage('long one 30');
    // The reader scrolls up a little in Bob's conversation.
    await page.scroller.evaluate((s) => (s.scrollTop = s.scrollHeight - s.clientHeight - 300));
    await page.page.waitForTimeout(300);
    await page.page.locator('#back-button').tap();
    await page.conversationButton('Cy').tap();
    await page.waitForMessage('short one 5');
    await page.page.waitForTimeout(300);
    const newest = page.log.locator(`li[data-seq="${newestSeq}"]`);
    expect(await page.inView(newest), 'in view before').to.equal(true);
    await page.composer.tap();
    await page.page.setViewportSize({ width: 375, height: 300 });
    await page.page.waitForTimeout(400);
    const below = await page.scroller.evaluate(
      (s) =>
        `${s.scrollHeight - s.scrollTop - s.clientHeight}px below the view, log ${s.clientHeight}px, scrollTop ${s.scrollTop}`,
    );
    expect(await page.inView(newest), `newest in view (${below})`).to.equal(true);
  });
});

describe('web app on a phone (review): words broken inside the editor and the menu', function () {
  const app = useWebApp();

  it('words: the editor hint and the menu keep their words at 320x568', async () => {
    const [ann, bob, d] = await app.friendsInConversation('Ann', 'Bob');
    await ann.client.messages.put(d.id, 'a-1', 'hi');
    const r = await bob.client.messages.put(d.id, 'b-1', 'yo');
    await bob.client.messages.react(d.id, r.seq, '👍');

    const page = await app.open({ context: onPhone(320, 568) });
    await page.logIn(ann.username, PASSWORD);
    await page.conversationButton('Bob').tap();
    await page.waitForMessage('yo');
    const found: Record<string, string[]> = {};
    found.log = await wordsBrokenInside(page.page);
    const theirs = page.log.locator(`li[data-seq="${r.seq}"]`);
    await theirs.getByRole('button', { name: /^Actions for/ }).tap();
    await page.page.getByRole('list', { name: 'Who reacted' }).waitFor();
    found.menu = await wordsBrokenInside(page.page);
    await page.page.keyboard.press('Escape');
    const mine = page.log.locator('li.mine[data-seq]').first();
    await mine.getByRole('button', { name: /^Actions for/ }).tap();
    await page.page.getByRole('button', { name: 'Edit' }).tap();
    await mine.locator('textarea.edit-input').waitFor();
    await page.page.waitForTimeout(200);
    found.editor = await wordsBrokenInside(page.page);
    // Control: with the word wrapping the page had before a66c3d1 (normal outside headings), the hint keeps its words.
    await page.page.addStyleTag({ content: 'body { overflow-wrap: normal }' }).catch(() => undefined);
    await page.page.evaluate(() => (document.body.style.overflowWrap = 'normal'));
    await page.page.waitForTimeout(100);
    const control = await wordsBrokenInside(page.page);
    expect(control, 'control: nothing broken with overflow-wrap normal').to.deep.equal([]);
    expect(found).to.deep.equal({ log: [], menu: [], editor: [] });
  });
});

describe('web app on a phone: Enter starts a new line', function () {
  const app = useWebApp();

  // An on-screen keyboard has no Shift+Enter: if Enter sent, no message could have a second line. On a touch-only
  // device Enter starts a new line, in the message box and in the editor, and the Send (Save) button sends.
  it('in the message box and the editor, Enter starts a new line and Send (Save) sends; the box says so', async () => {
    const [ann, bob, direct] = await app.friendsInConversation('Ann', 'Bob');
    const page = await app.open({ context: onPhone(375, 667) });
    await page.logIn(ann.username, PASSWORD);
    await page.conversationButton('Bob').tap();
    await page.waitForTitle('Bob');

    const box = page.composer;
    expect(await box.getAttribute('enterkeyhint')).to.equal('enter');
    expect(await page.page.locator('#composer-hint').textContent()).to.equal(
      'Enter starts a new line; the Send button or Ctrl+Enter sends.',
    );
    await box.fill('first line');
    await box.press('Enter');
    await box.pressSequentially('second line');
    expect(await box.inputValue()).to.equal('first line\nsecond line');
    await page.page.getByRole('button', { name: 'Send', exact: true }).tap();
    await page.waitForMessage('first line');
    await waitFor(async () => (await box.inputValue()) === '', { what: 'the box emptied' });
    let stored = await bob.client.messages.before(direct.id);
    expect(stored.messages.map((m) => m.body)).to.deep.equal(['first line\nsecond line']);

    const mine = page.log.locator('li[data-seq]', { hasText: 'second line' });
    await mine.getByRole('button', { name: /^Actions for/ }).tap();
    await page.page.getByRole('button', { name: 'Edit', exact: true }).tap();
    const editor = mine.getByRole('textbox', { name: 'Edit your message' });
    expect(await mine.locator('.editor small').textContent()).to.equal(
      'Enter starts a new line · Ctrl+Enter saves',
    );
    await editor.press('End');
    await editor.press('Enter');
    await editor.pressSequentially('third line');
    expect(await editor.inputValue()).to.equal('first line\nsecond line\nthird line');
    await mine.getByRole('button', { name: 'Save', exact: true }).tap();
    await editor.waitFor({ state: 'detached' });
    await waitFor(
      async () => {
        stored = await bob.client.messages.before(direct.id);
        return stored.messages[0]?.body === 'first line\nsecond line\nthird line';
      },
      { what: 'the edit saved' },
    );
    app.expectNoProblems();
  });

  // A tablet with a hardware keyboard and no trackpad is touch-only too: Enter starts a new line there, and
  // Ctrl+Enter (⌘+Enter on Apple keyboards) sends, and saves an edit.
  it('on a touch-only device, Ctrl+Enter and ⌘+Enter send, and save an edit', async () => {
    const [ann, bob, direct] = await app.friendsInConversation('Ann', 'Bob');
    const page = await app.open({ context: onPhone(768, 1024) });
    await page.logIn(ann.username, PASSWORD);
    await page.conversationButton('Bob').tap();
    await page.waitForTitle('Bob');
    const box = page.composer;
    await box.fill('by Ctrl');
    await box.press('Enter');
    await box.pressSequentially('and Enter');
    await box.press('Control+Enter');
    await page.waitForMessage('and Enter');
    await box.fill('by Meta');
    await box.press('Meta+Enter');
    await page.waitForMessage('by Meta');
    let stored = await bob.client.messages.before(direct.id);
    expect(stored.messages.map((m) => m.body)).to.deep.equal(['by Ctrl\nand Enter', 'by Meta']);

    const mine = page.log.locator('li[data-seq]', { hasText: 'by Meta' });
    await mine.getByRole('button', { name: /^Actions for/ }).tap();
    await page.page.getByRole('button', { name: 'Edit', exact: true }).tap();
    const editor = mine.getByRole('textbox', { name: 'Edit your message' });
    await editor.press('End');
    await editor.pressSequentially(', edited');
    await editor.press('Control+Enter');
    await editor.waitFor({ state: 'detached' });
    await waitFor(
      async () => {
        stored = await bob.client.messages.before(direct.id);
        return stored.messages.at(-1)?.body === 'by Meta, edited';
      },
      { what: 'the edit saved' },
    );
    app.expectNoProblems();
  });

  // What Enter does is asked at each key press; what the page says it does must follow too, in an editor left open.
  it('the box and an open editor say what Enter does after the device changes: a tablet undocked, then docked', async () => {
    const [ann, bob, direct] = await app.friendsInConversation('Ann', 'Bob');
    await ann.client.messages.put(direct.id, 'e-1', 'to edit');
    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);
    await page.openConversation('Bob');
    const mine = page.log.locator('li[data-seq]', { hasText: 'to edit' });
    await mine.getByRole('button', { name: /^Actions for/ }).click();
    await page.page.getByRole('button', { name: 'Edit', exact: true }).click();
    const editor = mine.getByRole('textbox', { name: 'Edit your message' });
    const hint = mine.locator('.editor small');
    expect(await hint.textContent()).to.equal('Enter saves · Shift+Enter new line · Escape cancels');
    const said = () =>
      Promise.all([
        hint.textContent(),
        page.page.locator('#composer-hint').textContent(),
        // (page.composer's label, "Message", matches the editor's too while it is open)
        page.page.locator('#composer-input').getAttribute('enterkeyhint'),
      ]);
    // The browser's own touch emulation, which answers the media query and tells the page; then the three hints.
    const cdp = await page.page.context().newCDPSession(page.page);
    const becomes = async (touchOnly: boolean, hints: string[], what: string) => {
      await cdp.send('Emulation.setTouchEmulationEnabled', { enabled: touchOnly, maxTouchPoints: 1 });
      await waitFor(async () => JSON.stringify(await said()) === JSON.stringify(hints), { what });
    };

    // Undocked: touch only.
    await becomes(
      true,
      [
        'Enter starts a new line · Ctrl+Enter saves',
        'Enter starts a new line; the Send button or Ctrl+Enter sends.',
        'enter',
      ],
      'the touch-only hints',
    );
    await editor.press('End');
    await editor.press('Enter');
    await editor.pressSequentially('more');
    expect(await editor.inputValue()).to.equal('to edit\nmore');

    // Docked again.
    await becomes(
      false,
      [
        'Enter saves · Shift+Enter new line · Escape cancels',
        'Enter sends, Shift+Enter starts a new line.',
        'send',
      ],
      'the hints of a computer',
    );
    await editor.press('Enter');
    await editor.waitFor({ state: 'detached' });
    await waitFor(
      async () => (await bob.client.messages.before(direct.id)).messages[0]?.body === 'to edit\nmore',
      { what: 'the edit saved' },
    );
    app.expectNoProblems();
  });

  it('on a computer, Enter sends and Shift+Enter starts a new line, as the box says', async () => {
    const [ann, bob, direct] = await app.friendsInConversation('Ann', 'Bob');
    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);
    await page.openConversation('Bob');
    expect(await page.composer.getAttribute('enterkeyhint')).to.equal('send');
    expect(await page.page.locator('#composer-hint').textContent()).to.equal(
      'Enter sends, Shift+Enter starts a new line.',
    );
    await page.composer.fill('one');
    await page.composer.press('Shift+Enter');
    await page.composer.pressSequentially('two');
    await page.composer.press('Enter');
    await page.waitForMessage('two');
    const stored = await bob.client.messages.before(direct.id);
    expect(stored.messages.map((m) => m.body)).to.deep.equal(['one\ntwo']);
    app.expectNoProblems();
  });
});
