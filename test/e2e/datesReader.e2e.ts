import { expect } from 'chai';
import { PASSWORD, useWebApp, type Person, type WebApp } from './fixture.js';

const MINUTE_MS = 60_000;

/** Messages from Bob to Ann written straight into the database at the given times (seq 1, 2, ...). */
async function backdated(app: WebApp, ann: Person, bob: Person, messages: { at: Date; body: string }[]) {
  const conversationId = (await ann.client.conversations.createDirect(bob.id)).id;
  const { knex } = app.server.services.db;
  for (const [i, { at, body }] of messages.entries()) {
    await knex.raw(
      `INSERT INTO messages (conversation_id, sender_id, seq, client_msg_id, body, created_at)
       VALUES (?, ?, ?, ?, ?, ?)`,
      [conversationId, bob.id, i + 1, `dates-${i + 1}`, body, at],
    );
  }
  await knex.raw('UPDATE conversations SET last_seq = ?, last_activity_at = ? WHERE id = ?', [
    messages.length,
    messages.at(-1)!.at,
    conversationId,
  ]);
  return conversationId;
}

/** A page in en-US whose computer is in Berlin, its clock under the test's control, with `person` logged in. */
async function inBerlin(app: WebApp, person: Person) {
  const page = await app.open({ context: { locale: 'en-US' } });
  const cdp = await page.page.context().newCDPSession(page.page);
  await cdp.send('Emulation.setTimezoneOverride', { timezoneId: 'Europe/Berlin' });
  await page.page.clock.install();
  await page.page.reload();
  await page.logIn(person.username, PASSWORD);
  /** The computer's time zone becomes New York's under the open page, and a minute passes (the app looks once a minute). */
  const flyToNewYork = async () => {
    await cdp.send('Emulation.setTimezoneOverride', { timezoneId: '' });
    await cdp.send('Emulation.setTimezoneOverride', { timezoneId: 'America/New_York' });
    await page.page.clock.runFor(61_000);
  };
  return { page, flyToNewYork };
}

async function separators(app: WebApp, page: Awaited<ReturnType<WebApp['open']>>) {
  return page.log.locator('li.day-separator').allTextContents();
}

/**
 * Days and times as the reader's computer tells them. A reader whose clock was a little behind the server's, just
 * before midnight, saw two day separators both saying "Today" (the newest message's day counted as today too): today
 * is now the later of the reader's day and the newest message's. A laptop that changed time zones with the page open
 * grouped new messages by the new zone's days and showed the old zone's times under them (formats made once, at
 * load): they are made for the zone in use, and the messages shown are said again in the new one.
 */
describe('web app: days and times as the reader’s computer tells them', function () {
  const app = useWebApp();

  it('a reader whose clock is 2 minutes behind, just before midnight, never sees two separators both saying "Today"', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    const now = new Date();
    const midnight = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate());
    // One message at 23:57 and one at 00:01 (the server's clock, UTC).
    await backdated(app, ann, bob, [
      { at: new Date(midnight - 3 * MINUTE_MS), body: 'before midnight' },
      { at: new Date(midnight + 1 * MINUTE_MS), body: 'after midnight' },
    ]);
    // Ann's clock reads 23:59:30: two and a half minutes behind the newest message.
    const page = await app.open({ context: { locale: 'en-US', timezoneId: 'UTC' } });
    await page.page.clock.install({ time: midnight - 30_000 });
    await page.page.reload();
    await page.logIn(ann.username, PASSWORD);
    await page.openConversation('Bob');
    await page.waitForMessage('after midnight');
    const labels = await separators(app, page);
    expect(labels, 'the day separators of two different days').to.have.length(2);
    expect(labels[0], `two different days, labelled the same: ${JSON.stringify(labels)}`).to.not.equal(
      labels[1],
    );
  });

  it('says times and days in the new zone, within a minute, when the computer’s time zone changes with the page open', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    const conversationId = (await ann.client.conversations.createDirect(bob.id)).id;
    const before = await bob.client.messages.put(conversationId, 'tz-0', 'before the flight');
    await bob.client.messages.edit(conversationId, before.seq, 'before the flight (edited)');
    const { page, flyToNewYork } = await inBerlin(app, ann);
    await page.openConversation('Bob');
    await page.waitForMessage('before the flight (edited)');
    // The laptop lands in New York.
    await flyToNewYork();
    const inZone = (timeZone: string, iso: string) =>
      new Intl.DateTimeFormat('en-US', { timeZone, hour: 'numeric', minute: '2-digit' }).format(
        new Date(iso),
      );
    const nyDay = (iso: string) =>
      new Intl.DateTimeFormat('en-CA', { timeZone: 'America/New_York' }).format(new Date(iso));
    const old = page.log.locator('li[data-seq]', { hasText: 'before the flight' });
    const ny = inZone('America/New_York', before.createdAt);
    expect(
      await old.locator('.meta time').first().textContent(),
      `the time shown (Berlin's: ${inZone('Europe/Berlin', before.createdAt)})`,
    ).to.equal(ny);
    expect(await old.getAttribute('data-day')).to.equal(nyDay(before.createdAt));
    expect(
      await old.locator('button.tools-toggle').getAttribute('aria-label'),
      'what a screen reader hears',
    ).to.equal(`Actions for Bob’s message of ${ny}`);
    expect(await old.locator('time.edited').getAttribute('title'), 'the "edited" tooltip').to.not.match(
      /Central European|GMT\+1|GMT\+2/,
    );
    const sent = await bob.client.messages.put(conversationId, 'tz-1', 'sent after landing');
    await page.waitForMessage('sent after landing');
    const item = page.log.locator('li[data-seq]', { hasText: 'sent after landing' });
    expect(await item.getAttribute('data-day'), "the new message's day is New York's").to.equal(
      nyDay(sent.createdAt),
    );
    expect(await item.locator('.meta time').first().textContent(), 'the new message’s time').to.equal(
      inZone('America/New_York', sent.createdAt),
    );
  });

  it('the devices of an open account dialog say their times again each minute, in the zone in use', async () => {
    const ann = await app.person('Ann'); // this client's session is the other device
    const { page, flyToNewYork } = await inBerlin(app, ann);
    await page.openAccount();
    const other = page.devices.filter({ hasNotText: 'This device' });
    await other.waitFor();
    const signedIn = other.locator('time').first();
    const berlin = await signedIn.getAttribute('title');
    expect(berlin).to.match(/Central European|GMT\+1|GMT\+2/);
    // A keyboard user resting on the other device's "Log out": said again in place, the row keeps that button
    // focused (rebuilt each minute, it moved focus to a new one, and a screen reader said it again: review).
    await other.getByRole('button').focus();
    await other
      .getByRole('button')
      .evaluate((b) => ((b as HTMLElement & { marked?: boolean }).marked = true));
    await flyToNewYork();
    expect(
      await page.page.evaluate(() => (document.activeElement as HTMLElement & { marked?: boolean }).marked),
      'the same button keeps focus',
    ).to.equal(true);
    expect(await signedIn.getAttribute('title'), 'the time a device signed in, in the new zone').to.match(
      /Eastern|EST|EDT|GMT-5|GMT-4/,
    );
    expect(await other.locator('time').nth(1).textContent(), 'last active, a minute later').to.match(
      /minute/,
    );
  });
});
