import { expect } from 'chai';
import { PASSWORD, useWebApp } from './fixture.js';

const DAY_MS = 86_400_000;

describe('web app: dates', function () {
  const app = useWebApp();

  /**
   * Bob's message to Ann, seen in Ann's page (en-US, UTC) whose clock was set `beforeMidnight` ms before the end of
   * the message's day: its day separator says "Today".
   */
  async function seenBeforeMidnight(beforeMidnight: number) {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    const conversationId = (await ann.client.conversations.createDirect(bob.id)).id;
    const sent = await bob.client.messages.put(conversationId, 'late-1', 'sent late in the day');
    const day = new Date(sent.createdAt);
    const midnight = Date.UTC(day.getUTCFullYear(), day.getUTCMonth(), day.getUTCDate() + 1);
    const page = await app.open({ context: { locale: 'en-US', timezoneId: 'UTC' } });
    await page.page.clock.install({ time: midnight - beforeMidnight });
    await page.page.reload();
    await page.logIn(ann.username, PASSWORD);
    await page.openConversation('Bob');
    await page.waitForMessage('sent late in the day');
    const separator = page.log.locator('li.day-separator');
    expect(await separator.textContent()).to.equal('Today');
    return { page, separator, day, midnight };
  }

  it('separates days ("Today", "Yesterday", a weekday, the full date) and gives every message its full timestamp', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    const conversationId = (await ann.client.conversations.createDirect(bob.id)).id;
    // Backdated messages, straight into the database: 400 days ago, 3 days ago and yesterday, each at the time of
    // day of the message sent now (so their hour and minute alone look the same).
    const now = Date.now();
    const backdated = [400, 3, 1].map((days, i) => ({
      seq: i + 1,
      at: new Date(now - days * DAY_MS),
      body: `${days} days ago`,
    }));
    const { knex } = app.server.services.db;
    for (const { seq, at, body } of backdated) {
      await knex.raw(
        `INSERT INTO messages (conversation_id, sender_id, seq, client_msg_id, body, created_at)
         VALUES (?, ?, ?, ?, ?, ?)`,
        [conversationId, bob.id, seq, `backdated-${seq}`, body, at],
      );
    }
    await knex.raw('UPDATE conversations SET last_seq = ?, last_activity_at = ? WHERE id = ?', [
      backdated.length,
      backdated.at(-1)!.at,
      conversationId,
    ]);
    const today = await bob.client.messages.put(
      conversationId,
      'today-1',
      'today: see https://example.com/a_(b)?q=1. Not javascript:alert(1) nor <b>bold</b>',
    );

    // A reader in New York, reading English.
    const page = await app.open({ context: { locale: 'en-US', timezoneId: 'America/New_York' } });
    await page.logIn(ann.username, PASSWORD);
    await page.openConversation('Bob');
    await page.waitForMessage('today:');

    const inZone = (date: Date, options: Intl.DateTimeFormatOptions) =>
      new Intl.DateTimeFormat('en-US', { timeZone: 'America/New_York', ...options }).format(date);
    const weekday = inZone(backdated[1]!.at, { weekday: 'long' });
    const fullDate = inZone(backdated[0]!.at, { dateStyle: 'full' });
    const rows = await page.log
      .getByRole('list', { name: 'Messages' })
      .locator(':scope > li')
      .evaluateAll((items) =>
        items.map((item) =>
          item.classList.contains('day-separator') || item.classList.contains('new-divider')
            ? `-- ${item.textContent ?? ''}`
            : (item.querySelector('.body')?.textContent ?? ''),
        ),
      );
    expect(rows).to.deep.equal([
      `-- ${fullDate}`,
      '-- New messages',
      '400 days ago',
      `-- ${weekday}`,
      '3 days ago',
      '-- Yesterday',
      '1 days ago',
      '-- Today',
      today.body,
    ]);

    // Each time carries its moment (datetime) and the full timestamp on hover (title), so the four differ even
    // where the hour and minute shown are the same.
    const times = await page.log.locator('li[data-seq] time').evaluateAll((items) =>
      items.map((t) => ({
        datetime: t.getAttribute('datetime'),
        title: t.getAttribute('title') ?? '',
        shown: t.textContent ?? '',
      })),
    );
    expect(times.map((t) => t.datetime)).to.deep.equal([
      ...backdated.map((b) => b.at.toISOString()),
      today.createdAt,
    ]);
    expect(new Set(times.map((t) => t.title)).size).to.equal(4);
    expect(times[0]!.title).to.contain(fullDate);
    expect(times[0]!.title).to.contain(inZone(backdated[0]!.at, { timeStyle: 'medium' }));
    expect(times[3]!.shown).to.equal(
      inZone(new Date(today.createdAt), { hour: 'numeric', minute: '2-digit' }),
    );

    // Addresses are links (http and https only, opened apart from this page); the rest stays text.
    const links = await page.log.locator('li[data-seq] .body a').evaluateAll((anchors) =>
      anchors.map((a) => ({
        href: a.getAttribute('href'),
        text: a.textContent,
        rel: a.getAttribute('rel'),
        target: a.getAttribute('target'),
      })),
    );
    expect(links).to.deep.equal([
      {
        href: 'https://example.com/a_(b)?q=1',
        text: 'https://example.com/a_(b)?q=1',
        rel: 'noopener noreferrer',
        target: '_blank',
      },
    ]);
    expect(await page.log.locator('li[data-seq] .body b').count()).to.equal(0);

    // The list dates its conversations the same way: today's shows the time.
    await page.conversationButton('Bob').locator('time', { hasText: times[3]!.shown }).waitFor();
    app.expectNoProblems();
  });

  it('turns "Today" into "Yesterday" within a minute of midnight, in the conversation and the list, though nothing else changes', async () => {
    // The browser's clock a few seconds before the end of the message's day (in UTC, the page's zone).
    const { page, separator, day } = await seenBeforeMidnight(5_000);
    const shownTime = new Intl.DateTimeFormat('en-US', {
      timeZone: 'UTC',
      hour: 'numeric',
      minute: '2-digit',
    }).format(day);
    await page.conversationButton('Bob').locator('time', { hasText: shownTime }).waitFor();

    await page.page.clock.runFor(65_000); // the date is looked at every minute
    await separator.getByText('Yesterday', { exact: true }).waitFor();
    await page.conversationButton('Bob').locator('time', { hasText: 'Yesterday' }).waitFor();
    app.expectNoProblems();
  });

  it('says "Yesterday" within a minute of waking when the computer slept over midnight (no timer ran meanwhile)', async () => {
    // The page opens two hours before midnight...
    const { page, separator, midnight } = await seenBeforeMidnight(2 * 3_600_000);
    // ...the computer sleeps over midnight (its timers do not run) and wakes an hour after it.
    await page.page.clock.setSystemTime(midnight + 3_600_000);
    await page.page.clock.runFor(65_000);
    expect(
      await separator.textContent(),
      'the separator a minute after waking, an hour past midnight',
    ).to.equal('Yesterday');
  });
});
