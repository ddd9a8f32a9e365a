import { expect } from 'chai';
import { PASSWORD, useWebApp, type WebApp } from './fixture.js';

/** A name that is not localhost, resolved by Chromium itself to the test node's address. */
const HOST = 'chat.test';

/** Ann and Bob, friends with a direct conversation, and the node's address by HOST. */
async function friendsOverHost(app: WebApp) {
  const [ann, bob] = await app.friendsInConversation('Ann', 'Bob');
  const url = new URL(app.server.url);
  url.hostname = HOST;
  return { ann, bob, url };
}

describe('web app over plain HTTP on a host name other than localhost', function () {
  const app = useWebApp({ browserArgs: [`--host-resolver-rules=MAP ${HOST} 127.0.0.1`] });

  it('renders, logs in and chats (the CSP does not send its scripts to https)', async () => {
    const { ann, bob, url } = await friendsOverHost(app);

    const page = await app.open({ url: url.toString() });
    expect(
      await page.page.evaluate(() => [location.protocol, location.hostname, window.isSecureContext]),
    ).to.deep.equal(['http:', HOST, false]);
    await page.logIn(ann.username, PASSWORD);
    await page.openConversation('Bob');
    await page.send('over plain http');
    await page.waitForMessage('over plain http');
    expect(
      (await bob.client.messages.before((await bob.client.conversations.list())[0]!.id)).messages.map(
        (m) => m.body,
      ),
    ).to.deep.equal(['over plain http']);
    // What needs a secure context says so instead of failing.
    await page.page.getByText('Notifications', { exact: true }).click();
    expect(await page.page.getByLabel('Browser notifications for new messages').isDisabled()).to.equal(true);
    await page.page.getByText('Browser notifications need the page to be served over HTTPS.').waitFor();
    // Chromium notes that it ignores helmet's Cross-Origin-Opener-Policy header on an http page: harmless.
    app.expectNoProblems(/Cross-Origin-Opener-Policy header has been ignored/);
  });
});

describe('web app over plain HTTP: two tabs share the login without Web Locks', function () {
  const app = useWebApp({
    browserArgs: [`--host-resolver-rules=MAP ${HOST} 127.0.0.1`],
    env: { JWT_TTL_SECONDS: '2' },
  });

  it('takes turns refreshing through a lease in localStorage, so neither tab is signed out', async () => {
    const { ann, url } = await friendsOverHost(app);

    const first = await app.open({ url: url.toString() });
    expect(await first.page.evaluate(() => window.isSecureContext)).to.equal(false);
    await first.logIn(ann.username, PASSWORD);
    const second = await app.openTab(first);
    await second.meName.getByText('Ann').waitFor();
    await first.openConversation('Bob');
    await second.openConversation('Bob');
    // Each tab refreshes its 2-second token twice a second for eight seconds.
    const started = Date.now();
    for (let round = 1; Date.now() - started < 8000; round++) {
      const [writer, reader] = round % 2 === 0 ? [first, second] : [second, first];
      await writer.send(`plain ${round}`);
      await reader.waitForMessage(`plain ${round}`);
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    for (const tab of [first, second]) {
      expect(await tab.page.locator('#auth-view').isHidden()).to.equal(true);
      await tab.meName.getByText('Ann').waitFor();
    }
    app.expectNoProblems(/Cross-Origin-Opener-Policy header has been ignored/);
  });
});
