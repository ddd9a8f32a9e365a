import { expect } from 'chai';
import { PASSWORD, useWebApp } from './fixture.js';

describe('web app: two accounts in one browser', function () {
  const app = useWebApp();

  it('two private windows (separate storage) are two people who chat, and stay who they are across reloads', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    // Each browser context is what a private window is: storage of its own.
    const annWindow = await app.open();
    const bobWindow = await app.open();
    await annWindow.logIn(ann.username, PASSWORD);
    await bobWindow.logIn(bob.username, PASSWORD);
    await annWindow.openChatWith('Bob');
    await annWindow.send('hi from the first window');
    await bobWindow.page.getByRole('button', { name: 'Ann, 1 unread' }).waitFor();
    await bobWindow.openConversation('Ann');
    await bobWindow.waitForMessage('hi from the first window');
    await bobWindow.send('hi from the private one');
    await annWindow.waitForMessage('hi from the private one');

    for (const [window, name] of [
      [annWindow, 'Ann'],
      [bobWindow, 'Bob'],
    ] as const) {
      await window.page.reload();
      await window.page.locator('#me-name').getByText(name).waitFor();
      await window.waitForMessage('hi from the private one');
      expect(await window.shownMessages()).to.deep.equal([
        'hi from the first window',
        'hi from the private one',
      ]);
    }
    app.expectNoProblems();
  });

  it('two tabs of one window share the login: signing in to another account in one switches the other, saying why', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    const first = await app.open();
    const second = await app.openTab(first);
    await first.logIn(ann.username, PASSWORD);
    await first.page.locator('#me-name').getByText('Ann').waitFor();
    // The other tab, still at the login form, follows the sign-in, and says why.
    await second.page.locator('#me-name').getByText('Ann').waitFor();
    await second.page
      .getByRole('status')
      .getByText(/share one login.*private window/)
      .waitFor();

    // Logging out in one tab logs out the other: it does not keep acting as Ann.
    await second.page.getByRole('button', { name: 'Log out' }).click();
    await second.logIn(bob.username, PASSWORD);
    await second.page.locator('#me-name').getByText('Bob').waitFor();
    // Nor does it stay as Ann while storage holds Bob's login: it switches too.
    await first.page.locator('#me-name').getByText('Bob').waitFor();
    await first.page
      .getByRole('status')
      .getByText(/This window now uses the account/)
      .waitFor();
    app.expectNoProblems();
  });
});

// ACCT hunt: a sender who is no participant any more is looked up by id once; their name must not outlive them.
describe('web app: a deleted former member’s username taken by someone else', function () {
  const app = useWebApp();

  it('an open page shows the old messages as "Deleted user", not as the new holder of the name', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    const alice = await app.person('Alice');
    await app.befriend(ann, bob);
    await app.befriend(ann, alice);
    const group = await ann.client.conversations.createGroup('Club', [bob.id, alice.id]);
    await alice.client.messages.put(group.id, 'a-1', 'old words of alice');
    await alice.client.conversations.leave(group.id);

    const page = await app.open();
    await page.logIn(bob.username, PASSWORD);
    await page.openConversation('Club');
    await page.waitForMessage('old words of alice');
    // Looked up by id (she is no participant): her name and handle while the account lives.
    await page.log.locator('.meta .handle', { hasText: `@${alice.username}` }).waitFor();

    // She deletes her account (Bob, no friend of hers and in no conversation with her, is not told); someone else
    // takes the name, and the same display name, and speaks in the group.
    await alice.client.deleteAccount(PASSWORD);
    const newcomer = await app.person('Alice', { username: alice.username });
    await app.befriend(ann, newcomer);
    await ann.client.conversations.addParticipant(group.id, newcomer.id);
    await newcomer.client.messages.put(group.id, 'n-1', 'new words of the newcomer');
    await page.waitForMessage('new words of the newcomer');

    const sender = (body: string) =>
      page.log
        .locator('li[data-seq]', { has: page.page.locator('.body', { hasText: body }) })
        .locator('.meta')
        .evaluate((meta) => ({
          sender: meta.querySelector('.sender')?.textContent ?? null,
          handle: meta.querySelector('.handle')?.textContent ?? null,
        }));
    await page.log.locator('.meta .sender', { hasText: 'Deleted user' }).waitFor();
    expect(await sender('old words of alice')).to.deep.equal({ sender: 'Deleted user', handle: null });
    expect(await sender('new words of the newcomer')).to.deep.equal({
      sender: 'Alice',
      handle: `@${alice.username}`,
    });
    app.expectNoProblems();
  });
});
