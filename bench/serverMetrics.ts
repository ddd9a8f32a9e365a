/**
 * What the bench reads from an XFChat node's `GET /metrics` (Prometheus text, metric names prefixed `xfchat_`)
 * at a phase's measured window's edges: the ack-latency histogram's sum and count (the server's own ack mean),
 * and what the node's garbage collector and event loop did. A node that pauses (a collection, a wait for a core)
 * holds every send that arrives meanwhile, which is where an open loop's tail comes from (docs/performance.md,
 * goal 7).
 */
import { parseMetrics, sampleSum, type Sample } from './prometheus.js';

/** One scrape of one node. */
export interface MetricsScrape {
  /** `performance.now()` of the scrape. */
  at: number;
  ackSum: number;
  ackCount: number;
  /** The ack histogram's cumulative buckets, every outcome together, by upper bound in seconds (+Inf last). */
  ackBuckets: AckBucket[];
  /** Seconds spent in garbage collection since the node started, every kind. */
  gcSeconds: number;
  /** Major (mark-compact) collections since the node started. */
  majorGcs: number;
  /**
   * The event loop's delay since the previous scrape (prom-client resets its histogram at each scrape), in
   * seconds, as prom-client reports it: the whole interval between two runs of a 10 ms timer.
   */
  loopLagP99: number;
  loopLagMax: number;
}

/** One cumulative bucket of a histogram: the observations at or below `le` (seconds; Infinity for +Inf). */
export interface AckBucket {
  le: number;
  count: number;
}

/**
 * prom-client's event-loop monitor (`monitorEventLoopDelay`, resolution 10 ms) records the whole interval between
 * two runs of its timer, 10 ms or a little more on an idle loop: the delay is what exceeds it.
 */
const LAG_RESOLUTION_SECONDS = 0.01;

/** What a phase's nodes did between two scrapes (the measured window's edges). */
export interface ServerPauses {
  /** Garbage collection, in % of one core over the phase, every node together. */
  gcPercent: number;
  majorGcs: number;
  /** The worst node's event-loop delay p99 and maximum, ms: how late its timer ran, beyond its 10 ms. */
  loopLagP99Ms: number;
  loopLagMaxMs: number;
}

/** Reads one node's /metrics text, taken at `at`. */
export function readScrape(text: string, at: number): MetricsScrape {
  const samples = parseMetrics(text);
  return {
    at,
    // Every outcome label together: ok, refused and error answers alike leave the mailbox.
    ackSum: sampleSum(samples, 'xfchat_ack_latency_seconds_sum'),
    ackCount: sampleSum(samples, 'xfchat_ack_latency_seconds_count'),
    ackBuckets: bucketsOf(samples, 'xfchat_ack_latency_seconds_bucket'),
    gcSeconds: sampleSum(samples, 'xfchat_nodejs_gc_duration_seconds_sum'),
    majorGcs: sampleSum(samples, 'xfchat_nodejs_gc_duration_seconds_count', { kind: 'major' }),
    loopLagP99: sampleSum(samples, 'xfchat_nodejs_eventloop_lag_p99_seconds'),
    loopLagMax: sampleSum(samples, 'xfchat_nodejs_eventloop_lag_max_seconds'),
  };
}

/** A histogram's cumulative buckets, summed over its other labels, by upper bound. */
function bucketsOf(samples: readonly Sample[], name: string): AckBucket[] {
  const byBound = new Map<number, number>();
  for (const sample of samples) {
    if (sample.name !== name || sample.labels.le === undefined) continue;
    const le = sample.labels.le === '+Inf' ? Infinity : Number(sample.labels.le);
    byBound.set(le, (byBound.get(le) ?? 0) + sample.value);
  }
  return [...byBound].map(([le, count]) => ({ le, count })).sort((a, b) => a.le - b.le);
}

/** Seconds to ms, without float residue (0.1 s is 100 ms, not 100.00000000000001). */
const secondsToMs = (seconds: number): number => Math.round(seconds * 1e6) / 1e3;

/** A histogram bucket, in ms: from `fromMs` (exclusive) to `toMs` (inclusive; Infinity past the last bound). */
export interface BucketMs {
  fromMs: number;
  toMs: number;
}

/**
 * The bucket the p99 of the acks between two scrapes falls in, in ms (`to` is Infinity past the last bound): the
 * histogram keeps counts per bucket, not values, so this is as close as it tells.
 */
export function ackP99Bucket(
  before: readonly MetricsScrape[],
  after: readonly MetricsScrape[],
): BucketMs | undefined {
  const counts = new Map<number, number>();
  after.forEach((end, i) => {
    const start = before[i];
    if (!start) return;
    for (const bucket of end.ackBuckets) {
      const earlier = start.ackBuckets.find((b) => b.le === bucket.le)?.count ?? 0;
      counts.set(bucket.le, (counts.get(bucket.le) ?? 0) + bucket.count - earlier);
    }
  });
  const buckets = [...counts].sort((a, b) => a[0] - b[0]);
  const total = buckets.at(-1)?.[1] ?? 0;
  if (total <= 0) return undefined;
  let from = 0;
  for (const [le, cumulative] of buckets) {
    if (cumulative >= 0.99 * total) return { fromMs: secondsToMs(from), toMs: secondsToMs(le) };
    from = le;
  }
  return undefined;
}

const round2 = (value: number): number => Math.round(value * 100) / 100;

/**
 * The server's ack mean (ms) and pauses between two scrapes of the same nodes, in the same order; undefined
 * where there is nothing to divide by.
 */
export function betweenScrapes(
  before: readonly MetricsScrape[],
  after: readonly MetricsScrape[],
): { ackMeanMs?: number; pauses?: ServerPauses } {
  let acks = 0;
  let ackSeconds = 0;
  let gcSeconds = 0;
  let wallSeconds = 0;
  let majorGcs = 0;
  let loopLagP99 = 0;
  let loopLagMax = 0;
  after.forEach((end, i) => {
    const start = before[i];
    if (!start) return;
    acks += end.ackCount - start.ackCount;
    ackSeconds += end.ackSum - start.ackSum;
    gcSeconds += end.gcSeconds - start.gcSeconds;
    wallSeconds = Math.max(wallSeconds, (end.at - start.at) / 1000);
    majorGcs += end.majorGcs - start.majorGcs;
    loopLagP99 = Math.max(loopLagP99, end.loopLagP99);
    loopLagMax = Math.max(loopLagMax, end.loopLagMax);
  });
  return {
    ackMeanMs: acks > 0 ? round2((ackSeconds / acks) * 1000) : undefined,
    pauses:
      wallSeconds > 0
        ? {
            gcPercent: round2((gcSeconds / wallSeconds) * 100),
            majorGcs,
            loopLagP99Ms: round2(Math.max(0, loopLagP99 - LAG_RESOLUTION_SECONDS) * 1000),
            loopLagMaxMs: round2(Math.max(0, loopLagMax - LAG_RESOLUTION_SECONDS) * 1000),
          }
        : undefined,
  };
}

/** Scrapes every node, in order; undefined if one does not answer 200. */
export async function scrapeNodes(urls: readonly string[]): Promise<MetricsScrape[] | undefined> {
  const scrapes: MetricsScrape[] = [];
  for (const url of urls) {
    const response = await fetch(`${url}/metrics`);
    if (response.status !== 200) return undefined;
    scrapes.push(readScrape(await response.text(), performance.now()));
  }
  return scrapes;
}
