import { expect } from 'chai';
import type { Request } from 'playwright-core';
import { storedMessages } from '../client/fixtures.js';
import { waitFor } from '../helpers/waitFor.js';
import { fail, holdSubscribes, routeSockets } from './browser.js';
import { PASSWORD, useWebApp, type Person, type WebApp } from './fixture.js';
import type { ChatPage } from './chatPage.js';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Other browsers' User-Agents, so the Devices list has something to tell apart (the test browser is Chrome). */
const FIREFOX_ON_WINDOWS = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0';
const SAFARI_ON_IPHONE =
  'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) ' +
  'Version/17.5 Mobile/15E148 Safari/604.1';

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

/**
 * Waits for the tab to show Ann signed in; if it does not, fails saying what it shows instead and whether the
 * session still exists, so a failure tells a session ended by the server (a refresh token presented twice) from
 * a tab that is only slow.
 */
async function signedInAsAnn(app: WebApp, tab: ChatPage, sessionId: string): Promise<void> {
  try {
    await tab.meName.getByText('Ann').waitFor({ timeout: 20_000 });
  } catch (err) {
    const { knex } = app.server.services.db;
    const alive = (await knex('sessions').where({ id: sessionId }).first()) !== undefined;
    const authShown = await tab.page.locator('#auth-view').isVisible();
    const banner = await tab.banner.textContent();
    throw new Error(
      `the tab does not show Ann signed in: session ${alive ? 'still exists' : 'ended'}, ` +
        `login view ${authShown ? 'shown' : 'hidden'}, banner "${banner ?? ''}", ` +
        `${await refreshesOf(app, sessionId)} refreshes`,
      { cause: err },
    );
  }
}

describe('web app: sessions that last (2-second access tokens)', function () {
  const app = useWebApp({ env: { JWT_TTL_SECONDS: '2' } });

  it('keeps chatting across many access-token expiries and a reload, in the same session, losing no message', async () => {
    const [ann, bob, conversation] = await app.friendsInConversation('Ann', 'Bob');
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
    // Connected at the end. On a starved machine a refresh can arrive after a 2-second token lapsed; the server then
    // drops the socket and the app reconnects at once (the banner shows for a moment; nothing is lost, as checked
    // below), so this waits for the connection to be up rather than reading one instant.
    await page.waitForConnected();
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
    const [ann, , conversation] = await app.friendsInConversation('Ann', 'Bob');

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
      // Connected at the end (a lapsed token's reconnect may still be finishing on a starved machine; see above).
      await tab.waitForConnected();
    }
    expect(await refreshesOf(app, session.id), 'refreshes').to.be.greaterThan(6);
    expect((await browserSession(app, ann.id)).id).to.equal(session.id);

    await second.page.reload();
    await signedInAsAnn(app, second, session.id);
    await second.waitForTitle('Bob');
    await second.send('still here');
    await first.waitForMessage('still here');
    expected.push('still here');
    expect((await storedMessages(app.server, conversation.id)).map((m) => m.body)).to.deep.equal(expected);
    app.expectNoProblems();
  });

  it('a tab that may be leaving (beforeunload) starts no refresh, and goes on refreshing if it stays', async () => {
    const ann = await app.person('Ann');
    const page = await app.open();
    // The page's refresh requests still on their way (a Set, so that the answer to a request the listeners
    // did not see cannot count below zero).
    const refreshing = new Set<Request>();
    const isRefresh = (r: Request) => r.method() === 'POST' && new URL(r.url()).pathname === '/auth/refresh';
    page.page.on('request', (r) => void (isRefresh(r) && refreshing.add(r)));
    page.page.on('requestfinished', (r) => void refreshing.delete(r));
    page.page.on('requestfailed', (r) => void refreshing.delete(r));
    await page.logIn(ann.username, PASSWORD);
    const session = await browserSession(app, ann.id);
    await waitFor(async () => (await refreshesOf(app, session.id)) > 0, { what: 'a first refresh' });

    // A reload, a close or a navigation away begins with beforeunload; this one keeps beginning for 4 s (two
    // token lifetimes) and never happens. A refresh started meanwhile could be cut off with its answer.
    const leaving = setInterval(() => {
      void page.page.evaluate(() => dispatchEvent(new Event('beforeunload'))).catch(() => undefined);
    }, 300);
    let before = 0;
    try {
      await page.page.evaluate(() => dispatchEvent(new Event('beforeunload')));
      // Counted once the page is leaving and a refresh it sent just before (one every 0.5 s with 2 s tokens)
      // has been answered: counted before the dispatch, such a refresh was taken for one started while leaving.
      await waitFor(() => refreshing.size === 0, { what: 'the refresh sent before leaving to be answered' });
      before = await refreshesOf(app, session.id);
      await sleep(4000);
      expect(await refreshesOf(app, session.id), 'refreshes while leaving').to.equal(before);
    } finally {
      clearInterval(leaving);
    }

    // The page stayed: it refreshes again and is still Ann, in the same session.
    await waitFor(async () => (await refreshesOf(app, session.id)) > before, {
      what: 'a refresh once the page stayed',
    });
    await signedInAsAnn(app, page, session.id);
    expect((await browserSession(app, ann.id)).id).to.equal(session.id);
  });

  it('resumes a login last used six days ago whose access token expired long since; one unused past the limit says it has ended', async () => {
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
    await back.openAccount();
    await back.devices.filter({ hasText: 'This device' }).waitFor();
    await back.page.keyboard.press('Escape');

    // Past REFRESH_TTL_DAYS (30) without use the login is over, and the page says so (not why: once the session
    // is gone the server cannot tell an expiry from a logout elsewhere).
    await back.page.close();
    await knex.raw(`UPDATE sessions SET last_used_at = now() - interval '31 days' WHERE id = ?`, [
      session.id,
    ]);
    const later = await app.openTabIn(context);
    await later.waitForLoggedOut('Your session has ended. Log in again.');
    app.expectNoProblems();
  });
});

describe('web app: devices, password, name and account deletion', function () {
  const app = useWebApp();

  /** Ann signed in on three devices: a Chrome laptop, a Firefox desktop and a phone (its own layout). */
  async function annOnThreeDevices(): Promise<{
    ann: Person;
    laptop: ChatPage;
    desktop: ChatPage;
    phone: ChatPage;
  }> {
    const ann = await app.person('Ann');
    await ann.client.logout(); // only the browsers' sessions are left
    const laptop = await app.open();
    const desktop = await app.open({ context: { userAgent: FIREFOX_ON_WINDOWS } });
    const phone = await app.open({
      context: { userAgent: SAFARI_ON_IPHONE, viewport: { width: 390, height: 780 }, isMobile: true },
    });
    for (const device of [laptop, desktop, phone]) await device.logIn(ann.username, PASSWORD);
    return { ann, laptop, desktop, phone };
  }

  it('lists the devices, logs out one from another, then every other one, then all, each saying why', async () => {
    const { laptop, desktop, phone } = await annOnThreeDevices();
    await laptop.openAccount();
    await waitFor(async () => (await laptop.devices.count()) === 3, { what: 'three devices' });
    const rows = await laptop.devices.allInnerTexts();
    expect(rows[0]).to.match(/Chrome on Linux\s*This device/);
    expect(rows.slice(1).join('\n'))
      .to.match(/Firefox on Windows/)
      .and.to.match(/Safari on iPhone/);
    expect(rows.join('\n')).to.match(/Signed in .*active/);

    await laptop.account.getByRole('button', { name: /^Log out Firefox on Windows/ }).click();
    await laptop.account.getByRole('status').getByText('Firefox on Windows was logged out.').waitFor();
    await waitFor(async () => (await laptop.devices.count()) === 2, { what: 'two devices' });
    await desktop.waitForLoggedOut('You were logged out on this device from another of your devices.');

    // The laptop stays signed in.
    await laptop.account.getByRole('button', { name: 'Close' }).click();
    expect(await laptop.page.evaluate(() => document.activeElement?.id)).to.equal('account-button');
    await laptop.page.reload();
    await laptop.meName.getByText('Ann').waitFor();

    // From the phone: everywhere else, then everywhere.
    await phone.openAccount();
    await waitFor(async () => (await phone.devices.count()) === 2, { what: 'two devices on the phone' });
    await phone.account.getByRole('button', { name: 'Log out everywhere else' }).click();
    await laptop.waitForLoggedOut('You were logged out on this device from another of your devices.');
    await waitFor(async () => (await phone.devices.count()) === 1, { what: 'only the phone' });
    expect(await phone.devices.first().innerText()).to.match(/Safari on iPhone\s*This device/);
    phone.acceptDialogs();
    await phone.account.getByRole('button', { name: 'Log out all devices' }).click();
    await phone.waitForLoggedOut('You logged out on all your devices.');
    app.expectNoProblems();
  });

  it('changes the password after saying what is wrong; the other device is told why it was logged out', async () => {
    const { ann, laptop, desktop } = await annOnThreeDevices();
    await laptop.openAccount();
    const form = laptop.account.locator('#password-form');
    const alert = laptop.account.locator('#password-error');
    await form.getByLabel('Current password').fill('not my password');
    await form.getByLabel('New password').fill('a brand new password');
    await form.getByRole('button', { name: 'Change password' }).click();
    await alert.getByText('Your current password is wrong.').waitFor();
    expect(await form.getByLabel('Current password').getAttribute('aria-invalid')).to.equal('true');

    await form.getByLabel('Current password').fill(PASSWORD);
    await form.getByLabel('New password').fill('short');
    await form.getByRole('button', { name: 'Change password' }).click();
    await alert.getByText('The new password must be 8-128 characters.').waitFor();

    await form.getByLabel('New password').fill('a brand new password');
    await form.getByRole('button', { name: 'Change password' }).click();
    await laptop.account.getByRole('status').getByText('Your password was changed.').waitFor();
    await desktop.waitForLoggedOut('Your password was changed');
    await waitFor(async () => (await laptop.devices.count()) === 1, { what: 'only this device left' });

    // This device stays signed in, across a reload too; the new password works elsewhere.
    await laptop.page.keyboard.press('Escape');
    await laptop.page.reload();
    await laptop.meName.getByText('Ann').waitFor();
    await desktop.logIn(ann.username, 'a brand new password');
    await desktop.meName.getByText('Ann').waitFor();
    app.expectNoProblems();
  });

  it('renames me, and the people I chat with see the new name at once everywhere it shows', async () => {
    const [ann, bob, conversation] = await app.friendsInConversation('Ann', 'Bob', { startedByFirst: true });
    await ann.client.messages.put(conversation.id, 'hello-1', 'hello there');
    const annPage = await app.open();
    const bobPage = await app.open();
    await annPage.logIn(ann.username, PASSWORD);
    await bobPage.logIn(bob.username, PASSWORD);
    await bobPage.openConversation('Ann');
    await bobPage.waitForMessage('hello there');

    await annPage.openAccount();
    const form = annPage.account.locator('#profile-form');
    await form.getByLabel('Display name').fill('   ');
    await form.getByRole('button', { name: 'Save name' }).click();
    await annPage.account.locator('#profile-error').getByText('A display name is 1-64 characters.').waitFor();
    await form.getByLabel('Display name').fill('Ann\u202Eevil');
    await form.getByRole('button', { name: 'Save name' }).click();
    await annPage.account
      .locator('#profile-error')
      .getByText(/without control or text-direction/)
      .waitFor();

    await form.getByLabel('Display name').fill('Annie');
    await form.getByRole('button', { name: 'Save name' }).click();
    await annPage.account.getByRole('status').getByText('Your name is now “Annie”.').waitFor();
    await annPage.meName.getByText(/^Annie \(@/).waitFor();

    // Bob, without reloading: the open conversation, its messages, the list and the friends.
    await bobPage.waitForTitle('Annie');
    await bobPage.log.locator('li[data-seq] .sender', { hasText: 'Annie' }).waitFor();
    await bobPage.conversationButton('Annie').waitFor();
    await bobPage.page.getByRole('button', { name: 'Message Annie' }).waitFor();
    expect(await bobPage.page.locator('body').innerText()).not.to.match(/\bAnn\b/);
    app.expectNoProblems();
  });

  it('deletes the account only after the password, saying what goes; the others then see "Deleted user"', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    const carol = await app.person('Carol');
    await app.befriend(ann, bob, carol);
    const direct = await ann.client.conversations.createDirect(bob.id);
    await ann.client.messages.put(direct.id, 'direct-1', 'a direct word from Ann');
    await bob.client.messages.put(direct.id, 'direct-2', 'and one from Bob');
    const group = await bob.client.conversations.createGroup('Trip', [ann.id, carol.id]);
    await ann.client.messages.put(group.id, 'group-1', 'Ann in the group');

    const annPage = await app.open();
    const bobPage = await app.open();
    await annPage.logIn(ann.username, PASSWORD);
    const annTab = await app.openTab(annPage);
    await annTab.meName.getByText('Ann').waitFor();
    await bobPage.logIn(bob.username, PASSWORD);
    await bobPage.openConversation('Ann');
    await bobPage.waitForMessage('a direct word from Ann');

    await annPage.openAccount();
    await annPage.account.getByRole('button', { name: 'Delete my account…' }).click();
    const confirm = annPage.account.locator('#delete-form');
    await confirm.getByText(/Stays: the messages you sent/).waitFor();
    // The confirmation step takes focus.
    expect(await annPage.page.evaluate(() => document.activeElement?.id)).to.equal('delete-password');
    await confirm.getByLabel('Type your password to confirm').fill('not my password');
    await confirm.getByRole('button', { name: 'Delete my account for good' }).click();
    await confirm.getByRole('alert').getByText('That is not your password.').waitFor();
    expect((await ann.client.users.get(ann.id)).username).to.equal(ann.username);

    await confirm.getByLabel('Type your password to confirm').fill(PASSWORD);
    await confirm.getByRole('button', { name: 'Delete my account for good' }).click();
    await annPage.waitForLoggedOut('Your account was deleted.');
    await annTab.waitForLoggedOut('Your account was deleted.');

    // Bob, live: the conversation, its header and Ann's messages; no longer a friend; no "@null" anywhere.
    await bobPage.waitForTitle('Deleted user');
    await bobPage.page.getByText('This account was deleted.').waitFor();
    await bobPage.log.locator('li[data-seq] .sender', { hasText: 'Deleted user' }).waitFor();
    await bobPage.conversationButton('Deleted user').waitFor();
    expect(await bobPage.composer.isDisabled()).to.equal(true);
    await waitFor(
      async () => (await bobPage.page.getByRole('button', { name: 'Message Ann' }).count()) === 0,
      {
        what: 'Ann gone from the friends',
      },
    );
    expect(await bobPage.page.locator('body').innerText()).not.to.include('@null');

    // In the group she left with her account, her message shows as from "Deleted user" too.
    await bobPage.openConversation('Trip');
    await bobPage.waitForMessage('Ann in the group');
    await bobPage.log
      .locator('li[data-seq]', { hasText: 'Ann in the group' })
      .locator('.sender', { hasText: 'Deleted user' })
      .waitFor();
    expect(await bobPage.page.locator('#conversation-members').innerText()).not.to.include('Ann');
    expect(await bobPage.page.locator('body').innerText()).not.to.include('@null');
    app.expectNoProblems();
  });

  /**
   * Ann in Bob's group "Plans" (Cat, a friend of both, not in it yet), her page signed in through routed sockets that
   * do not pass `conversation:updated`: once Bob adds Cat, her first message there makes the page read the group's
   * details. `errors`: what the page's console says in error from now on.
   */
  async function annInPlans() {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    const cat = await app.person('Cat');
    await app.befriend(ann, bob, cat);
    const group = await bob.client.conversations.createGroup('Plans', [ann.id]);
    const page = await app.open();
    const sockets = await routeSockets(page.page, {
      fromServer: (text, pass) => (text.includes('"conversation:updated"') ? undefined : pass()),
    });
    await page.page.reload();
    await page.logIn(ann.username, PASSWORD);
    await page.waitForConnected();
    const errors: string[] = [];
    page.page.on('console', (message) => {
      if (message.type() === 'error') errors.push(message.text());
    });
    return { bob, cat, group, page, sockets, errors };
  }

  /** The page deletes its account with a wrong password, the deletion held on its way until `release()`. */
  async function deletionOnItsWay(page: ChatPage) {
    let release: (() => void) | undefined;
    await page.page.route(
      (url) => url.pathname === '/users/me',
      async (route) => {
        if (route.request().method() === 'DELETE') await new Promise<void>((resolve) => (release = resolve));
        await route.continue();
      },
    );
    await page.openAccount();
    await page.account.getByRole('button', { name: 'Delete my account…' }).click();
    const confirm = page.account.locator('#delete-form');
    await confirm.getByLabel('Type your password to confirm').fill('not my password');
    await confirm.getByRole('button', { name: 'Delete my account for good' }).click();
    await waitFor(() => release !== undefined, { what: 'the deletion on its way' });
    return { confirm, release: () => release?.() };
  }

  it('holds the failures of reads made while a deletion is on its way, and shows them once the password was refused', async () => {
    const { bob, cat, group, page, sockets, errors } = await annInPlans();
    const toast = page.page.locator('#app-error');
    const deletion = await deletionOnItsWay(page);

    // Meanwhile the reads of the list and of the group's details fail for good (a bug, a refusal).
    const failures = { list: 0, details: 0 };
    await page.page.route(
      (url) => url.pathname === '/conversations' || url.pathname === `/conversations/${group.id}`,
      (route) => {
        if (route.request().method() !== 'GET') return route.continue();
        if (new URL(route.request().url()).pathname === '/conversations') {
          failures.list += 1;
          return fail(route, 500, 'INTERNAL');
        }
        failures.details += 1;
        return fail(route, 403, 'FORBIDDEN');
      },
    );
    // Cat, added to the group, writes there (the details are read, and fail); the connection drops and comes back
    // (the list is read, and fails).
    await bob.client.conversations.addParticipant(group.id, cat.id);
    await cat.client.messages.put(group.id, 'cat-1', 'hello from Cat');
    await waitFor(() => failures.details === 1, { what: "the group's details read, and refused" });
    await sockets.offline();
    await page.banner.getByText(/Reconnecting/).waitFor();
    sockets.online();
    await page.waitForConnected(30_000);
    await waitFor(() => failures.list > 0, { what: 'the list read again, and failed' });
    // The deletion may end in a reload: nothing is said yet.
    await sleep(1500);
    expect(await toast.isHidden(), `popup: ${await toast.textContent()}`).to.equal(true);
    expect(errors.filter((e) => /INTERNAL|FORBIDDEN/.test(e) && !/status of/.test(e))).to.deep.equal([]);

    // The password is refused: the page stays, and says what failed.
    deletion.release();
    await deletion.confirm.getByRole('alert').getByText('That is not your password.').waitFor();
    await toast.waitFor({ timeout: 5000 });
    await waitFor(
      () =>
        errors.some((e) => e.includes('INTERNAL (test)')) &&
        errors.some((e) => e.includes('FORBIDDEN (test)')),
      { what: 'both failures reported' },
    );
    app.expectNoProblems(/INTERNAL \(test\)|FORBIDDEN \(test\)|status of (500|403|401)/);
  });

  it('reports a failed lookup of a sender once the password was refused, not while the deletion is on its way', async () => {
    const { bob, group, page, errors } = await annInPlans();
    const dan = await app.person('Dan');
    await app.befriend(bob, dan);
    const toast = page.page.locator('#app-error');
    const deletion = await deletionOnItsWay(page);

    // Meanwhile Dan, a stranger to Ann, joins the group, writes and is removed; the page reads the group's details
    // only once he is gone, so it looks him up by id, and that lookup fails (a bug).
    let danRemoved = false;
    let lookups = 0;
    await page.page.route(
      (url) => url.pathname === `/conversations/${group.id}` || url.pathname === `/users/${dan.id}`,
      async (route) => {
        if (new URL(route.request().url()).pathname === `/users/${dan.id}`) {
          lookups += 1;
          return fail(route, 500, 'INTERNAL');
        }
        await waitFor(() => danRemoved, { what: 'Dan removed' });
        return route.continue();
      },
    );
    await bob.client.conversations.addParticipant(group.id, dan.id);
    await dan.client.messages.put(group.id, 'dan-1', 'hello from Dan');
    await bob.client.conversations.removeParticipant(group.id, dan.id);
    danRemoved = true;
    await waitFor(() => lookups > 0, { what: 'Dan looked up, and the lookup failed' });
    // The deletion may end in a reload: nothing is said yet.
    await sleep(1500);
    expect(await toast.isHidden(), `popup: ${await toast.textContent()}`).to.equal(true);
    expect(errors.filter((e) => e.includes('INTERNAL (test)') && !/status of/.test(e))).to.deep.equal([]);

    // The password is refused: the page stays, and says what failed.
    deletion.release();
    await deletion.confirm.getByRole('alert').getByText('That is not your password.').waitFor();
    await toast.waitFor({ timeout: 5000 });
    await waitFor(() => errors.some((e) => e.includes('INTERNAL (test)')), { what: 'the failure reported' });
    app.expectNoProblems(/INTERNAL \(test\)|status of (500|401)/);
  });

  it('takes the reads of a reconnection answered while a deletion is on its way (my name, a read made elsewhere) once the password was refused', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    const withBob = (await bob.client.conversations.createDirect(ann.id)).id;
    for (const text of ['one', 'two', 'three']) await bob.client.messages.put(withBob, text, text);
    const page = await app.open();
    const sockets = await holdSubscribes(page.page);
    await page.page.reload();
    await page.logIn(ann.username, PASSWORD);
    await page.waitForConnected();
    await waitFor(async () => (await page.page.title()) === '(3) XFChat', { what: 'three unread' });
    const deletion = await deletionOnItsWay(page);

    // Meanwhile the connection drops. While it is down, Ann renames herself on her phone (the page is not told).
    await sockets.offline();
    await page.banner.getByText(/Reconnecting/).waitFor();
    await ann.client.updateProfile({ displayName: 'Annie' });
    // It comes back: the page reads my profile and the list again, and subscribes (held back, so the phone's read
    // below, made after the list was read, reaches the page only through the list read after the subscriptions).
    sockets.holding = true;
    const listRead = page.page.waitForResponse(
      (r) => new URL(r.url()).pathname === '/conversations' && r.request().method() === 'GET',
    );
    const meRead = page.page.waitForResponse(
      (r) => new URL(r.url()).pathname === '/auth/me' && r.request().method() === 'GET',
    );
    sockets.online();
    await page.waitForConnected(30_000);
    await waitFor(() => sockets.held > 0, { what: 'the re-subscribe held back' });
    await Promise.all([listRead, meRead]);
    await ann.client.messages.read(withBob, 3);
    sockets.release();
    await sleep(1500);

    // The password is refused: the page stays, with my new name and without the messages read on the phone.
    deletion.release();
    await deletion.confirm.getByRole('alert').getByText('That is not your password.').waitFor();
    await page.meName.getByText(/^Annie \(@/).waitFor({ timeout: 5000 });
    await waitFor(async () => (await page.page.title()) === 'XFChat', {
      what: 'the tab title to take the read made on the phone',
      timeoutMs: 5000,
    });
    app.expectNoProblems(/status of 401/);
  });

  it('drops a details retry waiting for a sign-out when a newer details read goes out, and reports its refusal once', async () => {
    const { bob, cat, group, page, errors } = await annInPlans();
    const deletion = await deletionOnItsWay(page);

    // Meanwhile the group's details cannot be read for a while (503), then are refused for good.
    let phase: 'unavailable' | 'refused' = 'unavailable';
    const reads = { unavailable: 0, refused: 0, afterRelease: 0 };
    let released = false;
    await page.page.route(
      (url) => url.pathname === `/conversations/${group.id}`,
      (route) => {
        if (route.request().method() !== 'GET') return route.continue();
        if (released) reads.afterRelease += 1;
        if (phase === 'unavailable') {
          reads.unavailable += 1;
          return fail(route, 503, 'DB_UNAVAILABLE');
        }
        reads.refused += 1;
        return fail(route, 403, 'FORBIDDEN');
      },
    );
    // Cat joins and writes: the details read fails for a while (503); its retry (1 s) comes due and waits.
    await bob.client.conversations.addParticipant(group.id, cat.id);
    await cat.client.messages.put(group.id, 'cat-1', 'hello from Cat');
    await waitFor(() => reads.unavailable >= 1, { what: 'the first details read, unavailable' });
    await sleep(2500);
    // A details read asked meanwhile (Cat writes again): it goes out, and is refused for good.
    phase = 'refused';
    await cat.client.messages.put(group.id, 'cat-2', 'again from Cat');
    await waitFor(() => reads.refused === 1, { what: 'the second details read, refused' });
    await sleep(1500);

    // The password is refused: the page stays.
    released = true;
    deletion.release();
    await deletion.confirm.getByRole('alert').getByText('That is not your password.').waitFor();
    await waitFor(() => errors.some((e) => e.includes('FORBIDDEN (test)')), { what: 'the refusal reported' });
    // The retry that waited (it polls every second) neither goes out nor reports again.
    await sleep(4000);
    const reported = errors.filter((e) => e.includes('FORBIDDEN (test)') && !/status of/.test(e)).length;
    expect(reads.afterRelease, 'details reads after the sign-out failed').to.equal(0);
    expect(reported, 'FORBIDDEN reports').to.equal(1);
    app.expectNoProblems(/DB_UNAVAILABLE \(test\)|FORBIDDEN \(test\)|status of (503|403|401)/);
  });
});
