import { expect } from 'chai';
import { storedMessages } from '../client/fixtures.js';
import { waitFor } from '../helpers/waitFor.js';
import type { ChatPage } from './chatPage.js';
import { PASSWORD, useWebApp } from './fixture.js';

describe('web app: the message box', function () {
  const app = useWebApp();

  it('keeps unsent text with its own conversation, across switching and reloads; Enter sends only what the open one shows', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    const cat = await app.person('Cat');
    await app.befriend(ann, bob, cat);
    const withBob = (await ann.client.conversations.createDirect(bob.id)).id;
    const withCat = (await ann.client.conversations.createDirect(cat.id)).id;

    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);
    await page.openConversation('Bob');
    await page.composer.fill('half-written for Bob');
    await page.openConversation('Cat');
    expect(await page.composer.inputValue()).to.equal('');
    // The list says which conversation has a draft, and shows it.
    await page.page.getByRole('button', { name: 'Bob, draft' }).waitFor();
    await page.conversationButton('Bob').getByText('Draft: half-written for Bob').waitFor();

    // Enter in Cat's empty box sends nothing, and certainly not Bob's text; Cat's own text goes to Cat.
    await page.composer.press('Enter');
    await page.send('for Cat');
    await page.waitForMessage('for Cat');
    expect((await storedMessages(app.server, withCat)).map((m) => m.body)).to.deep.equal(['for Cat']);
    expect(await storedMessages(app.server, withBob)).to.deep.equal([]);

    await page.openConversation('Bob');
    expect(await page.composer.inputValue()).to.equal('half-written for Bob');
    await page.composer.fill('half-written for Bob, and more');

    // A reload (which reopens Bob's conversation from the address) keeps both drafts.
    await page.composer.press('Shift+Enter');
    await page.composer.pressSequentially('line two');
    await page.page.reload();
    await page.waitForTitle('Bob');
    expect(await page.composer.inputValue()).to.equal('half-written for Bob, and more\nline two');
    await page.openConversation('Cat');
    await page.composer.fill('second thought for Cat');
    await page.page.reload();
    await page.waitForTitle('Cat');
    expect(await page.composer.inputValue()).to.equal('second thought for Cat');

    // Sending ends a draft: it is gone from the box, the list and storage.
    await page.openConversation('Bob');
    await page.composer.press('Enter');
    await page.waitForMessage('line two');
    expect(await page.composer.inputValue()).to.equal('');
    await page.page.reload();
    await page.waitForTitle('Bob');
    expect(await page.composer.inputValue()).to.equal('');
    await page.page.getByRole('button', { name: 'Cat, draft' }).waitFor();
    expect((await storedMessages(app.server, withBob)).map((m) => m.body)).to.deep.equal([
      'half-written for Bob, and more\nline two',
    ]);
    expect((await storedMessages(app.server, withCat)).map((m) => m.body)).to.deep.equal(['for Cat']);
    app.expectNoProblems();
  });

  it('two tabs of one conversation: sending in one keeps the draft the other is writing; a draft sent from the other tab does not come back', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    const conversationId = (await ann.client.conversations.createDirect(bob.id)).id;
    const first = await app.open();
    await first.logIn(ann.username, PASSWORD);
    await first.openConversation('Bob');
    const second = await app.openTab(first);
    await second.waitForTitle('Bob');
    await first.composer.fill('a long answer I am still writing in the first tab');
    await second.send('ok');
    await second.waitForMessage('ok');
    await first.waitForMessage('ok');
    // The first tab's text is still in its box, and a reload (or the browser restarting) keeps it.
    expect(await first.composer.inputValue()).to.equal('a long answer I am still writing in the first tab');
    await first.page.reload();
    await first.waitForTitle('Bob');
    expect(await first.composer.inputValue()).to.equal('a long answer I am still writing in the first tab');

    // The second tab, reloaded, has that draft in its box and sends it: the first tab's reload does not bring
    // it back as a draft.
    await second.page.reload();
    await second.waitForTitle('Bob');
    expect(await second.composer.inputValue()).to.equal('a long answer I am still writing in the first tab');
    // Meanwhile the first tab, showing that same text, has begun a reply with it.
    const ok = first.log.locator('li[data-seq]', { hasText: 'ok' }).last();
    await ok.getByRole('button', { name: /^Actions for/ }).click();
    await ok
      .getByRole('group', { name: /^Actions for/ })
      .getByRole('button', { name: 'Reply', exact: true })
      .click();
    const replyPreview = first.page.locator('#reply-preview');
    await replyPreview.waitFor();
    await second.composer.press('Enter');
    await first.waitForMessage('a long answer');
    // The first tab's box, which showed that same text, is emptied at once: Enter there would send it twice.
    await waitFor(async () => (await first.composer.inputValue()) === '', {
      what: 'the first tab’s box emptied',
      timeoutMs: 3000,
    });
    // And the reply went with it: what is typed next there is not one.
    await replyPreview.waitFor({ state: 'hidden' });
    await first.page.reload();
    await first.waitForTitle('Bob');
    await first.waitForMessage('a long answer');
    expect(await first.composer.inputValue()).to.equal('');
    expect((await storedMessages(app.server, conversationId)).map((m) => m.body)).to.deep.equal([
      'ok',
      'a long answer I am still writing in the first tab',
    ]);
    app.expectNoProblems();
  });

  it('offers to retry, edit or discard a message the server refused', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    const conversationId = (await ann.client.conversations.createDirect(bob.id)).id;
    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);
    await page.openConversation('Bob');

    // A NUL character cannot be stored: the server refuses the message (VALIDATION_FAILED), for good.
    await page.send('refused \u0000 text');
    const refused = page.log.locator('li.failed');
    await refused.getByText(/^Not sent: the server refused its text/).waitFor();
    await refused.getByRole('button', { name: 'Retry sending this message' }).click();
    await refused.getByRole('button', { name: 'Retry sending this message' }).waitFor();
    expect(await refused.count()).to.equal(1);
    await refused.getByRole('button', { name: 'Put this message back in the message box' }).click();
    await refused.waitFor({ state: 'detached' });
    expect(await page.composer.inputValue()).to.equal('refused \u0000 text');
    await page.send('accepted text');
    await page.waitForMessage('accepted text');

    await page.send('refused again \u0000');
    await refused.getByRole('button', { name: 'Discard this message' }).click();
    await refused.waitFor({ state: 'detached' });
    expect((await storedMessages(app.server, conversationId)).map((m) => m.body)).to.deep.equal([
      'accepted text',
    ]);
    expect(await page.shownMessages()).to.deep.equal(['accepted text']);
    app.expectNoProblems();
  });

  /** The line above the message box that says why nobody can write here. */
  const lockedLine = (page: ChatPage) => page.page.locator('#composer-locked');
  /** The error popup. */
  const toast = (page: ChatPage) => page.page.locator('#app-error');

  /** Ann and Bob, friends with a direct conversation Ann wrote in; Bob's page, logged in, shows it. */
  async function bobReadingAnn() {
    const [ann, bob, direct] = await app.friendsInConversation('Ann', 'Bob', { startedByFirst: true });
    await ann.client.messages.put(direct.id, 'ann-1', 'hello');
    const page = await app.open();
    page.acceptDialogs();
    await page.logIn(bob.username, PASSWORD);
    await page.openConversation('Ann');
    await page.waitForMessage('hello');
    return { ann, bob, page };
  }

  it('under a block the box says so and is off, typing pops no error; it is on again once the block is lifted', async () => {
    const { ann, bob, page } = await bobReadingAnn();
    expect(await lockedLine(page).isHidden()).to.equal(true);

    // Ann blocks Bob: the server refuses his typing, which is nothing he asked for, so no popup; the box goes off.
    await ann.client.blocks.block(bob.id);
    await page.composer.pressSequentially('are you there', { delay: 30 });
    await page.page.waitForTimeout(500);
    expect(await toast(page).isHidden(), `popup: ${await toast(page).textContent()}`).to.equal(true);
    await lockedLine(page)
      .getByText('You cannot message this person: one of you has blocked the other.')
      .waitFor();
    expect(await page.composer.isDisabled()).to.equal(true);
    expect(await page.page.getByRole('button', { name: 'Send' }).isDisabled()).to.equal(true);
    expect(await page.composer.getAttribute('placeholder')).to.equal('You cannot message this person');
    // Focus was in the box: it moves to why the box is off.
    expect(await page.page.evaluate(() => document.activeElement?.id)).to.equal('composer-locked');
    expect(await lockedLine(page).getAttribute('role')).to.equal('status');

    // Ann lifts the block and asks Bob to be friends again (impossible under a block): the box is on again.
    await ann.client.blocks.unblock(bob.id);
    await ann.client.friends.sendRequest(bob.username);
    await lockedLine(page).waitFor({ state: 'hidden' });
    expect(await page.composer.isDisabled()).to.equal(false);
    expect(await page.composer.getAttribute('placeholder')).to.equal('Write a message');
    expect(await toast(page).isHidden()).to.equal(true);
    app.expectNoProblems();
  });

  it('a person I block: the box says so and is off (also after a reload), and is on again once I unblock them', async () => {
    const { ann, bob, page } = await bobReadingAnn();

    // Bob blocks Ann on another device: this page learns it when his typing is refused, and asks whose block.
    await bob.client.blocks.block(ann.id);
    await page.composer.fill('still there?');
    const line = 'You blocked Ann. Unblock them (under “Blocked”) to write here again.';
    await lockedLine(page).getByText(line).waitFor();
    expect(await page.composer.isDisabled()).to.equal(true);
    // What was typed stays, to send later.
    expect(await page.composer.inputValue()).to.equal('still there?');
    expect(await page.composer.getAttribute('placeholder')).to.equal('You blocked this person');

    await page.page.reload();
    await page.waitForMessage('hello');
    await lockedLine(page).getByText(line).waitFor();
    expect(await page.composer.isDisabled()).to.equal(true);

    await page.page.getByRole('button', { name: 'Unblock Ann' }).click();
    await lockedLine(page).waitFor({ state: 'hidden' });
    expect(await page.composer.isDisabled()).to.equal(false);
    await page.composer.press('Enter');
    await page.waitForMessage('still there?');
    expect(await toast(page).isHidden()).to.equal(true);
    app.expectNoProblems();
  });

  it('shows in one tab’s list the draft written in another tab, and no draft once it is sent', async () => {
    const [ann] = await app.friendsInConversation('Ann', 'Bob', { startedByFirst: true });
    const a = await app.open();
    await a.logIn(ann.username, PASSWORD);
    const b = await app.openTab(a);
    await b.conversationButton('Bob').waitFor();
    await a.openConversation('Bob');
    await a.composer.fill('half an answer');
    const preview = b.page.locator('#conversations .preview');
    await waitFor(async () => (await preview.textContent()) === 'Draft: half an answer', {
      what: 'the draft in the other tab’s list',
      timeoutMs: 3000,
    });
    await a.composer.press('Enter');
    await a.waitForMessage('half an answer');
    await waitFor(
      async () =>
        (await preview.textContent()) === 'Ann: half an answer' ||
        (await preview.textContent()) === 'You: half an answer',
      {
        what: 'the sent message in the other tab’s list',
        timeoutMs: 3000,
      },
    );
    expect(await b.page.locator('#conversations .preview.draft').count()).to.equal(0);
    app.expectNoProblems();
  });
});
