/**
 * A minimal typed event emitter that works in Node.js and browsers alike (node:events does not ship to
 * browsers). Each event carries one payload.
 */
export class Emitter<Events extends object> {
  private readonly listeners = new Map<keyof Events, Set<(payload: never) => void>>();

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof Events>(event: K, listener: (payload: Events[K]) => void): () => void {
    let set = this.listeners.get(event);
    if (!set) {
      set = new Set();
      this.listeners.set(event, set);
    }
    set.add(listener);
    return () => this.off(event, listener);
  }

  off<K extends keyof Events>(event: K, listener: (payload: Events[K]) => void): void {
    this.listeners.get(event)?.delete(listener);
  }

  /**
   * Calls every listener in order. A listener that throws does not stop the others or the SDK: its error is
   * rethrown asynchronously, where the host (window.onerror, process 'uncaughtException') reports it.
   */
  emit<K extends keyof Events>(event: K, payload: Events[K]): void {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const listener of [...set]) callSafely(listener as (payload: Events[K]) => void, payload);
  }

  removeAll(): void {
    this.listeners.clear();
  }
}

/**
 * Calls an application callback so that its exception cannot break the SDK's own bookkeeping: the error is
 * rethrown asynchronously, where the host reports it, and the SDK carries on.
 */
export function callSafely<T>(callback: ((value: T) => void) | undefined, value: T): void {
  if (!callback) return;
  try {
    callback(value);
  } catch (err) {
    queueMicrotask(() => {
      throw err;
    });
  }
}
