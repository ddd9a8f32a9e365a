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
