import { expect } from 'chai';
import * as v from 'valibot';
import { int, paramInt } from '../../lib/protocol/schemas.js';

describe('page sizes', () => {
  const pageSize = { min: 1, max: 200, clampMax: true };

  it('clamps one too large for a double (1e400 in JSON reads as Infinity, as do 400 digits in a query)', () => {
    expect(v.parse(int(pageSize), Number.POSITIVE_INFINITY)).to.equal(200);
    expect(v.parse(paramInt(pageSize), '9'.repeat(400))).to.equal(200);
    expect(v.parse(int(pageSize), 5000)).to.equal(200);
  });

  it('refuses an infinite number where nothing is clamped, and a negative infinity anywhere', () => {
    expect(v.safeParse(int({ min: 1, max: 200 }), Number.POSITIVE_INFINITY).success).to.equal(false);
    expect(v.safeParse(int(pageSize), Number.NEGATIVE_INFINITY).success).to.equal(false);
    expect(v.safeParse(int(pageSize), 2.5).success).to.equal(false);
  });
});
