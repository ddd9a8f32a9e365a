import pgListen, { type Subscriber } from 'pg-listen';
import type { DatabaseConfig } from '../config.js';
import { pgConnectionConfig } from '../db.js';
import type { Logger } from '../logger.js';

/** Cross-node control events. Keep payloads tiny: NOTIFY carries at most 8000 bytes. */
export type ControlEvent = { type: 'membership.changed'; conversationId: string; userId: string };

const CHANNEL = 'xfchat_control';
// pg-listen is CommonJS with an `exports.default`.
const createPostgresSubscriber = pgListen.default;

export interface ControlBus {
  /** Delivers the event to every node, this one included. */
  publish(event: ControlEvent): Promise<void>;
  subscribe(handler: (event: ControlEvent) => void): () => void;
  /**
   * LISTENs to another channel on the same connection; `handler` gets each payload as pg-listen parsed it
   * (JSON), unchecked. For NOTIFYs sent by SQL (the write path announces committed messages this way).
   */
  listen(channel: string, handler: (payload: unknown) => void): Promise<void>;
  /** Sends `payload` (as JSON) to every node LISTENing to `channel`, this one included. */
  notify(channel: string, payload: unknown): Promise<void>;
  close(): Promise<void>;
}

function isControlEvent(value: unknown): value is ControlEvent {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return (
    v.type === 'membership.changed' && typeof v.conversationId === 'string' && typeof v.userId === 'string'
  );
}

/**
 * A pg-listen LISTEN connection of its own. It reconnects forever: a PostgreSQL restart must not end
 * cross-node control, and events missed while disconnected are covered by `onReconnect` (callers drop caches).
 */
export async function createControlBus(
  config: DatabaseConfig,
  logger: Logger,
  onReconnect: () => void = () => undefined,
): Promise<ControlBus> {
  // pg-listen's reconnect loop does not look at close(): a loop running then would retry forever and keep the
  // process alive. Throwing from retryInterval is the one way to end it; a reconnect that lands after close()
  // is closed again on 'connected'.
  let closed = false;
  const subscriber: Subscriber = createPostgresSubscriber(pgConnectionConfig(config, 'xfchat-control'), {
    retryInterval: (attempt: number) => {
      if (closed) throw new Error('control bus closed');
      return Math.min(250 * 2 ** attempt, 5000);
    },
    retryTimeout: Number.POSITIVE_INFINITY,
    paranoidChecking: 10_000,
  });
  const handlers = new Set<(event: ControlEvent) => void>();
  subscriber.events.on('error', (err) => {
    if (closed) logger.debug({ err }, 'control bus stopped reconnecting after close');
    else logger.error({ err }, 'control bus connection failed');
  });
  subscriber.events.on('reconnect', (attempt) => logger.warn({ attempt }, 'control bus reconnecting'));
  subscriber.events.on('connected', () => {
    if (!closed) {
      onReconnect();
      return;
    }
    subscriber
      .close()
      .catch((err: unknown) => logger.debug({ err }, 'closing a late control bus connection failed'));
  });
  subscriber.notifications.on(CHANNEL, (payload: unknown) => {
    if (!isControlEvent(payload)) {
      logger.warn({ payload }, 'control bus: ignoring an unknown event');
      return;
    }
    for (const handler of handlers) handler(payload);
  });
  await subscriber.connect();
  await subscriber.listenTo(CHANNEL);

  let closing: Promise<void> | undefined;
  return {
    async publish(event) {
      await subscriber.notify(CHANNEL, event);
    },
    subscribe(handler) {
      handlers.add(handler);
      return () => handlers.delete(handler);
    },
    async listen(channel, handler) {
      subscriber.notifications.on(channel, handler);
      await subscriber.listenTo(channel);
    },
    async notify(channel, payload) {
      await subscriber.notify(channel, payload);
    },
    close() {
      closed = true;
      closing ??= subscriber.close();
      return closing;
    },
  };
}
