import { expect } from 'chai';
import { storedMessages } from '../client/fixtures.js';
import { PASSWORD, useWebApp } from './fixture.js';

/**
 * MAX_SOCKETS_PER_USER refuses a user's next socket with `connect_error` RATE_LIMITED, "Too many connections for
 * this user.": a tab opened past it cannot connect until another of the account's tabs or devices goes, which only
 * the user can do, so the page says so (the SDK's `connectRefused`) rather than "Connecting…" for ever.
 */
describe('web app: a tab past the per-user socket limit', function () {
  const app = useWebApp({ env: { MAX_SOCKETS_PER_USER: '2' } });

  it('says why it cannot connect, keeps what is typed, and connects once another window closes', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    const conversationId = (await ann.client.conversations.createDirect(bob.id)).id;
    const first = await app.open();
    await first.logIn(ann.username, PASSWORD);
    await first.waitForConnected();
    const second = await app.openTab(first);
    await second.waitForConnected();
    const third = await app.openTab(first);
    await third.openConversation('Bob');
    await third.send('from the third tab');

    const tooMany = 'Too many open windows or devices for this account: close one. Trying again…';
    await third.banner
      .getByText(tooMany)
      .waitFor({ timeout: 15_000 })
      .catch(() => undefined);
    expect(await third.banner.textContent()).to.equal(tooMany);
    expect(await third.banner.getAttribute('data-state')).to.equal('connecting');
    await third.log.locator('li.pending').getByText('from the third tab').waitFor();

    // One window closes: the next try gets through, and the message goes out.
    await second.page.close();
    await third.waitForConnected(15_000);
    expect(await third.banner.textContent()).to.equal('');
    await third.waitForMessage('from the third tab');
    expect((await storedMessages(app.server, conversationId)).map((m) => m.body)).to.deep.equal([
      'from the third tab',
    ]);
    app.expectNoProblems();
  });
});

/**
 * Every page load trades the profile's stored refresh token (app.ts `resume`), and the server allows a session
 * RATE_LIMIT_AUTH_PER_MIN successful refreshes a minute (in bursts of three times that): all the tabs of a browser
 * share one session, so tabs opened (or reloaded, or restored at a browser start) past that are refused with
 * RATE_LIMITED and a Retry-After. The server was reached, and said when to come back.
 */
describe('web app: a page load over the refresh limit', function () {
  const app = useWebApp({ env: { RATE_LIMIT_AUTH_PER_MIN: '1' } });

  it('says it waits for the server’s Retry-After, not that the server cannot be reached, and does not try sooner', async () => {
    const ann = await app.person('Ann');
    const first = await app.open();
    await first.logIn(ann.username, PASSWORD);
    await first.waitForConnected();
    // Three more tabs (three refreshes: the burst) pass; the next one is over the limit.
    for (let i = 0; i < 3; i++) await (await app.openTab(first)).waitForConnected();
    let refreshes = 0;
    first.page.context().on('request', (request) => {
      if (new URL(request.url()).pathname === '/auth/refresh') refreshes += 1;
    });
    const refused = await app.openTab(first);

    const waiting = /^Too many sign-ins from this browser; trying again in (1 minute|\d+ seconds)\.$/;
    await refused.banner
      .getByText(waiting)
      .waitFor({ timeout: 10_000 })
      .catch(() => undefined);
    expect(await refused.banner.textContent()).to.match(waiting);
    expect(await refused.page.locator('#chat-view').isVisible()).to.equal(false);
    // Tries on a schedule of its own (1, 2, 4… s) would have gone out by now; the server said about a minute.
    await refused.page.waitForTimeout(3500);
    expect(refreshes).to.equal(1);
    app.expectNoProblems();
  });
});
