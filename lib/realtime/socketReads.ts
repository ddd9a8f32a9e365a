import { AppError } from '../errors.js';

/** Subscribes waiting behind the running one on a socket; more are answered RATE_LIMITED. */
export const SUBSCRIBES_WAITING_PER_SOCKET = 8;

export interface SocketReads {
  /**
   * Runs `read` after every earlier one of this socket and once `ready()` resolves (the socket has taken what
   * waited for it). RATE_LIMITED at once when {@link SUBSCRIBES_WAITING_PER_SOCKET} already wait, or after
   * close() for those still waiting.
   */
  run<T>(read: () => Promise<T>): Promise<T>;
  /** The socket is gone: waiting reads are refused, not run. */
  close(): void;
}

/**
 * One history read at a time per socket, in arrival order: a client that subscribes to ten conversations at
 * once gets ten answers one after the other, and one that floods subscribes gets at most one page built at a
 * time and never more than a page waiting for it.
 */
export function createSocketReads(options: { ready: () => Promise<void>; maxWaiting?: number }): SocketReads {
  const maxWaiting = options.maxWaiting ?? SUBSCRIBES_WAITING_PER_SOCKET;
  const waiting: Array<{ go: () => void; refuse: (err: AppError) => void }> = [];
  let running = false;
  let closed = false;

  function next(): void {
    const waiter = waiting.shift();
    if (waiter) waiter.go();
    else running = false;
  }

  return {
    async run(read) {
      if (closed) throw new AppError('RATE_LIMITED', { message: 'The connection is closing.' });
      if (running) {
        if (waiting.length >= maxWaiting) {
          throw new AppError('RATE_LIMITED', {
            message: 'Too many subscribes at once; retry later.',
            retryAfter: 1,
          });
        }
        await new Promise<void>((go, refuse) => waiting.push({ go, refuse }));
      }
      running = true;
      try {
        await options.ready();
        return await read();
      } finally {
        next();
      }
    },
    close() {
      closed = true;
      for (const waiter of waiting.splice(0)) {
        waiter.refuse(new AppError('RATE_LIMITED', { message: 'The connection is closing.' }));
      }
    },
  };
}
