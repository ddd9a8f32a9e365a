import { parseMetrics, type Sample } from '../../bench/prometheus.js';

export { sampleValue, type Sample } from '../../bench/prometheus.js';

/** GET /metrics of a node, parsed. */
export async function scrape(baseUrl: string): Promise<Sample[]> {
  const res = await fetch(`${baseUrl}/metrics`);
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
  return parseMetrics(await res.text());
}
