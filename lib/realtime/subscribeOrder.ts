/**
 * Per socket, the subscribes that arrived and are not answered yet, so that the last of a socket's
 * `conversation:subscribe` / `conversation:unsubscribe` of a conversation, in the order the socket sent them,
 * decides whether it stays in the conversation's room. An unsubscribe leaves the room at once, but a subscribe
 * joins only after its turn in the socket's reads (lib/realtime/socketReads.ts) and the membership check: one
 * sent just before an unsubscribe would join after it, for good. So each subscribe is noted when it arrives
 * (before any await), an unsubscribe overtakes the conversation's subscribes noted before it, and an overtaken
 * subscribe does not join.
 */
export interface SubscribeOrder {
  /** A subscribe arrived: call it before any await, and `done()` once it is answered, whatever the answer. */
  subscribing(conversationId: string): PendingSubscribe;
  /** An unsubscribe arrived: every subscribe of the conversation that arrived before it is overtaken. */
  unsubscribing(conversationId: string): void;
  /** The socket is gone: every subscribe still pending, and any noted after, is overtaken. */
  close(): void;
}

export interface PendingSubscribe {
  /** An unsubscribe of its conversation arrived after it (or the socket went away): it must not join the room. */
  readonly overtaken: boolean;
  /** Answered: forgotten. */
  done(): void;
}

interface Pending extends PendingSubscribe {
  overtaken: boolean;
}

/**
 * Holds only the subscribes not answered yet: a conversation's entry goes with its last one, or with the
 * unsubscribe that overtakes them, and all of them with close().
 */
export function createSubscribeOrder(): SubscribeOrder {
  const pending = new Map<string, Set<Pending>>();
  let closed = false;

  const overtake = (subscribes: Iterable<Pending>) => {
    for (const subscribe of subscribes) subscribe.overtaken = true;
  };

  return {
    subscribing(conversationId) {
      const subscribes = pending.get(conversationId) ?? new Set<Pending>();
      const subscribe: Pending = {
        overtaken: closed,
        done() {
          subscribes.delete(subscribe);
          // An unsubscribe or close() may have dropped this set already, and a newer one may stand in its place.
          if (subscribes.size === 0 && pending.get(conversationId) === subscribes)
            pending.delete(conversationId);
        },
      };
      if (!closed) pending.set(conversationId, subscribes.add(subscribe));
      return subscribe;
    },
    unsubscribing(conversationId) {
      const subscribes = pending.get(conversationId);
      if (subscribes === undefined) return;
      overtake(subscribes);
      pending.delete(conversationId);
    },
    close() {
      closed = true;
      for (const subscribes of pending.values()) overtake(subscribes);
      pending.clear();
    },
  };
}
