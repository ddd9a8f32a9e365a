import { expect } from 'chai';
import type { Page } from 'playwright-core';
import { PASSWORD, useWebApp } from './fixture.js';

/** How wide the document is: wider than the window means the page scrolls sideways. */
function documentWidth(page: Page): Promise<number> {
  return page.evaluate(() => document.documentElement.scrollWidth);
}

describe('web app: layout and page basics', function () {
  // Long histories are written fast: no per-second message limit here.
  const app = useWebApp({ env: { RATE_LIMIT_MESSAGES_PER_SEC: '0' } });

  it('fits a phone screen with a long unbroken display name and group title', async () => {
    const ann = await app.person('Ann');
    const long = await app.person('Long');
    const longName = 'W'.repeat(45);
    await long.client.updateProfile({ displayName: longName });
    await app.befriend(ann, long);
    const title = 'T'.repeat(100);
    const group = await ann.client.conversations.createGroup(title, [long.id]);
    const direct = await long.client.conversations.createDirect(ann.id);
    await long.client.connect();
    await long.client.send(group.id, `${'x'.repeat(120)} in the group`);
    await long.client.send(direct.id, 'hello from a long name');

    const page = await app.open({ context: { viewport: { width: 390, height: 844 }, hasTouch: true } });
    await page.logIn(ann.username, PASSWORD);
    await page.conversationButton(title).waitFor();
    expect(await documentWidth(page.page), 'the list').to.be.at.most(390);
    await page.conversationButton(title).click();
    await page.waitForMessage('in the group');
    expect(await documentWidth(page.page), 'the group').to.be.at.most(390);
    await page.page.getByRole('button', { name: /^Members/ }).click();
    expect(await documentWidth(page.page), 'the members panel').to.be.at.most(390);
    await page.page.getByRole('button', { name: 'Back to conversations' }).click();
    await page.conversationButton(longName).click();
    await page.waitForMessage('hello from a long name');
    expect(await documentWidth(page.page), 'the direct conversation').to.be.at.most(390);
    app.expectNoProblems();
  });

  it('a long unbroken name in the typing line and the reply preview stays on a phone screen', async () => {
    const ann = await app.person('Ann');
    const long = await app.person('Long');
    // The longest display name the server takes, with nowhere to break.
    const longName = 'W'.repeat(64);
    await long.client.updateProfile({ displayName: longName });
    await app.befriend(ann, long);
    const direct = await long.client.conversations.createDirect(ann.id);
    await long.client.connect();
    const hello = await long.client.send(direct.id, 'hello from a long name');

    const page = await app.open({ context: { viewport: { width: 390, height: 844 }, hasTouch: true } });
    await page.logIn(ann.username, PASSWORD);
    await page.conversationButton(longName).click();
    await page.waitForMessage('hello from a long name');
    expect(await documentWidth(page.page), 'the direct conversation').to.be.at.most(390);

    // "WWW… is typing…" wraps inside its line.
    const typing = page.page.locator('#typing-indicator');
    await long.client.typing(direct.id);
    await typing.getByText('is typing').waitFor();
    expect(await documentWidth(page.page), 'the typing line').to.be.at.most(390);
    expect(await typing.evaluate((e) => e.scrollWidth - e.clientWidth), 'past the typing line').to.be.at.most(
      0,
    );

    // "Replying to WWW…" above the message box too.
    const item = page.log.locator(`li[data-seq="${hello.seq}"]`);
    await item.getByRole('button', { name: /^Actions for/ }).click();
    await page.page.getByRole('button', { name: 'Reply' }).click();
    const label = page.page.locator('#reply-label');
    await label.getByText(`Replying to ${longName}`).waitFor();
    expect(await documentWidth(page.page), 'the reply preview').to.be.at.most(390);
    expect(
      await label.evaluate((e) => e.getBoundingClientRect().right - window.innerWidth),
      'past the right edge',
    ).to.be.at.most(0);
    app.expectNoProblems();
  });

  it('who reacted, with a long unbroken name, wraps inside its tip, which stays in the window under my own message', async () => {
    const ann = await app.person('Ann');
    const long = await app.person('Long');
    await long.client.updateProfile({ displayName: 'W'.repeat(64) });
    await app.befriend(ann, long);
    const direct = await long.client.conversations.createDirect(ann.id);
    const mine = await ann.client.messages.put(direct.id, 'a-1', 'hi');
    await long.client.messages.react(direct.id, mine.seq, '👍');

    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);
    await page.openConversation('W'.repeat(64));
    await page.waitForMessage('hi');
    await page.log.getByRole('button', { name: /^👍 1 reaction/ }).hover();
    const tip = page.log.getByRole('tooltip');
    await tip.waitFor();
    const measured = await tip.evaluate((e) => {
      const box = e.getBoundingClientRect();
      const scroller = document.getElementById('message-scroller')!;
      return {
        pastTip: e.scrollWidth - e.clientWidth,
        pastWindow: box.right - window.innerWidth,
        leftOfWindow: -box.left,
        sideways: scroller.scrollWidth - scroller.clientWidth,
      };
    });
    expect(measured.pastTip, 'text past the tip').to.be.at.most(0);
    expect(measured.pastWindow, 'tip past the window').to.be.at.most(0);
    expect(measured.leftOfWindow, 'tip left of the window').to.be.at.most(0);
    expect(measured.sideways, 'the messages scroll sideways').to.be.at.most(0);
    expect(await documentWidth(page.page), 'the page').to.be.at.most(
      await page.page.evaluate(() => innerWidth),
    );
    app.expectNoProblems();
  });

  it('after a keyboard login focus is in the list; no favicon request fails; styles only from its own stylesheet', async () => {
    const [ann] = await app.friendsInConversation('Ann', 'Bob');

    const page = await app.open({ url: 'about:blank' });
    // A fresh profile asks for an icon; one that is not there is a 404 in the console (the browser's own log
    // line, which the fixture counts as noise, so it is looked for here).
    const missing: string[] = [];
    page.page.on('response', (response) => {
      if (response.status() >= 400) missing.push(`${response.status()} ${new URL(response.url()).pathname}`);
    });
    page.page.on('console', (message) => {
      if (message.type() === 'error' && /404|favicon/i.test(message.text())) missing.push(message.text());
    });
    const response = await page.page.goto(app.server.url);
    const csp = (await response?.headerValue('content-security-policy')) ?? '';
    const styleSrc = csp.split(';').find((directive) => directive.trim().startsWith('style-src'));
    expect(styleSrc?.trim()).to.equal("style-src 'self'");

    const form = page.page.locator('#login-form');
    await form.getByLabel('Username').fill(ann.username);
    await form.getByLabel('Password').fill(PASSWORD);
    await form.getByLabel('Password').press('Enter');
    await page.conversationButton('Bob').waitFor();
    await page.page.waitForFunction(() => document.activeElement !== document.body);
    expect(
      await page.page.evaluate(() => document.activeElement?.closest('#conversations') !== null),
      'focus in the conversation list',
    ).to.equal(true);
    // The icon is asked for after the page loads: a reload gives it time to have been asked.
    await page.page.reload();
    await page.conversationButton('Bob').waitFor();
    await page.page.waitForTimeout(500);
    expect(missing).to.deep.equal([]);
    app.expectNoProblems();
  });

  it('a long history loads in order, keeps no copy of each message’s markup, and redraws a message without closing its menu', async () => {
    const [ann, bob, direct] = await app.friendsInConversation('Ann', 'Bob');
    await bob.client.connect();
    const count = 320;
    for (let i = 0; i < count; i += 40)
      await Promise.all(
        Array.from({ length: 40 }, (_, j) => bob.client.send(direct.id, `number ${i + j + 1}`)),
      );
    await ann.client.connect();
    await ann.client.markRead(direct.id, count);

    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);
    await page.openConversation('Bob');
    await page.waitForMessage(`number ${count}`);
    // Scroll back to the very first message, a page at a time.
    for (let i = 0; i < 20 && (await page.shownSeqs())[0] !== 1; i++) {
      await page.scroller.evaluate((s) => (s.scrollTop = 0));
      await page.page.waitForFunction(() => !document.getElementById('messages')?.hasAttribute('aria-busy'));
    }
    const seqs = await page.shownSeqs();
    expect(seqs).to.deep.equal(Array.from({ length: count }, (_, i) => i + 1));
    // Parts are compared node by node when redrawn: no serialized copy of them stays in the page.
    expect(await page.log.locator('[data-key]').count()).to.equal(0);

    // The actions menu of the newest message stays open while a reaction to that message arrives and is drawn.
    await page.scroller.evaluate((s) => (s.scrollTop = s.scrollHeight));
    const newest = page.log.locator(`li[data-seq="${count}"]`);
    await newest.hover();
    await newest.getByRole('button', { name: /^Actions for/ }).click();
    await page.page.getByRole('button', { name: 'React with 🎉' }).waitFor();
    await bob.client.react(direct.id, count, '👍');
    await newest.getByRole('button', { name: /^👍 1 reaction/ }).waitFor();
    expect(await page.page.getByRole('button', { name: 'React with 🎉' }).isVisible()).to.equal(true);
    app.expectNoProblems();
  });
});
