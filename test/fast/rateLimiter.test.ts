import { expect } from 'chai';
import { RateLimiter } from '../../lib/rateLimiter.js';

/** A limiter on a clock the test moves: 1 token a second, bursts of 5. */
function limiter() {
  let now = 1_000_000;
  const rate = new RateLimiter({ ratePerSecond: 1, burst: 5, now: () => now });
  return { rate, advance: (ms: number) => (now += ms) };
}

describe('rateLimiter: token buckets, and the keys they keep', () => {
  it('allows a burst, refuses past it with the wait for one token, and refills', () => {
    const { rate, advance } = limiter();
    for (let i = 0; i < 5; i += 1) expect(rate.take('a').allowed).to.equal(true);
    expect(rate.take('a')).to.deep.equal({ allowed: false, retryAfterSeconds: 1 });
    advance(2000);
    expect(rate.take('a').allowed).to.equal(true);
    expect(rate.take('b').allowed, 'another key has its own bucket').to.equal(true);
  });

  it('keeps no bucket for a key that is only looked at (peek), whoever makes the keys', () => {
    const { rate } = limiter();
    for (let i = 0; i < 1000; i += 1) expect(rate.peek(`198.51.100.${i}`).allowed).to.equal(true);
    expect(rate.size).to.equal(0);
    rate.take('x');
    expect(rate.peek('x', 5)).to.deep.equal({ allowed: false, retryAfterSeconds: 1 });
  });

  it('drops the buckets that have refilled, long before they are idle for idleMs', () => {
    const { rate, advance } = limiter();
    for (let i = 0; i < 1000; i += 1) rate.take(`198.51.100.${i}`);
    rate.take('busy', 5);
    expect(rate.size).to.equal(1001);
    // One token takes 1 s to come back: after 6 s every bucket but an empty one has refilled, and the next
    // call walks them.
    advance(4500);
    rate.take('busy');
    expect(rate.size).to.equal(1001);
    advance(1500);
    rate.take('busy');
    expect(rate.size).to.equal(1);
    // A dropped bucket is a full one: nothing was forgotten that counted.
    for (let i = 0; i < 5; i += 1) expect(rate.take('198.51.100.7').allowed).to.equal(true);
    expect(rate.take('198.51.100.7').allowed).to.equal(false);
  });

  it('forgets a key on request (its connection closed)', () => {
    const { rate } = limiter();
    rate.take('conn-1', 5);
    rate.forget('conn-1');
    expect(rate.size).to.equal(0);
    expect(rate.take('conn-1').allowed).to.equal(true);
  });

  it('a clock that steps back takes no tokens: a bucket with tokens left still allows', () => {
    const { rate, advance } = limiter();
    expect(rate.take('alice').allowed).to.equal(true); // 4 of 5 left
    advance(-3_600_000);
    expect(rate.take('alice')).to.deep.equal({ allowed: true, retryAfterSeconds: 0 });
  });

  it('counts by a clock that never steps (not the wall clock) unless given one', () => {
    const realNow = Date.now;
    let step = 0;
    Date.now = () => realNow() + step;
    try {
      const rate = new RateLimiter({ ratePerSecond: 20, burst: 40 });
      for (let i = 0; i < 40; i++) expect(rate.take('alice').allowed).to.equal(true);
      // The machine's clock set forward a day: no refill comes of it.
      step = 86_400_000;
      expect(rate.take('alice').allowed, 'past the burst, a day later by the wall clock').to.equal(false);
    } finally {
      Date.now = realNow;
    }
  });
});
