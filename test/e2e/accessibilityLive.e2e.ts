import { expect } from 'chai';
import { PASSWORD, useWebApp } from './fixture.js';
import { waitFor } from '../helpers/waitFor.js';
import { uniqueUsername } from '../helpers/users.js';

/**
 * "Bob is typing…" sits in a polite live region: it was set again at each of Bob's typing events (every two seconds),
 * which a screen reader may read again each time. It is set only when its words change.
 */
describe('accessibility: what the live regions say', function () {
  const app = useWebApp();

  it('"Bob is typing…" (a polite live region) is said once while Bob keeps typing, not again at each typing event', async () => {
    const [ann, bob, direct] = await app.friendsInConversation('Ann', 'Bob');
    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);
    await page.openConversation('Bob');
    await page.waitForConnected();
    await bob.client.connect();
    expect(await page.page.locator('#typing-indicator').getAttribute('aria-live')).to.equal('polite');
    await page.page.evaluate(() => {
      const w = window as unknown as { typingChanges: string[] };
      w.typingChanges = [];
      new MutationObserver((records) => {
        for (const r of records)
          w.typingChanges.push(`${r.type}:${document.getElementById('typing-indicator')?.textContent}`);
      }).observe(document.getElementById('typing-indicator')!, {
        childList: true,
        characterData: true,
        subtree: true,
      });
    });
    // Bob types steadily for about 7 seconds (a typing event every 2 s, as the app itself sends them).
    for (let i = 0; i < 4; i++) {
      await bob.client.typing(direct.id);
      await new Promise((r) => setTimeout(r, 2000));
    }
    const changes = await page.page.evaluate(
      () => (window as unknown as { typingChanges: string[] }).typingChanges,
    );
    expect(changes).to.deep.equal(['childList:Bob is typing…']);
  });
});

/**
 * The composer's count was a polite live region changed at each keystroke in the last tenth of the limit: a screen
 * reader read "3,601 of 4,000 characters", "3,602 of…" over the typing. Its live words change only when the length
 * crosses into the last tenth, past the limit, or back under it.
 */
describe('accessibility: the composer count', function () {
  const app = useWebApp();

  it('says the length near the limit once, then too long once, then short enough once, not at each keystroke', async () => {
    const [ann] = await app.friendsInConversation('Ann', 'Bob', { startedByFirst: true });
    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);
    await page.openConversation('Bob');
    await page.composer.focus();
    await page.page.keyboard.insertText('a'.repeat(3595));
    await page.page.evaluate(() => {
      const w = window as unknown as { liveSaid: string[] };
      w.liveSaid = [];
      const form = document.getElementById('composer-input')!.closest('form')!;
      for (const region of Array.from(form.querySelectorAll('[aria-live]'))) {
        if (region.getAttribute('aria-live') === 'off') continue;
        new MutationObserver(() => {
          if (region.textContent) w.liveSaid.push(region.textContent);
        }).observe(region, { childList: true, characterData: true, subtree: true });
      }
    });
    for (let i = 0; i < 12; i++) await page.page.keyboard.type('b'); // 3,607: into the last tenth
    for (let i = 0; i < 400; i++) await page.page.keyboard.insertText('c'); // 4,007: past the limit
    for (let i = 0; i < 10; i++) await page.page.keyboard.press('Backspace'); // 3,997
    await page.page.locator('#composer-count').getByText('3,997 of 4,000 characters').waitFor();
    const said = await page.page.evaluate(() => (window as unknown as { liveSaid: string[] }).liveSaid);
    expect(said).to.deep.equal([
      '3,601 of 4,000 characters',
      'Too long to send: 4,001 characters, the limit is 4,000. Shorten it by 1.',
      'Short enough to send: 4,000 of 4,000 characters',
    ]);
  });
});

/**
 * Outcomes a screen reader did not hear: a message the server refused showed "Not sent: …" only in the log, which
 * is not a live region; a search said how many it found only when it found nobody. Both are said now.
 */
describe('accessibility: outcomes said through live regions', function () {
  const app = useWebApp();

  it('a message the server refuses is said once through the message announcer ("Your message was not sent: …")', async () => {
    const [ann] = await app.friendsInConversation('Ann', 'Bob', { startedByFirst: true });
    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);
    await page.openConversation('Bob');
    const announcer = page.page.locator('#message-announcer');
    expect(await announcer.getAttribute('aria-live')).to.equal('polite');
    await page.page.evaluate(() => {
      const w = window as unknown as { announced: string[] };
      w.announced = [];
      const region = document.getElementById('message-announcer')!;
      new MutationObserver(() => {
        if (region.textContent) w.announced.push(region.textContent);
      }).observe(region, { childList: true, characterData: true, subtree: true });
    });
    // A NUL character cannot be stored: the server refuses the message (VALIDATION_FAILED), as in drafts.e2e.ts.
    await page.send('refused \u0000 text');
    const shown = page.log.locator('li.failed').getByText(/^Not sent:/);
    await shown.waitFor();
    const reason = (await shown.textContent())!.replace(/^Not sent: /, '');
    const said = () => page.page.evaluate(() => (window as unknown as { announced: string[] }).announced);
    await waitFor(async () => (await said()).length > 0, { what: 'something said' });
    // Said once: a second saying of the same refusal would come at once (the same failure drawn again).
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(await said()).to.deep.equal([`Your message was not sent: ${reason}`]);
  });

  it('a search says how many people it found in its status line ("1 person found.", "2 people found.")', async () => {
    const ann = await app.person('Ann');
    const prefix = uniqueUsername('find');
    await app.person('Bob', { username: `${prefix}_bob` });
    await app.person('Cat', { username: `${prefix}_cat` });
    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);
    const status = page.page.locator('#find-status');
    expect(await status.getAttribute('aria-live')).to.equal('polite');
    const box = page.page.locator('#find-form').getByLabel('Username');
    await box.fill(`${prefix}_b`);
    await page.page.getByRole('button', { name: 'Find' }).click();
    await page.page.getByRole('button', { name: 'Add Bob as a friend' }).waitFor();
    await status.getByText('1 person found.', { exact: true }).waitFor();
    await box.fill(prefix);
    await page.page.getByRole('button', { name: 'Find' }).click();
    await page.page.getByRole('button', { name: 'Add Cat as a friend' }).waitFor();
    await status.getByText('2 people found.', { exact: true }).waitFor();
  });
});
