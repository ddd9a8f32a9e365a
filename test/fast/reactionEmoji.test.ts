import { expect } from 'chai';
import * as v from 'valibot';
import { XFChatError } from '../../lib/client/errors.js';
import { MessagesApi } from '../../lib/client/api.js';
import type { HttpRequest } from '../../lib/client/http.js';
import { AppError } from '../../lib/errors.js';
import {
  clientEventSchemas,
  EMOJI,
  MAX_EMOJI_CODE_POINTS,
  MAX_REACTIONS_PER_MESSAGE,
  restSchemas,
} from '../../lib/protocol/schemas.js';
import { parse } from '../../lib/validation.js';

const CONVERSATION = '0190a6f0-0000-7000-8000-000000000001';

/** What the REST route and the socket event make of an emoji: the parsed value, or the field's problem. */
function parsedBy(emoji: string): { rest: string; socket: string } {
  const one = (run: () => { emoji: string }): string => {
    try {
      return run().emoji;
    } catch (err) {
      if (!(err instanceof AppError) || err.code !== 'VALIDATION_FAILED') throw err;
      const details = err.details as Record<string, string>;
      expect(Object.keys(details), JSON.stringify(emoji)).to.deep.equal(['emoji']);
      return `refused: ${details.emoji}`;
    }
  };
  return {
    rest: one(() => parse(restSchemas.reactionPath, { seq: '1', emoji })),
    socket: one(() =>
      parse(clientEventSchemas['reaction:add'], { conversationId: CONVERSATION, seq: 1, emoji }),
    ),
  };
}

const refused = (emoji: string): boolean => {
  const { rest, socket } = parsedBy(emoji);
  expect(rest, JSON.stringify(emoji)).to.equal(socket);
  return rest.startsWith('refused: ');
};

describe('reaction emoji (lib/protocol/schemas.ts EMOJI)', () => {
  it('keeps accepting real emoji, symbols and short words, unchanged', () => {
    const accepted = [
      '👍',
      '👍🏽',
      '❤️',
      '🇫🇷',
      '1️⃣',
      '#️⃣',
      '👨‍👩‍👧‍👦',
      '🏳️‍🌈',
      '🏴󠁧󠁢󠁥󠁮󠁧󠁿',
      '😀'.repeat(16),
      '+1',
      'ok',
      '…',
      '.a',
      'a.',
      '%2E%2E',
      // Unassigned today: an emoji newer than the runtime's Unicode tables.
      '\u{1FAFA}',
    ];
    for (const emoji of accepted)
      expect(parsedBy(emoji), JSON.stringify(emoji)).to.deep.equal({ rest: emoji, socket: emoji });
  });

  it('refuses "." and ".." (URL path dot segments) and any emoji of only dots', () => {
    for (const emoji of ['.', '..', '...', '.'.repeat(16)]) {
      expect(parsedBy(emoji), emoji).to.deep.equal({
        rest: 'refused: must not be only dots',
        socket: 'refused: must not be only dots',
      });
    }
  });

  it('refuses emoji with nothing visible: format characters, marks, fillers, blanks', () => {
    const invisible = {
      ZWSP: '\u200b',
      'lone ZWJ': '\u200d',
      ZWNJ: '\u200c',
      LRM: '\u200e',
      'word joiner': '\u2060',
      'soft hyphen': '\u00ad',
      'lone VS16': '\ufe0f',
      'VS17 (supplementary)': '\u{e0100}',
      'lone combining acute': '\u0301',
      CGJ: '\u034f',
      'Hangul filler U+3164': '\u3164',
      'Hangul choseong filler U+115F': '\u115f',
      'Hangul jungseong filler U+1160': '\u1160',
      'halfwidth Hangul filler U+FFA0': '\uffa0',
      'Braille blank U+2800': '\u2800',
      'a lone tag': '\u{e0067}',
      'several of them': '\u200b\u200d\ufe0f\u0301\u3164\u2800',
    };
    for (const [name, emoji] of Object.entries(invisible)) {
      expect(refused(emoji), name).to.equal(true);
      expect(parsedBy(emoji).rest, name).to.match(/must contain a visible character|must not contain/);
    }
    expect(parsedBy('\u200b').rest).to.equal('refused: must contain a visible character');
    expect(parsedBy('\u2800\u3164').rest).to.equal('refused: must contain a visible character');
  });

  it('still refuses whitespace, controls, bidi overrides and marks, NUL, unpaired surrogates and empty strings', () => {
    for (const emoji of [
      '',
      ' ',
      'a b',
      '\t',
      '\u00a0',
      '\u3000',
      '\u2028',
      'x\ny',
      '\u0007',
      '\u0085',
      '\u202e',
      '\u2066',
      '👍\u200f',
      '\u061c👍',
      '\u0000',
      '\ud83d',
      '\udc4d',
    ])
      expect(refused(emoji), JSON.stringify(emoji)).to.equal(true);
  });

  it('normalizes to NFC: a decomposed and a precomposed character are the same reaction', () => {
    expect(parsedBy('e\u0301')).to.deep.equal({ rest: '\u00e9', socket: '\u00e9' });
    expect(parsedBy('\u00e9')).to.deep.equal({ rest: '\u00e9', socket: '\u00e9' });
    expect(v.parse(EMOJI, 'A\u030a')).to.equal('\u00c5');
    // Hangul jamo compose into one syllable.
    expect(v.parse(EMOJI, '\u1112\u1161\u11ab')).to.equal('\ud55c');
    expect(
      parse(clientEventSchemas['reaction:remove'], { conversationId: CONVERSATION, seq: 1, emoji: 'e\u0301' })
        .emoji,
    ).to.equal('\u00e9');
  });

  it('counts the 16 code points after normalization', () => {
    expect(MAX_EMOJI_CODE_POINTS).to.equal(16);
    // 17 code points as sent, 16 once composed: accepted.
    const composes = 'a'.repeat(15) + 'e\u0301';
    expect(v.parse(EMOJI, composes)).to.equal('a'.repeat(15) + '\u00e9');
    // 16 as sent, 17 in NFC (U+0344 decomposes into two marks, which do not compose again): refused.
    const grows = '1'.repeat(15) + '\u0344';
    expect([...grows]).to.have.length(16);
    expect([...grows.normalize('NFC')]).to.have.length(17);
    expect(parsedBy(grows).rest).to.equal('refused: must be 1-16 characters');
    expect(refused('😀'.repeat(17))).to.equal(true);
  });

  it('caps a message at 20 different emoji', () => {
    expect(MAX_REACTIONS_PER_MESSAGE).to.equal(20);
  });
});

describe('reaction emoji in the SDK (lib/client/api.ts)', () => {
  /** A MessagesApi whose requests are recorded and answered with nothing. */
  function recording() {
    const requests: string[] = [];
    const http = ((method: string, path: string) => {
      requests.push(`${method} ${path}`);
      return Promise.resolve(undefined);
    }) as HttpRequest;
    return { api: new MessagesApi(http), requests };
  }

  it('refuses an emoji of only dots without a request, as the server would (a "..." path is the message)', async () => {
    const { api, requests } = recording();
    for (const emoji of ['.', '..', '...']) {
      for (const call of [
        () => api.react(CONVERSATION, 1, emoji),
        () => api.unreact(CONVERSATION, 1, emoji),
      ]) {
        const error = await call().then(
          () => undefined,
          (err: unknown) => err,
        );
        expect(error).to.be.instanceOf(XFChatError);
        // Nothing was sent: no answer, no status (docs/client.md).
        expect(error).to.include({ code: 'VALIDATION_FAILED', status: 0 });
        expect((error as XFChatError).details).to.deep.equal({ emoji: 'must not be only dots' });
      }
    }
    expect(requests).to.deep.equal([]);
    await api.unreact(CONVERSATION, 1, '👍');
    await api.react(CONVERSATION, 1, '.a');
    expect(requests).to.deep.equal([
      `DELETE /conversations/${CONVERSATION}/messages/1/reactions/${encodeURIComponent('👍')}`,
      `PUT /conversations/${CONVERSATION}/messages/1/reactions/.a`,
    ]);
  });
});
