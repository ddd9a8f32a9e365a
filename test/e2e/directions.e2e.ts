import { expect } from 'chai';
import type { Locator } from 'playwright-core';
import { PASSWORD, useWebApp } from './fixture.js';
import { waitFor } from '../helpers/waitFor.js';

// I18N hunt: a message's text outside its bubble (a reply's quote in the log and above the message box, the list's
// preview) and a group's title take their own direction and lay out a number's groups in the order sent, as the
// bubble does (trust.e2e.ts); digits of any script count as a number's.

/**
 * For each element of `locator`: its text, where each of `needles` is drawn (the left edge of its first occurrence,
 * whichever text node holds it) and where the whole text starts (its leftmost drawn point).
 */
function drawn(locator: Locator, needles: string[]) {
  return locator.evaluateAll(
    (elements, wanted) =>
      elements.map((element) => {
        const left: Record<string, number> = {};
        const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
        for (let node = walker.nextNode(); node; node = walker.nextNode()) {
          const text = node.textContent ?? '';
          for (const needle of wanted) {
            const at = text.indexOf(needle);
            if (at < 0 || needle in left) continue;
            const range = document.createRange();
            range.setStart(node, at);
            range.setEnd(node, at + needle.length);
            left[needle] = range.getBoundingClientRect().left;
          }
        }
        const all = document.createRange();
        all.selectNodeContents(element);
        return { text: element.textContent ?? '', left, start: all.getBoundingClientRect().left };
      }),
    needles,
  );
}

describe('web app: right-to-left text and numbers outside the message bubble', function () {
  const app = useWebApp();

  /** Ann's page on her conversation with Bob, who sent `texts` (and, with `reply`, a reply to the first). */
  async function annReadsBob(texts: string[], reply = false) {
    const [ann, bob, direct] = await app.friendsInConversation('Ann', 'Bob');
    for (const [i, text] of texts.entries()) await bob.client.messages.put(direct.id, `m-${i}`, text);
    if (reply) await bob.client.messages.put(direct.id, 'reply', 'see above', { replyToSeq: 1 });
    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);
    await page.openConversation('Bob');
    await page.waitForMessage(reply ? 'see above' : texts.at(-1)!);
    return page;
  }

  it('lays out the groups of a number in Arabic-Indic digits in the order sent, as ASCII digits', async () => {
    const page = await annReadsBob([
      'رقم الحساب ١١١١ ٢٢٢٢ اليوم',
      'Pay to account ٣٣٣٣ ٤٤٤٤ today',
      // With Arabic's decimal separator (REV1: a number of its own each side of it, 12.50 read 50.12).
      'المبلغ ١٢٫٥٠ دينار',
    ]);
    const bodies = await drawn(page.log.locator('li[data-seq] .body'), [
      '١١١١',
      '٢٢٢٢',
      '٣٣٣٣',
      '٤٤٤٤',
      '١٢',
      '٥٠',
    ]);
    expect(bodies).to.have.length(3);
    const [arabic, latin, decimal] = bodies;
    expect(decimal!.left['١٢'], `"${decimal!.text}": the whole part left of the fraction`).to.be.lessThan(
      decimal!.left['٥٠']!,
    );
    expect(arabic!.left['١١١١'], `"${arabic!.text}": the first group left of the second`).to.be.lessThan(
      arabic!.left['٢٢٢٢']!,
    );
    expect(latin!.left['٣٣٣٣'], `"${latin!.text}": the first group left of the second`).to.be.lessThan(
      latin!.left['٤٤٤٤']!,
    );
    app.expectNoProblems();
  });

  it('lays out a number in the order sent in the quote of a reply, above the message box and in the list', async () => {
    const text = 'Pay to account \u05F31111 2222 3333 today';
    const page = await annReadsBob([text], true);
    const quote = await drawn(page.log.locator('li[data-seq] .quote-text'), ['1111', '3333']);
    expect(quote[0]!.left['1111'], `quote "${quote[0]!.text}"`).to.be.lessThan(quote[0]!.left['3333']!);

    // Ann answers it: the quote above her message box.
    const item = page.log.locator('li[data-seq]', { hasText: 'Pay to account' }).first();
    await item.getByRole('button', { name: /^Actions for/ }).click();
    await item
      .getByRole('group', { name: /^Actions for/ })
      .getByRole('button', { name: 'Reply', exact: true })
      .click();
    await page.page.locator('#reply-preview').waitFor();
    const above = await drawn(page.page.locator('#reply-text'), ['1111', '3333']);
    expect(above[0]!.left['1111'], `above the box "${above[0]!.text}"`).to.be.lessThan(
      above[0]!.left['3333']!,
    );

    // The list shows the newest message: she sends the number herself.
    await page.send(text);
    const preview = page.conversationButton('Bob').locator('.preview');
    await preview.getByText('1111', { exact: false }).waitFor();
    const listed = await drawn(preview, ['1111', '3333']);
    expect(listed[0]!.left['1111'], `preview "${listed[0]!.text}"`).to.be.lessThan(listed[0]!.left['3333']!);
    app.expectNoProblems();
  });

  it('lays out a right-to-left quote and group title right to left (their "?", the sentence\'s end, drawn leftmost)', async () => {
    const page = await annReadsBob(['שלום, מה שלומך?'], true);
    const quote = await drawn(page.log.locator('li[data-seq] .quote-text'), ['?']);
    expect(quote[0]!.left['?'], `quote "${quote[0]!.text}"`).to.be.at.most(quote[0]!.start + 1);

    const ann = await app.person('Ann');
    const dan = await app.person('Dan');
    await app.befriend(ann, dan);
    await ann.client.conversations.createGroup('מה נשמע?', [dan.id]);
    const other = await app.open();
    await other.logIn(ann.username, PASSWORD);
    await other.openConversation('מה נשמע?');
    const listed = await drawn(other.page.locator('#conversations .title'), ['?']);
    const header = await drawn(other.title, ['?']);
    expect(listed[0]!.left['?'], `list "${listed[0]!.text}"`).to.be.at.most(listed[0]!.start + 1);
    expect(header[0]!.left['?'], `header "${header[0]!.text}"`).to.be.at.most(header[0]!.start + 1);
    app.expectNoProblems();
  });

  it('lays out two right-to-left names of a group in their order, in the list and the members line', async () => {
    const ann = await app.person('Ann');
    const dan = await app.person('Dan');
    const eli = await app.person('Eli');
    await app.befriend(ann, dan, eli);
    await dan.client.updateProfile({ displayName: 'דן' });
    await eli.client.updateProfile({ displayName: 'אלי' });
    await ann.client.conversations.createGroup('Trip', [dan.id, eli.id]);
    const page = await app.open();
    await page.logIn(ann.username, PASSWORD);

    // Under the group's title, the others by name (alef before dalet): side by side they made one right-to-left
    // run, drawn "דן ,אלי" (the second name leftmost).
    await page.conversationButton('Trip').waitFor();
    /** Where the names are drawn in the first element of `selector`, once it shows them all (read again until then). */
    const drawnOnce = async (selector: string, names: string[]) => {
      let seen: Awaited<ReturnType<typeof drawn>>[number] | undefined;
      await waitFor(
        async () => {
          seen = (await drawn(page.page.locator(selector), names))[0];
          return seen !== undefined && names.every((name) => (seen?.left[name] ?? 0) > 0);
        },
        { what: `the names drawn in ${selector}` },
      );
      return seen!;
    };
    const listed = await drawnOnce('#conversations .members', ['אלי', 'דן']);
    expect(listed.text).to.equal('אלי, דן');
    expect(listed.left['אלי'], `list "${listed.text}" ${JSON.stringify(listed)}`).to.be.below(
      listed.left['דן']!,
    );

    await page.openConversation('Trip');
    const line = await drawnOnce('#conversation-members', ['You', 'אלי', 'דן']);
    expect(line.text).to.equal(`3 members: You (owner), אלי @${eli.username}, דן @${dan.username}`);
    expect(line.left['You']).to.be.below(line.left['אלי']!);
    expect(line.left['אלי'], `members "${line.text}" ${JSON.stringify(line)}`).to.be.below(line.left['דן']!);
    app.expectNoProblems();
  });
});
