import { expect } from 'chai';
import { setBounded } from '../../lib/boundedMap.js';

describe('setBounded (lib/boundedMap.ts)', function () {
  it('below the bound sets like Map.set', function () {
    const map = new Map([['a', 1]]);
    setBounded(map, 'b', 2, 3);
    expect([...map]).to.deep.equal([
      ['a', 1],
      ['b', 2],
    ]);
  });

  it('a new key at the bound forgets the key set longest ago', function () {
    const map = new Map([
      ['a', 1],
      ['b', 2],
    ]);
    setBounded(map, 'c', 3, 2);
    expect([...map]).to.deep.equal([
      ['b', 2],
      ['c', 3],
    ]);
  });

  it('a key already held at the bound is updated and forgets nothing', function () {
    const map = new Map([
      ['a', 1],
      ['b', 2],
    ]);
    setBounded(map, 'a', 10, 2);
    expect([...map]).to.deep.equal([
      ['a', 10],
      ['b', 2],
    ]);
  });
});
