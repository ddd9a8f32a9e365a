import type { Logger } from '../logger.js';
import type { AppServer } from './io.js';
import { conversationRoom, type PublicMessage } from './protocol.js';

/** Carries committed messages to the subscribers of their conversations, on this node and every other. */
export interface MessageFanout {
  /** Call in seq order per conversation, after commit. */
  publish(message: PublicMessage): void;
}

/**
 * `io.to(room).emit()` through the postgres adapter waits for its own NOTIFY round trip before even this node's
 * sockets get the packet, one NOTIFY per message; under load those serialize in PostgreSQL and delivery lags
 * acks by seconds. Instead: deliver to this node's sockets at once, and send every message committed in the same
 * tick to the other nodes as ONE server-side event (one NOTIFY, or one attachment row when it is over 8000 bytes),
 * which they deliver to their own sockets. Per conversation the order is kept on every node; across nodes the
 * contract already lets `message:new` arrive out of order (clients order by seq).
 */
export function createMessageFanout(io: AppServer, logger: Logger): MessageFanout {
  let outgoing: PublicMessage[] = [];

  const deliverLocally = (message: PublicMessage) =>
    io.local.to(conversationRoom(message.conversationId)).emit('message:new', message);

  const flush = () => {
    const messages = outgoing;
    outgoing = [];
    try {
      io.serverSideEmit('messages:committed', messages);
    } catch (err) {
      // Committed and acked already: other nodes' clients fill the gap with afterSeq when the next message comes.
      logger.error({ err, count: messages.length }, 'cross-node message fan-out failed');
    }
  };

  io.on('messages:committed', (messages) => {
    for (const message of messages) deliverLocally(message);
  });

  return {
    publish(message) {
      deliverLocally(message);
      if (outgoing.length === 0) queueMicrotask(flush);
      outgoing.push(message);
    },
  };
}
