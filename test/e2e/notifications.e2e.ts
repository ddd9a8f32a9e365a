import { expect } from 'chai';
import { waitFor } from '../helpers/waitFor.js';
import type { ChatPage } from './chatPage.js';
import { PASSWORD, useWebApp } from './fixture.js';

/**
 * A stand-in for the browser's Notification API (headless Chromium shows no notifications): it records
 * permission requests and the notifications shown in `window.notificationLog`. Plain JavaScript text, so that
 * nothing the test's compiler adds to functions reaches the page.
 */
const FAKE_NOTIFICATIONS = `
  const log = { asked: 0, shown: [] };
  class FakeNotification {
    static permission = 'default';
    static requestPermission() {
      log.asked++;
      FakeNotification.permission = 'granted';
      return Promise.resolve('granted');
    }
    constructor(title, options = {}) {
      this.onclick = null;
      log.shown.push({ title, body: options.body ?? '', tag: options.tag ?? '' });
    }
    close() {}
  }
  window.Notification = FakeNotification;
  window.notificationLog = log;
`;

interface NotificationLog {
  asked: number;
  shown: Array<{ title: string; body: string; tag: string }>;
}

async function notificationLog(page: ChatPage): Promise<NotificationLog> {
  return page.page.evaluate(
    () => (window as unknown as { notificationLog: NotificationLog }).notificationLog,
  );
}

describe('web app: notifications', function () {
  const app = useWebApp();

  it('counts unread messages in the tab title and notifies, once asked to, about conversations not in view', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    const cat = await app.person('Cat');
    await app.befriend(ann, bob, cat);
    const withBob = (await bob.client.conversations.createDirect(ann.id)).id;
    const withCat = (await cat.client.conversations.createDirect(ann.id)).id;

    const page = await app.open();
    await page.page.context().addInitScript({ content: FAKE_NOTIFICATIONS });
    await page.page.reload();
    await page.logIn(ann.username, PASSWORD);
    await page.page.locator('#conversations').getByRole('button', { name: 'Bob' }).waitFor();
    expect(await page.page.title()).to.equal('XFChat');

    for (const text of ['one', 'two', 'three']) await bob.client.messages.put(withBob, text, text);
    await waitFor(async () => (await page.page.title()) === '(3) XFChat', { what: 'the title count' });
    // Nothing was asked of the browser without a click.
    expect(await notificationLog(page)).to.deep.equal({ asked: 0, shown: [] });

    await page.page.getByText('Notifications', { exact: true }).click();
    await page.page.getByLabel('Browser notifications for new messages').check();
    await waitFor(async () => (await notificationLog(page)).asked === 1, { what: 'the permission request' });
    await page.page.getByLabel('Play a sound for new messages').check();

    await cat.client.messages.put(withCat, 'c1', 'hello from Cat');
    await waitFor(async () => (await page.page.title()) === '(4) XFChat', { what: 'the title count' });
    await waitFor(async () => (await notificationLog(page)).shown.length === 1, { what: 'a notification' });
    expect((await notificationLog(page)).shown).to.deep.equal([
      { title: 'Cat', body: 'Cat: hello from Cat', tag: withCat },
    ]);

    // Reading a conversation takes its messages off the count; one in view notifies nobody.
    await page.openConversation('Bob');
    await waitFor(async () => (await page.page.title()) === '(1) Bob – XFChat', { what: "Bob's read" });
    await bob.client.messages.put(withBob, 'b4', 'while you look');
    await page.waitForMessage('while you look');
    await cat.client.messages.put(withCat, 'c2', 'and me again');
    await waitFor(async () => (await page.page.title()) === '(2) Bob – XFChat', { what: "Cat's second" });
    await waitFor(async () => (await notificationLog(page)).shown.length === 2, { what: 'a notification' });
    expect((await notificationLog(page)).shown.map((n) => n.body)).to.deep.equal([
      'Cat: hello from Cat',
      'Cat: and me again',
    ]);

    // The choices are remembered.
    await page.page.reload();
    await page.page.locator('#chat-view').waitFor();
    expect(await page.page.getByLabel('Play a sound for new messages').isChecked()).to.equal(true);
    await waitFor(async () => (await page.page.title()) === '(2) Bob – XFChat', {
      what: 'the count after a reload',
    });
    app.expectNoProblems();
  });

  it('cuts a long notification by characters: an emoji is never cut in half', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    const id = (await bob.client.conversations.createDirect(ann.id)).id;
    const page = await app.open();
    await page.page.context().addInitScript({ content: FAKE_NOTIFICATIONS });
    await page.page.reload();
    await page.logIn(ann.username, PASSWORD);
    await page.page.getByText('Notifications', { exact: true }).click();
    await page.page.getByLabel('Browser notifications for new messages').check();

    // 250 emoji: 250 characters (code points), 500 UTF-16 units.
    await bob.client.messages.put(id, 'e', '😀'.repeat(250));
    await waitFor(async () => (await notificationLog(page)).shown.length === 1, { what: 'a notification' });
    const [notification] = (await notificationLog(page)).shown;
    // Every character shown whole (no lone surrogate: it shows as "�"), 200 of them.
    expect(/\p{Cs}/u.test(notification!.body), 'a lone surrogate in the notification body').to.equal(false);
    expect([...notification!.body]).to.have.length(200);
    app.expectNoProblems();
  });

  // Ann's choices were the browser's: after she logged out, Bob, signing in on the same browser, had the boxes ticked
  // and his private messages shown as system notifications without opting in (WEBSEC hunt).
  it('keeps each person’s choices: the next to sign in on the browser is not notified unless they opt in', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    const cat = await app.person('Cat');
    await app.befriend(ann, bob, cat);
    const bobWithCat = (await cat.client.conversations.createDirect(bob.id)).id;

    const page = await app.open();
    // The site's permission was granted once, as a browser keeps it across reloads.
    await page.page.context().addInitScript({
      content: FAKE_NOTIFICATIONS.replace("permission = 'default'", "permission = 'granted'"),
    });
    await page.page.reload();
    const notifyBox = page.page.getByLabel('Browser notifications for new messages');
    const soundBox = page.page.getByLabel('Play a sound for new messages');
    await page.logIn(ann.username, PASSWORD);
    await page.page.getByText('Notifications', { exact: true }).click();
    await notifyBox.check();
    await soundBox.check();
    await page.page.getByRole('button', { name: 'Log out' }).click();
    await page.page.locator('#login-form').waitFor();

    await page.logIn(bob.username, PASSWORD);
    await page.page.locator('#conversations').getByRole('button', { name: /^Cat/ }).waitFor();
    expect([await notifyBox.isChecked(), await soundBox.isChecked()], 'Bob’s boxes').to.deep.equal([
      false,
      false,
    ]);
    await cat.client.messages.put(bobWithCat, 'private-1', 'Bob, the test results are positive');
    await waitFor(async () => (await page.page.title()).startsWith('(1)'), { what: 'the unread count' });
    expect((await notificationLog(page)).shown, 'notifications Bob never asked for').to.deep.equal([]);
    await page.page.getByRole('button', { name: 'Log out' }).click();
    await page.page.locator('#login-form').waitFor();

    // Ann's own choices are still hers.
    await page.logIn(ann.username, PASSWORD);
    await page.meName.getByText('Ann').waitFor();
    expect([await notifyBox.isChecked(), await soundBox.isChecked()], 'Ann’s boxes').to.deep.equal([
      true,
      true,
    ]);
    app.expectNoProblems();
  });
});
