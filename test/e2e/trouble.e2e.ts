import { expect } from 'chai';
import type { Route } from 'playwright-core';
import { routeSockets } from './browser.js';
import { PASSWORD, useWebApp } from './fixture.js';

/** An error answer of the contract's shape. */
function fail(
  route: Route,
  status: number,
  code: string,
  headers: Record<string, string> = {},
): Promise<void> {
  return route.fulfill({
    status,
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ error: { code, message: `${code} (test)` } }),
  });
}

/** When things go wrong, the app says what, names what it concerns, and keeps what the user wrote. */
describe('web app: when something goes wrong', function () {
  const app = useWebApp();

  it('says why history could not be loaded, tries again by itself (Retry-After, backoff), and on request', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    const direct = await bob.client.conversations.createDirect(ann.id);
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

  it('starts over, and says why, when the server holds less than the page (a database restored to an earlier point)', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    const direct = await bob.client.conversations.createDirect(ann.id);
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
    app.expectNoProblems();
  });
});
