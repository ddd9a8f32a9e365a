import type { ChildMessage } from './loadProtocol.js';

/** Tells the parent when the measured window starts and ends, so it can read CPU counters at exactly those times. */
export interface PhaseClock {
  /** Resolves right after 'measure-end' was posted. */
  readonly ended: Promise<void>;
  /** Stops the timers (for a phase that fails early). */
  cancel(): void;
}

/** Posts 'measure-start' after `warmupMs` and 'measure-end' after `warmupMs + durationMs`, both always in order. */
export function startPhaseClock(
  post: (message: ChildMessage) => void,
  warmupMs: number,
  durationMs: number,
): PhaseClock {
  let startTimer: NodeJS.Timeout | undefined;
  let endTimer: NodeJS.Timeout | undefined;
  const ended = new Promise<void>((resolve) => {
    startTimer = setTimeout(() => post({ type: 'measure-start' }), warmupMs);
    endTimer = setTimeout(() => {
      post({ type: 'measure-end' });
      resolve();
    }, warmupMs + durationMs);
  });
  return {
    ended,
    cancel() {
      clearTimeout(startTimer);
      clearTimeout(endTimer);
    },
  };
}
