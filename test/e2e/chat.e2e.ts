import { expect } from 'chai';
import type { Browser } from 'playwright-core';
import { XFChatClient } from '../../lib/client/index.js';
import type { RunningServer } from '../../lib/server.js';
import { buildWeb } from '../../web/build.js';
import { createTestDatabase } from '../helpers/postgres.js';
import { startTestServer } from '../helpers/server.js';
import { uniqueUsername } from '../helpers/users.js';
import { waitFor } from '../helpers/waitFor.js';
import { storedMessages } from '../client/fixtures.js';
import { startProxy, type FaultProxy } from '../helpers/proxy.js';
import { launchBrowser, openPage, type TestPage } from './browser.js';
import { ChatPage } from './chatPage.js';

const PASSWORD = 'correct horse battery';

interface Person {
  username: string;
  displayName: string;
  id: string;
}

describe('web app in headless Chromium', function () {
  let databaseUrl: string;
  let node1: RunningServer;
  let node2: RunningServer;
  let browser: Browser;
  let proxy: FaultProxy | undefined;
  const pages: TestPage[] = [];
  const clients: XFChatClient[] = [];

  before(async () => {
    await buildWeb();
    databaseUrl = await createTestDatabase();
    [node1, node2] = await Promise.all([startTestServer(databaseUrl), startTestServer(databaseUrl)]);
    browser = await launchBrowser();
  });

  afterEach(async () => {
    for (const { context } of pages.splice(0)) await context.close();
    for (const client of clients.splice(0)) client.close();
    await proxy?.close();
    proxy = undefined;
  });

  after(async () => {
    await browser?.close();
    await node1?.close();
    await node2?.close();
  });

  async function open(url: string): Promise<ChatPage> {
    const opened = await openPage(browser, url);
    pages.push(opened);
    return new ChatPage(opened.page);
  }

  function expectNoProblems(): void {
    expect(pages.flatMap((p) => p.problems)).to.deep.equal([]);
  }

  /** Two friends with a direct conversation, made through the SDK (the UI flow has its own test). */
  async function friends(
    name1: string,
    name2: string,
  ): Promise<{ a: Person; b: Person; conversationId: string }> {
    const make = async (displayName: string) => {
      const client = new XFChatClient({ baseUrl: node1.url });
      clients.push(client);
      const username = uniqueUsername(displayName.toLowerCase());
      const { user } = await client.signup({ username, password: PASSWORD, displayName });
      return { client, person: { username, displayName, id: user.id } };
    };
    const [x, y] = await Promise.all([make(name1), make(name2)]);
    const request = await x.client.friends.sendRequest(y.person.username);
    await y.client.friends.accept(request.id);
    const conversation = await x.client.conversations.createDirect(y.person.id);
    return { a: x.person, b: y.person, conversationId: conversation.id };
  }

  it('two people sign up, become friends and chat live; a reload shows the history', async () => {
    const alice = await open(node1.url);
    const bob = await open(node1.url);
    const aliceName = uniqueUsername('alice');
    const bobName = uniqueUsername('bob');
    await alice.signUp(aliceName, PASSWORD, 'Alice');
    await bob.signUp(bobName, PASSWORD, 'Bob');

    await alice.addFriend(bobName, 'Bob');
    // Bob's request list updates live (friend:request), and Alice's friends list after he accepts.
    await bob.acceptFriendRequest('Alice');
    await alice.openChatWith('Bob');
    await alice.send('Hi Bob!');
    await alice.waitForMessage('Hi Bob!');

    // The conversation reaches Bob live, with an unread count.
    await bob.page.getByRole('button', { name: 'Alice, 1 unread' }).waitFor();
    await bob.openConversation('Alice');
    await bob.waitForMessage('Hi Bob!');
    // Alice sees that Bob read it.
    await alice.log.locator('li.mine[data-seq="1"] .receipt', { hasText: 'Read' }).waitFor();

    await bob.page.getByRole('textbox', { name: 'Message' }).pressSequentially('Hello');
    await alice.page.getByText('Bob is typing…').waitFor();
    await bob.page.getByRole('textbox', { name: 'Message' }).fill('Hello Alice, nice to meet you.');
    await bob.page.getByRole('textbox', { name: 'Message' }).press('Enter');
    await alice.waitForMessage('Hello Alice, nice to meet you.');
    await alice.send('Likewise!');
    await bob.waitForMessage('Likewise!');
    expect(await alice.page.getByText('Bob is typing…').count()).to.equal(0);

    const expected = ['Hi Bob!', 'Hello Alice, nice to meet you.', 'Likewise!'];
    expect(await alice.shownMessages()).to.deep.equal(expected);
    expect(await bob.shownMessages()).to.deep.equal(expected);

    await bob.page.reload();
    await bob.openConversation('Alice');
    await bob.waitForMessage('Likewise!');
    expect(await bob.shownMessages()).to.deep.equal(expected);
    expect(await bob.shownSeqs()).to.deep.equal([1, 2, 3]);
    expectNoProblems();
  });

  it('shows my message Read once the other person replies, though they never marked it read', async () => {
    const { a, b, conversationId } = await friends('Ann', 'Bob');
    const ann = await open(node1.url);
    await ann.logIn(a.username, PASSWORD);
    await ann.openConversation('Bob');
    await ann.send('Lunch at noon?');
    await ann.waitForMessage('Lunch at noon?');
    const receipt = ann.log.locator('li.mine[data-seq="1"] .receipt');
    await receipt.filter({ hasText: 'Sent' }).waitFor();

    // Bob answers from another device (say, from a notification) with no read call of his own: the send moves
    // his read marker to his reply, and the server tells that only by the message:new.
    const bobsPhone = new XFChatClient({ baseUrl: node1.url });
    clients.push(bobsPhone);
    await bobsPhone.login(b.username, PASSWORD);
    await bobsPhone.messages.put(conversationId, 'reply-1', 'Sure, see you there.');
    await ann.waitForMessage('Sure, see you there.');
    await receipt.filter({ hasText: 'Read' }).waitFor({ timeout: 5000 });
    expect(await receipt.textContent()).to.equal('Read');
    expectNoProblems();
  });

  it('scrolls back through a long history one page at a time', async () => {
    const { a, b, conversationId } = await friends('Ann', 'Ben');
    const writer = new XFChatClient({ baseUrl: node1.url });
    clients.push(writer);
    await writer.login(a.username, PASSWORD);
    // In order, 20 at a time: the server assigns seq 1..120 whatever the order of each batch.
    for (let batch = 0; batch < 6; batch++) {
      const ids = range(batch * 20 + 1, batch * 20 + 20);
      await Promise.all(ids.map((i) => writer.messages.put(conversationId, `h-${i}`, `batch ${batch}`)));
    }

    // Ben has read all but the last 20: the conversation opens on the newest page (the first unread message is
    // in it), and the older pages are there to scroll back to.
    const reader = new XFChatClient({ baseUrl: node1.url });
    clients.push(reader);
    await reader.login(b.username, PASSWORD);
    await reader.messages.read(conversationId, 100);

    const ben = await open(node1.url);
    await ben.logIn(b.username, PASSWORD);
    await ben.page.getByRole('button', { name: 'Ann, 20 unread' }).waitFor();
    await ben.openConversation('Ann');
    await ben.waitForMessage('batch 5');
    expect(await ben.shownSeqs()).to.deep.equal(range(71, 120));

    // Scrolling to the top loads the page before, and keeps the reader's place: the message that was at the
    // top stays in view. (A pointer click on the button would scroll it into view first, which loads the page
    // by itself, so the click would race that load.)
    const top = ben.log.locator('li[data-seq="71"]');
    await ben.scroller.evaluate((scroller) => (scroller.scrollTop = 0));
    await waitFor(async () => (await ben.shownSeqs()).length === 100, { what: 'the second page' });
    expect(await ben.shownSeqs()).to.deep.equal(range(21, 120));
    expect(await ben.inView(top)).to.equal(true);
    // The button loads the next one, for keyboards and for a list too short to scroll.
    const older = ben.page.getByRole('button', { name: 'Load older messages' });
    expect(await older.isVisible()).to.equal(true);
    await older.dispatchEvent('click');
    await waitFor(async () => (await ben.shownSeqs()).length === 120, { what: 'the last page' });
    expect(await ben.shownSeqs()).to.deep.equal(range(1, 120));
    await older.waitFor({ state: 'hidden' });
    // Reading it all cleared the unread count.
    await ben.page.getByRole('button', { name: `Ann, @${a.username}`, exact: true }).waitFor();
    expectNoProblems();
  });

  it('chats live across two server nodes: one person on each', async () => {
    const { a, b } = await friends('Cleo', 'Dan');
    const cleo = await open(node1.url);
    const dan = await open(node2.url);
    await cleo.logIn(a.username, PASSWORD);
    await dan.logIn(b.username, PASSWORD);
    await cleo.openConversation('Dan');
    await dan.openConversation('Cleo');

    await cleo.send('from node one');
    await dan.waitForMessage('from node one');
    await dan.send('from node two');
    await cleo.waitForMessage('from node two');
    for (const person of [cleo, dan]) {
      expect(await person.shownMessages()).to.deep.equal(['from node one', 'from node two']);
    }
    expectNoProblems();
  });

  it('shows the reconnecting state on a dropped connection and delivers what was typed meanwhile exactly once', async () => {
    const { a, b, conversationId } = await friends('Eve', 'Finn');
    proxy = await startProxy(node1.url);
    const eve = await open(proxy.url);
    const finn = await open(node1.url);
    await eve.logIn(a.username, PASSWORD);
    await finn.logIn(b.username, PASSWORD);
    await eve.openConversation('Finn');
    await finn.openConversation('Eve');
    await eve.send('before the drop');
    await finn.waitForMessage('before the drop');

    await proxy.stop();
    await eve.banner.getByText(/Reconnecting/).waitFor();
    await eve.send('typed offline 1');
    await eve.send('typed offline 2');
    await eve.log.getByText('Waiting for connection…').first().waitFor();
    expect(await eve.log.locator('li.pending').count()).to.equal(2);
    // Meanwhile Finn writes too: Eve catches up on it after the reconnect.
    await finn.send('while you were away');

    await proxy.start();
    await waitFor(async () => (await eve.banner.getAttribute('data-state')) === 'connected', {
      what: 'reconnected',
    });
    await finn.waitForMessage('typed offline 2');
    await eve.waitForMessage('while you were away');
    await eve.log.locator('li.pending').first().waitFor({ state: 'detached' });

    const rows = await storedMessages(node1, conversationId);
    const bodies = rows.map((r) => r.body);
    expect(bodies.filter((body) => body.startsWith('typed offline'))).to.deep.equal([
      'typed offline 1',
      'typed offline 2',
    ]);
    expect(rows).to.have.length(4);
    for (const person of [eve, finn]) {
      expect(await person.shownMessages()).to.deep.equal(bodies);
      expect(await person.shownSeqs()).to.deep.equal([1, 2, 3, 4]);
    }
    expectNoProblems();
  });
});

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_v, i) => from + i);
}
