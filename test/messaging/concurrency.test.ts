import { expect } from 'chai';
import { AdaptiveLimit } from '../../lib/messaging/concurrency.js';

describe('messaging/concurrency: the adaptive limit of group commits', () => {
  it('starts at one and grows to its maximum while commits stay at their floor with every slot busy', () => {
    const limit = new AdaptiveLimit({ max: 4 });
    expect(limit.limit).to.equal(1);
    for (let i = 0; i < 10; i += 1) limit.record(2, limit.limit);
    expect(limit.limit).to.equal(4);
  });

  it('does not grow while slots stay free: more of them would not be used', () => {
    const limit = new AdaptiveLimit({ max: 8 });
    limit.record(2, 1);
    limit.record(2, 1);
    const reached = limit.limit;
    for (let i = 0; i < 10; i += 1) limit.record(2, 1);
    expect(limit.limit).to.equal(reached);
    expect(limit.limit).to.be.below(8);
  });

  it('shrinks when commits take well over their floor (PostgreSQL is queueing), until about beta wait', () => {
    const limit = new AdaptiveLimit({ max: 8, beta: 3 });
    for (let i = 0; i < 20; i += 1) limit.record(1, limit.limit);
    expect(limit.limit).to.equal(8);
    // Ten times the floor: nearly every running commit is waiting; the limit keeps about beta of them.
    for (let i = 0; i < 20; i += 1) limit.record(10, limit.limit);
    expect(limit.limit).to.equal(3);
  });

  it('never goes below its minimum', () => {
    const limit = new AdaptiveLimit({ max: 8, min: 2, beta: 1 });
    for (let i = 0; i < 20; i += 1) limit.record(1, limit.limit);
    for (let i = 0; i < 20; i += 1) limit.record(10, limit.limit);
    expect(limit.limit).to.equal(2);
  });

  it('holds between its thresholds', () => {
    const limit = new AdaptiveLimit({ max: 8, alpha: 1, beta: 3 });
    for (let i = 0; i < 3; i += 1) limit.record(1, limit.limit);
    expect(limit.limit).to.equal(4);
    // 4 x (1 - 1/2) = 2 commits estimated waiting: between alpha and beta.
    for (let i = 0; i < 10; i += 1) limit.record(2, limit.limit);
    expect(limit.limit).to.equal(4);
  });

  it('forgets its floor after a window, so a lasting change of the machine is learned', () => {
    const limit = new AdaptiveLimit({ max: 4, floorWindow: 10 });
    for (let i = 0; i < 10; i += 1) limit.record(1, limit.limit);
    expect(limit.limit).to.equal(4);
    // Everything is slower now: with the old floor the limit collapses, with the new one it recovers.
    for (let i = 0; i < 30; i += 1) limit.record(8, limit.limit);
    expect(limit.limit).to.equal(4);
  });
});
