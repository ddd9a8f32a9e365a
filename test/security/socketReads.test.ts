import { expect } from 'chai';
import { createSocketReads } from '../../lib/realtime/socketReads.js';
import { createGroup, expectOk, newUser, seedMessages } from '../helpers/chat.js';
import { useNode } from '../helpers/nodes.js';

describe('subscribes of one socket: one at a time, a bounded queue', function () {
  this.timeout(30_000);

  it('runs reads in arrival order, one at a time, each after ready(); refuses past the queue', async () => {
    const order: string[] = [];
    let running = 0;
    const gates: Array<() => void> = [];
    let readyCalls = 0;
    const reads = createSocketReads({
      ready: () => {
        readyCalls += 1;
        return Promise.resolve();
      },
      maxWaiting: 2,
    });
    const read = (name: string) =>
      reads.run(async () => {
        running += 1;
        expect(running, 'reads running at once').to.equal(1);
        order.push(name);
        await new Promise<void>((resolve) => gates.push(resolve));
        running -= 1;
        return name;
      });
    const a = read('a');
    const b = read('b');
    const c = read('c');
    let refused: unknown;
    await read('d').catch((err: unknown) => (refused = err));
    expect(refused).to.have.property('code', 'RATE_LIMITED');
    while (order.length < 3) {
      await new Promise((resolve) => setImmediate(resolve));
      gates.shift()?.();
    }
    gates.shift()?.();
    expect(await Promise.all([a, b, c])).to.deep.equal(['a', 'b', 'c']);
    expect(order).to.deep.equal(['a', 'b', 'c']);
    expect(readyCalls).to.equal(3);
  });

  it('refuses the waiting reads once the socket is gone', async () => {
    const reads = createSocketReads({ ready: () => Promise.resolve() });
    let release: () => void = () => undefined;
    const first = reads.run(() => new Promise<string>((resolve) => (release = () => resolve('first'))));
    const waiting = reads.run(() => Promise.resolve('never'));
    reads.close();
    let refused: unknown;
    await waiting.catch((err: unknown) => (refused = err));
    expect(refused).to.have.property('code', 'RATE_LIMITED');
    release();
    expect(await first).to.equal('first');
  });

  describe('on a node', () => {
    const { server, pool } = useNode();

    it('answers every one of a client’s simultaneous subscribes (queued, not refused)', async () => {
      const user = await newUser(server);
      const groups = await Promise.all(Array.from({ length: 6 }, () => createGroup(server.url, user, [])));
      for (const group of groups) await seedMessages(server.services.db.knex, group.id, user.id, 30);
      const socket = await pool.open(server.url, user);
      const acks = await Promise.all(
        groups.map((group) => socket.emitWithAck('conversation:subscribe', { conversationId: group.id })),
      );
      for (const ack of acks) expect(expectOk(ack).messages).to.have.length(30);
    });
  });
});
