import { expect } from 'chai';
import { parseOptions } from '../../bench/options.js';

describe('bench options', () => {
  it('puts the members of a two-node conversation on different nodes unless told otherwise', () => {
    expect(parseOptions([], {}).members).to.equal('apart');
    expect(parseOptions(['--members', 'together'], {}).members).to.equal('together');
    expect(parseOptions(['--members', 'apart'], {}).members).to.equal('apart');
  });

  it('refuses a placement it does not know, saying which ones it knows', () => {
    expect(() => parseOptions(['--members', 'mixed'], {})).to.throw(
      '--members must be apart or together (got "mixed")',
    );
  });
});
