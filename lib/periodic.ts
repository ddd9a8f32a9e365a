/** The earliest a node's first sweep of PostgreSQL's expired rows comes after its start. */
const FIRST_SWEEP_AFTER_MS = 60_000;

/**
 * Runs `sweep` every `everyMs`, the first time at a random moment between `firstAfterMs` and `everyMs` after now:
 * a node restarted more often than `everyMs` (a deploy or a crash loop) still sweeps now and then, in the share
 * (L - firstAfterMs) / (everyMs - firstAfterMs) of its lives of length L, and nodes started together do not all sweep
 * at once. A node that lives less than `firstAfterMs` each time never sweeps: the floor keeps the sweeps out of a
 * start. Neither timer holds the process open. Returns the stop, which is idempotent.
 */
export function sweepPeriodically(
  sweep: () => void,
  everyMs: number,
  { firstAfterMs = Math.min(FIRST_SWEEP_AFTER_MS, everyMs), random = Math.random } = {},
): () => void {
  let stopped = false;
  const firstInMs = firstAfterMs + Math.floor(random() * Math.max(0, everyMs - firstAfterMs));
  let timer: NodeJS.Timeout = setTimeout(() => {
    if (stopped) return;
    timer = setInterval(sweep, everyMs).unref();
    sweep();
  }, firstInMs).unref();
  return () => {
    stopped = true;
    // clearTimeout ends a Node.js interval too.
    clearTimeout(timer);
  };
}
