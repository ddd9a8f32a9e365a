import { expect } from 'chai';
import type { Page } from 'playwright-core';
import { PASSWORD, useWebApp } from './fixture.js';

/** How wide the document is: wider than the window means the page scrolls sideways. */
function documentWidth(page: Page): Promise<number> {
  return page.evaluate(() => document.documentElement.scrollWidth);
}

describe('web app: layout and page basics', function () {
  const app = useWebApp();

  it('fits a phone screen with a long unbroken display name and group title', async () => {
    const ann = await app.person('Ann');
    const long = await app.person('Long');
    const longName = 'W'.repeat(45);
    await long.client.updateProfile({ displayName: longName });
    await app.befriend(ann, long);
    const title = 'T'.repeat(100);
    const group = await ann.client.conversations.createGroup(title, [long.id]);
    const direct = await long.client.conversations.createDirect(ann.id);
    await long.client.connect();
    await long.client.send(group.id, `${'x'.repeat(120)} in the group`);
    await long.client.send(direct.id, 'hello from a long name');

    const page = await app.open({ context: { viewport: { width: 390, height: 844 }, hasTouch: true } });
    await page.logIn(ann.username, PASSWORD);
    await page.conversationButton(title).waitFor();
    expect(await documentWidth(page.page), 'the list').to.be.at.most(390);
    await page.conversationButton(title).click();
    await page.waitForMessage('in the group');
    expect(await documentWidth(page.page), 'the group').to.be.at.most(390);
    await page.page.getByRole('button', { name: /^Members/ }).click();
    expect(await documentWidth(page.page), 'the members panel').to.be.at.most(390);
    await page.page.getByRole('button', { name: 'Back to conversations' }).click();
    await page.conversationButton(longName).click();
    await page.waitForMessage('hello from a long name');
    expect(await documentWidth(page.page), 'the direct conversation').to.be.at.most(390);
    app.expectNoProblems();
  });
});
