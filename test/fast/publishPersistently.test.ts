import { expect } from 'chai';
import { publishPersistently, type ControlEvent } from '../../lib/cluster/controlBus.js';
import { captureLogs } from '../helpers/logCapture.js';
import { waitFor } from '../helpers/waitFor.js';

const event: ControlEvent = {
  type: 'membership.changed',
  conversationId: '00000000-0000-4000-8000-000000000001',
  userId: '00000000-0000-4000-8000-000000000002',
};

/** A bus whose first `failures` publishes fail. */
function flakyBus(failures: number) {
  const tries: ControlEvent[] = [];
  return {
    tries,
    publish(e: ControlEvent) {
      tries.push(e);
      return tries.length <= failures ? Promise.reject(new Error('pool busy')) : Promise.resolve();
    },
  };
}

describe('cluster/controlBus: publishing a control event until it goes out', () => {
  it('publishes once when the bus takes it', async () => {
    const bus = flakyBus(0);
    const logs = captureLogs();
    await publishPersistently(bus, event, logs.logger, { retryMs: 5 });
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(bus.tries).to.deep.equal([event]);
    expect(logs.entries()).to.deep.equal([]);
  });

  it('returns after a failed first try and tries again in the background until it goes out', async () => {
    const bus = flakyBus(2);
    const logs = captureLogs();
    await publishPersistently(bus, event, logs.logger, { retryMs: 5 });
    expect(bus.tries, 'only the first try before it returns').to.have.length(1);
    await waitFor(() => logs.entries().some((e) => e.msg === 'membership.changed published after retrying'));
    expect(bus.tries).to.have.length(3);
    expect(logs.entries().map((e) => [e.level, e.tries])).to.deep.equal([
      [40, 1],
      [40, 2],
      [30, 3],
    ]);
  });

  it('gives up after its tries, saying so as an error', async () => {
    const bus = flakyBus(Number.POSITIVE_INFINITY);
    const logs = captureLogs();
    await publishPersistently(bus, event, logs.logger, { retryMs: 5, attempts: 3 });
    await waitFor(() => logs.entries().some((e) => e.level === 50));
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(bus.tries).to.have.length(3);
    expect(logs.entries().at(-1)).to.include({
      msg: 'publishing membership.changed failed: the other nodes keep stale caches',
      tries: 3,
    });
  });
});
