import { expect } from 'chai';
import { startProxy, type FaultProxy } from '../helpers/proxy.js';
import { waitFor } from '../helpers/waitFor.js';
import { PASSWORD, useWebApp } from './fixture.js';

/**
 * docs/messaging.md: "`conversation:updated`, `user:updated`, `typing` and `conversation:read` are not told again:
 * clients reload titles, names and read markers when they reconnect." The web app reads its list again when its
 * socket is back: what was told while it was away (a read on another device, a group it was added to) shows.
 */
describe('web app: what changed while the tab was disconnected', function () {
  const app = useWebApp();
  let proxy: FaultProxy | undefined;
  afterEach(async () => {
    await proxy?.close();
    proxy = undefined;
  });

  it('shows no unread messages after my other device read them while this tab was disconnected', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    const withBob = (await bob.client.conversations.createDirect(ann.id)).id;

    proxy = await startProxy(app.server.url);
    const page = await app.open({ url: proxy.url });
    await page.logIn(ann.username, PASSWORD);
    await page.conversationButton('Bob').waitFor();
    for (const text of ['one', 'two', 'three']) await bob.client.messages.put(withBob, text, text);
    await waitFor(async () => (await page.page.title()) === '(3) XFChat', { what: 'three unread' });

    await proxy.stop();
    await page.banner.getByText(/Reconnecting/).waitFor();
    // Ann reads them on her phone meanwhile.
    await ann.client.messages.read(withBob, 3);
    expect((await ann.client.conversations.list())[0]?.unreadCount).to.equal(0);
    await proxy.start();
    await waitFor(async () => (await page.banner.getAttribute('data-state')) === 'connected', {
      what: 'reconnected',
    });
    let title = '';
    try {
      await waitFor(async () => (title = await page.page.title()) === 'XFChat', {
        what: 'the unread count to follow the read made elsewhere',
        timeoutMs: 8000,
      });
    } finally {
      console.log('title after reconnect:', title);
    }
  });

  it('lists a group I was added to while this tab was disconnected, once it is connected again', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    await bob.client.conversations.createDirect(ann.id);
    proxy = await startProxy(app.server.url);
    const page = await app.open({ url: proxy.url });
    await page.logIn(ann.username, PASSWORD);
    await page.conversationButton('Bob').waitFor();
    await proxy.stop();
    await page.banner.getByText(/Reconnecting/).waitFor();
    const hike = await bob.client.conversations.createGroup('Hike', [ann.id]);
    await bob.client.messages.put(hike.id, 'h1', 'see you there');
    await proxy.start();
    await waitFor(async () => (await page.banner.getAttribute('data-state')) === 'connected', {
      what: 'reconnected',
    });
    await page.conversationButton('Hike').waitFor({ timeout: 8000 });
  });
});
