import { expect } from 'chai';
import { PASSWORD, useWebApp } from './fixture.js';

/**
 * "Bob is typing…" sits in a polite live region: it was set again at each of Bob's typing events (every two seconds),
 * which a screen reader may read again each time. It is set only when its words change.
 */
describe('accessibility: what the live regions say', function () {
  const app = useWebApp();

  it('"Bob is typing…" (a polite live region) is said once while Bob keeps typing, not again at each typing event', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    const direct = await bob.client.conversations.createDirect(ann.id);
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
