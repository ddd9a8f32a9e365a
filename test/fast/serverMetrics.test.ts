import { expect } from 'chai';
import { ackP99Bucket, betweenScrapes, readScrape, type MetricsScrape } from '../../bench/serverMetrics.js';
import { createMetrics } from '../../lib/metrics.js';

/** A node's /metrics as prom-client writes it, trimmed to what the bench reads and its neighbours. */
const TEXT = `# HELP xfchat_ack_latency_seconds Seconds from a send being accepted into a mailbox to its ack.
# TYPE xfchat_ack_latency_seconds histogram
xfchat_ack_latency_seconds_bucket{le="0.005",outcome="ok"} 60
xfchat_ack_latency_seconds_bucket{le="0.01",outcome="ok"} 90
xfchat_ack_latency_seconds_bucket{le="+Inf",outcome="ok"} 100
xfchat_ack_latency_seconds_bucket{le="0.005",outcome="error"} 10
xfchat_ack_latency_seconds_bucket{le="0.01",outcome="error"} 15
xfchat_ack_latency_seconds_bucket{le="+Inf",outcome="error"} 20
xfchat_ack_latency_seconds_sum{outcome="ok"} 0.5
xfchat_ack_latency_seconds_count{outcome="ok"} 100
xfchat_ack_latency_seconds_sum{outcome="error"} 0.1
xfchat_ack_latency_seconds_count{outcome="error"} 20
xfchat_ack_latency_seconds_sum_extra 99
# TYPE xfchat_nodejs_gc_duration_seconds histogram
xfchat_nodejs_gc_duration_seconds_bucket{le="0.001",kind="minor"} 30
xfchat_nodejs_gc_duration_seconds_sum{kind="minor"} 0.25
xfchat_nodejs_gc_duration_seconds_count{kind="minor"} 40
xfchat_nodejs_gc_duration_seconds_sum{kind="major"} 0.05
xfchat_nodejs_gc_duration_seconds_count{kind="major"} 2
xfchat_nodejs_gc_duration_seconds_count{kind="incremental"} 7
xfchat_nodejs_eventloop_lag_p99_seconds 0.012
xfchat_nodejs_eventloop_lag_max_seconds 0.034
xfchat_nodejs_eventloop_lag_p90_seconds 0.5
`;

const scrape = (overrides: Partial<MetricsScrape>): MetricsScrape => ({
  at: 0,
  ackSum: 0,
  ackCount: 0,
  ackBuckets: [],
  gcSeconds: 0,
  majorGcs: 0,
  loopLagP99: 0,
  loopLagMax: 0,
  ...overrides,
});

describe("bench: reading a node's /metrics", () => {
  it('sums the ack histogram over its outcomes, the GC time over its kinds, and counts major collections', () => {
    expect(readScrape(TEXT, 42)).to.deep.equal({
      at: 42,
      ackSum: 0.6,
      ackCount: 120,
      ackBuckets: [
        { le: 0.005, count: 70 },
        { le: 0.01, count: 105 },
        { le: Infinity, count: 120 },
      ],
      gcSeconds: 0.3,
      majorGcs: 2,
      loopLagP99: 0.012,
      loopLagMax: 0.034,
    });
  });

  it('reads a real node registry: the names it looks for are the ones the node writes', async () => {
    const metrics = createMetrics();
    try {
      metrics.observeAck(performance.now() - 5);
      // Short-lived garbage, well over the young generation, until the registry has recorded a collection (its
      // observer is told after the collection, from the event loop).
      let read = readScrape((await metrics.render()).body, 0);
      for (let round = 0; round < 50 && read.gcSeconds === 0; round++) {
        let held: Array<{ i: number; s: string }> = [];
        for (let i = 0; i < 100_000; i++) {
          held.push({ i, s: `item ${i}` });
          if (held.length === 1000) held = [];
        }
        await new Promise((resolve) => setTimeout(resolve, 10));
        read = readScrape((await metrics.render()).body, 0);
      }
      const { body } = await metrics.render();
      expect(read.ackCount).to.equal(1);
      expect(read.ackSum).to.be.greaterThan(0);
      // The one ack (about 5 ms) is in every bucket from 10 ms up, +Inf last.
      expect(read.ackBuckets.at(-1)).to.deep.equal({ le: Infinity, count: 1 });
      expect(read.ackBuckets.find((b) => b.le === 0.01)?.count).to.equal(1);
      expect(read.gcSeconds).to.be.greaterThan(0);
      expect(body).to.match(/^xfchat_nodejs_eventloop_lag_p99_seconds /m);
      expect(body).to.match(/^xfchat_nodejs_eventloop_lag_max_seconds /m);
    } finally {
      metrics.close();
    }
  });

  it("gives a phase's ack mean, its GC share of a core (every node), major collections and the worst delay", () => {
    const before = [
      scrape({ at: 1000, ackSum: 1, ackCount: 100, gcSeconds: 2, majorGcs: 3 }),
      scrape({ at: 1010, ackSum: 4, ackCount: 400, gcSeconds: 5, majorGcs: 1 }),
    ];
    const after = [
      scrape({
        at: 3000,
        ackSum: 1.5,
        ackCount: 200,
        gcSeconds: 2.1,
        majorGcs: 4,
        loopLagP99: 0.01,
        loopLagMax: 0.03,
      }),
      scrape({
        at: 3010,
        ackSum: 5.5,
        ackCount: 600,
        gcSeconds: 5.3,
        majorGcs: 2,
        loopLagP99: 0.02,
        loopLagMax: 0.025,
      }),
    ];
    // Acks: 300 in 2 s of summed latency; GC: 0.4 s over a 2 s phase, two nodes together; the event loop's
    // delay is how much the monitor's 10 ms intervals ran over.
    expect(betweenScrapes(before, after)).to.deep.equal({
      ackMeanMs: 6.67,
      pauses: { gcPercent: 20, majorGcs: 2, loopLagP99Ms: 10, loopLagMaxMs: 20 },
    });
  });

  it('leaves out what it cannot divide by: no acks, no time between the scrapes', () => {
    const same = [scrape({ at: 5, ackSum: 1, ackCount: 10 })];
    expect(betweenScrapes(same, same)).to.deep.equal({ ackMeanMs: undefined, pauses: undefined });
  });

  it("reads an idle loop's 10 ms intervals as no delay", () => {
    const idle = betweenScrapes(
      [scrape({ at: 0 })],
      [scrape({ at: 1000, loopLagP99: 0.0102, loopLagMax: 0.0098 })],
    );
    expect(idle.pauses).to.include({ loopLagP99Ms: 0.2, loopLagMaxMs: 0 });
  });

  it("gives the bucket of the server's ack p99 between two scrapes, every node's acks together", () => {
    const buckets = (fast: number, mid: number, slow: number) => [
      { le: 0.025, count: fast },
      { le: 0.05, count: fast + mid },
      { le: 0.1, count: fast + mid + slow },
      { le: Infinity, count: fast + mid + slow },
    ];
    const before = [scrape({ ackBuckets: buckets(100, 0, 0) }), scrape({ ackBuckets: buckets(50, 0, 0) })];
    // 1000 acks in the window: 980 under 25 ms, 15 in 25-50 ms, 5 in 50-100 ms. The 990th is in 25-50.
    const after = [scrape({ ackBuckets: buckets(600, 10, 5) }), scrape({ ackBuckets: buckets(530, 5, 0) })];
    expect(ackP99Bucket(before, after)).to.deep.equal({ fromMs: 25, toMs: 50 });
    // 20 of the 1000 in 50-100 ms: the 990th is there.
    const slower = [scrape({ ackBuckets: buckets(600, 0, 20) }), scrape({ ackBuckets: buckets(530, 0, 0) })];
    expect(ackP99Bucket(before, slower)).to.deep.equal({ fromMs: 50, toMs: 100 });
  });

  it('says when the p99 is past the last bound, and gives nothing without acks', () => {
    const before = [
      scrape({
        ackBuckets: [
          { le: 10, count: 0 },
          { le: Infinity, count: 0 },
        ],
      }),
    ];
    const after = [
      scrape({
        ackBuckets: [
          { le: 10, count: 90 },
          { le: Infinity, count: 100 },
        ],
      }),
    ];
    expect(ackP99Bucket(before, after)).to.deep.equal({ fromMs: 10_000, toMs: Infinity });
    expect(ackP99Bucket(before, before)).to.equal(undefined);
    expect(ackP99Bucket([scrape({})], [scrape({})])).to.equal(undefined);
  });
});
