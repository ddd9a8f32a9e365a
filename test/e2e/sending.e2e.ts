import { expect } from 'chai';
import type { Page } from 'playwright-core';
import { storedMessages } from '../client/fixtures.js';
import { waitFor } from '../helpers/waitFor.js';
import { routeSockets } from './browser.js';
import type { ChatPage } from './chatPage.js';
import { PASSWORD, useWebApp } from './fixture.js';

/**
 * How the page's websocket to the node behaves: `online` passes everything; `offline` drops the connection and
 * refuses new ones; `deaf` delivers what the page sends but nothing comes back (acks and events are lost, only
 * pings pass); `dbDown` answers every `message:send` itself with DB_UNAVAILABLE, as a node whose PostgreSQL is
 * gone does, and passes everything else.
 */
type Line = 'online' | 'offline' | 'deaf' | 'dbDown';

/**
 * Puts every websocket of `page`'s context (or, with `thisTab`, of `page` alone) through a switchable line (Socket.IO
 * over engine.io text frames). The page is loaded again: the routing is set up by a script that runs as a document
 * starts.
 */
async function switchableLine(
  page: Page,
  { thisTab = false } = {},
): Promise<{ set: (line: Line) => Promise<void> }> {
  let line: Line = 'online';
  const sockets = await routeSockets(page, {
    thisTab,
    fromPage(text, pass, route) {
      // An event with an ack id: 42<id>["message:send",{...}]
      const send = /^42(\d+)\["message:send"/.exec(text);
      if (line === 'dbDown' && send) {
        const error = { code: 'DB_UNAVAILABLE', message: 'The database is unavailable; try again shortly.' };
        route.send(`43${send[1]}${JSON.stringify([{ ok: false, error }])}`);
        return;
      }
      pass();
    },
    fromServer(text, pass) {
      // engine.io ping ("2") still passes while deaf, so the socket stays up and nothing is answered.
      if (line !== 'deaf' || text === '2') pass();
    },
  });
  await page.reload();
  return {
    async set(next) {
      line = next;
      if (next === 'offline') await sockets.offline();
      else sockets.online();
    },
  };
}

describe('web app: sending', function () {
  const app = useWebApp();

  /** Ann and Bob, friends with a direct conversation; Ann's page open on it, through a line the test can switch. */
  async function annWritingToBob() {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    const conversationId = (await ann.client.conversations.createDirect(bob.id)).id;
    const page = await app.open();
    const network = await switchableLine(page.page);
    await page.logIn(ann.username, PASSWORD);
    await page.openConversation('Bob');
    return { ann, bob, conversationId, page, network };
  }

  it('keeps unsent messages across a reload and sends each exactly once (same clientMsgId); logout forgets them', async () => {
    const { conversationId, page, network } = await annWritingToBob();

    // One message reaches the server but its ack never comes back; one is typed with no connection at all.
    await network.set('deaf');
    await page.send('stored, but the ack was lost');
    await waitFor(async () => (await storedMessages(app.server, conversationId)).length === 1, {
      what: 'the first message stored',
    });
    await network.set('offline');
    await page.banner.getByText(/Reconnecting/).waitFor();
    await page.send('typed offline');
    await page.log.locator('li.pending').nth(1).waitFor();

    // Leaving now asks first; reloading anyway keeps both, and they go out once the connection is back.
    const dialogs: string[] = [];
    page.page.on('dialog', (dialog) => {
      dialogs.push(dialog.type());
      void dialog.accept();
    });
    await page.page.reload();
    expect(dialogs).to.deep.equal(['beforeunload']);
    await page.waitForTitle('Bob');
    const pending = page.log.locator('li.pending');
    await pending.nth(1).waitFor();
    expect(await pending.locator('.body').allTextContents()).to.deep.equal([
      'stored, but the ack was lost',
      'typed offline',
    ]);
    await network.set('online');
    await page.waitForMessage('typed offline');
    await pending.first().waitFor({ state: 'detached' });
    expect((await storedMessages(app.server, conversationId)).map((m) => m.body)).to.deep.equal([
      'stored, but the ack was lost',
      'typed offline',
    ]);
    expect(await page.shownMessages()).to.deep.equal(['stored, but the ack was lost', 'typed offline']);
    expect(await outboxKeys(page.page)).to.deep.equal([]);

    // Logging out forgets what was not sent, like drafts.
    await network.set('offline');
    await page.banner.getByText(/Reconnecting/).waitFor();
    await page.send('never sent');
    await page.log.locator('li.pending').waitFor();
    expect(await outboxKeys(page.page)).to.have.length(1);
    await page.page.getByRole('button', { name: 'Log out' }).click();
    await page.page.locator('#login-form').waitFor();
    expect(await outboxKeys(page.page)).to.deep.equal([]);
    expect(await storedMessages(app.server, conversationId)).to.have.length(2);
    app.expectNoProblems();
  });

  // Kept messages went out again in the order of their typing times: with the clock stepped back between two (an
  // NTP step, a user setting the time), the later one went first (OUTBOX hunt).
  it('sends kept messages again in the order typed after a reload, though the clock stepped back between them', async () => {
    const { conversationId, page, network } = await annWritingToBob();
    await network.set('offline');
    await page.banner.getByText(/Reconnecting/).waitFor();
    await page.send('one');
    await page.log.locator('li.pending').nth(0).waitFor();
    // The page's wall clock steps back two seconds; its timers run on.
    await page.page.evaluate(() => {
      const now = Date.now.bind(Date);
      Date.now = () => now() - 2000;
    });
    await page.send('two');
    await page.log.locator('li.pending').nth(1).waitFor();
    await page.send('three');
    await page.log.locator('li.pending').nth(2).waitFor();
    page.page.on('dialog', (dialog) => void dialog.accept());
    await page.page.reload();
    await page.waitForTitle('Bob');
    await page.log.locator('li.pending').nth(2).waitFor();
    await network.set('online');
    await page.waitForMessage('three');
    await page.log.locator('li.pending').first().waitFor({ state: 'detached' });
    expect((await storedMessages(app.server, conversationId)).map((m) => m.body)).to.deep.equal([
      'one',
      'two',
      'three',
    ]);
    app.expectNoProblems();
  });

  // The removal's notice gave the text back as not sent, but the SDK went on retrying it, and stored it once the
  // group took Ann again: a message sent behind her back, twice if she sent the text again (OUTBOX hunt).
  it('a message whose text a removal’s notice gives back is never sent after all, though the group takes me back', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    const group = await bob.client.conversations.createGroup('Plans', [ann.id]);
    const page = await app.open();
    const network = await switchableLine(page.page);
    await page.logIn(ann.username, PASSWORD);
    await page.openConversation('Plans');
    await page.waitForConnected();
    await network.set('dbDown');
    await page.send('written before the removal');
    await page.log
      .locator('li.pending')
      .getByText(/Waiting/)
      .waitFor();

    await bob.client.conversations.removeParticipant(group.id, ann.id);
    const notice = page.page.locator('#app-notice');
    await notice.getByText(/^You are no longer in “Plans”/).waitFor();
    expect(await notice.textContent()).to.contain('written before the removal');

    // Added back, with the database fine again: what she writes now is sent; what she was told was not, is not.
    await bob.client.conversations.addParticipant(group.id, ann.id);
    await network.set('online');
    await page.openConversation('Plans');
    await page.send('written after coming back');
    await waitFor(async () => (await storedMessages(app.server, group.id)).length > 0, {
      what: 'the new message stored',
    });
    // The old one's retries had a few seconds to get through, as they did before.
    await new Promise((resolve) => setTimeout(resolve, 5000));
    expect((await storedMessages(app.server, group.id)).map((m) => m.body)).to.deep.equal([
      'written after coming back',
    ]);
    app.expectNoProblems();
  });

  it('logged out while the browser was closed (password changed elsewhere): drafts and unsent messages go, the next login sends none', async () => {
    const { ann, conversationId, page, network } = await annWritingToBob();
    await page.waitForConnected();
    await network.set('offline');
    await page.banner.getByText(/Reconnecting/).waitFor();
    await page.send('typed before the password change');
    await page.log.locator('li.pending').waitFor();
    await page.composer.fill('a draft');
    expect(await unsentKeys(page.page)).to.have.length(2);
    const context = page.page.context();
    await page.page.close();

    // The browser is closed while the password changes on another device: the stored login is refused on return.
    await ann.client.changePassword(PASSWORD, 'another good password');
    await network.set('online');
    const back = await app.openTabIn(context);
    // The server no longer knows why that session ended, so the page claims no cause.
    await back.waitForLoggedOut('Your session has ended. Log in again.');
    expect(await unsentKeys(back.page)).to.deep.equal([]);
    await back.logIn(ann.username, 'another good password');
    await back.openConversation('Bob');
    await back.waitForConnected();
    expect(await back.composer.inputValue()).to.equal('');
    expect(await back.log.locator('li.pending').count()).to.equal(0);
    // What an earlier page left would go out first, as the page starts: a message sent now comes after it.
    await back.send('after logging in again');
    await back.waitForMessage('after logging in again');
    expect((await storedMessages(app.server, conversationId)).map((m) => m.body)).to.deep.equal([
      'after logging in again',
    ]);
    app.expectNoProblems();
  });

  it('says why a message waits while the server cannot store it, and sends it once it can', async () => {
    const { conversationId, page, network } = await annWritingToBob();

    await network.set('dbDown');
    await page.send('written while the database is down');
    const pending = page.log.locator('li.pending');
    await pending
      .locator('.status')
      .getByText('Waiting: the server cannot store messages right now; retrying…')
      .waitFor();
    expect(await storedMessages(app.server, conversationId)).to.deep.equal([]);
    await network.set('online');
    await page.waitForMessage('written while the database is down');
    await pending.waitFor({ state: 'detached' });
    expect((await storedMessages(app.server, conversationId)).map((m) => m.body)).to.deep.equal([
      'written while the database is down',
    ]);
    app.expectNoProblems();
  });

  it('a message the server refuses for good leaves the outbox: it says why and is not sent again after a reload', async () => {
    const { ann, bob, conversationId, page, network } = await annWritingToBob();
    await page.waitForConnected();

    // Typed offline, so it is kept as on its way; Bob blocks Ann meanwhile, and once the connection is back the
    // server refuses it (BLOCKED), which no retry can change.
    await network.set('offline');
    await page.banner.getByText(/Reconnecting/).waitFor();
    await page.send('typed before the block');
    const refused = page.log.locator('li.pending');
    await refused.waitFor();
    expect(await outboxKeys(page.page)).to.have.length(1);
    await bob.client.blocks.block(ann.id);
    await network.set('online');
    await refused.getByText('Not sent: you cannot message this person.').waitFor();
    // Shown as refused, with what can be done with it, but no longer kept to be sent again.
    await refused.getByRole('button', { name: 'Retry sending this message' }).waitFor();
    expect(await outboxKeys(page.page)).to.deep.equal([]);

    // The block is lifted and the page reloaded: what it said was not sent stays unsent.
    await bob.client.blocks.unblock(ann.id);
    await page.page.reload();
    await page.waitForTitle('Bob');
    await page.send('after the reload');
    await page.waitForMessage('after the reload');
    expect(await page.log.locator('li.pending').count()).to.equal(0);
    expect((await storedMessages(app.server, conversationId)).map((m) => m.body)).to.deep.equal([
      'after the reload',
    ]);
    expect(await outboxKeys(page.page)).to.deep.equal([]);
    app.expectNoProblems();
  });

  /** Records every dialog of `page` ("Leave site?" among them) and dismisses it, as a user who stays would. */
  function dismissDialogs(page: Page): string[] {
    const dialogs: string[] = [];
    page.on('dialog', (dialog) => {
      dialogs.push(`${dialog.type()}: ${dialog.message()}`);
      void dialog.dismiss();
    });
    return dialogs;
  }

  it('signed out in another tab while a message is on its way: the page starts over to its login screen without asking to stay', async () => {
    const { page, network } = await annWritingToBob();
    const other = await app.openTab(page);
    await other.waitForTitle('Bob');
    const dialogs = dismissDialogs(page.page);

    await network.set('offline');
    await page.banner.getByText(/Reconnecting/).waitFor();
    await page.send('on its way');
    await page.log.getByText('Waiting for connection…').waitFor();
    // The other tab logs out (over REST): this one follows. The message went with the login (the logout forgot it),
    // and "Stay" at a "Leave site?" would leave a closed chat on screen.
    await other.page.getByRole('button', { name: 'Log out' }).click();
    await other.page.locator('#login-form').waitFor();
    const followed = await page.page
      .getByText('You were signed out in another window of this browser.', { exact: false })
      .waitFor({ timeout: 15_000 })
      .then(
        () => true,
        () => false,
      );
    expect({ dialogs, followed }).to.deep.equal({ dialogs: [], followed: true });
    await page.page.locator('#login-form').waitFor();
    app.expectNoProblems();
  });

  it('a page that starts over after a database restore while a message waits does so without asking, and keeps the message', async () => {
    const { bob, conversationId, page, network } = await annWritingToBob();
    for (const [i, text] of ['one', 'two', 'three', 'four'].entries())
      await bob.client.messages.put(conversationId, `r${i}`, text);
    await page.waitForMessage('four');
    const dialogs = dismissDialogs(page.page);
    await network.set('dbDown');
    await page.send('waiting for the database');
    await page.log.getByText(/Waiting: the server cannot store/).waitFor();

    // The database as a restore to an earlier point leaves it (as in trouble.e2e.ts); the page's connection drops,
    // and its subscription finds the server behind what it showed: the page starts over by itself.
    const { knex } = app.server.services.db;
    await knex('messages').where({ conversation_id: conversationId }).where('seq', '>', 2).delete();
    await knex('conversations').where({ id: conversationId }).update({ last_seq: 2, version: 2 });
    await network.set('offline');
    await network.set('dbDown');
    const restarted = await page.page
      .locator('#app-notice')
      .getByText('restored from a backup', { exact: false })
      .waitFor({ timeout: 15_000 })
      .then(
        () => true,
        () => false,
      );
    expect({ dialogs, restarted }).to.deep.equal({ dialogs: [], restarted: true });
    // The message is the next page's to send (docs/client.md): kept, and sent once the server can store it.
    await page.openConversation('Bob');
    await page.log.locator('li.pending').getByText('waiting for the database').waitFor();
    await network.set('online');
    await page.waitForMessage('waiting for the database');
    expect((await storedMessages(app.server, conversationId)).map((m) => m.body)).to.deep.equal([
      'one',
      'two',
      'waiting for the database',
    ]);
    app.expectNoProblems();
  });

  it('counts a message in code points, never cuts it, and says when it is too long to send', async () => {
    const { conversationId, page } = await annWritingToBob();
    const count = page.page.locator('#composer-count');
    const sendButton = page.page.getByRole('button', { name: 'Send', exact: true });

    // 2,500 emoji are 5,000 UTF-16 units but 2,500 characters, as the server counts: all of them go.
    const emoji = '😀'.repeat(2500);
    await page.composer.focus();
    await page.page.keyboard.insertText(emoji);
    // (Lengths compared: a failure message with 5,000 emoji in it helps no one.)
    expect((await page.composer.inputValue()).length).to.equal(emoji.length);
    expect(await sendButton.isDisabled()).to.equal(false);
    await page.composer.press('Enter');
    await page.log.locator('li[data-seq]').first().waitFor();
    const first = (await storedMessages(app.server, conversationId)).map((m) => m.body);
    expect(first.map((body) => [...body].length)).to.deep.equal([2500]);
    expect(first[0] === emoji).to.equal(true);

    // Pasted text over the limit stays whole; the box says by how much it is too long, and nothing is sent.
    const long = `${'a'.repeat(3999)}😀😀`;
    await page.composer.focus();
    await page.page.keyboard.insertText(long);
    expect((await page.composer.inputValue()).length).to.equal(long.length);
    await count
      .getByText('Too long to send: 4,001 characters, the limit is 4,000. Shorten it by 1.')
      .waitFor();
    expect(await sendButton.isDisabled()).to.equal(true);
    expect(await page.composer.getAttribute('aria-invalid')).to.equal('true');
    await page.composer.press('Enter');
    expect((await page.composer.inputValue()).length).to.equal(long.length);
    await page.composer.press('Backspace');
    await count.getByText('4,000 of 4,000 characters').waitFor();
    expect(await sendButton.isDisabled()).to.equal(false);
    await sendButton.click();
    await page.log.locator('li[data-seq]').nth(1).waitFor();
    const both = (await storedMessages(app.server, conversationId)).map((m) => m.body);
    expect(both.map((body) => [...body].length)).to.deep.equal([2500, 4000]);
    expect(both[1] === `${'a'.repeat(3999)}😀`).to.equal(true);
    app.expectNoProblems();
  });
});

/** The app's drafts and kept unsent messages in this page's storage. */
function unsentKeys(page: Page): Promise<string[]> {
  return page.evaluate(() =>
    Object.keys(localStorage).filter(
      (key) => key.startsWith('xfchat.draft.') || key.startsWith('xfchat.outbox.'),
    ),
  );
}

/** The app's kept unsent messages in this page's storage. */
function outboxKeys(page: Page): Promise<string[]> {
  return page.evaluate(() => Object.keys(localStorage).filter((key) => key.startsWith('xfchat.outbox.')));
}

// TABS hunt: a tab closed with a message it could not send (offline) left it in storage, sent by no one until a page
// of the browser loaded again, though another tab of the same user was open and connected all along.
describe('web app: a tab closed with a message not sent', function () {
  const app = useWebApp();

  /** Ann, a friend of Bob's with a direct conversation, logged in in two tabs of one browser. */
  async function annInTwoTabs(): Promise<{ conversationId: string; first: ChatPage; second: ChatPage }> {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    const conversationId = (await ann.client.conversations.createDirect(bob.id)).id;
    const first = await app.open();
    await first.logIn(ann.username, PASSWORD);
    return { conversationId, first, second: await app.openTab(first) };
  }

  it('hands it to another tab of the browser, which sends it now', async () => {
    const { conversationId, first, second } = await annInTwoTabs();
    await second.openConversation('Bob');

    // The first tab alone loses its connection, and a message typed there waits; the second stays online.
    const line = await switchableLine(first.page, { thisTab: true });
    await first.openConversation('Bob');
    await line.set('offline');
    await first.banner.getByText(/Reconnecting/).waitFor();
    await first.send('typed in the tab that closes');
    await first.log.locator('li.pending').waitFor();

    // The user closes that tab (the browser's "Leave site?" answered Leave).
    await first.page.close();
    await second.waitForMessage('typed in the tab that closes');
    await waitFor(async () => (await storedMessages(app.server, conversationId)).length === 1, {
      what: 'the message stored, sent by the tab still open',
    });
    expect((await storedMessages(app.server, conversationId)).map((m) => m.body)).to.deep.equal([
      'typed in the tab that closes',
    ]);
    app.expectNoProblems();
  });

  // REV4: the message handed over went behind one typed later in the tab that took it.
  it('the other tab sends it before its own messages typed later, in the order typed', async () => {
    const { conversationId, first, second } = await annInTwoTabs();
    const lines = [
      await switchableLine(first.page, { thisTab: true }),
      await switchableLine(second.page, { thisTab: true }),
    ];
    await first.openConversation('Bob');
    await second.openConversation('Bob');
    // The browser is offline: "one" typed in the first tab, then "two" in the second.
    for (const line of lines) await line.set('offline');
    await first.banner.getByText(/Reconnecting/).waitFor();
    await second.banner.getByText(/Reconnecting/).waitFor();
    await first.send('one, typed first in the first tab');
    await first.log.locator('li.pending').waitFor();
    await second.send('two, typed next in the second tab');
    await second.log.locator('li.pending').first().waitFor();

    // The first tab is closed, the second takes its message over; then the network comes back.
    await first.page.close();
    await second.log.locator('li.pending').nth(1).waitFor();
    await lines[1]!.set('online');
    await waitFor(async () => (await storedMessages(app.server, conversationId)).length === 2, {
      what: 'both messages stored',
      timeoutMs: 30_000,
    });
    const stored = await storedMessages(app.server, conversationId);
    expect(
      stored.map((m) => m.body),
      'stored order (seq)',
    ).to.deep.equal(['one, typed first in the first tab', 'two, typed next in the second tab']);
    app.expectNoProblems();
  });
});
