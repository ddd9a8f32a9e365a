import type { PostgresAdapter } from '@socket.io/postgres-adapter';
import { MessageType } from 'socket.io-adapter';
import type { Logger } from '../logger.js';

/** The adapter's protected step that hands a message to its transport (a NOTIFY, or an attachment row first). */
interface Publishing {
  /** `type` is the message's kind: a broadcast, a heartbeat... */
  publishAndReturnOffset(message: { type: MessageType }): Promise<string>;
}

/**
 * The longest a message waits for the one this node made before it to be sent: past it, it goes anyway. One
 * connection of the adapter's pool that stopped answering (a half-open link, a stuck backend) is given up only at
 * the driver's query timeout (DB_STATEMENT_TIMEOUT_MS + 1 s); the node's other broadcasts must not wait that long.
 */
export const ORDER_WAIT_MS = 1000;

/**
 * The longest a message waits in this node's queue, from when it was made: past it, it goes whatever the ones
 * before it do. Each goes after the one before it, one round trip each; a database too slow for the rate of the
 * node's broadcasts would otherwise make them later and later for as long as the load lasts. Order then gives way
 * to delivery, as for a stuck NOTIFY.
 */
export const QUEUE_MAX_MS = 2000;

/**
 * The messages that tell the other nodes this one is alive. They never wait for a broadcast: a node whose heartbeat waited behind a stuck NOTIFY would be counted gone by the
 * others. Its goodbye (ADAPTER_CLOSE) goes last of all ({@link sayGoodbye}): any message the others hear from a node
 * counts it alive again, so a broadcast heard after the goodbye would bring the stopped node back into their count
 * (and set every node catching up).
 */
const UNORDERED_TYPES: ReadonlySet<MessageType> = new Set([
  MessageType.INITIAL_HEARTBEAT,
  MessageType.HEARTBEAT,
]);

/**
 * What the wrapper keeps on each adapter it wraps (one per namespace and node: the node's state lives with its
 * adapter, never in this module): the promise of its last message's send, and its goodbye, held back since
 * `io.close()` made it (see {@link sayGoodbye}).
 */
const ORDERED = Symbol('xfchat.orderedPublishing');
interface Ordered {
  lastSend(): Promise<void>;
  goodbye?: () => void;
}
const orderedOf = (adapter: object): Ordered | undefined => (adapter as { [ORDERED]?: Ordered })[ORDERED];

/**
 * Sends `adapter`'s goodbye, behind everything it queued before. `io.close()` makes it, and then waits for the HTTP
 * server to close, whose requests still being answered may broadcast (a rename committing): sent when made, it
 * would go before those, and any message heard from a node after its goodbye counts it alive again (the others
 * then count it back and catch up). So it is held back until the shutdown calls this (lib/realtime/io.ts: once
 * nothing is left open, or two seconds into the close, as a WebSocket whose client never answers the closing
 * handshake holds the close for 30 s).
 */
export function sayGoodbye(adapter: object): void {
  const ordered = orderedOf(adapter);
  const goodbye = ordered?.goodbye;
  if (ordered) ordered.goodbye = undefined;
  goodbye?.();
}

/**
 * Resolves once what `adapter` was given to send so far has gone (or failed), or after `ms`: at shutdown, before
 * the adapter's pool ends (a query waiting for a connection of an ending pool is never served), so the broadcasts
 * of the drain's last acks reach the other nodes.
 */
export function sentOrAfter(adapter: object, ms: number): Promise<void> {
  const ordered = orderedOf(adapter);
  return ordered === undefined ? Promise.resolve() : settledOrAfter(ordered.lastSend(), ms);
}

/** Resolves when `before` settles (fulfilled or rejected), or after `ms`, whichever comes first. */
export function settledOrAfter(before: Promise<unknown>, ms: number): Promise<void> {
  return new Promise((resolve) => {
    // Unreferenced: a node shutting down does not wait for it.
    const timer = setTimeout(resolve, ms).unref();
    const settled = (): void => {
      clearTimeout(timer);
      resolve();
    };
    void before.then(settled, settled);
  });
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
 * the rename before it, a `typing` by an earlier one (their clients kept the older). Here each goes once the one
 * before it was sent, or {@link ORDER_WAIT_MS} after that one began if it is still on its way (a connection stuck:
 * order then gives way to delivery), and at the latest {@link QUEUE_MAX_MS} after it was made (a backlog). Heartbeats
 * go at once.
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
    const send = (message: { type: MessageType }): Promise<void> =>
      publish(message).then(
        () => undefined,
        (err: unknown) =>
          logger.warn({ err, type: message.type }, 'socket.io adapter: publishing to the other nodes failed'),
      );
    // The send of the message made before: when it began (its performance.now()), when it was done, and whether it
    // is (a message made with nothing on its way goes at once, without a timer).
    let previous: { began: Promise<number>; done: Promise<void>; sent: boolean } = {
      began: Promise.resolve(Number.NEGATIVE_INFINITY),
      done: Promise.resolve(),
      sent: true,
    };
    const ordered: Ordered = { lastSend: () => previous.done };
    (adapter as { [ORDERED]?: Ordered })[ORDERED] = ordered;
    const enqueue = (message: { type: MessageType }): void => {
      const before = previous;
      if (before.sent) {
        const now = performance.now();
        const sending = { began: Promise.resolve(now), done: send(message), sent: false };
        void sending.done.then(() => (sending.sent = true));
        previous = sending;
        return;
      }
      let begin: (at: number) => void = () => undefined;
      const began = new Promise<number>((resolve) => (begin = resolve));
      // The wait is counted from when the one before began, not from when this one was made: behind a queue of a
      // second or more (a burst, a busy database), every message would otherwise go at once, in any order; and
      // behind one stuck for a while already, only what is left of the second is waited.
      const inTurn = before.began.then((beganAt) =>
        settledOrAfter(before.done, Math.max(0, ORDER_WAIT_MS - (performance.now() - beganAt))),
      );
      const queued = {
        began,
        done: settledOrAfter(inTurn, QUEUE_MAX_MS).then(() => {
          begin(performance.now());
          return send(message);
        }),
        sent: false,
      };
      void queued.done.then(() => (queued.sent = true));
      previous = queued;
    };
    publishing.publishAndReturnOffset = (message) => {
      if (UNORDERED_TYPES.has(message.type)) void send(message);
      else if (message.type === MessageType.ADAPTER_CLOSE) ordered.goodbye = () => enqueue(message);
      else enqueue(message);
      return Promise.resolve('');
    };
    return adapter;
  };
}
