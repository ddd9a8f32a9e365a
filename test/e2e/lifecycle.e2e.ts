import { expect } from 'chai';
import type { Locator } from 'playwright-core';
import { storedState } from '../helpers/lifecycle.js';
import { waitFor } from '../helpers/waitFor.js';
import type { ChatPage } from './chatPage.js';
import { PASSWORD, useWebApp, type Person } from './fixture.js';

/** The stored message whose text contains `text` (the newest such). */
function item(page: ChatPage, text: string): Locator {
  return page.log
    .locator('li[data-seq]', { has: page.page.locator(':scope > .body', { hasText: text }) })
    .last();
}

function itemAt(page: ChatPage, seq: number): Locator {
  return page.log.locator(`li[data-seq="${seq}"]`);
}

function actionsButton(message: Locator): Locator {
  return message.getByRole('button', { name: /^Actions for/ });
}

/** Opens a message's actions (its "⋯" button) and returns the menu. */
async function openActions(message: Locator): Promise<Locator> {
  await actionsButton(message).click();
  const menu = message.getByRole('group', { name: /^Actions for/ });
  await menu.waitFor();
  return menu;
}

function chip(message: Locator, emoji: string): Locator {
  return message.getByRole('group', { name: 'Reactions' }).locator(`button[data-emoji="${emoji}"]`);
}

/** The chip's accessible name, e.g. "👍 2 reactions, including you". */
async function chipLabel(message: Locator, emoji: string): Promise<string | null> {
  return chip(message, emoji).getAttribute('aria-label');
}

async function waitForChip(message: Locator, emoji: string, label: string): Promise<void> {
  await waitFor(
    async () => (await chip(message, emoji).count()) === 1 && (await chipLabel(message, emoji)) === label,
    {
      what: `the ${emoji} chip saying "${label}"`,
    },
  );
}

/** The element that has keyboard focus, described by its seq, its data-action and its emoji. */
async function focused(page: ChatPage): Promise<{ seq?: string; action?: string; emoji?: string }> {
  return page.page.evaluate(() => {
    const active = document.activeElement;
    if (!(active instanceof HTMLElement)) return {};
    return {
      seq: active.closest<HTMLElement>('li[data-seq]')?.dataset.seq,
      action: active.dataset.action,
      emoji: active.dataset.emoji,
    };
  });
}

describe('web app: replies, edits, deletes and reactions', function () {
  const app = useWebApp();

  /** Ann and Bob each on a page of their own, logged in, with their direct conversation open. */
  async function openPages(ann: Person, bob: Person): Promise<{ annPage: ChatPage; bobPage: ChatPage }> {
    const annPage = await app.open();
    const bobPage = await app.open();
    await annPage.logIn(ann.username, PASSWORD);
    await bobPage.logIn(bob.username, PASSWORD);
    await annPage.openConversation('Bob');
    await bobPage.openConversation('Ann');
    return { annPage, bobPage };
  }

  /** Two friends with a direct conversation, each on a page of their own with it open. */
  async function pair(): Promise<{
    ann: Person;
    bob: Person;
    conversationId: string;
    annPage: ChatPage;
    bobPage: ChatPage;
  }> {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    const conversationId = (await ann.client.conversations.createDirect(bob.id)).id;
    const { annPage, bobPage } = await openPages(ann, bob);
    return { ann, bob, conversationId, annPage, bobPage };
  }

  /** Reloads a page and opens the conversation with `title` again. */
  async function reload(page: ChatPage, title: string): Promise<void> {
    await page.page.reload();
    await page.waitForTitle(title);
  }

  it('replies: the composer quotes the message answered, the reply quotes it, and the quote jumps to it, loading older history', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    const conversationId = (await ann.client.conversations.createDirect(bob.id)).id;
    // Seq 1, then 60 more, then a reply to seq 1: the first page Ann sees (50) does not hold seq 1.
    await bob.client.messages.put(conversationId, 'q-1', 'Where shall we meet on Saturday?');
    for (let batch = 0; batch < 3; batch++) {
      await Promise.all(
        Array.from({ length: 20 }, (_v, i) =>
          ann.client.messages.put(conversationId, `filler-${batch}-${i}`, `filler ${batch}`),
        ),
      );
    }
    await bob.client.messages.put(conversationId, 'q-62', 'Lunch at noon?');
    await bob.client.messages.put(conversationId, 'q-63', 'As I asked way back then', { replyToSeq: 1 });
    await ann.client.messages.read(conversationId, 63);

    const { annPage, bobPage } = await openPages(ann, bob);
    await annPage.waitForMessage('As I asked way back then');
    expect(await itemAt(annPage, 1).count()).to.equal(0);

    // A reply to a message not loaded yet quotes it all the same (read by itself).
    const oldReply = item(annPage, 'As I asked way back then');
    await oldReply
      .getByRole('button', { name: 'In reply to Bob: Where shall we meet on Saturday?' })
      .waitFor();

    // "Reply" shows the message answered above the message box; Escape (or ✕) cancels.
    const lunch = item(annPage, 'Lunch at noon?');
    await (await openActions(lunch)).getByRole('button', { name: 'Reply', exact: true }).click();
    const preview = annPage.page.locator('#reply-preview');
    await preview.waitFor();
    expect(await preview.locator('#reply-label').textContent()).to.equal('Replying to Bob');
    expect(await preview.locator('#reply-text').textContent()).to.equal('Lunch at noon?');
    expect(await annPage.composer.evaluate((e) => e === document.activeElement)).to.equal(true);
    expect(await annPage.composer.getAttribute('aria-describedby')).to.equal('reply-quote composer-hint');
    await annPage.composer.press('Escape');
    await preview.waitFor({ state: 'hidden' });
    await (await openActions(lunch)).getByRole('button', { name: 'Reply', exact: true }).click();
    await annPage.page.getByRole('button', { name: 'Cancel the reply' }).click();
    await preview.waitFor({ state: 'hidden' });
    await (await openActions(lunch)).getByRole('button', { name: 'Reply', exact: true }).click();
    await annPage.send('Yes, noon works');
    await preview.waitFor({ state: 'hidden' });

    // The reply quotes the original, for both.
    for (const page of [annPage, bobPage]) {
      await page.waitForMessage('Yes, noon works');
      const sender = page === annPage ? 'Bob' : 'You';
      await item(page, 'Yes, noon works')
        .getByRole('button', { name: `In reply to ${sender}: Lunch at noon?` })
        .waitFor();
    }
    const stored = await storedState(app.server.services.db.knex, conversationId);
    expect(stored.map((m) => [m.seq, m.replyToSeq]).filter(([, to]) => to !== null)).to.deep.equal([
      [63, 1],
      [64, 62],
    ]);

    // Activating the quote shows the original: scrolled to, highlighted and focused.
    await item(annPage, 'Yes, noon works').locator('button.quote').click();
    await waitFor(async () => (await focused(annPage)).seq === '62', { what: 'focus on the original' });
    expect(await itemAt(annPage, 62).getAttribute('class')).to.contain('highlight');

    // An original older than the history loaded: older pages load until it is there (by keyboard this time).
    await oldReply.locator('button.quote').focus();
    await annPage.page.keyboard.press('Enter');
    await itemAt(annPage, 1).waitFor();
    await waitFor(async () => (await focused(annPage)).seq === '1', { what: 'focus on seq 1' });
    expect(await itemAt(annPage, 1).getAttribute('class')).to.contain('highlight');
    const inView = await annPage.page.evaluate(() => {
      const scroller = document.getElementById('message-scroller')!.getBoundingClientRect();
      const box = document.querySelector('li[data-seq="1"]')!.getBoundingClientRect();
      return box.top >= scroller.top && box.bottom <= scroller.bottom;
    });
    expect(inView).to.equal(true);
    app.expectNoProblems();
  });

  it('edits: the sender edits inline (Escape cancels, Enter saves); the other sees the text and "edited" live and after a reload; a refused edit says why', async () => {
    const { ann, bob, conversationId, annPage, bobPage } = await pair();
    await bobPage.send('See you at 7');
    await annPage.waitForMessage('See you at 7');
    // Only my own messages can be edited.
    expect(
      await (
        await openActions(item(annPage, 'See you at 7'))
      )
        .getByRole('button', { name: 'Edit', exact: true })
        .count(),
    ).to.equal(0);
    await annPage.page.keyboard.press('Escape');

    const mine = item(bobPage, 'See you at 7');
    await (await openActions(mine)).getByRole('button', { name: 'Edit', exact: true }).click();
    const editor = mine.getByRole('textbox', { name: 'Edit your message' });
    expect(await editor.inputValue()).to.equal('See you at 7');
    expect(await editor.evaluate((e) => e === document.activeElement)).to.equal(true);
    await editor.fill('See you at 8');
    await editor.press('Escape');
    await editor.waitFor({ state: 'detached' });
    expect(await mine.locator(':scope > .body').textContent()).to.equal('See you at 7');
    expect((await focused(bobPage)).action).to.equal('menu');

    await (await openActions(mine)).getByRole('button', { name: 'Edit', exact: true }).click();
    await editor.fill('See you at 8, at the station');
    await editor.press('Enter');
    await editor.waitFor({ state: 'detached' });

    // Live for Ann: the new text, "edited" with the time of the edit on hover.
    const edited = item(annPage, 'See you at 8, at the station');
    await edited.waitFor();
    const marker = edited.locator('.meta .edited');
    expect(await marker.textContent()).to.equal('edited');
    expect(await marker.getAttribute('title')).to.match(/^Edited .*\d/);
    expect(await annPage.shownMessages()).to.deep.equal(['See you at 8, at the station']);
    const [row] = await storedState(app.server.services.db.knex, conversationId);
    expect(row).to.include({ seq: 1, body: 'See you at 8, at the station', edited: true, deleted: false });
    expect(await marker.getAttribute('datetime')).to.equal(row!.editedAt);

    await reload(annPage, 'Bob');
    await annPage.waitForMessage('See you at 8, at the station');
    expect(await item(annPage, 'See you at 8').locator('.meta .edited').textContent()).to.equal('edited');

    // Under a block the server refuses edits: the editor stays and says why.
    await ann.client.blocks.block(bob.id);
    const current = item(bobPage, 'See you at 8');
    await (await openActions(current)).getByRole('button', { name: 'Edit', exact: true }).click();
    const again = current.getByRole('textbox', { name: 'Edit your message' });
    await again.fill('See you never');
    await again.press('Enter');
    await current.getByRole('alert').getByText('Not saved: you cannot message this person.').waitFor();
    expect(await again.getAttribute('aria-invalid')).to.equal('true');
    await again.press('Escape');
    await again.waitFor({ state: 'detached' });
    expect((await storedState(app.server.services.db.knex, conversationId))[0]!.body).to.equal(
      'See you at 8, at the station',
    );
    app.expectNoProblems();
  });

  it('edits: clicking the open conversation in the list keeps the inline editor and the text typed in it', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    const conversationId = (await ann.client.conversations.createDirect(bob.id)).id;
    await bob.client.messages.put(conversationId, 'b-1', 'See you at 7');
    const page = await app.open();
    await page.logIn(bob.username, PASSWORD);
    await page.openConversation('Ann');
    await page.waitForMessage('See you at 7');

    const mine = item(page, 'See you at 7');
    await (await openActions(mine)).getByRole('button', { name: 'Edit', exact: true }).click();
    const editor = mine.getByRole('textbox', { name: 'Edit your message' });
    await editor.fill('See you at 8');
    // The conversation already open, clicked again in the list: the editor, its text and focus stay.
    await page.conversationButton('Ann').click();
    await page.waitForTitle('Ann');
    expect(await editor.count()).to.equal(1);
    expect(await editor.inputValue()).to.equal('See you at 8');
    expect(await editor.evaluate((e) => e === document.activeElement)).to.equal(true);
    await page.page.keyboard.press('Enter');
    await editor.waitFor({ state: 'detached' });
    await page.waitForMessage('See you at 8');
    expect((await storedState(app.server.services.db.knex, conversationId))[0]!.body).to.equal(
      'See you at 8',
    );
    app.expectNoProblems();
  });

  it('edits: a message deleted elsewhere while its edit is being typed keeps the typed text, unsaved, with why and Copy', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    const conversationId = (await ann.client.conversations.createDirect(bob.id)).id;
    await ann.client.messages.put(conversationId, 'a-1', 'the original');
    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);
    await page.openConversation('Bob');
    await page.waitForMessage('the original');
    const mine = itemAt(page, 1);
    await (await openActions(mine)).getByRole('button', { name: 'Edit', exact: true }).click();
    const editor = mine.getByRole('textbox', { name: 'Edit your message' });
    await editor.fill('a careful rewrite,\nthree paragraphs long');

    // Ann, on her phone, deletes the message meanwhile.
    await ann.client.deleteMessage(conversationId, 1);
    await mine.locator(':scope > .body.gone').getByText('message deleted').waitFor();
    await editor.waitFor({ state: 'detached' });
    await mine
      .getByRole('alert')
      .getByText(/^Not saved: the message was deleted\. What you typed is below; copy it to keep it\.$/)
      .waitFor();
    expect(await mine.getByLabel('Your unsaved edit', { exact: true }).textContent()).to.equal(
      'a careful rewrite,\nthree paragraphs long',
    );
    // Focus was in the editor: it goes to Copy, the next step.
    const copy = mine.getByRole('button', { name: 'Copy your unsaved edit' });
    expect(await copy.evaluate((button) => button === document.activeElement)).to.equal(true);

    // Dismissed, it goes; the editor works for the next message as before.
    await mine.getByRole('button', { name: 'Dismiss your unsaved edit' }).click();
    await mine.getByLabel('Your unsaved edit', { exact: true }).waitFor({ state: 'detached' });
    await page.send('the next one');
    await page.waitForMessage('the next one');
    const next = item(page, 'the next one');
    await (await openActions(next)).getByRole('button', { name: 'Edit', exact: true }).click();
    const again = next.getByRole('textbox', { name: 'Edit your message' });
    await again.fill('the next one, edited');
    await again.press('Enter');
    await again.waitFor({ state: 'detached' });
    await page.waitForMessage('the next one, edited');
    app.expectNoProblems();
  });

  it('reactions: a reaction shows live as a chip with its count and who reacted, toggles by click, and stays after a reload', async () => {
    const { ann, bob, conversationId, annPage, bobPage } = await pair();
    await bob.client.messages.put(conversationId, 'pizza', 'Pizza tonight?');
    await annPage.waitForMessage('Pizza tonight?');
    await bobPage.waitForMessage('Pizza tonight?');

    const annItem = item(annPage, 'Pizza tonight?');
    const bobItem = item(bobPage, 'Pizza tonight?');
    const menu = await openActions(annItem);
    await menu.getByRole('button', { name: 'React with 👍' }).click();
    await waitForChip(annItem, '👍', '👍 1 reaction, yours');
    expect(await chip(annItem, '👍').getAttribute('aria-pressed')).to.equal('true');

    // Bob sees it live, with Ann's name on hover.
    await waitForChip(bobItem, '👍', '👍 1 reaction');
    expect(await chip(bobItem, '👍').getAttribute('aria-pressed')).to.equal('false');
    expect(await chip(bobItem, '👍').textContent()).to.equal('👍1');
    const reactors = bobItem.getByRole('tooltip');
    expect(await reactors.isVisible()).to.equal(false);
    await chip(bobItem, '👍').hover();
    await reactors.waitFor();
    expect(await reactors.textContent()).to.equal('Ann');

    // Bob adds his: both see two, each "including you".
    await chip(bobItem, '👍').click();
    await waitForChip(bobItem, '👍', '👍 2 reactions, including you');
    await waitForChip(annItem, '👍', '👍 2 reactions, including you');
    let [row] = await storedState(app.server.services.db.knex, conversationId);
    expect(row!.reactions).to.deep.equal([{ emoji: '👍', userIds: [ann.id, bob.id] }]);

    await reload(bobPage, 'Ann');
    await bobPage.waitForMessage('Pizza tonight?');
    await waitForChip(bobItem, '👍', '👍 2 reactions, including you');
    await chip(bobItem, '👍').hover();
    expect(await bobItem.getByRole('tooltip').textContent()).to.equal('Ann and you');

    // Ann takes hers back: Bob sees it at once.
    await chip(annItem, '👍').click();
    await waitForChip(bobItem, '👍', '👍 1 reaction, yours');
    [row] = await storedState(app.server.services.db.knex, conversationId);
    expect(row!.reactions).to.deep.equal([{ emoji: '👍', userIds: [bob.id] }]);
    app.expectNoProblems();
  });

  it('works from the keyboard: the actions menu (arrows, Enter, Escape) and the reaction chips (Enter and Space)', async () => {
    const { ann, bob, conversationId, annPage, bobPage } = await pair();
    await bob.client.messages.put(conversationId, 'plan', 'Board games on Friday?');
    const annItem = item(annPage, 'Board games on Friday?');
    await annItem.waitFor();

    // The actions button is reached by focus (not only by hovering), opens with Enter, starts on the picker.
    const toggle = actionsButton(annItem);
    await toggle.focus();
    expect(await toggle.evaluate((e) => getComputedStyle(e).opacity)).to.equal('1');
    await annPage.page.keyboard.press('Enter');
    expect(await toggle.getAttribute('aria-expanded')).to.equal('true');
    expect(await focused(annPage)).to.deep.include({ action: 'react', emoji: '👍' });
    await annPage.page.keyboard.press('Escape');
    expect(await toggle.getAttribute('aria-expanded')).to.equal('false');
    expect((await focused(annPage)).action).to.equal('menu');

    await annPage.page.keyboard.press('Enter');
    await annPage.page.keyboard.press('ArrowRight');
    expect(await focused(annPage)).to.deep.include({ action: 'react', emoji: '❤️' });
    await annPage.page.keyboard.press('Enter');
    await waitForChip(annItem, '❤️', '❤️ 1 reaction, yours');
    expect((await focused(annPage)).action).to.equal('menu');

    // The chip is a toggle button: Space takes the reaction back, Enter gives it again; focus stays on it,
    // and keyboard focus shows who reacted.
    await annPage.page.keyboard.press('Shift+Tab');
    expect(await focused(annPage)).to.deep.include({ action: 'reaction', emoji: '❤️' });
    await annItem.getByRole('tooltip').getByText('You').waitFor();
    await annPage.page.keyboard.press('Space');
    await waitFor(async () => (await chip(annItem, '❤️').count()) === 0, { what: 'the chip gone' });
    expect((await storedState(app.server.services.db.knex, conversationId))[0]!.reactions).to.deep.equal([]);

    // With Bob's reaction the chip stays when Ann toggles hers, and focus stays on it.
    await bob.client.react(conversationId, 1, '🎉');
    await waitForChip(annItem, '🎉', '🎉 1 reaction');
    await chip(annItem, '🎉').focus();
    await annPage.page.keyboard.press('Enter');
    await waitForChip(annItem, '🎉', '🎉 2 reactions, including you');
    expect(await focused(annPage)).to.deep.include({ action: 'reaction', emoji: '🎉' });
    expect(await chip(annItem, '🎉').getAttribute('aria-pressed')).to.equal('true');
    await annPage.page.keyboard.press('Space');
    await waitForChip(annItem, '🎉', '🎉 1 reaction');
    expect(await focused(annPage)).to.deep.include({ action: 'reaction', emoji: '🎉' });
    await annPage.page.keyboard.press('Enter');
    await waitForChip(annItem, '🎉', '🎉 2 reactions, including you');
    await waitForChip(item(bobPage, 'Board games'), '🎉', '🎉 2 reactions, including you');
    expect((await storedState(app.server.services.db.knex, conversationId))[0]!.reactions).to.deep.equal([
      { emoji: '🎉', userIds: [bob.id, ann.id] },
    ]);
    app.expectNoProblems();
  });

  it('deletes: after a confirmation the sender deletes; the other sees "message deleted" in place live and after a reload', async () => {
    const { ann, bob, conversationId, annPage, bobPage } = await pair();
    await bob.client.messages.put(conversationId, 'd-1', 'first');
    await bob.client.messages.put(conversationId, 'd-2', 'oops, wrong chat');
    await ann.client.messages.put(conversationId, 'd-3', 'what?', { replyToSeq: 2 });
    await bobPage.waitForMessage('what?');
    await annPage.waitForMessage('what?');
    // Not Ann's to delete in a direct conversation.
    expect(
      await (await openActions(item(annPage, 'oops'))).getByRole('button', { name: 'Delete…' }).count(),
    ).to.equal(0);
    await annPage.page.keyboard.press('Escape');

    // Cancel first: nothing happens.
    const oops = item(bobPage, 'oops, wrong chat');
    const dialog = bobPage.page.getByRole('dialog', { name: 'Delete your message?' });
    await (await openActions(oops)).getByRole('button', { name: 'Delete…' }).click();
    await dialog.waitFor();
    expect(await dialog.locator('blockquote').textContent()).to.equal('oops, wrong chat');
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    await dialog.waitFor({ state: 'hidden' });
    expect((await focused(bobPage)).action).to.equal('menu');
    expect((await storedState(app.server.services.db.knex, conversationId))[1]).to.include({
      deleted: false,
    });

    await (await openActions(oops)).getByRole('button', { name: 'Delete…' }).click();
    await dialog.getByRole('button', { name: 'Delete for everyone' }).click();
    await dialog.waitFor({ state: 'hidden' });
    await itemAt(bobPage, 2).locator('.body', { hasText: 'message deleted' }).waitFor();

    // Ann sees it live, in its place, without actions; the reply's quote says so too.
    for (const page of [annPage, bobPage]) {
      await itemAt(page, 2).locator(':scope > .body', { hasText: 'message deleted' }).waitFor();
      expect(await page.shownMessages()).to.deep.equal(['first', 'message deleted', 'what?']);
      expect(await page.shownSeqs()).to.deep.equal([1, 2, 3]);
      expect(await actionsButton(itemAt(page, 2)).count()).to.equal(0);
      await item(page, 'what?').locator('.quote-text', { hasText: 'message deleted' }).waitFor();
    }
    const stored = await storedState(app.server.services.db.knex, conversationId);
    expect(stored[1]).to.include({ seq: 2, body: '', deleted: true });

    await reload(annPage, 'Bob');
    await annPage.waitForMessage('what?');
    expect(await annPage.shownMessages()).to.deep.equal(['first', 'message deleted', 'what?']);
    await item(annPage, 'what?').locator('.quote-text', { hasText: 'message deleted' }).waitFor();
    expect(await actionsButton(itemAt(annPage, 2)).count()).to.equal(0);
    app.expectNoProblems();
  });

  it('a message deleted after the list was read, before the page followed the conversation, shows deleted in the list', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    const conversationId = (await ann.client.conversations.createDirect(bob.id)).id;
    await bob.client.messages.put(conversationId, 'late-1', 'a secret sent to the wrong person');

    // Ann's page reads its list, then subscribes: held there, before it joins the conversation's room.
    const service = app.server.services.messages;
    const assertParticipant = service.assertParticipant.bind(service);
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let holding!: () => void;
    const held = new Promise<void>((resolve) => (holding = resolve));
    service.assertParticipant = async (userId, id) => {
      if (userId === ann.id && id === conversationId) {
        holding();
        await released;
      }
      await assertParticipant(userId, id);
    };
    try {
      const annPage = await app.open();
      await annPage.logIn(ann.username, PASSWORD);
      await held;
      const preview = annPage.conversationButton('Bob').locator('.preview');
      await preview.getByText('a secret sent to the wrong person').waitFor();
      await bob.client.messages.remove(conversationId, 1);
      release();
      await preview.getByText('message deleted').waitFor();
    } finally {
      release();
      service.assertParticipant = assertParticipant;
    }
    app.expectNoProblems();
  });

  it("deletes in a group: its owner deletes another member's message, which the others may not (phone layout)", async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    const cat = await app.person('Cat');
    await app.befriend(ann, bob, cat);
    const group = await ann.client.conversations.createGroup('Climbing', [bob.id, cat.id]);
    await bob.client.messages.put(group.id, 'spam', 'Buy cheap ropes at example.test');
    await cat.client.messages.put(group.id, 'ok', 'Sunday at the gym?');

    const annPage = await app.open();
    const catPage = await app.open({
      context: { viewport: { width: 390, height: 740 }, hasTouch: true, isMobile: true },
    });
    await annPage.logIn(ann.username, PASSWORD);
    await catPage.logIn(cat.username, PASSWORD);
    await annPage.openConversation('Climbing');
    await catPage.openConversation('Climbing');
    await catPage.waitForMessage('Buy cheap ropes');

    // On a touch screen the actions button shows without hovering. A member may not delete Bob's message.
    const catView = item(catPage, 'Buy cheap ropes');
    expect(await actionsButton(catView).evaluate((e) => getComputedStyle(e).opacity)).to.equal('1');
    const catMenu = await openActions(catView);
    expect(await catMenu.getByRole('button').allTextContents()).to.deep.equal([
      '👍',
      '❤️',
      '😂',
      '😮',
      '😢',
      '🎉',
      'Reply',
    ]);
    await catPage.page.keyboard.press('Escape');

    await (
      await openActions(item(annPage, 'Buy cheap ropes'))
    )
      .getByRole('button', { name: 'Delete…' })
      .click();
    const dialog = annPage.page.getByRole('dialog', { name: 'Delete Bob’s message?' });
    await dialog.getByRole('button', { name: 'Delete for everyone' }).click();
    await dialog.waitFor({ state: 'hidden' });
    for (const page of [annPage, catPage]) {
      await itemAt(page, 1).locator(':scope > .body', { hasText: 'message deleted' }).waitFor();
      expect(await page.shownMessages()).to.deep.equal(['message deleted', 'Sunday at the gym?']);
    }
    const stored = await storedState(app.server.services.db.knex, group.id);
    expect(stored.map((m) => [m.seq, m.senderId, m.deleted])).to.deep.equal([
      [1, bob.id, true],
      [2, cat.id, false],
    ]);
    app.expectNoProblems();
  });
});
