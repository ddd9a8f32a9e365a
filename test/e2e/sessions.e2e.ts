import { expect } from 'chai';
import { storedMessages } from '../client/fixtures.js';
import { waitFor } from '../helpers/waitFor.js';
import { PASSWORD, useWebApp, type WebApp } from './fixture.js';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

interface SessionRow {
  id: string;
  user_agent: string | null;
  last_used_at: Date;
  created_at: Date;
}

/** The user's sessions as the database holds them. */
async function sessionsOf(app: WebApp, userId: string): Promise<SessionRow[]> {
  const { knex } = app.server.services.db;
  const result = await knex.raw<{ rows: SessionRow[] }>(
    'SELECT id, user_agent, last_used_at, created_at FROM sessions WHERE user_id = ?',
    [userId],
  );
  return result.rows;
}

/** The one session the headless Chrome of the tests signed in to. */
async function browserSession(app: WebApp, userId: string): Promise<SessionRow> {
  const rows = (await sessionsOf(app, userId)).filter((s) => s.user_agent?.includes('Chrome'));
  expect(rows, 'browser sessions').to.have.length(1);
  return rows[0]!;
}

/** How many refresh tokens of the session have been traded in. */
async function refreshesOf(app: WebApp, sessionId: string): Promise<number> {
  const { knex } = app.server.services.db;
  const [row] = await knex('refresh_tokens')
    .where({ session_id: sessionId })
    .whereNotNull('used_at')
    .count<Array<{ count: string }>>({ count: '*' });
  return Number(row?.count ?? 0);
}

describe('web app: sessions that last (2-second access tokens)', function () {
  const app = useWebApp({ env: { JWT_TTL_SECONDS: '2' } });

  it('keeps chatting across many access-token expiries and a reload, in the same session, losing no message', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    const conversation = await bob.client.conversations.createDirect(ann.id);
    await bob.client.connect();

    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);
    await page.openConversation('Bob');
    const session = await browserSession(app, ann.id);

    // Over four token lifetimes, both write; every answer has to arrive before the next round.
    const expected: string[] = [];
    const started = Date.now();
    for (let round = 1; Date.now() - started < 8000; round++) {
      await page.send(`ann ${round}`);
      await page.waitForMessage(`ann ${round}`);
      await bob.client.send(conversation.id, `bob ${round}`);
      await page.waitForMessage(`bob ${round}`);
      expected.push(`ann ${round}`, `bob ${round}`);
      await sleep(300);
    }
    expect(await page.banner.isHidden(), 'connection banner hidden').to.equal(true);
    expect(await refreshesOf(app, session.id), 'refreshes while chatting').to.be.greaterThan(3);

    // A reload long after the first access token expired: still Ann, in the same session, not a new login.
    await page.page.reload();
    await page.meName.getByText('Ann').waitFor();
    await page.waitForTitle('Bob');
    await page.send('after the reload');
    await page.waitForMessage('after the reload');
    expected.push('after the reload');
    expect((await browserSession(app, ann.id)).id).to.equal(session.id);

    const stored = await storedMessages(app.server, conversation.id);
    expect(stored.map((m) => m.body)).to.deep.equal(expected);
    expect(stored.map((m) => m.seq)).to.deep.equal(expected.map((_, i) => i + 1));
    expect(await page.shownMessages()).to.deep.equal(expected);
    app.expectNoProblems();
  });

  it('lets two tabs of one window share the login and take turns refreshing it: neither is signed out', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    const conversation = await bob.client.conversations.createDirect(ann.id);

    const first = await app.open();
    await first.logIn(ann.username, PASSWORD);
    const second = await app.openTab(first);
    await second.meName.getByText('Ann').waitFor();
    await first.openConversation('Bob');
    await second.openConversation('Bob');
    const session = await browserSession(app, ann.id);

    // Each tab's client refreshes its 2-second token twice a second; one refresh token presented twice would
    // end the session (reuse) and send both tabs to the login screen.
    const expected: string[] = [];
    const started = Date.now();
    for (let round = 1; Date.now() - started < 8000; round++) {
      const [writer, reader] = round % 2 === 0 ? [first, second] : [second, first];
      await writer.send(`tab message ${round}`);
      await reader.waitForMessage(`tab message ${round}`);
      expected.push(`tab message ${round}`);
      await sleep(300);
    }
    for (const tab of [first, second]) {
      expect(await tab.page.locator('#auth-view').isHidden()).to.equal(true);
      expect(await tab.banner.isHidden(), 'connection banner hidden').to.equal(true);
    }
    expect(await refreshesOf(app, session.id), 'refreshes').to.be.greaterThan(6);
    expect((await browserSession(app, ann.id)).id).to.equal(session.id);

    await second.page.reload();
    await second.meName.getByText('Ann').waitFor();
    await second.waitForTitle('Bob');
    await second.send('still here');
    await first.waitForMessage('still here');
    expected.push('still here');
    expect((await storedMessages(app.server, conversation.id)).map((m) => m.body)).to.deep.equal(expected);
    app.expectNoProblems();
  });

  it('resumes a login last used six days ago whose access token expired long since; one unused past the limit says it expired', async () => {
    const ann = await app.person('Ann');
    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);
    const context = page.page.context();
    const session = await browserSession(app, ann.id);
    // The browser is closed for the week: nothing refreshes.
    await page.page.close();
    const { knex } = app.server.services.db;
    await knex.raw(
      `UPDATE sessions SET created_at = now() - interval '7 days', last_used_at = now() - interval '6 days'
       WHERE id = ?`,
      [session.id],
    );
    // The access token kept with the login is refused by now.
    const origin = (await context.storageState()).origins.find((o) => o.origin === app.server.url);
    const stored = origin?.localStorage.find((item) => item.name === 'xfchat.session')?.value;
    const { token } = JSON.parse(stored ?? '{}') as { token?: string };
    expect(token, 'stored access token').to.be.a('string');
    await waitFor(
      async () =>
        (await fetch(`${app.server.url}/auth/me`, { headers: { authorization: `Bearer ${token}` } }))
          .status === 401,
      { what: 'the stored access token to expire' },
    );

    const back = await app.openTabIn(context);
    await back.meName.getByText('Ann').waitFor();
    const resumed = await browserSession(app, ann.id);
    expect(resumed.id).to.equal(session.id);
    expect(Date.now() - resumed.last_used_at.getTime(), 'last used').to.be.below(60_000);

    // Past REFRESH_TTL_DAYS (30) without use the login is over, and the page says so.
    await back.page.close();
    await knex.raw(`UPDATE sessions SET last_used_at = now() - interval '31 days' WHERE id = ?`, [
      session.id,
    ]);
    const later = await app.openTabIn(context);
    await later.waitForLoggedOut('Your session expired');
    app.expectNoProblems();
  });
});
