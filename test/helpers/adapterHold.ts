import type { RunningServer } from '../../lib/server.js';

/**
 * The adapter's publishing of one node, held: what it hands the other nodes (its NOTIFYs) waits until `release()`.
 * `doPublish` is the method each cluster adapter implements for its transport.
 */
export function holdPublishes(node: RunningServer): { held: () => number; release: () => void } {
  const adapter = node.services.io.of('/').adapter as unknown as {
    doPublish: (message: unknown) => Promise<string>;
  };
  const original = adapter.doPublish;
  const waiting: Array<() => void> = [];
  adapter.doPublish = function (this: unknown, message: unknown) {
    return new Promise<void>((resolve) => waiting.push(resolve)).then(() => original.call(this, message));
  };
  return {
    held: () => waiting.length,
    release() {
      Reflect.deleteProperty(adapter, 'doPublish');
      for (const resume of waiting.splice(0)) resume();
    },
  };
}
