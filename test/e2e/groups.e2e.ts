import { expect } from 'chai';
import type { ChatPage } from './chatPage.js';
import { PASSWORD, useWebApp } from './fixture.js';
import { waitFor } from '../helpers/waitFor.js';

describe('web app: groups', function () {
  const app = useWebApp();

  const membersLine = (page: ChatPage) => page.page.locator('#conversation-members');
  const panel = (page: ChatPage) => page.page.getByRole('region', { name: 'Group details' });
  const memberItems = (page: ChatPage) =>
    panel(page).getByRole('list', { name: 'Members' }).getByRole('listitem').allInnerTexts();
  /**
   * The member list shows `expected`, read again until it does: the list is drawn again when the conversation's
   * update arrives, and an item replaced while it is read is not rendered, so it reads without its line breaks.
   */
  const expectMembers = (page: ChatPage, expected: string[]) =>
    waitFor(
      async () => {
        expect(await memberItems(page)).to.deep.equal(expected);
        return true;
      },
      { timeoutMs: 5000, what: 'the member list' },
    );

  it('the new-group dialog with no friends says so once: a friend request does not write its alert again', async () => {
    const ann = await app.person('Ann');
    const eve = await app.person('Eve');
    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);
    await page.waitForConnected();
    await page.page.getByRole('button', { name: 'New group' }).click();
    const status = page.page.locator('#new-group-status');
    await status.getByText('Add some friends first').waitFor();
    await page.page.evaluate(() => {
      const w = window as unknown as { alertChanges: number };
      w.alertChanges = 0;
      new MutationObserver((records) => (w.alertChanges += records.length)).observe(
        document.getElementById('new-group-status')!,
        { childList: true, characterData: true, subtree: true },
      );
    });
    // A stranger's friend request: the social lists are read again; the alert's text is the same.
    await eve.client.friends.sendRequest(ann.username);
    await page.page
      .locator('#incoming-requests, body')
      .getByText(/Eve/)
      .first()
      .waitFor({ state: 'attached' });
    await new Promise((r) => setTimeout(r, 1000));
    const changes = await page.page.evaluate(
      () => (window as unknown as { alertChanges: number }).alertChanges,
    );
    expect(changes, 'changes of the alert').to.equal(0);
    expect(await status.textContent()).to.equal('Add some friends first: a group is made of friends.');
    app.expectNoProblems();
  });

  it('offers a friend accepted or renamed while "Add a friend" or the new-group dialog is open, keeping what was ticked', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    const cat = await app.person('Cat');
    const dan = await app.person('Dan');
    await app.befriend(ann, bob);
    const toCat = await ann.client.friends.sendRequest(cat.username);
    const toDan = await ann.client.friends.sendRequest(dan.username);
    await ann.client.conversations.createGroup('Plans', [bob.id]);
    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);

    // "Add a friend" in the open group: every friend is in it, until Cat accepts.
    await page.openConversation('Plans');
    await page.page.getByRole('button', { name: 'Members (2)' }).click();
    const add = panel(page).getByLabel('Add a friend');
    await add.getByText('All your friends are in this group').waitFor({ state: 'attached' });
    expect(await add.isDisabled()).to.equal(true);
    await cat.client.friends.accept(toCat.id);
    await add.locator(`option[value="${cat.id}"]`).waitFor({ state: 'attached' });
    expect(await add.isDisabled()).to.equal(false);

    // The new-group dialog: Bob ticked (his box has the focus) when Dan accepts, then Bob renames himself.
    await page.page.getByRole('button', { name: 'New group' }).click();
    const dialog = page.page.getByRole('dialog', { name: 'New group' });
    await dialog.getByLabel('Group name').fill('Hike');
    await dialog.getByRole('checkbox', { name: /^Bob/ }).check();
    expect(await dialog.getByRole('checkbox').count()).to.equal(2);
    const focusedBox = () => page.page.evaluate(() => document.activeElement?.id);
    expect(await focusedBox()).to.equal(`new-group-friend-${bob.id}`);
    await dan.client.friends.accept(toDan.id);
    await dialog.getByRole('checkbox', { name: /^Dan/ }).waitFor();
    await bob.client.updateProfile({ displayName: 'Bobby' });
    await dialog.getByRole('checkbox', { name: /^Bobby/ }).waitFor();
    expect(await dialog.getByRole('checkbox', { name: /^Bobby/ }).isChecked()).to.equal(true);
    expect(await dialog.getByRole('checkbox', { name: /^Cat/ }).isChecked()).to.equal(false);
    expect(await focusedBox()).to.equal(`new-group-friend-${bob.id}`);

    // Dan, offered after the dialog opened, goes in with Bob.
    await dialog.getByRole('checkbox', { name: /^Dan/ }).check();
    await dialog.getByRole('button', { name: 'Create group' }).click();
    await page.waitForTitle('Hike');
    expect(await membersLine(page).textContent()).to.equal(
      `3 members: You (owner), Bobby @${bob.username}, Dan @${dan.username}`,
    );
    app.expectNoProblems();
  });

  it('creates a group with two friends, renames it, adds and removes members and leaves; the others see it', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    const cat = await app.person('Cat');
    const dan = await app.person('Dan');
    await app.befriend(ann, bob, cat, dan);
    const annPage = await app.open();
    const bobPage = await app.open();
    annPage.acceptDialogs();
    bobPage.acceptDialogs();
    await annPage.logIn(ann.username, PASSWORD);
    await bobPage.logIn(bob.username, PASSWORD);

    // Create: a name and two friends.
    await annPage.page.getByRole('button', { name: 'New group' }).click();
    const dialog = annPage.page.getByRole('dialog', { name: 'New group' });
    await dialog.getByLabel('Group name').fill('Trip');
    await dialog.getByRole('checkbox', { name: /^Bob/ }).check();
    await dialog.getByRole('checkbox', { name: /^Cat/ }).check();
    await dialog.getByRole('button', { name: 'Create group' }).click();
    await annPage.waitForTitle('Trip');
    expect(annPage.path()).to.match(/^\/c\/[0-9a-f-]{36}$/);
    expect(await membersLine(annPage).textContent()).to.equal(
      `3 members: You (owner), Bob @${bob.username}, Cat @${cat.username}`,
    );
    // Bob gets it live, with the other members under the title.
    await bobPage.page.getByRole('button', { name: 'Trip, group with Ann, Cat' }).waitFor();
    await bobPage.conversationButton('Trip').getByText('Ann, Cat').waitFor();

    // The member list, with the owner's badge.
    await annPage.page.getByRole('button', { name: 'Members (3)' }).click();
    await expectMembers(annPage, [
      `You @${ann.username}Owner`,
      `Bob @${bob.username}\nRemove`,
      `Cat @${cat.username}\nRemove`,
    ]);

    // Rename.
    await panel(annPage).getByLabel('New name').fill('Trip 2026');
    await panel(annPage).getByRole('button', { name: 'Rename' }).click();
    await annPage.waitForTitle('Trip 2026');
    await annPage.page.getByRole('button', { name: 'Trip 2026, group with Bob, Cat' }).waitFor();

    // Add Dan, remove Cat.
    await panel(annPage).getByLabel('Add a friend').selectOption(dan.id);
    await panel(annPage).getByRole('button', { name: 'Add', exact: true }).click();
    await annPage.page.getByRole('button', { name: 'Members (4)' }).waitFor();
    expect(await membersLine(annPage).textContent()).to.equal(
      `4 members: You (owner), Bob @${bob.username}, Cat @${cat.username}, Dan @${dan.username}`,
    );
    await panel(annPage).getByRole('button', { name: 'Remove Cat from the group' }).click();
    await annPage.page.getByRole('button', { name: 'Members (3)' }).waitFor();
    expect(await membersLine(annPage).textContent()).to.equal(
      `3 members: You (owner), Bob @${bob.username}, Dan @${dan.username}`,
    );
    await expectMembers(annPage, [
      `You @${ann.username}Owner`,
      `Bob @${bob.username}\nRemove`,
      `Dan @${dan.username}\nRemove`,
    ]);
    expect((await cat.client.conversations.list()).map((c) => c.title)).to.deep.equal([]);
    expect((await dan.client.conversations.list()).map((c) => c.title)).to.deep.equal(['Trip 2026']);

    // Bob opens it: the new name and members are read when a conversation opens.
    await bobPage.conversationButton('Trip').click();
    await bobPage.waitForTitle('Trip 2026');
    expect(await membersLine(bobPage).textContent()).to.equal(
      `3 members: You, Ann @${ann.username} (owner), Dan @${dan.username}`,
    );
    await bobPage.page.getByRole('button', { name: 'Members (3)' }).click();
    await expectMembers(bobPage, [
      `You @${bob.username}`,
      `Ann @${ann.username}Owner`,
      `Dan @${dan.username}`,
    ]);
    // Only the owner manages members.
    expect(
      await panel(bobPage)
        .getByRole('button', { name: /^Remove/ })
        .count(),
    ).to.equal(0);
    expect(await panel(bobPage).getByLabel('New name').isVisible()).to.equal(false);
    await bobPage.send('hello group');
    await annPage.waitForMessage('hello group');

    // Bob leaves: the group is gone from his list and he is back at the list.
    await panel(bobPage).getByRole('button', { name: 'Leave group' }).click();
    await bobPage.conversationButton('Trip').waitFor({ state: 'detached' });
    expect(bobPage.path()).to.equal('/');
    await bobPage.page.locator('#empty-state').waitFor();
    // Ann sees the change when she opens the group again.
    await annPage.conversationButton('Trip 2026').click();
    await annPage.page.getByRole('button', { name: 'Members (2)' }).waitFor();
    expect(await membersLine(annPage).textContent()).to.equal(`2 members: You (owner), Dan @${dan.username}`);

    // A second group with the same title is told apart by its members.
    await ann.client.conversations.createGroup('Trip 2026', [cat.id]);
    await annPage.page.getByRole('button', { name: 'Trip 2026, group with Cat' }).waitFor();
    await annPage.page.getByRole('button', { name: 'Trip 2026, group with Dan' }).waitFor();
    app.expectNoProblems();
  });

  it('a details read answered after a rename or my removal does not put the old name back, nor the group', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    const group = await bob.client.conversations.createGroup('Plans', [ann.id]);
    await bob.client.conversations.createGroup('Other', [ann.id]);
    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);
    await page.conversationButton('Plans').waitFor();

    /**
     * Holds the next read of the group's details (opening a conversation reads them again): `read` resolves once
     * the server answered it, `release` lets the answer through then, and resolves once the page has it.
     */
    const holdRead = async () => {
      let read!: () => void;
      const answered = new Promise<void>((resolve) => (read = resolve));
      let letGo!: () => void;
      const held = new Promise<void>((resolve) => (letGo = resolve));
      let done!: () => void;
      const delivered = new Promise<void>((resolve) => (done = resolve));
      await page.page.route(
        `**/conversations/${group.id}`,
        async (route) => {
          if (route.request().method() !== 'GET') return route.fallback();
          const response = await route.fetch();
          read();
          await held;
          await route.fulfill({ response });
          done();
        },
        { times: 1 },
      );
      return {
        read: answered,
        async release() {
          letGo();
          await delivered;
          // The page takes it in (or drops it) at once: a little time for what it would redraw.
          await page.page.waitForTimeout(300);
        },
      };
    };

    // Read before the rename, answered after it: the new name stays.
    let hold = await holdRead();
    await page.conversationButton('Plans').click();
    await hold.read;
    await bob.client.conversations.rename(group.id, 'Plans 2');
    await page.waitForTitle('Plans 2');
    await hold.release();
    expect(await page.title.textContent()).to.equal('Plans 2');
    await page.conversationButton('Plans 2').waitFor();

    // Read before I was removed, answered after: the group stays gone, and no error shows.
    await page.page.goBack();
    hold = await holdRead();
    await page.conversationButton('Plans 2').click();
    await hold.read;
    await bob.client.conversations.removeParticipant(group.id, ann.id);
    await page.page
      .locator('#app-notice')
      .getByText(/^You are no longer in “Plans 2”/)
      .waitFor();
    await page.conversationButton('Plans 2').waitFor({ state: 'detached' });
    await hold.release();
    expect(await page.conversationButton('Plans 2').count(), 'Plans 2 in the list').to.equal(0);
    expect(await page.page.locator('#app-error').isVisible(), 'an error shown').to.equal(false);
    app.expectNoProblems();
  });

  it('added to a group that has messages: the list shows its last message and orders it by it, live as after a reload', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    const cat = await app.person('Cat');
    const dan = await app.person('Dan');
    await app.befriend(ann, bob);
    await app.befriend(bob, cat);
    await app.befriend(ann, dan);
    // The group is older than Ann's conversation with Dan, its messages newer.
    const group = await bob.client.conversations.createGroup('Hike', [cat.id]);
    const direct = await ann.client.conversations.createDirect(dan.id);
    await dan.client.messages.put(direct.id, 'dan-1', 'hi Ann');
    await bob.client.messages.put(group.id, 'bob-1', 'first');
    await bob.client.messages.put(group.id, 'bob-2', 'meet at 8');

    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);
    await page.conversationButton('Dan').waitFor();
    await bob.client.conversations.addParticipant(group.id, ann.id);

    const list = async () => ({
      titles: await page.page.locator('#conversations li[data-key] .title').allTextContents(),
      preview: await page.conversationButton('Hike').locator('.preview').textContent(),
    });
    // What the server lists (and a reload shows): the group first, with its last message and both unread.
    const expected = { titles: ['Hike', 'Dan'], preview: 'Bob: meet at 8' };
    await page.conversationButton('Hike').getByText('Bob: meet at 8').waitFor();
    expect(await list(), 'live').to.deep.equal(expected);
    expect(await page.conversationButton('Hike').locator('.unread').textContent()).to.equal('2');

    // Opened, it shows the messages it had before Ann came.
    await page.openConversation('Hike');
    await page.waitForMessage('meet at 8');
    expect(await page.shownMessages()).to.deep.equal(['first', 'meet at 8']);

    await page.page.reload();
    await page.waitForMessage('meet at 8');
    expect(await list(), 'after a reload').to.deep.equal(expected);
    app.expectNoProblems();
  });
});

// Removing a member past RATE_LIMIT_CONVERSATIONS_PER_MIN (a removal of someone else takes from it, as adds and
// renames do) showed a generic toast for six seconds and nothing in the group panel (review).
describe('web app: group changes past the change budget', function () {
  const app = useWebApp({ env: { RATE_LIMIT_CONVERSATIONS_PER_MIN: '2' } });

  it('the group panel says the change was refused for now and when to try again', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    const cat = await app.person('Cat');
    await app.befriend(ann, bob, cat);
    // The creation takes one of two.
    await ann.client.conversations.createGroup('Trip', [bob.id, cat.id]);
    const page = await app.open();
    page.acceptDialogs();
    await page.logIn(ann.username, PASSWORD);
    await page.openConversation('Trip');
    await page.page.getByRole('button', { name: 'Members (3)' }).click();
    const panel = page.page.getByRole('region', { name: 'Group details' });
    await panel.getByRole('button', { name: 'Remove Bob from the group' }).click();
    await page.page.getByRole('button', { name: 'Members (2)' }).waitFor();
    await panel.getByRole('button', { name: 'Remove Cat from the group' }).click();
    await page.page
      .locator('#details-status')
      .getByText(/^Too many group changes at once\. Try again in \d+ seconds?\.$/)
      .waitFor();
    app.expectNoProblems();
  });
});
