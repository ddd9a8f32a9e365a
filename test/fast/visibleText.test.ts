import { expect } from 'chai';
import * as v from 'valibot';
import { DISPLAY_NAME, GROUP_TITLE, MESSAGE_BODY } from '../../lib/protocol/schemas.js';

/** The first issue's message for `value` under `schema`, or undefined when it passes. */
function problem(schema: typeof DISPLAY_NAME, value: string): string | undefined {
  const result = v.safeParse(schema, value);
  return result.success ? undefined : result.issues[0].message;
}

describe('names, titles and bodies need something visible', () => {
  const nothingVisible = {
    'a zero-width space': '\u200b',
    'zero-width joiners and non-joiners': '\u200d\u200c\u200d',
    'a Hangul filler': '\u3164',
    'a combining accent alone': '\u0301',
    'a variation selector alone': '\ufe0f',
    'a blank Braille pattern': '\u2800',
    'a byte order mark and a space': '\ufeff ',
    'noncharacters (never assigned, shown as a box or nothing)': '\uffff\ufdd0\u{10ffff}',
  };

  for (const [schemaName, schema] of Object.entries({ DISPLAY_NAME, GROUP_TITLE, MESSAGE_BODY })) {
    for (const [what, value] of Object.entries(nothingVisible)) {
      it(`${schemaName} refuses ${what}`, () => {
        expect(problem(schema, value)).to.match(/visible|whitespace/);
      });
    }
    it(`${schemaName} takes text with invisible characters beside visible ones, and emoji`, () => {
      for (const value of ['a\u200b', '❤️', 'e\u0301', '👩‍💻', 'ㅤHi']) {
        expect(problem(schema, value), JSON.stringify(value)).to.equal(undefined);
      }
    });
  }

  it('a body of only whitespace is still refused as such', () => {
    expect(problem(MESSAGE_BODY, ' \n\t ')).to.equal('must not be only whitespace');
  });
});
