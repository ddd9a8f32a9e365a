import { expect } from 'chai';
import { linkTarget, textParts } from '../../web/linkify.js';
import {
  codePointLength,
  fieldProblems,
  looksLikeAppLabel,
  nameNeedsHandle,
  personName,
  showControls,
  startOf,
  waitWords,
} from '../../web/text.js';

/** What a reader sees of `text` in a message body: plain text, links as `[text -> href]`, markers as they show. */
function shown(text: string): string {
  return textParts(text)
    .map((part) =>
      part.kind === 'link'
        ? `[${part.text} -> ${part.href}]`
        : part.kind === 'control'
          ? part.marker
          : part.text,
    )
    .join('');
}

describe('web app text rules', function () {
  describe('invisible direction characters', function () {
    it('show as markers, so an override cannot reverse digits or a file name', function () {
      expect(shown('Pay to account \u202E0987654321\u202C today')).to.equal(
        'Pay to account ⟨RLO⟩0987654321⟨PDF⟩ today',
      );
      expect(showControls('a\u202Ab\u202Bc\u202Dd\u2066e\u2067f\u2068g\u2069')).to.equal(
        'a⟨LRE⟩b⟨RLE⟩c⟨LRO⟩d⟨LRI⟩e⟨RLI⟩f⟨FSI⟩g⟨PDI⟩',
      );
      // Nothing else changes: right-to-left text as such is not a trick.
      expect(showControls('שלום world')).to.equal('שלום world');
    });

    it('show the invisible marks (LRM, RLM, ALM) as markers too, so a mark cannot turn the groups of a number around', function () {
      expect(shown('pay to account \u200F1111 2222 now')).to.equal('pay to account ⟨RLM⟩1111 2222 now');
      expect(shown('pay to account \u061C3333 4444 now')).to.equal('pay to account ⟨ALM⟩3333 4444 now');
      expect(shown('pay to account \u200E5555 6666 now')).to.equal('pay to account ⟨LRM⟩5555 6666 now');
      // Previews, quotes and notifications (plain text) show them the same way.
      expect(showControls('a\u200Eb\u200Fc\u061Cd')).to.equal('a⟨LRM⟩b⟨RLM⟩c⟨ALM⟩d');
    });

    it('end a web address', function () {
      expect(shown('get https://evil.example/\u202Etxt.exe now')).to.equal(
        'get [https://evil.example/ -> https://evil.example/]⟨RLO⟩txt.exe now',
      );
      expect(shown('https://a.example/x\u2066y')).to.equal(
        '[https://a.example/x -> https://a.example/x]⟨LRI⟩y',
      );
      for (const [mark, marker] of [
        ['\u200E', '⟨LRM⟩'],
        ['\u200F', '⟨RLM⟩'],
        ['\u061C', '⟨ALM⟩'],
      ])
        expect(shown(`https://a.example/x${mark}y`)).to.equal(
          `[https://a.example/x -> https://a.example/x]${marker}y`,
        );
      expect(shown('https://a.example/x\u200By')).to.equal(
        '[https://a.example/x -> https://a.example/x]\u200By',
      );
    });
  });

  describe('links say where they go', function () {
    it('show a host typed in another script as the punycode host it opens, with the target as the href', function () {
      expect(linkTarget('https://exаmple.com/login')).to.deep.equal({
        href: 'https://xn--exmple-4nf.com/login',
        text: 'https://xn--exmple-4nf.com/login',
      });
      expect(linkTarget('https://EXAMPLE.com/Path?q=1#f')).to.deep.equal({
        href: 'https://example.com/Path?q=1#f',
        text: 'https://EXAMPLE.com/Path?q=1#f',
      });
      expect(linkTarget('https://example.com/path')).to.deep.equal({
        href: 'https://example.com/path',
        text: 'https://example.com/path',
      });
    });

    it('do not make a link of an address with a user part (the host is after the "@")', function () {
      expect(linkTarget('https://accounts.google.com@evil.example/login')).to.equal(undefined);
      expect(linkTarget('https://user:pass@evil.example/')).to.equal(undefined);
      expect(linkTarget('https://accounts.google.com\\@evil.example/')).to.equal(undefined);
      expect(shown('log in at https://accounts.google.com@evil.example/login now')).to.equal(
        'log in at https://accounts.google.com@evil.example/login now',
      );
      // An "@" later in the address is only part of its path or query.
      expect(linkTarget('https://example.com/@someone')?.href).to.equal('https://example.com/@someone');
    });
  });

  // I18N hunt: an address ended only at whitespace, and only ASCII punctuation was trimmed from its end: Chinese and
  // Japanese text (no spaces) and Arabic punctuation were taken into the link, which opened a page that is not there.
  describe('links end where the sentence of another script goes on', function () {
    it('end at the full-width brackets, commas and full stops of Chinese and Japanese', function () {
      expect(shown('詳細は（https://example.com/docs）を見てください')).to.equal(
        '詳細は（[https://example.com/docs -> https://example.com/docs]）を見てください',
      );
      expect(shown('見て：https://example.com/docs。次に')).to.equal(
        '見て：[https://example.com/docs -> https://example.com/docs]。次に',
      );
      expect(shown('https://example.com/a、https://example.com/b')).to.equal(
        '[https://example.com/a -> https://example.com/a]、[https://example.com/b -> https://example.com/b]',
      );
      // A full stop in the host followed by a letter is a dot as a Chinese or Japanese keyboard types it (REV1): the
      // link opens example.com, and says so.
      expect(shown('见 https://example。com/docs 然后')).to.equal(
        '见 [https://example.com/docs -> https://example.com/docs] 然后',
      );
      expect(shown('见 https://example.com。然后')).to.equal(
        '见 [https://example.com -> https://example.com/]。然后',
      );
      // Only between two labels of the host (REV3): a sentence going on with a digit or a Latin word, or after a
      // port, is not a host's next label.
      expect(shown('请看 https://example.com。2点见面')).to.equal(
        '请看 [https://example.com -> https://example.com/]。2点见面',
      );
      expect(shown('詳細は https://example.com。AIの話は次回')).to.equal(
        '詳細は [https://example.com -> https://example.com/]。AIの話は次回',
      );
      expect(shown('服务器 https://example.com:8080。3号机器')).to.equal(
        '服务器 [https://example.com:8080 -> https://example.com:8080/]。3号机器',
      );
      expect(shown('see https://。com')).to.equal('see https://。com');
      expect(shown('「https://example.com/x」！')).to.equal(
        '「[https://example.com/x -> https://example.com/x]」！',
      );
    });

    it('leave an Arabic comma, semicolon or question mark after an address out of it', function () {
      expect(shown('انظر https://example.com/docs، ثم')).to.equal(
        'انظر [https://example.com/docs -> https://example.com/docs]، ثم',
      );
      expect(shown('هل رأيت https://example.com/docs؟')).to.equal(
        'هل رأيت [https://example.com/docs -> https://example.com/docs]؟',
      );
      // Inside the address it stays: only the end is the sentence's.
      expect(shown('https://example.com/a،b')).to.equal(
        '[https://example.com/a،b -> https://example.com/a%D8%8Cb]',
      );
    });
  });

  // I18N hunt: quotes and notifications were cut at a count of code points, inside a flag, an emoji sequence or a
  // letter and its combining accent, which then showed what was never sent.
  it('cuts a quote or a notification at whole characters as a reader sees them', function () {
    for (const unit of ['🇩🇪', '👨‍👩‍👧‍👦', 'e\u0301', 'कि']) {
      const text = `${'x'.repeat(89)}${unit} and then more words`;
      expect(startOf(text, 90), JSON.stringify(unit)).to.equal(`${'x'.repeat(89)}${unit}`);
      expect(startOf(text, 89)).to.equal('x'.repeat(89));
    }
    expect(startOf('short', 90)).to.equal('short');
    // Combining marks without end (REV1): a few graphemes of hundreds of code points each are not short.
    const zalgo = `a${'\u0301'.repeat(300)}`.repeat(10);
    expect([...startOf(zalgo, 90)].length).to.be.at.most(180);
    // One such character alone is cut in its marks, not to nothing (REV3).
    expect([...startOf(`a${'\u0301'.repeat(300)}`, 90)]).to.have.length(180);
  });

  it('counts a message in code points, as the server does', function () {
    expect(codePointLength('😀'.repeat(2500))).to.equal(2500);
    expect('😀'.repeat(2500).length).to.equal(5000);
    expect(codePointLength('abc')).to.equal(3);
  });

  it('says how long to wait', function () {
    expect(waitWords(3252)).to.equal('55 minutes');
    expect(waitWords(1)).to.equal('1 second');
    expect(waitWords(58.2)).to.equal('59 seconds');
    expect(waitWords(60)).to.equal('1 minute');
    expect(waitWords(3600)).to.equal('1 hour');
    expect(waitWords(3601 + 600)).to.equal('1 hour 11 minutes');
  });

  it('names the fields a refusal names, as the form calls them', function () {
    const labels = { username: 'Username', displayName: 'Display name', password: 'Password' };
    expect(
      fieldProblems(
        { displayName: 'must not contain control, bidirectional-control or line-separator characters' },
        labels,
      ),
    ).to.deep.equal([
      'Display name must not contain control, bidirectional-control or line-separator characters.',
    ]);
    expect(fieldProblems({ other: 'x' }, labels)).to.deep.equal([]);
    expect(fieldProblems(undefined, labels)).to.deep.equal([]);
  });

  describe('display names that could pass as someone else', function () {
    it('recognises the app’s own labels, however written', function () {
      for (const name of [
        'You',
        'you',
        ' YOU ',
        'Y\u200Bou',
        'Ｙｏｕ',
        'Deleted user',
        'deleted  USER',
        'Someone',
      ])
        expect(looksLikeAppLabel(name), JSON.stringify(name)).to.equal(true);
      expect(looksLikeAppLabel('Youssef')).to.equal(false);
      expect(personName('You')).to.equal('“You”');
      expect(personName('Bob')).to.equal('Bob');
    });

    it('needs the @username when another participant has the same name as a reader compares names', function () {
      expect(nameNeedsHandle('Carol', ['Bob', 'Carol\u200B'])).to.equal(true);
      expect(nameNeedsHandle('carol', ['CAROL'])).to.equal(true);
      expect(nameNeedsHandle('Carol', ['Bob', 'Ann'])).to.equal(false);
      expect(nameNeedsHandle('Deleted user', [])).to.equal(true);
    });

    // What the server counts as invisible shows as nothing here either: a variation selector, a Mongolian one, a
    // supplementary one, a noncharacter, the blank Braille pattern (IDENT hunt).
    it('sees through every character the server counts as invisible', function () {
      for (const [label, suffix] of [
        ['U+FE0F', '\uFE0F'],
        ['U+180B', '\u180B'],
        ['U+E0100', '\u{E0100}'],
        ['U+FFFF', '\uFFFF'],
        ['U+2800', '\u2800'],
      ] as const) {
        expect(nameNeedsHandle(`Alice${suffix}`, ['Alice']), label).to.equal(true);
        expect(nameNeedsHandle('Alice', [`Alice${suffix}`]), label).to.equal(true);
        expect(personName(`You${suffix}`), label).to.equal(`“You${suffix}”`);
      }
      expect(looksLikeAppLabel('Deleted\u2800user')).to.equal(true);
    });

    // A name of look-alike letters read as the real one; one holding "@" spelled the app's "Name (@username)" and
    // passed as whoever it named (WEBSEC hunt).
    it('reads look-alike letters as the letters they look like, and a name holding "@" as one that could be anyone', function () {
      expect(nameNeedsHandle('\u0412\u043eb', ['Bob']), 'Cyrillic В and о').to.equal(true);
      expect(nameNeedsHandle('\u0391lice', ['Alice']), 'Greek Α').to.equal(true);
      expect(nameNeedsHandle('AIice', ['Alice']), 'a capital I for an l').to.equal(true);
      expect(nameNeedsHandle('B0b', ['Bob']), 'a zero for an o').to.equal(true);
      expect(nameNeedsHandle('sam', ['sarn']), '"rn" for "m"').to.equal(true);
      expect(nameNeedsHandle('Bob (@bob)', ['Bob'])).to.equal(true);
      expect(nameNeedsHandle('Bob (＠bob)', [])).to.equal(true);
      expect(nameNeedsHandle('Борис', ['Boris']), 'a Russian name beside its Latin spelling').to.equal(false);
      expect(nameNeedsHandle('Bob', ['Rob', 'Bo'])).to.equal(false);
      // Case is still ignored, names with an I in them too (review).
      expect(nameNeedsHandle('ALICE', ['Alice'])).to.equal(true);
      expect(nameNeedsHandle('ivan', ['Ivan'])).to.equal(true);
      expect(nameNeedsHandle('\u0406\u0420\u0418\u041d\u0410', ['\u0456\u0440\u0438\u043d\u0430'])).to.equal(
        true,
      );
      expect(nameNeedsHandle('Al\u0131ce', ['Alice']), 'a dotless i').to.equal(true);
      expect(looksLikeAppLabel('EARLIER MESSAGE')).to.equal(true);
    });
  });
});
