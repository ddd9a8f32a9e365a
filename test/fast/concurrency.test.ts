import { expect } from 'chai';
import { AdaptiveLimit } from '../../lib/messaging/concurrency.js';

describe('messaging/concurrency: the adaptive limit of group commits', () => {
  it('starts at its maximum and stays there while commits take as long as usual', () => {
    const limit = new AdaptiveLimit({ max: 6 });
    expect(limit.limit).to.equal(6);
    for (let i = 0; i < 200; i += 1) limit.record(i % 2 === 0 ? 2 : 6);
    expect(limit.limit).to.equal(6);
  });

  it('shrinks when commits suddenly take far longer than usual (PostgreSQL is queueing), not below its minimum', () => {
    const limit = new AdaptiveLimit({ max: 8, min: 2 });
    for (let i = 0; i < 200; i += 1) limit.record(2);
    for (let i = 0; i < 10; i += 1) limit.record(20);
    expect(limit.limit).to.be.below(8);
    for (let i = 0; i < 30; i += 1) limit.record(200);
    expect(limit.limit).to.equal(2);
  });

  it('does not take big, steadily slower commits for congestion: it comes back once they are the usual', () => {
    const limit = new AdaptiveLimit({ max: 8 });
    for (let i = 0; i < 100; i += 1) limit.record(2);
    for (let i = 0; i < 2000; i += 1) limit.record(8);
    expect(limit.limit).to.equal(8);
  });

  it('recovers once commits are quick again', () => {
    const limit = new AdaptiveLimit({ max: 8 });
    for (let i = 0; i < 100; i += 1) limit.record(2);
    for (let i = 0; i < 20; i += 1) limit.record(40);
    const squeezed = limit.limit;
    expect(squeezed).to.be.below(8);
    for (let i = 0; i < 100; i += 1) limit.record(2);
    expect(limit.limit).to.equal(8);
  });

  it('tolerates commits up to `tolerance` slower than usual', () => {
    const limit = new AdaptiveLimit({ max: 8, tolerance: 1.5 });
    for (let i = 0; i < 300; i += 1) limit.record(2);
    for (let i = 0; i < 20; i += 1) limit.record(2.8);
    expect(limit.limit).to.equal(8);
  });
});
