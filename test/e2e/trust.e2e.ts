import { expect } from 'chai';
import type { Locator } from 'playwright-core';
import { PASSWORD, useWebApp, type Person } from './fixture.js';

/** What the app shows cannot be used to pass as someone else, or to make a text read other than it was sent. */
describe('web app: who wrote it, what it says, where a link goes', function () {
  const app = useWebApp();

  /** A person whose display name, once set, is `name` (which may be anything the server takes). */
  async function named(base: string, name: string): Promise<Person> {
    const person = await app.person(base);
    await person.client.updateProfile({ displayName: name });
    return { ...person, displayName: name };
  }

  /**
   * Bob sends Ann `texts` in their direct conversation; Ann logs in and opens it, and sees the last of them
   * (`waitFor`, a part of it).
   */
  async function annReadsBob(texts: string[], waitFor: string) {
    const [ann, bob, direct] = await app.friendsInConversation('Ann', 'Bob');
    await bob.client.connect();
    for (const text of texts) await bob.client.send(direct.id, text);
    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);
    await page.openConversation('Bob');
    await page.waitForMessage(waitFor);
    return { ann, bob, direct, page };
  }

  it('shows everyone else’s @username beside their name, and "You" only for my own messages', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    const fakeYou = await named('Mallory', 'You');
    const fakeBob = await named('Dave', 'Bob');
    const fakeDeleted = await named('Eve', 'Deleted user');
    await app.befriend(ann, bob, fakeYou, fakeBob, fakeDeleted);
    const group = await ann.client.conversations.createGroup('Trust', [
      bob.id,
      fakeYou.id,
      fakeBob.id,
      fakeDeleted.id,
    ]);
    await fakeBob.client.conversations.createDirect(ann.id);
    await ann.client.connect();
    await ann.client.send(group.id, 'from the real Ann');
    for (const [person, text] of [
      [bob, 'from the real Bob'],
      [fakeBob, 'from the other Bob'],
      [fakeDeleted, 'from a living account'],
      [fakeYou, 'from someone called You'],
    ] as const) {
      await person.client.connect();
      await person.client.send(group.id, text);
    }

    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);
    await page.openConversation('Trust');
    await page.waitForMessage('from someone called You');
    const headers = await page.log.locator('li[data-seq]').evaluateAll((items) =>
      items.map((item) => ({
        body: item.querySelector('.body')?.textContent,
        sender: item.querySelector('.meta .sender')?.textContent,
        handle: item.querySelector('.meta .handle')?.textContent ?? null,
      })),
    );
    expect(headers).to.deep.equal([
      { body: 'from the real Ann', sender: 'You', handle: null },
      { body: 'from the real Bob', sender: 'Bob', handle: `@${bob.username}` },
      { body: 'from the other Bob', sender: 'Bob', handle: `@${fakeBob.username}` },
      { body: 'from a living account', sender: '“Deleted user”', handle: `@${fakeDeleted.username}` },
      { body: 'from someone called You', sender: '“You”', handle: `@${fakeYou.username}` },
    ]);

    // The header's member line and the members panel say who is who.
    const line = await page.page.locator('#conversation-members').textContent();
    for (const person of [bob, fakeYou, fakeBob, fakeDeleted]) expect(line).to.include(`@${person.username}`);
    expect(line).to.match(/^5 members: You \(owner\), /);
    await page.page.getByRole('button', { name: /^Members/ }).click();
    const members = await page.page.locator('#member-list li').allInnerTexts();
    expect(members.filter((m) => m.startsWith('You'))).to.have.length(1);
    expect(members.find((m) => m.includes(fakeYou.username))).to.match(/^“You”/);

    // The list: the group's preview names the sender unmistakably; a direct conversation shows whose it is.
    await page
      .conversationButton('Trust')
      .getByText(`“You” (@${fakeYou.username}): from someone called You`)
      .waitFor();
    await page.conversationButton('Bob').getByText(`@${fakeBob.username}`).waitFor();
    app.expectNoProblems();
  });

  it('shows invisible direction characters as markers, ends links at them, and links only to what the text says', async () => {
    const texts = [
      'Pay to account \u202E0987654321\u202C today',
      'invoice https://evil.example/\u202Etxt.exe',
      'login https://exаmple.com/login',
      'see https://accounts.google.com@evil.example/login',
    ];
    const { ann, bob, direct, page } = await annReadsBob(
      texts,
      'see https://accounts.google.com@evil.example/login',
    );
    const bodies = page.log.locator('li[data-seq] .body');
    expect(await bodies.allTextContents()).to.deep.equal([
      'Pay to account ⟨RLO⟩0987654321⟨PDF⟩ today',
      'invoice https://evil.example/⟨RLO⟩txt.exe',
      'login https://xn--exmple-4nf.com/login',
      'see https://accounts.google.com@evil.example/login',
    ]);
    // Each body takes its own direction and is isolated from what is around it.
    for (const dir of await bodies.evaluateAll((items) => items.map((i) => i.getAttribute('dir'))))
      expect(dir).to.equal('auto');
    expect(await bodies.first().evaluate((b) => getComputedStyle(b).unicodeBidi)).to.equal('isolate');

    const links = await page.log.locator('li[data-seq] .body a').evaluateAll((items) =>
      items.map((a) => ({
        text: a.textContent,
        href: a.getAttribute('href'),
        title: a.getAttribute('title'),
      })),
    );
    expect(links).to.deep.equal([
      { text: 'https://evil.example/', href: 'https://evil.example/', title: 'https://evil.example/' },
      {
        text: 'https://xn--exmple-4nf.com/login',
        href: 'https://xn--exmple-4nf.com/login',
        title: 'https://xn--exmple-4nf.com/login',
      },
    ]);
    // The preview in the list shows the markers too; what is stored stays as sent.
    await page
      .conversationButton('Bob')
      .getByText('see https://accounts.google.com@evil.example/login')
      .waitFor();
    await bob.client.send(direct.id, 'again \u202Eabc');
    await page.conversationButton('Bob').getByText('Bob: again ⟨RLO⟩abc').waitFor();
    const stored = await ann.client.messages.before(direct.id, undefined, 10);
    expect(stored.messages.map((m) => m.body)).to.deep.equal([...texts, 'again \u202Eabc']);
    app.expectNoProblems();
  });

  it('the message box, the inline editor and the list’s previews take the direction of the text in them', async () => {
    const ann = await app.person('Ann');
    const bob = await app.person('Bob');
    const cat = await app.person('Cat');
    await app.befriend(ann, bob, cat);
    await ann.client.conversations.createDirect(bob.id);
    const withCat = await cat.client.conversations.createDirect(ann.id);
    await cat.client.connect();
    await cat.client.send(withCat.id, 'שלום מקט');
    const rtl = (element: Locator) => element.evaluate((e) => e.matches(':dir(rtl)'));

    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);
    await page.openConversation('Bob');
    await page.composer.fill('שלום, מה שלומך?');
    expect(await rtl(page.composer)).to.equal(true);
    await page.composer.press('Enter');
    await page.waitForMessage('שלום, מה שלומך?');
    const mine = page.log.locator('li[data-seq]').last();
    await mine.hover();
    await mine.getByRole('button', { name: /^Actions for/ }).click();
    await mine.getByRole('button', { name: 'Edit', exact: true }).click();
    const editor = mine.getByRole('textbox', { name: 'Edit your message' });
    expect(await rtl(editor)).to.equal(true);
    await editor.press('Escape');
    await page.composer.fill('hello again');
    expect(await rtl(page.composer)).to.equal(false);

    // In the list, what was written takes its own direction; the label before it stays in the page's.
    await page.composer.fill('טיוטה');
    await page.openConversation('Cat');
    const draft = page.conversationButton('Bob').locator('.preview');
    await draft.getByText('Draft: טיוטה').waitFor();
    expect(await rtl(draft)).to.equal(false);
    expect(await rtl(draft.locator('[dir="auto"]'))).to.equal(true);
    const last = page.conversationButton('Cat').locator('.preview');
    await last.getByText('Cat: שלום מקט').waitFor();
    expect(await rtl(last.locator('[dir="auto"]'))).to.equal(true);
    app.expectNoProblems();
  });

  it('shows the invisible direction marks (RLM, ALM, LRM) as markers, so they cannot turn the groups of a number around', async () => {
    const { page } = await annReadsBob(
      [
        'pay to account \u200F1111 2222 now',
        'pay to account \u061C3333 4444 now',
        'pay to account \u200E5555 6666 now',
      ],
      '6666 now',
    );
    // Where each group of digits is drawn, from the left.
    const shown = await page.log.locator('li[data-seq] .body').evaluateAll((bodies) =>
      bodies.map((body) => {
        const groups: number[] = [];
        const walker = document.createTreeWalker(body, NodeFilter.SHOW_TEXT);
        for (let node = walker.nextNode(); node; node = walker.nextNode()) {
          const text = node.textContent ?? '';
          for (const match of text.matchAll(/\d{4}/g)) {
            const range = document.createRange();
            range.setStart(node, match.index);
            range.setEnd(node, match.index + 4);
            groups.push(range.getBoundingClientRect().left);
          }
        }
        return { text: body.textContent, markers: body.querySelectorAll('.control-mark').length, groups };
      }),
    );
    expect(shown.map((s) => s.text)).to.deep.equal([
      'pay to account ⟨RLM⟩1111 2222 now',
      'pay to account ⟨ALM⟩3333 4444 now',
      'pay to account ⟨LRM⟩5555 6666 now',
    ]);
    for (const { text, markers, groups } of shown) {
      expect(markers, text ?? '').to.equal(1);
      expect(groups[0], `${text}: the first group is drawn left of the second`).to.be.lessThan(groups[1]!);
    }
    // The list's preview shows the marker too.
    await page.conversationButton('Bob').getByText('Bob: pay to account ⟨LRM⟩5555 6666 now').waitFor();
    app.expectNoProblems();
  });

  // Visible right-to-left characters did what the invisible marks did: a Hebrew geresh (drawn like an apostrophe)
  // turned a number's groups around, and in a right-to-left message an address with Hebrew in its path was drawn
  // from its path's end, the host it opens last (WEBSEC hunt).
  it('draws a number’s groups in the order sent beside visible right-to-left characters, and an address in its own order', async () => {
    const { page } = await annReadsBob(
      [
        'Pay to account \u05F31111 2222 3333 today',
        'Pay to account \u05D0 4444 5555 today',
        'Pay to account \u06286666 7777 today',
        // An invisible byte order mark first, which no direction is read from (review).
        '\uFEFFPay to account \u05F38888 9999 today',
        'שלום https://evil.example/אבג/bank.example/login',
        // A message that starts with an address takes its direction from it, as before links were isolates (review).
        'https://shop.example/item שלום 120 50',
      ],
      'shop.example',
    );
    // Where each needle is drawn, from the left, whichever text node holds it.
    const where = (needles: string[]) =>
      page.log.locator('li[data-seq] .body').evaluateAll(
        (bodies, wanted) =>
          bodies.map((body) => {
            const left: Record<string, number> = {};
            const walker = document.createTreeWalker(body, NodeFilter.SHOW_TEXT);
            for (let node = walker.nextNode(); node; node = walker.nextNode()) {
              const text = node.textContent ?? '';
              for (const needle of wanted) {
                const at = text.indexOf(needle);
                if (at < 0) continue;
                const range = document.createRange();
                range.setStart(node, at);
                range.setEnd(node, at + needle.length);
                left[needle] = range.getBoundingClientRect().left;
              }
            }
            return { text: body.textContent ?? '', left };
          }),
        needles,
      );
    const shown = await where([
      '1111',
      '3333',
      '4444',
      '5555',
      '6666',
      '7777',
      '8888',
      '9999',
      'https://evil',
      'bank.example',
    ]);
    const before = (text: string, first: string, second: string) => {
      const item = shown.find((s) => s.text.includes(first));
      expect(item, first).to.not.equal(undefined);
      expect(item!.left[first], `${text}: "${first}" is drawn left of "${second}"`).to.be.lessThan(
        item!.left[second]!,
      );
    };
    before('geresh', '1111', '3333');
    before('a Hebrew letter', '4444', '5555');
    before('an Arabic letter', '6666', '7777');
    before('an address in a right-to-left message', 'https://evil', 'bank.example');
    before('an invisible mark first', '8888', '9999');
    const linkFirst = page.log.locator('li[data-seq] .body', { hasText: 'shop.example' });
    expect(await linkFirst.evaluate((body) => body.matches(':dir(ltr)'))).to.equal(true);
    app.expectNoProblems();
  });
});
