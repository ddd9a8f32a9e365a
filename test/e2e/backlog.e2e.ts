import { expect } from 'chai';
import { PASSWORD, useWebApp } from './fixture.js';

/**
 * Opening a conversation with more unread messages than one history page (200) marked them all read: between two
 * pages the view sat at the bottom, and a scroll event there moved the read marker to the newest message, which the
 * reader had not seen (nor had their other devices, told of the read). Nothing is marked read while the pages down
 * to the first unread message come in (SYNC hunt).
 */
describe('web app: coming back to a long backlog', function () {
  this.timeout(120_000);
  const app = useWebApp();

  it('opens 300 unread messages at the "New messages" line and leaves them unread until the reader gets there', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    const { id } = await ann.client.conversations.createDirect(bob.id);
    const { knex } = app.server.services.db;
    const total = 400;
    await knex.raw(
      `INSERT INTO messages (conversation_id, sender_id, seq, client_msg_id, body, version)
       SELECT ?, ?, g, 'backlog-' || g, 'message ' || g, g FROM generate_series(1, ?::int) AS g`,
      [id, bob.id, total],
    );
    await knex('conversations').where({ id }).update({ last_seq: total, version: total });
    await ann.client.messages.read(id, 100);

    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);
    await page.page.getByRole('button', { name: 'Bob, 300 unread' }).waitFor();
    await page.openConversation('Bob');
    await page.log.locator('.new-divider').waitFor();
    await page.page.locator(`li[data-seq="${total}"]`).waitFor({ state: 'attached' });
    // The pages are in: a read marker moved by them would have been sent by now (the app sends within a second).
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(await page.inView(page.page.locator(`li[data-seq="${total}"]`)), 'the newest in view').to.equal(
      false,
    );
    const unread = (await ann.client.conversations.list()).find((c) => c.id === id)?.unreadCount;
    expect(unread, 'unread on the server').to.equal(300);
    await page.page.getByRole('button', { name: 'Jump to latest (300 new)' }).waitFor();
    app.expectNoProblems();
  });
});
