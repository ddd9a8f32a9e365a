import { expect } from 'chai';
import type { RunningServer } from '../../lib/server.js';
import { newUser, record } from './chat.js';
import { request } from './http.js';
import type { TwoNodes } from './nodes.js';

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

/**
 * A friend request from a new user of node A to a new user with a socket on node B: `ask()` sends it (and expects
 * 201), `heard` the `friend:request` events that socket got.
 */
export async function friendRequestFromAToB(nodes: Pick<TwoNodes, 'a' | 'b' | 'pool'>) {
  const sender = await newUser(nodes.a);
  const recipient = await newUser(nodes.a);
  const onB = await nodes.pool.open(nodes.b.url, recipient);
  const heard = record(onB, 'friend:request');
  return {
    heard,
    ask: async (): Promise<void> => {
      const res = await request(nodes.a.url, 'POST', '/friends/requests', {
        token: sender.token,
        body: { username: recipient.username },
      });
      expect(res.status, res.text).to.equal(201);
    },
  };
}
