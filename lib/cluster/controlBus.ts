import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import pgListen, { type Subscriber } from 'pg-listen';
import type { DatabaseConfig } from '../config.js';
import { pgConnectionConfig, type PoolConnections } from '../db.js';
import type { Logger } from '../logger.js';

/** Cross-node control events. Keep payloads tiny: NOTIFY carries at most 8000 bytes. */
export interface ControlEvent {
  type: 'membership.changed';
  conversationId: string;
  userId: string;
  /** The user was removed or left: every node takes their sockets out of the conversation's room. */
  removed?: boolean;
  /**
   * The user created the group (`created`), was added (`added`), or renamed the group (`renamed`): every node tells its sockets the
   * conversation's new details, in the order of the conversation's changes (lib/realtime/conversationEvents.ts).
   * A removal is `removed`. Absent from nodes of earlier releases, which tell every node's sockets themselves,
   * through the adapter; nodes of 0.2.0 accept the event with it (they check the three fields above only).
   */
  change?: 'created' | 'added' | 'renamed';
  /**
   * With `removed`: the conversation's removals counted with this one; with `change: 'added'`: those counted
   * before the addition (`conversations.removals`; lib/messaging/removals.ts). Absent from nodes of earlier
   * releases.
   */
  removals?: number;
}

const CHANNEL = 'xfchat_control';
// pg-listen is CommonJS with an `exports.default`.
const createPostgresSubscriber = pgListen.default;

export interface ControlBus {
  /** Delivers the event to every node, this one included. */
  publish(event: ControlEvent): Promise<void>;
  /**
   * Sends `event` inside the caller's transaction: every node, this one included, hears it if, and only if, the
   * transaction commits, and before any notification of a transaction that committed after it, such as the
   * announcement of a message that waited for this transaction's lock on the conversation (PostgreSQL delivers
   * notifications in commit order, and a node hears this channel and the announcements on one connection).
   */
  publishWithin(trx: Knex.Transaction, event: ControlEvent): Promise<void>;
  /** `fromHere`: this node published the event. */
  subscribe(handler: (event: ControlEvent, fromHere: boolean) => void): () => void;
  /**
   * LISTENs to another channel on the same connection; `handler` gets each payload as pg-listen parsed it
   * (JSON), unchecked. For NOTIFYs sent by SQL (the write path announces committed messages this way).
   */
  listen(channel: string, handler: (payload: unknown) => void): Promise<void>;
  /**
   * Sends `payload` (as JSON) to every node LISTENing to `channel`, this one included, after everything this bus
   * was given to send before it.
   */
  notify(channel: string, payload: unknown): Promise<void>;
  close(): Promise<void>;
}

/** An event as it travels: stamped with the publishing bus's id. */
type Published = ControlEvent & { origin?: string };

function isControlEvent(value: unknown): value is Published {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return (
    v.type === 'membership.changed' &&
    typeof v.conversationId === 'string' &&
    typeof v.userId === 'string' &&
    (v.removed === undefined || typeof v.removed === 'boolean') &&
    (v.change === undefined || v.change === 'created' || v.change === 'added' || v.change === 'renamed') &&
    (v.removals === undefined || (typeof v.removals === 'number' && Number.isSafeInteger(v.removals))) &&
    (v.origin === undefined || typeof v.origin === 'string')
  );
}

/** One notification waiting to be sent, and its sender's promise. */
interface Outgoing {
  channel: string;
  payload: string;
  sent: () => void;
  failed: (err: unknown) => void;
}

/**
 * One statement sends a batch of notifications, in order: a function scan returns the arrays' elements in order,
 * and PostgreSQL delivers a transaction's notifications in the order they were sent. Named, so that each pool
 * connection parses and plans it once.
 */
const NOTIFY = {
  name: 'xfchat_notify_v1',
  text: 'SELECT count(pg_notify(n.channel, n.payload)) FROM unnest($1::text[], $2::text[]) AS n(channel, payload)',
};

/**
 * Sends notifications through Knex's pool, one statement at a time, in the order given: those given in one turn
 * (a commit's several announcements) go in one statement, and those given while a statement runs together in the
 * next. Each statement is a transaction whose commit wakes every listening connection of the database, so fewer
 * statements cost PostgreSQL less. `pg_notify()` with parameters, not `NOTIFY channel, 'payload'` as pg-listen
 * sends it: pg_stat_statements (track_utility, on by default) keeps an entry per distinct utility statement text,
 * so every announcement (each with its own messages) would take an entry of its own, up to 8000 bytes of text, and
 * evict the operator's statements; a parameterized SELECT is one entry for all.
 */
function createSender(connections: PoolConnections): (channel: string, payload: unknown) => Promise<void> {
  let waiting: Outgoing[] = [];
  let sending = false;
  async function send(batch: readonly Outgoing[]): Promise<void> {
    const client = await connections.acquire();
    try {
      await connections
        .observed(client)
        .query({ ...NOTIFY, values: [batch.map((o) => o.channel), batch.map((o) => o.payload)] });
    } finally {
      connections.release(client);
    }
  }
  async function drain(): Promise<void> {
    while (waiting.length > 0) {
      const batch = waiting;
      waiting = [];
      try {
        await send(batch);
        for (const o of batch) o.sent();
      } catch (err) {
        for (const o of batch) o.failed(err);
      }
    }
    sending = false;
  }
  return (channel, payload) =>
    new Promise<void>((sent, failed) => {
      waiting.push({ channel, payload: JSON.stringify(payload), sent, failed });
      if (sending) return;
      sending = true;
      // After the current task, so that what its caller gives next goes along.
      queueMicrotask(() => void drain());
    });
}

/**
 * The `application_name` of a node's control-bus connection, which it holds (LISTENing) for as long as it runs:
 * `pg_stat_activity` counts the nodes of a database by it (`xfchat jwt-secret adopt`).
 */
export const CONTROL_APPLICATION_NAME = 'xfchat-control';

/** How often pg-listen asks the control bus's connection a query: one not answered (its query timeout) reconnects. */
const PARANOID_CHECK_MS = 10_000;

/**
 * The longest the control bus's connection can have been silent when its loss is noticed: a half-open link is
 * noticed by the first check that gets no answer within the query timeout (DB_STATEMENT_TIMEOUT_MS + 1 s).
 */
export function controlBusSilentAtMostMs(config: Pick<DatabaseConfig, 'statementTimeoutMs'>): number {
  return PARANOID_CHECK_MS + config.statementTimeoutMs + 1000;
}

/**
 * A pg-listen LISTEN connection of its own, which reconnects forever: a PostgreSQL restart must not end cross-node
 * control, and events missed while disconnected are covered by `onReconnect` (callers drop caches). Notifications
 * go out on connections of Knex's pool (`connections`, {@link createSender}).
 */
export async function createControlBus(
  config: DatabaseConfig,
  connections: PoolConnections,
  logger: Logger,
  onReconnect: () => void = () => undefined,
  /** The connection ended and the bus reconnects: the events from now on until `onReconnect` are not heard. */
  onLost: () => void = () => undefined,
): Promise<ControlBus> {
  // pg-listen's reconnect loop does not look at close(): a loop running then would retry forever and keep the
  // process alive. Throwing from retryInterval is the one way to end it; a reconnect that lands after close()
  // is closed again on 'connected'.
  let closed = false;
  const subscriber: Subscriber = createPostgresSubscriber(
    pgConnectionConfig(config, CONTROL_APPLICATION_NAME),
    {
      retryInterval: (attempt: number) => {
        if (closed) throw new Error('control bus closed');
        return Math.min(250 * 2 ** attempt, 5000);
      },
      retryTimeout: Number.POSITIVE_INFINITY,
      paranoidChecking: PARANOID_CHECK_MS,
    },
  );
  const handlers = new Set<(event: ControlEvent, fromHere: boolean) => void>();
  const origin = randomUUID();
  subscriber.events.on('error', (err) => {
    if (closed) logger.debug({ err }, 'control bus stopped reconnecting after close');
    else logger.error({ err }, 'control bus connection failed');
  });
  subscriber.events.on('reconnect', (attempt) => {
    logger.warn({ attempt }, 'control bus reconnecting');
    if (!closed) onLost();
  });
  subscriber.events.on('connected', () => {
    if (!closed) {
      onReconnect();
      return;
    }
    subscriber
      .close()
      .catch((err: unknown) => logger.debug({ err }, 'closing a late control bus connection failed'));
  });
  /**
   * A handler of what the bus heard threw (a defect): logged. Thrown on, it would escape into the LISTEN
   * connection's event handling and end the process, every socket of the node with it.
   */
  function handlerFailed(err: unknown, channel: string): void {
    logger.error({ err, channel }, 'control bus: a handler of a notification failed');
  }
  subscriber.notifications.on(CHANNEL, (payload: unknown) => {
    if (!isControlEvent(payload)) {
      logger.warn({ payload }, 'control bus: ignoring an unknown event');
      return;
    }
    const { origin: from, ...event } = payload;
    for (const handler of handlers) {
      try {
        handler(event, from === origin);
      } catch (err) {
        handlerFailed(err, CHANNEL);
      }
    }
  });
  await subscriber.connect();
  await subscriber.listenTo(CHANNEL);
  const send = createSender(connections);

  let closing: Promise<void> | undefined;
  return {
    publish(event) {
      return send(CHANNEL, { ...event, origin } satisfies Published);
    },
    async publishWithin(trx, event) {
      await trx.raw('SELECT pg_notify(?, ?)', [
        CHANNEL,
        JSON.stringify({ ...event, origin } satisfies Published),
      ]);
    },
    subscribe(handler) {
      handlers.add(handler);
      return () => handlers.delete(handler);
    },
    async listen(channel, handler) {
      subscriber.notifications.on(channel, (payload: unknown) => {
        try {
          handler(payload);
        } catch (err) {
          handlerFailed(err, channel);
        }
      });
      await subscriber.listenTo(channel);
    },
    notify(channel, payload) {
      return send(channel, payload);
    },
    close() {
      closed = true;
      closing ??= subscriber.close();
      return closing;
    },
  };
}
