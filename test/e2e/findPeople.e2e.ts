import { expect } from 'chai';
import { XFChatClient } from '../../lib/client/index.js';
import { PASSWORD, useWebApp } from './fixture.js';

/**
 * The "Find people" box as a user meets it (SEARCH hunt): a refused search left the line saying nobody matched the
 * search before (which had results), a user just blocked stayed in the results with "Add friend", "Find" with the
 * same words did not ask again (someone may have signed up since), and searching for the start of one's own name
 * said no username started with it.
 */
describe('web app: finding people', function () {
  this.timeout(120_000);

  describe('past the lookups budget', function () {
    const app = useWebApp({ env: { RATE_LIMIT_LOOKUPS_PER_MIN: '1' } });

    it('says a refused search was refused and when to try again, not that nobody matched', async () => {
      const me = await app.person('Searcher');
      const alice = await app.person('Alice');
      const page = await app.open();
      await page.logIn(me.username, PASSWORD);
      const box = page.page.locator('#find-form').getByLabel('Username');
      await box.fill(alice.username.slice(0, 5));
      await box.press('Enter');
      await page.page.locator('#find-results').getByText(`@${alice.username}`).waitFor();
      await box.fill(alice.username.slice(0, 7));
      await box.press('Enter');
      await page.page
        .locator('#find-status')
        .getByText(/^Too many searches and requests at once\. Try again in \d+ (seconds?|minutes?)\.$/)
        .waitFor();
      expect(await page.page.locator('#find-results li').count()).to.equal(0);
    });
  });

  describe('with the default limits', function () {
    const app = useWebApp();

    it('leaves no "Add friend" on a user just blocked, and asks again on "Find" with the same words', async () => {
      const me = await app.person('Searcher');
      const bob = await app.person('Bob');
      await app.befriend(me, bob);
      const page = await app.open();
      page.acceptDialogs();
      await page.logIn(me.username, PASSWORD);
      const box = page.page.locator('#find-form').getByLabel('Username');
      const results = page.page.locator('#find-results');
      await box.fill(bob.username);
      await box.press('Enter');
      await results.getByRole('button', { name: 'Chat with Bob' }).waitFor();
      await page.page.locator('summary[aria-label="More for Bob"]').click();
      await page.page.getByRole('button', { name: 'Block Bob' }).click();
      await page.page.getByRole('button', { name: 'Unblock Bob' }).waitFor();
      await results.getByText('You blocked them.').waitFor();
      expect(await results.getByRole('button').count(), 'actions on a blocked user').to.equal(0);

      // Nobody has this name yet; then someone signs up with it, and "Find" asks again.
      const name = `carol_${Date.now().toString(36)}`;
      await box.fill(name);
      await page.page.getByRole('button', { name: 'Find' }).click();
      await page.page
        .locator('#find-status')
        .getByText(`No one else’s username starts with “${name}”.`)
        .waitFor();
      const carol = new XFChatClient({ baseUrl: app.server.url });
      try {
        await carol.signup({ username: name, password: PASSWORD, displayName: 'Carol' });
        await page.page.getByRole('button', { name: 'Find' }).click();
        await results.getByText(`@${name}`).waitFor();
      } finally {
        carol.close();
      }
      app.expectNoProblems();
    });
  });
});
