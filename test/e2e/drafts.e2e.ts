import { expect } from 'chai';
import { storedMessages } from '../client/fixtures.js';
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
});
