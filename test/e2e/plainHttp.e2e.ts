import { expect } from 'chai';
import { PASSWORD, useWebApp } from './fixture.js';

/** A name that is not localhost, resolved by Chromium itself to the test node's address. */
const HOST = 'chat.test';

describe('web app over plain HTTP on a host name other than localhost', function () {
  const app = useWebApp({ browserArgs: [`--host-resolver-rules=MAP ${HOST} 127.0.0.1`] });

  it('renders, logs in and chats (the CSP does not send its scripts to https)', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    await app.befriend(ann, bob);
    await bob.client.conversations.createDirect(ann.id);
    const url = new URL(app.server.url);
    url.hostname = HOST;

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
