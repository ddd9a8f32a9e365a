import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { createRefreshTokens } from '../../lib/auth/refreshTokens.js';

describe('refresh tokens: the mark of the cluster that issued them', () => {
  const tokens = createRefreshTokens('a secret of at least thirty-two characters!');

  it('issues 43-character base64url tokens, each different, each with the mark', () => {
    const issued = Array.from({ length: 200 }, () => tokens.issue());
    expect(new Set(issued).size).to.equal(200);
    for (const token of issued) {
      expect(token).to.match(/^[A-Za-z0-9_-]{43}$/);
      expect(tokens.kind(token)).to.equal('marked');
    }
  });

  it('finds no mark on made-up tokens, tokens of before the mark, altered ones or another secret’s', () => {
    expect(tokens.kind(randomBytes(32).toString('base64url'))).to.equal('unmarked');
    expect(tokens.kind(`${'x'.repeat(42)}w`)).to.equal('unmarked');
    const token = tokens.issue();
    const altered = (token[0] === 'A' ? 'B' : 'A') + token.slice(1);
    expect(tokens.kind(altered)).to.equal('unmarked');
    const elsewhere = createRefreshTokens('another secret of at least thirty-two characters');
    expect(elsewhere.kind(token)).to.equal('unmarked');
  });

  it('calls anything not shaped like a token malformed', () => {
    for (const value of [
      '',
      'junk',
      'x'.repeat(42),
      'x'.repeat(44),
      `${'x'.repeat(42)}=`,
      `${'x'.repeat(42)}+`,
    ]) {
      expect(tokens.kind(value), value).to.equal('malformed');
    }
  });

  it('takes one spelling of a token: the 3 others of the same bytes (the last character’s unused bits set) are malformed', () => {
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    for (const token of [tokens.issue(), randomBytes(32).toString('base64url')]) {
      const last = alphabet.indexOf(token.slice(-1));
      expect(last & 3, 'the issued spelling').to.equal(0);
      const spellings = [1, 2, 3].map((low) => token.slice(0, -1) + alphabet.charAt(last | low));
      for (const spelling of spellings) {
        expect(Buffer.from(spelling, 'base64url').equals(Buffer.from(token, 'base64url')), spelling).to.equal(
          true,
        );
        // Else each spelling of one marked token would be a key of its own in the limit on its refused refreshes.
        expect(tokens.kind(spelling), spelling).to.equal('malformed');
      }
    }
  });

  it('stores a keyed hash: the same for the same token and secret, different otherwise', () => {
    const token = tokens.issue();
    expect(tokens.hash(token).equals(tokens.hash(token))).to.equal(true);
    expect(tokens.hash(token)).to.have.length(32);
    expect(tokens.hash(token).equals(tokens.hash(tokens.issue()))).to.equal(false);
    const elsewhere = createRefreshTokens('another secret of at least thirty-two characters');
    expect(tokens.hash(token).equals(elsewhere.hash(token))).to.equal(false);
  });
});
