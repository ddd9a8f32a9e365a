import { expect } from 'chai';
import { setTimeout as sleep } from 'node:timers/promises';
import { XFChatError } from '../../lib/client/errors.js';
import { CatchUpPace } from '../../lib/client/pace.js';

const aborted = () => new XFChatError('CLIENT_CLOSED', 'The subscription was closed.');

/** A read that runs until `release()`, counting how many run at once. */
function reads() {
  let running = 0;
  let most = 0;
  const releases: Array<() => void> = [];
  const read = () => {
    most = Math.max(most, ++running);
    return new Promise<string>((resolve) =>
      releases.push(() => {
        running -= 1;
        resolve('read');
      }),
    );
  };
  return { read, releases, most: () => most, running: () => running };
}

/** The catch-up reads of a client's subscriptions (lib/client/pace.ts). */
describe('client/pace: the catch-up reads of a client take turns', function () {
  it('runs at most `inFlight` at once, the others in the order they came', async () => {
    const pace = new CatchUpPace(2);
    const { read, releases, most } = reads();
    const signal = new AbortController().signal;
    const order: number[] = [];
    const all = [1, 2, 3, 4].map((n) => pace.run(signal, aborted, () => read().then(() => order.push(n))));
    await sleep(5);
    expect(releases).to.have.length(2);
    for (let i = 0; i < 4; i++) {
      releases[i]!();
      await sleep(5);
    }
    await Promise.all(all);
    expect(most()).to.equal(2);
    expect(order).to.deep.equal([1, 2, 3, 4]);
  });

  it('gives up the place of a read whose subscription ended while it waited, which never runs', async () => {
    const pace = new CatchUpPace(1);
    const { read, releases, running } = reads();
    const first = pace.run(new AbortController().signal, aborted, read);
    const ended = new AbortController();
    let ran = false;
    const gone = pace.run(ended.signal, aborted, () => {
      ran = true;
      return read();
    });
    const next = pace.run(new AbortController().signal, aborted, read);
    ended.abort();
    let error: unknown;
    await gone.catch((err: unknown) => (error = err));
    expect((error as XFChatError).code).to.equal('CLIENT_CLOSED');
    releases[0]!();
    await first;
    await sleep(5);
    expect(running(), 'the read behind it runs').to.equal(1);
    releases[1]!();
    expect(await next).to.equal('read');
    expect(ran).to.equal(false);
  });

  // A read that left the queue took a place as it left and freed it at once, waking one more: each ended
  // subscription let one read past the limit (review).
  it('lets no extra read out when reads waiting their turn leave the queue', async () => {
    const pace = new CatchUpPace(2);
    const { read, releases, most, running } = reads();
    const live = new AbortController().signal;
    const runs: Array<Promise<unknown>> = [pace.run(live, aborted, read), pace.run(live, aborted, read)];
    const ended = [new AbortController(), new AbortController()];
    for (const c of ended) runs.push(pace.run(c.signal, aborted, read).catch(() => undefined));
    runs.push(pace.run(live, aborted, read), pace.run(live, aborted, read));
    await sleep(5);
    for (const c of ended) c.abort();
    await sleep(5);
    expect(running(), 'on their way after the two left').to.equal(2);
    while (releases.length > 0 || running() > 0) {
      releases.splice(0).forEach((release) => release());
      await sleep(5);
    }
    await Promise.all(runs);
    expect(most()).to.equal(2);
  });

  it('sends nothing while a RATE_LIMITED answer’s Retry-After runs', async () => {
    const pace = new CatchUpPace(4);
    const signal = new AbortController().signal;
    // Timed from before the refusal, on the monotonic clock the hold is kept on: timed from after it, on the wall
    // clock, a pause of this process in between (a GC) came off the wait measured (944 ms with a 60 ms pause there).
    const started = performance.now();
    const refused = pace.run(signal, aborted, () =>
      Promise.reject(new XFChatError('RATE_LIMITED', 'Too many requests.', { retryAfter: 1 })),
    );
    await refused.catch(() => undefined);
    let ranAt = 0;
    await pace.run(signal, aborted, () => Promise.resolve((ranAt = performance.now())));
    expect(ranAt - started).to.be.at.least(990);
  });
});

describe('client/pace: a hold across a wall clock set back', () => {
  const realNow = Date.now;
  afterEach(() => {
    Date.now = realNow;
  });

  // The hold was kept as Date.now() + Retry-After: NTP stepping the clock back an hour after a resume held every
  // catch-up read of the client for that hour (SDKLONG hunt).
  it('lets the next read out once the Retry-After ran, though the wall clock went back an hour meanwhile', async () => {
    const pace = new CatchUpPace(4);
    const stop = new AbortController();
    await pace
      .run(stop.signal, aborted, () =>
        Promise.reject(new XFChatError('RATE_LIMITED', 'Too many requests.', { retryAfter: 1 })),
      )
      .catch(() => undefined);
    Date.now = () => realNow.call(Date) - 3_600_000;
    let ran = false;
    const next = pace.run(stop.signal, aborted, () => Promise.resolve((ran = true)));
    // Far past the one second asked for, far short of the hour the step added.
    await sleep(3000);
    stop.abort();
    await next.catch(() => undefined);
    expect(ran, 'the read held back by the RATE_LIMITED ran once its Retry-After was over').to.equal(true);
  });
});
