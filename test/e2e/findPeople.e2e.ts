import { expect } from 'chai';
import type { Page } from 'playwright-core';
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
        .getByText(/^Too many searches at once\. Trying again in \d+ (seconds?|minutes?)\.$/)
        .waitFor();
      expect(await page.page.locator('#find-results li').count()).to.equal(0);
    });
  });

  // A search refused RATE_LIMITED (the lookup budget spent, here by another device) said "Try again in 1 second."
  // and never did: the line stayed and the results never came until the user typed again (HEAVY hunt).
  describe('past the lookups budget spent by another device', function () {
    // One lookup every 3 s once the 20 are spent: the refusal names a wait of a few seconds.
    const app = useWebApp({ env: { RATE_LIMIT_LOOKUPS_PER_MIN: '20' } });

    /** Spends my whole lookup budget from my other device (searches until one is refused). */
    async function spendLookups(me: { client: XFChatClient }): Promise<void> {
      for (let i = 0; i < 40; i++) {
        const refused = await me.client.users.search('nobody_here').then(
          () => false,
          () => true,
        );
        if (refused) return;
      }
      throw new Error('the lookup budget was never spent');
    }

    /** The searches the page sends, by their words. */
    function searchesSent(page: Page): string[] {
      const sent: string[] = [];
      page.on('request', (request) => {
        const url = new URL(request.url());
        if (url.pathname === '/users' && url.searchParams.has('q'))
          sent.push(url.searchParams.get('q') ?? '');
      });
      return sent;
    }

    /**
     * The searcher's page, its lookup budget spent (by another device, say), the username of Zed typed in Find
     * people: `sent` the searches the page sends from the login on.
     */
    async function searchWithLookupsSpent() {
      const me = await app.person('Searcher');
      const zed = await app.person('Zed');
      const page = await app.open();
      await page.logIn(me.username, PASSWORD);
      const sent = searchesSent(page.page);
      const box = page.page.locator('#find-form').getByLabel('Username');
      const status = page.page.locator('#find-status');
      await spendLookups(me);
      await box.fill(zed.username);
      return { zed, page, sent, box, status };
    }

    it('says it will search again by itself, then shows the results when they come, without typing again', async () => {
      const { zed, page, sent, status } = await searchWithLookupsSpent();
      await status.getByText(/^Too many searches/).waitFor();
      const refused = await status.textContent();
      // Nothing more is typed: the results come by themselves (the wait named is a few seconds), and replace the line.
      const found = await page.page
        .locator('#find-results')
        .getByText(`@${zed.username}`)
        .waitFor({ timeout: 15_000 })
        .then(
          () => true,
          () => false,
        );
      expect(found, `no results 15 s after "${refused}"`).to.equal(true);
      expect(await status.textContent()).to.equal('1 person found.');
      expect(refused).to.match(/^Too many searches at once\. Trying again in \d+ seconds?\.$/);
      expect(
        sent.every((q) => q === zed.username),
        `sent: ${sent.join(', ')}`,
      ).to.equal(true);
      expect(sent.length, `sent: ${sent.join(', ')}`).to.be.at.least(2);
      app.expectNoProblems();
    });

    it('does not search again for words no longer in the box', async () => {
      const { page, sent, box, status } = await searchWithLookupsSpent();
      await status.getByText(/^Too many searches at once\. Trying again in (\d) seconds?\.$/).waitFor();
      const wait = Number((await status.textContent())?.match(/in (\d) second/)?.[1]);
      await box.fill('');
      const asked = sent.length;
      await page.page.waitForTimeout(wait * 1000 + 2000);
      expect(sent.slice(asked), 'searches after the box was emptied').to.deep.equal([]);
      expect(await status.textContent()).to.equal('');
      expect(await page.page.locator('#find-results li').count()).to.equal(0);
      app.expectNoProblems();
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

    // A search with a character no username has said "Usernames are 1-32 letters, ...": they are 3-32.
    it('says which characters usernames are made of when the words hold another', async () => {
      const me = await app.person('Searcher');
      const page = await app.open();
      await page.logIn(me.username, PASSWORD);
      const box = page.page.locator('#find-form').getByLabel('Username');
      await box.fill('ann smith');
      await box.press('Enter');
      await page.page
        .locator('#find-status')
        .getByText('Usernames are made of letters, digits, _ . and - only (at most 32).')
        .waitFor();
      expect(await page.page.locator('#find-results li').count()).to.equal(0);
    });
  });
});
