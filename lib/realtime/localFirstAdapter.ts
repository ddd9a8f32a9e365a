import type { PostgresAdapter } from '@socket.io/postgres-adapter';
import type { Logger } from '../logger.js';

/** The adapter's protected step that hands a message to its transport (a NOTIFY, or an attachment row first). */
interface Publishing {
  /** `type` is the message's kind (socket.io-adapter's MessageType: a broadcast, a heartbeat...). */
  publishAndReturnOffset(message: { type: number }): Promise<string>;
}

/**
 * Makes the postgres adapter act on this node's sockets at once, and send to the other nodes in the background.
 *
 * Socket.IO's cluster adapter, for `io.to(room).emit()`, `socketsJoin/Leave()` and `disconnectSockets()`, awaits
 * `publishAndReturnOffset()` (the NOTIFY's round trip to PostgreSQL, on the adapter's own pool) before it acts on
 * this node's sockets. Meanwhile this node went on: a `typing` or a read marker acked before a message, or a
 * participant's removal committed before one, could reach this node's sockets after that message, whose delivery
 * never waits (docs/messaging.md, "A node's own sockets first"). Here that step answers at once and the NOTIFY
 * goes on behind it, in the same order as before: the other nodes get the same messages as from an unchanged
 * adapter, so nodes of earlier releases in the cluster understand them.
 *
 * The offset it answered is for connection state recovery, which this adapter does not offer: always ''. A
 * failed NOTIFY is logged, as the adapter's `errorHandler` logs those it catches itself.
 */
export function deliveringHereFirst(
  createAdapter: (nsp: unknown) => PostgresAdapter,
  logger: Logger,
): (nsp: unknown) => PostgresAdapter {
  // Socket.IO calls it with `new`: a function that returns an object, not an arrow function.
  return function localFirst(nsp) {
    const adapter = createAdapter(nsp);
    const publishing = adapter as unknown as Publishing;
    const publish = publishing.publishAndReturnOffset.bind(adapter);
    publishing.publishAndReturnOffset = (message) => {
      publish(message).catch((err: unknown) =>
        logger.warn({ err, type: message.type }, 'socket.io adapter: publishing to the other nodes failed'),
      );
      return Promise.resolve('');
    };
    return adapter;
  };
}
