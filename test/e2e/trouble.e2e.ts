import { expect } from 'chai';
import type { Locator, Page, Route } from 'playwright-core';
import { storedMessages } from '../client/fixtures.js';
import { waitFor } from '../helpers/waitFor.js';
import { fail, routeSockets } from './browser.js';
import { PASSWORD, useWebApp } from './fixture.js';

/** The keys of the drafts and unsent messages that `page`'s storage keeps. */
function keptUnsent(page: Page): Promise<string[]> {
  return page.evaluate(() =>
    Object.keys(localStorage).filter((key) => /^xfchat\.(outbox|draft)\./.test(key)),
  );
}

/**
 * How a form field reads to assistive technology: `aria-invalid`, whether it has focus, and the text of the
 * alerts (`role=alert`) that describe it (`aria-describedby`).
 */
function refusedField(
  input: Locator,
): Promise<{ invalid: string | null; focused: boolean; describedBy: string }> {
  return input.evaluate((field) => ({
    invalid: field.getAttribute('aria-invalid'),
    focused: field === document.activeElement,
    describedBy: (field.getAttribute('aria-describedby') ?? '')
      .split(' ')
      .map((id) => document.getElementById(id))
      .filter((e) => e !== null && e.getAttribute('role') === 'alert')
      .map((e) => e?.textContent ?? '')
      .join(' '),
  }));
}

/** When things go wrong, the app says what, names what it concerns, and keeps what the user wrote. */
describe('web app: when something goes wrong', function () {
  const app = useWebApp();

  it('says why history could not be loaded, tries again by itself (Retry-After, backoff), and on request', async () => {
    const [ann, bob, direct] = await app.friendsInConversation('Ann', 'Bob');
    await bob.client.connect();
    await bob.client.send(direct.id, 'history that takes a while');
    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);

    // The first read finds the database down, the second is rate limited for a minute; then all is well.
    const answers = [
      (route: Route) => fail(route, 503, 'DB_UNAVAILABLE'),
      (route: Route) => fail(route, 429, 'RATE_LIMITED', { 'retry-after': '60' }),
    ];
    let reads = 0;
    await page.page.route(
      (url) => url.pathname.endsWith('/messages') && url.searchParams.has('before'),
      (route) => {
        reads += 1;
        const answer = answers.shift();
        return answer ? answer(route) : route.continue();
      },
    );
    await page.openConversation('Bob');
    const box = page.page.locator('#history-error');
    await box
      .getByText(
        'Could not load the messages: the server cannot read messages right now. Trying again in 1 second…',
      )
      .waitFor();
    // Tried again by itself; the server asks for a minute this time, and the pane says so.
    await box
      .getByText('Could not load the messages: too many requests in a short time. Trying again in 1 minute…')
      .waitFor();
    expect(reads).to.equal(2);
    await box.getByRole('button', { name: 'Try again now' }).click();
    await page.waitForMessage('history that takes a while');
    expect(await box.isVisible()).to.equal(false);
    expect(reads).to.equal(3);
    app.expectNoProblems();
  });

  /** Ann and Bob, friends, with their direct conversation and Bob's first message in it. */
  async function annAndBobTalking() {
    const [ann, bob, direct] = await app.friendsInConversation('Ann', 'Bob');
    await bob.client.messages.put(direct.id, 'b1', 'are you there?');
    return { ann, bob, direct };
  }

  for (const failure of ['DB_UNAVAILABLE', 'NETWORK_ERROR'] as const) {
    it(`says why the conversation list could not be read at load, and lists it once the server answers again (${failure})`, async () => {
      const { ann, bob, direct } = await annAndBobTalking();

      const page = await app.open();
      let failed = 0;
      await page.page.route(
        (url) => url.pathname === '/conversations',
        async (route) => {
          if (route.request().method() !== 'GET' || failed > 0) return route.continue();
          failed += 1;
          if (failure === 'NETWORK_ERROR') return route.abort('connectionreset');
          return fail(route, 503, 'DB_UNAVAILABLE', { 'retry-after': '1' });
        },
      );
      await page.logIn(ann.username, PASSWORD);
      const reason =
        failure === 'NETWORK_ERROR'
          ? 'the server could not be reached'
          : 'the server cannot read them right now';
      await page.page
        .getByRole('alert')
        .getByText(`Could not load the conversations: ${reason}. Trying again in 1 second…`)
        .waitFor();
      expect(failed).to.equal(1);
      // The server is fine again at once: the list is read again by itself (after 1 s), with its message.
      await page.page.locator('#conversations').getByText('are you there?').waitFor({ timeout: 15_000 });
      expect(await page.page.locator('#conversations-error').isVisible()).to.equal(false);
      // And it follows it: a new message arrives live.
      await bob.client.messages.put(direct.id, 'b2', 'hello?');
      await page.page.locator('#conversations').getByText('hello?').waitFor({ timeout: 5000 });
    });
  }

  it('lists the conversations at load though the friends could not be read, and the friends once read again', async () => {
    const { ann } = await annAndBobTalking();

    const page = await app.open();
    let failed = 0;
    await page.page.route(
      (url) => url.pathname === '/friends',
      async (route) => {
        if (route.request().method() !== 'GET' || failed > 0) return route.continue();
        failed += 1;
        return fail(route, 503, 'DB_UNAVAILABLE');
      },
    );
    await page.logIn(ann.username, PASSWORD);
    await page.page.locator('#conversations').getByText('are you there?').waitFor({ timeout: 5000 });
    expect(failed).to.equal(1);
    // Tried again by itself (backoff: 1 s).
    await page.page.getByRole('button', { name: 'Message Bob' }).waitFor({ timeout: 10_000 });
  });

  it('keeps a group’s new name when the first list read at load answers after the rename was told', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    const group = await bob.client.conversations.createGroup('Hike', [ann.id]);
    await bob.client.messages.put(group.id, 'g1', 'hello hikers');

    const page = await app.open();
    // The first GET /conversations is answered by the server at once, but handed to the page only after the
    // group was renamed and the page heard it (a slow line, or a slow page).
    let answered!: () => void;
    const listAnswered = new Promise<void>((resolve) => (answered = resolve));
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let held = false;
    await page.page.route(
      (url) => url.pathname === '/conversations',
      async (route) => {
        if (route.request().method() !== 'GET' || held) return route.continue();
        held = true;
        const response = await route.fetch();
        answered();
        await released;
        await route.fulfill({ response });
      },
    );
    await page.logIn(ann.username, PASSWORD);
    await listAnswered;
    // The socket is up (the list read does not wait for it): the rename reaches the page as conversation:updated.
    await page.waitForConnected();
    await bob.client.conversations.rename(group.id, 'Trip');
    await page.conversationButton('Trip').waitFor({ timeout: 5000 });
    release();

    await page.page.locator('#conversations').getByText('hello hikers').waitFor();
    // Give the older answer its chance to be drawn.
    await page.page.waitForTimeout(1000);
    const titles = await page.page.locator('#conversations li[data-key] .title').allTextContents();
    expect(titles).to.deep.equal(['Trip']);
  });

  it('starts over, and says why, when the server holds less than the page (a database restored to an earlier point)', async () => {
    const [ann, bob, direct] = await app.friendsInConversation('Ann', 'Bob');
    await bob.client.connect();
    const page = await app.open();
    const network = await routeSockets(page.page);
    await page.page.reload();
    await page.logIn(ann.username, PASSWORD);
    await page.openConversation('Bob');
    for (const text of ['one', 'two', 'three', 'four']) await bob.client.send(direct.id, text);
    await page.waitForMessage('four');

    // The database as a restore to an earlier point leaves it: messages 3 and 4 never happened.
    const { knex } = app.server.services.db;
    await knex('messages').where({ conversation_id: direct.id }).where('seq', '>', 2).delete();
    await knex('conversations').where({ id: direct.id }).update({ last_seq: 2, version: 2 });
    // The page's connection drops; when it subscribes again, the server is behind what it showed.
    await network.offline();
    network.online();
    await page.page.locator('#app-notice').getByText('restored from a backup', { exact: false }).waitFor();
    await page.openConversation('Bob');
    await page.waitForMessage('two');
    expect(await page.shownMessages()).to.deep.equal(['one', 'two']);
    app.expectNoProblems();
  });

  it('removed from a group while writing in it: names the group, keeps the unsent text to copy, moves focus there', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    const group = await bob.client.conversations.createGroup('Plans', [ann.id]);
    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);
    await page.openConversation('Plans');
    await page.composer.fill('half a thought\nfor Plans');

    await bob.client.conversations.removeParticipant(group.id, ann.id);
    const notice = page.page.locator('#app-notice');
    await notice.getByText(/^You are no longer in “Plans”/).waitFor();
    expect(await notice.getByLabel('Your unsent text', { exact: true }).textContent()).to.equal(
      'half a thought\nfor Plans',
    );
    await notice.getByRole('button', { name: 'Copy your unsent text' }).waitFor();
    expect(await page.page.evaluate(() => document.activeElement?.id)).to.equal('app-notice');
    expect(page.path()).to.equal('/');
    await page.conversationButton('Plans').waitFor({ state: 'detached' });
    app.expectNoProblems();
  });

  it('removed from two groups with unsent text in each: the second notice goes under the first, each with its text and Copy', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    const plans = await bob.client.conversations.createGroup('Plans', [ann.id]);
    const trip = await bob.client.conversations.createGroup('Trip', [ann.id]);
    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);
    await page.openConversation('Plans');
    await page.composer.fill('draft for Plans');
    await page.openConversation('Trip');
    await page.composer.fill('draft for Trip');
    await page.page.goBack();
    await page.conversationButton('Plans').waitFor();

    await bob.client.conversations.removeParticipant(plans.id, ann.id);
    const notice = page.page.locator('#app-notice');
    await notice.getByText(/^You are no longer in “Plans”/).waitFor();
    await bob.client.conversations.removeParticipant(trip.id, ann.id);
    await notice.getByText(/^You are no longer in “Trip”/).waitFor();
    await notice.getByText(/^You are no longer in “Plans”/).waitFor();
    expect(await notice.getByLabel('Your unsent text', { exact: true }).allTextContents()).to.deep.equal([
      'draft for Plans',
      'draft for Trip',
    ]);
    expect(await notice.getByRole('button', { name: 'Copy your unsent text' }).count()).to.equal(2);
    // Dismiss closes both.
    await notice.getByRole('button', { name: 'Dismiss this notice' }).click();
    await notice.waitFor({ state: 'hidden' });
    app.expectNoProblems();
  });

  it('removed from a group while the browser was closed: the message typed offline and the draft are shown to copy, not dropped', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    const group = await bob.client.conversations.createGroup('Plans', [ann.id]);
    const page = await app.open();
    const network = await routeSockets(page.page);
    await page.page.reload();
    await page.logIn(ann.username, PASSWORD);
    await page.openConversation('Plans');
    await page.waitForConnected();
    await network.offline();
    await page.banner.getByText(/Reconnecting/).waitFor();
    await page.send('typed offline for Plans');
    await page.log.locator('li.pending').waitFor();
    await page.composer.fill('and a draft\nfor Plans');
    expect(await keptUnsent(page.page)).to.have.length(2);
    const context = page.page.context();
    await page.page.close();

    // While the browser is closed, Bob removes Ann from the group.
    await bob.client.conversations.removeParticipant(group.id, ann.id);
    network.online();
    const back = await app.openTabIn(context);
    await back.meName.getByText('Ann').waitFor();
    const notice = back.page.locator('#app-notice');
    await notice.getByText(/^You are no longer in “Plans”: you were removed, or left it elsewhere/).waitFor();
    expect(await notice.getByLabel('Your unsent text', { exact: true }).textContent()).to.equal(
      'typed offline for Plans\n\nand a draft\nfor Plans',
    );
    await notice.getByRole('button', { name: 'Copy your unsent text' }).waitFor();
    // Shown, the text leaves storage: it is not sent, and not shown again at the next load.
    expect(await keptUnsent(back.page)).to.deep.equal([]);
    expect(await storedMessages(app.server, group.id)).to.deep.equal([]);
    await back.page.reload();
    await back.meName.getByText('Ann').waitFor();
    await back.page.locator('#conversations').getByText('No conversations yet.').waitFor();
    expect(await back.page.locator('#app-notice').isHidden()).to.equal(true);
    app.expectNoProblems();
  });

  it('the friends lists show where things stand now, also when an older read of them is answered after a newer one', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);
    await page.waitForConnected();

    // The reads of the lists after Ann's request are answered late: after those that follow Bob's acceptance.
    let holding = true;
    let fetched = 0;
    let letGo!: () => void;
    const held = new Promise<void>((resolve) => (letGo = resolve));
    let delivered = 0;
    await page.page.route(
      (url) => /\/(friends|blocks)(\/requests)?$/.test(url.pathname),
      async (route) => {
        if (route.request().method() !== 'GET' || !holding) return route.fallback();
        const response = await route.fetch();
        fetched += 1;
        await held;
        await route.fulfill({ response });
        delivered += 1;
      },
    );
    await page.page.locator('#find-form').getByLabel('Username').fill(bob.username);
    await page.page.getByRole('button', { name: 'Find' }).click();
    await page.page.getByRole('button', { name: 'Add Bob as a friend' }).click();
    await waitFor(() => fetched === 4, { what: 'the older read answered by the server' });
    holding = false;
    const [request] = await bob.client.friends.listRequests('incoming');
    await bob.client.friends.accept(request!.id);
    const message = page.page.getByRole('button', { name: 'Message Bob' });
    await message.waitFor();
    letGo();
    await waitFor(() => delivered === 4, { what: 'the older read delivered' });
    await page.page.waitForTimeout(300);
    expect(await message.count(), 'Bob shown as a friend').to.equal(1);
    expect(await page.page.locator('#outgoing-requests li').count(), 'a request shown as waiting').to.equal(
      0,
    );
    app.expectNoProblems();
  });

  it('says how long a login lockout lasts (Retry-After)', async () => {
    const page = await app.open();
    await page.page.route('**/auth/login', (route) =>
      fail(route, 429, 'RATE_LIMITED', { 'retry-after': '3252' }),
    );
    const form = page.page.locator('#login-form');
    await form.getByLabel('Username').fill('someone');
    await form.getByLabel('Password').fill('wrong password');
    await form.getByRole('button', { name: 'Log in' }).click();
    await page.page.locator('#auth-error').getByText('Too many attempts. Try again in 55 minutes.').waitFor();
    app.expectNoProblems();
  });

  it('names the field the server refused and why: a display name or a group name with a direction override', async () => {
    const page = await app.open();
    const form = page.page.locator('#signup-form');
    await form.getByLabel('Choose a username').fill(`ann_${Date.now().toString(36)}`);
    await form.getByLabel('Display name (optional)').fill('Ann\u202Egnp.exe');
    await form.getByLabel('Choose a password').fill(PASSWORD);
    await form.getByRole('button', { name: 'Sign up' }).click();
    await page.page
      .locator('#auth-error')
      .getByText('Display name must not contain control, bidirectional-control or line-separator characters.')
      .waitFor();
    const name = form.getByLabel('Display name (optional)');
    expect(await name.getAttribute('aria-invalid')).to.equal('true');
    expect(await name.evaluate((input) => input === document.activeElement)).to.equal(true);
    expect(await form.getByLabel('Choose a username').getAttribute('aria-invalid')).to.equal(null);

    // Corrected, the same form signs up; then a group name with an override is refused for what it is.
    await name.fill('Ann');
    await form.getByRole('button', { name: 'Sign up' }).click();
    await page.meName.getByText('Ann').waitFor();
    await page.page.getByRole('button', { name: 'New group' }).click();
    const dialog = page.page.getByRole('dialog', { name: 'New group' });
    await dialog.getByLabel('Group name').fill('Trip\u202Eexe.pdf');
    await dialog.getByRole('button', { name: 'Create group' }).click();
    await dialog
      .getByText(
        'The group name must not contain control, bidirectional-control or line-separator characters.',
      )
      .waitFor();
    expect(await refusedField(dialog.getByLabel('Group name'))).to.deep.equal({
      invalid: 'true',
      focused: true,
      describedBy:
        'The group name must not contain control, bidirectional-control or line-separator characters.',
    });
    // Corrected, the field is no longer marked while the next try runs.
    await dialog.getByLabel('Group name').fill('Trip');
    await dialog.getByRole('button', { name: 'Create group' }).click();
    await page.waitForTitle('Trip');

    // Renaming a group to such a name: the same, in the group's details.
    await page.page.getByRole('button', { name: 'Members (1)' }).click();
    const details = page.page.getByRole('region', { name: 'Group details' });
    await details.getByLabel('New name').fill('Trip\u202Eexe.pdf');
    await details.getByRole('button', { name: 'Rename' }).click();
    await details
      .getByText(
        'The group name must not contain control, bidirectional-control or line-separator characters.',
      )
      .waitFor();
    expect(await refusedField(details.getByLabel('New name'))).to.deep.equal({
      invalid: 'true',
      focused: true,
      describedBy:
        'The group name must not contain control, bidirectional-control or line-separator characters.',
    });
    await details.getByLabel('New name').fill('Trip 2');
    await details.getByRole('button', { name: 'Rename' }).click();
    await page.waitForTitle('Trip 2');
    expect(await refusedField(details.getByLabel('New name'))).to.include({ invalid: null, describedBy: '' });
    app.expectNoProblems();
  });
  it('waits its backoff after a proxy’s Retry-After date that has passed, not reading history again at once', async () => {
    const [ann, bob, direct] = await app.friendsInConversation('Ann', 'Bob');
    await bob.client.connect();
    await bob.client.send(direct.id, 'behind a proxy in maintenance');
    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);

    const passed = new Date(Date.now() - 60_000).toUTCString();
    let reads = 0;
    await page.page.route(
      (url) => url.pathname.endsWith('/messages') && url.searchParams.has('before'),
      (route: Route) => {
        reads += 1;
        return route.fulfill({
          status: 503,
          headers: { 'content-type': 'text/html', 'retry-after': passed },
          body: '<html><body>Down for maintenance.</body></html>',
        });
      },
    );
    await page.openConversation('Bob');
    await page.page
      .locator('#history-error')
      .getByText(/Could not load the messages/)
      .waitFor();
    await new Promise((resolve) => setTimeout(resolve, 3000));
    // Backoff alone: the first read, then after 1 s and 2 s more (it read in a loop, 150 times in 3 s).
    expect(reads, 'history reads within about 3 s').to.be.within(1, 3);
  });

  // A details read waiting to be tried again held the conversation's entry of reads on their way: the group panel's
  // Add, which reads the details after its change, said "Cat was added." only when that wait ended (REV4).
  it('says "Cat was added." soon after the add, not after an earlier details read’s backoff', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    const cat = await app.person('Cat');
    await app.befriend(ann, bob, cat);
    const group = await ann.client.conversations.createGroup('Trip', [bob.id]);
    const page = await app.open();
    page.acceptDialogs();
    await page.logIn(ann.username, PASSWORD);
    await page.openConversation('Trip');
    await page.page.getByRole('button', { name: 'Members (2)' }).waitFor();

    // The group's details reads fail for a while (DB_UNAVAILABLE, no Retry-After): 1 s, 2 s, 4 s, 8 s of backoff.
    let failing = true;
    const failures: number[] = [];
    const path = `/conversations/${group.id}`;
    await page.page.route(
      (url) => url.pathname === path,
      async (route) => {
        if (failing && route.request().method() === 'GET') {
          failures.push(Date.now());
          await fail(route, 503, 'DB_UNAVAILABLE');
        } else await route.continue();
      },
    );
    // Open the group again: show() reads its details again.
    await page.page.goBack();
    await waitFor(() => !page.page.url().includes('/c/'), { what: 'the list' });
    await page.page.goForward();
    await waitFor(() => failures.length >= 4, { what: 'four failed details reads', timeoutMs: 20_000 });
    // The read is now in its 8 s backoff; the database is back.
    failing = false;

    await page.page.getByRole('button', { name: 'Members (2)' }).click();
    const panel = page.page.getByRole('region', { name: 'Group details' });
    await panel.getByLabel('Add a friend').selectOption(cat.id);
    const clicked = Date.now();
    await panel.getByRole('button', { name: 'Add', exact: true }).click();
    await page.page.getByRole('button', { name: 'Members (3)' }).waitFor({ timeout: 5000 });
    const drawn = Date.now() - clicked;
    await page.page.locator('#details-status').getByText('Cat was added.').waitFor({ timeout: 15_000 });
    const said = Date.now() - clicked;
    // The backoff would hold it 8 s.
    expect(
      said,
      `"Cat was added." said ${said} ms after the click (member drawn after ${drawn} ms)`,
    ).to.be.below(4000);
    expect(await page.page.locator('#app-error').isVisible(), 'an error shown').to.equal(false);
    app.expectNoProblems();
  });
});
