/** Latency and rate arithmetic shared by the load generator and the report. */

export interface LatencySummary {
  count: number;
  mean: number;
  p50: number;
  p95: number;
  p99: number;
  p999: number;
  max: number;
}

/** The value at quantile `q` of an ascending array (nearest rank), or NaN when empty. */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank] ?? Number.NaN;
}

/** Summarizes latencies in milliseconds: p50/p95/p99/p99.9 by nearest rank, rounded to 0.01 ms. */
export function summarize(samples: readonly number[]): LatencySummary {
  const sorted = Float64Array.from(samples).sort();
  let total = 0;
  for (const value of sorted) total += value;
  const round = (value: number) => Math.round(value * 100) / 100;
  return {
    count: sorted.length,
    mean: sorted.length === 0 ? Number.NaN : round(total / sorted.length),
    p50: round(quantile(sorted, 0.5)),
    p95: round(quantile(sorted, 0.95)),
    p99: round(quantile(sorted, 0.99)),
    p999: round(quantile(sorted, 0.999)),
    max: sorted.length === 0 ? Number.NaN : round(sorted[sorted.length - 1] ?? Number.NaN),
  };
}

/** A summary with no samples, for phases that measured nothing of that kind. */
export const EMPTY_SUMMARY: LatencySummary = summarize([]);
