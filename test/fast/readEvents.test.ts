import { expect } from 'chai';
import { createMessageService, type MessageServiceDeps } from '../../lib/messaging/service.js';

/**
 * The `conversation:read` events a node holds back (lib/messaging/service.ts, tellRead): a held event reads the
 * stored marker when its interval ends, and the key stays busy until that read has answered. Before, the key looked
 * idle as soon as the timer fired: a move 500 ms later was told at once, and a read of the marker that answered
 * after it (a slow database) was told after it, below it: subscribers heard 1, 3, 2. The database here is a stub
 * that reads the marker when asked and answers the held event's read 700 ms later.
 */
describe('a held conversation:read whose marker is read slowly', function () {
  this.timeout(10_000);

  it('is never told after a later move, below it', async () => {
    let stored = 0;
    const told: number[] = [];
    const deps = {
      knex: {
        raw: (sql: string, bindings: unknown[]) => {
          if (sql.startsWith('SELECT last_read_seq')) {
            const read = stored; // the row as it stands when the query runs
            return new Promise((resolve) =>
              setTimeout(() => resolve({ rows: [{ last_read_seq: read, joined: 'joined-1' }] }), 700),
            );
          }
          // The marker's statement ends with the seq's second use, then the participant check's two bindings.
          const seq = Number(bindings[bindings.length - 3]);
          const moved = seq > stored ? seq : null;
          if (moved !== null) stored = moved;
          return Promise.resolve({
            rows: [{ live: true, member: true, moved, joined: 'joined-1', removals: 0 }],
          });
        },
      },
      notify: { readMoved: (event: { seq: number }) => told.push(event.seq) },
      membership: { assert: () => Promise.resolve(), invalidate: () => undefined },
      removals: { beforeDelivering: () => undefined },
      registry: {},
      messagesPerSecond: 0,
      readsPerSecond: 0,
    } as unknown as MessageServiceDeps;
    const service = createMessageService(deps);
    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    try {
      await service.markRead('u1', 'c1', 1); // told at once
      await service.markRead('u1', 'c1', 2); // held; its timer fires ~500 ms later and reads 2, slowly
      await sleep(500 + 600); // the timer fired ~600 ms ago: the key looks idle
      await service.markRead('u1', 'c1', 3); // told at once
      await sleep(800); // the held event's query answers
      expect(told, 'the seqs told, in order').to.deep.equal([...told].sort((a, b) => a - b));
    } finally {
      service.stop();
    }
  });
});
