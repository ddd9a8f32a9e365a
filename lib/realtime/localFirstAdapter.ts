import type { PostgresAdapter } from '@socket.io/postgres-adapter';
import type { Logger } from '../logger.js';

/** The adapter's protected step that hands a message to its transport (a NOTIFY, or an attachment row first). */
interface Publishing {
  /** `type` is the message's kind (socket.io-adapter's MessageType: a broadcast, a heartbeat...). */
  publishAndReturnOffset(message: { type: number }): Promise<string>;
}

/**
 * Makes the postgres adapter act on this node's sockets at once, and send to the other nodes in the background,
 * in the order this node made its messages.
 *
 * Socket.IO's cluster adapter, for `io.to(room).emit()`, `socketsJoin/Leave()` and `disconnectSockets()`, awaits
 * `publishAndReturnOffset()` (the NOTIFY's round trip to PostgreSQL, on the adapter's own pool) before it acts on
 * this node's sockets. Meanwhile this node went on: a `typing` or a read marker acked before a message, or a
 * participant's removal committed before one, could reach this node's sockets after that message, whose delivery
 * never waits (docs/messaging.md, "A node's own sockets first"). Here that step answers at once and the NOTIFY
 * goes on behind it: the other nodes get the same messages as from an unchanged adapter, so nodes of earlier
 * releases in the cluster understand them.
 *
 * The adapter sends each message on whichever connection of its pool is free, so two made one after the other
 * could reach the other nodes in either order: a rename overtaken by the one before it, an account's deletion by
 * the rename before it, a `typing` stop by its start (their clients kept the older). Here each goes once the one
 * before it was sent. PostgreSQL takes a cluster-wide lock to queue each notification at commit anyway, so what
 * this costs is one round trip per message instead of three at once.
 *
 * The offset it answered is for connection state recovery, which this adapter does not offer: always ''. A
 * failed NOTIFY is logged, as the adapter's `errorHandler` logs those it catches itself, and the next one goes.
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
    let sent: Promise<void> = Promise.resolve();
    publishing.publishAndReturnOffset = (message) => {
      sent = sent.then(() =>
        publish(message).then(
          () => undefined,
          (err: unknown) =>
            logger.warn(
              { err, type: message.type },
              'socket.io adapter: publishing to the other nodes failed',
            ),
        ),
      );
      return Promise.resolve('');
    };
    return adapter;
  };
}
