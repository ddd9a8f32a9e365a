import { expect } from 'chai';
import type { Page } from 'playwright-core';
import { waitFor } from '../helpers/waitFor.js';
import { PASSWORD, useWebApp, type WebApp } from './fixture.js';

/** The access tokens' life in these tests: a tab refreshes at about half of it. */
const TTL_SECONDS = 30;
/** The computer's clock set back an hour (NTP stepping a drifted clock after a resume, or a user by hand). */
const STEP_BACK_MS = -3_600_000;
/** A name that is not localhost (so no secure context, no Web Locks), resolved by Chromium to the test node. */
const HOST = 'chat.test';
/** Where web/sharedSession.ts keeps its storage lease (the stand-in for Web Locks on plain HTTP). */
const LEASE_KEY = 'xfchat.session-lease';

/**
 * Counts the notification beeps (web/notifier.ts makes each one with an oscillator) in `window.beeps`. Plain
 * JavaScript text, so that nothing the test's compiler adds to functions reaches the page.
 */
const COUNT_BEEPS = `{
  window.beeps = 0;
  const createOscillator = AudioContext.prototype.createOscillator;
  AudioContext.prototype.createOscillator = function () {
    window.beeps++;
    return createOscillator.call(this);
  };
}`;

/**
 * Records in `window.seenExpiresIn` every `expiresIn` the page's code reads in an answer, from the server or made by
 * web/sharedSession.ts. Plain JavaScript text, as above.
 */
const RECORD_EXPIRES_IN = `{
  window.seenExpiresIn = [];
  const text = Response.prototype.text;
  Response.prototype.text = async function () {
    const body = await text.call(this);
    const match = /"expiresIn":(\\d+)/.exec(body);
    if (match) window.seenExpiresIn.push(Number(match[1]));
    return body;
  };
}`;

/** Sets the clock of `page`'s browser context (all its tabs: one computer) `ms` from now; timers keep running. */
async function stepClock(page: Page, ms: number): Promise<void> {
  const now = await page.evaluate(() => Date.now());
  await page.clock.setSystemTime(now + ms);
}

/** Ann with a signed-in page on the node by HOST (plain HTTP, no Web Locks). */
async function annOverPlainHttp(app: WebApp) {
  const ann = await app.person('Ann');
  const url = new URL(app.server.url);
  url.hostname = HOST;
  const page = await app.open({ url: url.toString() });
  expect(await page.page.evaluate(() => window.isSecureContext)).to.equal(false);
  await page.logIn(ann.username, PASSWORD);
  await page.waitForConnected();
  return page;
}

// CLOCK hunt: the web app timed things by the wall clock (Date.now()), which a computer may set back while the page
// is open. A tab handed another tab's refreshed pair an `expiresIn` an hour too long and lost its connection at the
// token's real expiry; a lease left by a tab that died would lock the other tabs out of refreshing for the step;
// notification beeps and typing events stayed silent for as long as the step.
describe('web app: the computer’s clock set back while the page is open', function () {
  this.timeout(120_000);
  const app = useWebApp({
    browserArgs: [`--host-resolver-rules=MAP ${HOST} 127.0.0.1`],
    env: { JWT_TTL_SECONDS: String(TTL_SECONDS) },
  });

  it('a tab taking the pair another tab refreshed is told no longer life than the token has, and stays connected', async () => {
    const ann = await app.person('Ann');
    const first = await app.open();
    await first.page.context().addInitScript({ content: RECORD_EXPIRES_IN });
    await first.page.reload();
    await first.logIn(ann.username, PASSWORD);
    // A second tab resumes from the stored refresh token and stores the next pair.
    const second = await app.openTab(first);
    await second.page.locator('#chat-view').waitFor();
    await first.waitForConnected();
    await first.page.evaluate(() => {
      const w = window as unknown as { bannerStates: string[] };
      w.bannerStates = [];
      const banner = document.getElementById('connection-banner')!;
      new MutationObserver(() => w.bannerStates.push(banner.dataset.state ?? '')).observe(banner, {
        attributes: true,
        attributeFilter: ['data-state'],
      });
    });
    await stepClock(first.page, STEP_BACK_MS);
    // The first tab's timed refresh (at about half the token's life) finds the second tab's newer pair; then the
    // access token it holds reaches its real expiry at the server.
    await new Promise((r) => setTimeout(r, 45_000));
    const { states, seen } = await first.page.evaluate(() => {
      const w = window as unknown as { bannerStates: string[]; seenExpiresIn: number[] };
      return { states: w.bannerStates, seen: w.seenExpiresIn };
    });
    expect(seen.length, `answers seen: ${JSON.stringify(seen)}`).to.be.at.least(2);
    expect(
      Math.max(...seen),
      `expiresIn values the first tab's SDK got: ${JSON.stringify(seen)}`,
    ).to.be.at.most(TTL_SECONDS);
    expect(states, "the first tab's connection banner states after the step").to.deep.equal([]);
    app.expectNoProblems();
  });

  it('without Web Locks, a lease left by a tab that died does not hold refreshes back for the step', async () => {
    const page = await annOverPlainHttp(app);
    const refreshes: number[] = [];
    page.page.on('response', (response) => {
      if (new URL(response.url()).pathname === '/auth/refresh') refreshes.push(response.status());
    });
    // A tab died inside its refresh: its lease (good for 20 s) stays in storage. Then the clock is set back.
    await page.page.evaluate(
      (key) => localStorage.setItem(key, `dead-tab ${Date.now() + 20_000}`),
      LEASE_KEY,
    );
    await stepClock(page.page, STEP_BACK_MS);
    // The timed refresh (about 15 s from the login) waits out the lease's 20 s at most, not the hour.
    await waitFor(() => refreshes.includes(200), {
      timeoutMs: 45_000,
      intervalMs: 250,
      what: `a refresh after the clock was set back (refresh answers: ${JSON.stringify(refreshes)})`,
    });
    await page.waitForConnected(15_000);
    expect(await page.page.locator('#auth-view').isHidden(), 'still signed in').to.equal(true);
    app.expectNoProblems(/Cross-Origin-Opener-Policy header has been ignored/);
  });

  /**
   * Ann and Bob, friends with a direct conversation; Ann's page signed in under Playwright's clock, with `initScript`
   * run as each document starts. Playwright's clock restarts performance.now() when it is installed: it is
   * installed before the page loads, as a computer's clock is there before any page.
   */
  async function annAndBobOnAClock(initScript?: string) {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    const withBob = (await bob.client.conversations.createDirect(ann.id)).id;
    const page = await app.open();
    await page.page.clock.install();
    if (initScript !== undefined) await page.page.context().addInitScript({ content: initScript });
    await page.page.reload();
    await page.logIn(ann.username, PASSWORD);
    return { ann, bob, withBob, page };
  }

  it('still beeps for a new message after the clock is set back', async () => {
    const { bob, withBob, page } = await annAndBobOnAClock(COUNT_BEEPS);
    await page.page.locator('#conversations').getByRole('button', { name: 'Bob' }).waitFor();
    const beeps = () => page.page.evaluate(() => (window as unknown as { beeps: number }).beeps);

    await page.page.getByText('Notifications', { exact: true }).click();
    await page.page.getByLabel('Play a sound for new messages').check();
    await waitFor(async () => (await beeps()) === 1, { what: 'the sample beep' });
    // A beep per message, at most one per 1.5 s: Bob's message comes later than that.
    await new Promise((r) => setTimeout(r, 2000));
    await bob.client.messages.put(withBob, 'm1', 'before the step');
    await waitFor(async () => (await beeps()) === 2, { what: 'a beep for the first message' });

    await new Promise((r) => setTimeout(r, 2000));
    await stepClock(page.page, STEP_BACK_MS);
    await bob.client.messages.put(withBob, 'm2', 'after the step');
    await waitFor(async () => (await page.page.title()) === '(2) XFChat', {
      what: 'the second message counted',
    });
    await new Promise((r) => setTimeout(r, 1000));
    expect(await beeps(), 'beeps: the sample, the first message, the message after the step').to.equal(3);
    app.expectNoProblems();
  });

  // The typing events (one per 2 s at most) were spaced by the wall clock: set back an hour, the page sent none.
  it('still tells the other person that I type after the clock is set back', async () => {
    const { ann, bob, withBob, page } = await annAndBobOnAClock();
    await page.openConversation('Bob');
    await page.waitForConnected();
    const heard: number[] = [];
    await bob.client.connect();
    bob.client.on('typing', (event) => {
      if (event.conversationId === withBob && event.userId === ann.id) heard.push(Date.now());
    });
    await bob.client.subscribe(withBob, () => undefined).whenReady();
    // Ann types: Bob hears it.
    await waitFor(
      async () => {
        await page.composer.pressSequentially('a');
        return heard.length > 0;
      },
      { what: 'typing heard before the step', timeoutMs: 20_000, intervalMs: 2500 },
    );

    await stepClock(page.page, STEP_BACK_MS);
    const before = heard.length;
    // A key a second for 8 s: at least two more typing events go out (one per 2 s at most).
    for (let i = 0; i < 8; i++) {
      await page.composer.pressSequentially('b');
      await new Promise((r) => setTimeout(r, 1000));
    }
    await waitFor(() => heard.length - before >= 2, { what: 'typing heard after the step' });
    app.expectNoProblems();
  });
});
