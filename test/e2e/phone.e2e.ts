import { expect } from 'chai';
import { PASSWORD, useWebApp, type Person } from './fixture.js';

// Phones: narrow windows, touch, a keyboard that takes half the screen, a phone turned (MOBILE hunt). The document
// not scrolling sideways is layout.e2e.ts's; here, the panels that scroll by themselves, and room for the messages.

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

      const page = await app.open({ context: { viewport, hasTouch: true, isMobile: true } });
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
    const page = await app.open({
      context: { viewport: { width: 320, height: 568 }, hasTouch: true, isMobile: true },
    });
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
    const page = await app.open({
      context: { viewport: { width: 320, height: 568 }, hasTouch: true, isMobile: true },
    });
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

    const page = await app.open({
      context: { viewport: { width: 390, height: 844 }, hasTouch: true, isMobile: true },
    });
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

    const page = await app.open({
      context: { viewport: { width: 320, height: 568 }, hasTouch: true, isMobile: true },
    });
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
    const page = await app.open({ context: { viewport, hasTouch: true, isMobile: true } });
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
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    const direct = await bob.client.conversations.createDirect(ann.id);
    let last = 0;
    for (let i = 1; i <= 30; i++)
      last = (await bob.client.messages.put(direct.id, `b-${i}`, `message number ${i}`)).seq;
    await ann.client.markRead(direct.id, last);
    const page = await app.open({ context: { viewport, hasTouch: true, isMobile: true } });
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

    const page = await app.open({
      context: { viewport: { width: 375, height: 667 }, hasTouch: true, isMobile: true },
    });
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
