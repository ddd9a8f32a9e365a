import { AppError, toAck, toAppError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { ServerErrorLog } from '../serverErrorLog.js';
import type { ClientEventResult } from '../protocol/events.js';
import {
  clientEventSchemas,
  PAGE_LIMIT,
  type ClientEventInput,
  type ClientEventName,
} from '../protocol/schemas.js';
import type { Services } from '../services.js';
import { parse } from '../validation.js';
import type { Backpressure } from './backpressure.js';
import type { AppSocket } from './io.js';
import { isSubscribed, subscribeSocket, unsubscribeSocket } from './notifier.js';
import { endEndedSessions } from './revalidation.js';
import { createSocketReads } from './socketReads.js';
import { createSubscribeOrder } from './subscribeOrder.js';

type Handler<E extends ClientEventName> = (request: ClientEventInput<E>) => Promise<ClientEventResult<E>>;
type Listener = (...args: unknown[]) => void;

/**
 * Where a socket's events log: the socket's child logger, and the node's line for the server errors its clients are
 * answered with (one per code every 10 s for those of load and outages: lib/serverErrorLog.ts), which all the
 * node's sockets share, and only its own.
 */
export interface EventLog {
  log: Logger;
  serverError: ServerErrorLog;
  /**
   * After an event was answered UNAUTHORIZED: the socket's session ended and this node had not heard of it (the
   * conversation events; `auth:refresh` answers UNAUTHORIZED for a bad new token and changes nothing).
   */
  sessionRefused?: () => void;
}

/**
 * Wires one client event. The payload is parsed with the event's schema before the handler sees it, and the
 * handler must return the event's result type. Whatever arrives (no payload, not an object, no ack callback) the
 * handler never throws: its result is acked `{ok: true, ...result}`, its error `{ok: false, error}` through the
 * catalog. Server errors are logged here.
 */
export function handle<E extends ClientEventName>(
  socket: AppSocket,
  { log, serverError, sessionRefused }: EventLog,
  event: E,
  handler: Handler<E>,
): void {
  const schema = clientEventSchemas[event];
  const listener: Listener = (...args) => {
    const last = args.at(-1);
    const ack = typeof last === 'function' ? (last as (response: unknown) => void) : undefined;
    // A client that emits only a callback sends no payload.
    const payload = ack !== undefined && args.length === 1 ? undefined : args[0];
    const reply = (response: unknown) => {
      try {
        ack?.(response);
      } catch (err) {
        log.warn({ err, event }, 'ack callback failed');
      }
    };
    // An async wrapper turns a synchronous throw (a parse failure) into a rejection too.
    (async () => handler(parse(schema, payload) as ClientEventInput<E>))().then(
      (result) => reply({ ok: true, ...result }),
      (err: unknown) => {
        const error = toAppError(err);
        if (error.status >= 500) serverError(log, error, { event }, 'socket event failed');
        reply(toAck(error));
        if (error.code === 'UNAUTHORIZED' && !socket.disconnected) sessionRefused?.();
      },
    );
  };
  // socket.io's typed `on` cannot relate a generic event name to its listener; the listener parses its payload.
  (socket.on as (event: string, listener: Listener) => void)(event, listener);
}

/**
 * The conversation events of the contract on every connection: subscribe / unsubscribe, send, edit, delete,
 * reactions, read markers and typing. Every one checks that the socket's user takes part in the conversation
 * (NOT_FOUND otherwise). Subscribes of one socket run one at a time, each once the socket has taken what waited
 * for it (lib/realtime/socketReads.ts), so history pages never pile up in the node for a client that does not read.
 * Whether a socket stays subscribed is decided by the last subscribe or unsubscribe it sent for the conversation
 * (lib/realtime/subscribeOrder.ts).
 */
export function registerConversationHandlers(
  services: Services,
  backpressure: Pick<Backpressure, 'writable'>,
  serverError: ServerErrorLog,
): void {
  const { messages } = services;
  services.io.on('connection', (socket) => {
    // The session is read at each write, not here: `auth:refresh` may move the socket to another session of its
    // user, whose writes they are from then on (the first session's end no longer refuses them).
    const { userId } = socket.data;
    const log = services.logger.child({ socketId: socket.id, userId });
    const events: EventLog = {
      log,
      serverError,
      // A write, read marker or typing refused for the socket's session: it ends here, as the notice of the end
      // would have ended it (`session:ended` with its reason, then the disconnect), not at the node's next check.
      sessionRefused: () => {
        const session = new Map([[socket.data.sessionId, userId]]);
        endEndedSessions(services.io, services.db.knex, session).catch((err: unknown) =>
          log.warn(
            { err },
            'ending the socket of an ended session failed: the next check of the sockets ends it',
          ),
        );
      },
    };
    const reads = createSocketReads({ ready: () => backpressure.writable(socket) });
    const order = createSubscribeOrder();
    socket.once('disconnect', () => {
      reads.close();
      order.close();
    });

    handle(socket, events, 'conversation:subscribe', ({ conversationId, afterSeq, limit }) => {
      // Noted as it arrives: an unsubscribe the socket sent after it overtakes it while it waits its turn.
      const subscribe = order.subscribing(conversationId);
      return reads
        .run(async () => {
          const removalTold = services.conversationEvents.lastRemovalTold(userId, conversationId);
          await messages.assertParticipant(userId, conversationId);
          // A session ended on another node, whose notice this node has not heard yet, reads nothing (a REST read
          // checks its session as it starts): its socket ends here, as the notice would have ended it.
          const session = new Map([[socket.data.sessionId, userId]]);
          if ((await endEndedSessions(services.io, services.db.knex, session)) > 0)
            throw new AppError('UNAUTHORIZED');
          // A socket that went away meanwhile must not join a room: nothing would ever take it out.
          if (socket.disconnected)
            throw new AppError('RATE_LIMITED', { message: 'The connection is closing.' });
          // Nor one whose user this node has told of a removal since the check: the removal took the socket out
          // of the room already, and joining now would put it back in until the page's own check refused it.
          if (services.conversationEvents.lastRemovalTold(userId, conversationId) !== removalTold)
            throw new AppError('NOT_FOUND');
          // A subscribe that fails (over the read budget, say) leaves an earlier subscription as it was.
          const wasSubscribed = isSubscribed(socket, conversationId);
          // Overtaken by an unsubscribe sent after it, it is answered its page all the same but stays out of the
          // room: the socket's last word was the unsubscribe, and no event follows this page.
          const joined = !subscribe.overtaken;
          // Join before reading: a message committed meanwhile is either in the page or arrives as message:new.
          if (joined) await subscribeSocket(socket, conversationId);
          const pageSize = limit ?? PAGE_LIMIT.default;
          try {
            // history() checks membership again: a removal that raced the join is caught here.
            const page = await messages.history(
              userId,
              conversationId,
              afterSeq === undefined
                ? { kind: 'newest', limit: pageSize }
                : { kind: 'after', seq: afterSeq, limit: pageSize },
              // The node's later deliveries leave out, for this socket, the states its page gave (none follow a
              // page of a subscribe that did not join).
              joined ? socket.id : undefined,
            );
            return {
              messages: page.messages,
              hasMore: page.hasMore,
              lastSeq: page.lastSeq,
              version: page.version,
            };
          } catch (err) {
            // Undoes its own join only. No later subscribe of this socket has joined meanwhile (they run one at a
            // time), and a later unsubscribe has left already.
            if (joined && !wasSubscribed) await unsubscribeSocket(socket, conversationId);
            throw err;
          }
        })
        .finally(() => subscribe.done());
    });

    handle(socket, events, 'conversation:unsubscribe', async ({ conversationId }) => {
      // At once, before any await, in the order the socket sent it: the subscribes sent before it and still
      // waiting do not join after it, and one sent after it cannot join before this leaves. Leaving before the
      // membership check gives nothing away: a non-participant is in no room of the conversation, and hears
      // NOT_FOUND all the same.
      order.unsubscribing(conversationId);
      await unsubscribeSocket(socket, conversationId);
      await messages.assertParticipant(userId, conversationId);
      return {};
    });

    handle(socket, events, 'message:send', async (request) => {
      const { message, duplicate } = await messages.send(userId, request, socket.data.sessionId);
      return { message, duplicate };
    });

    handle(socket, events, 'message:edit', async ({ conversationId, seq, body }) =>
      messages.change(userId, conversationId, { kind: 'edit', seq, body }, socket.data.sessionId),
    );

    handle(socket, events, 'message:delete', async ({ conversationId, seq }) => {
      await messages.change(userId, conversationId, { kind: 'delete', seq }, socket.data.sessionId);
      return {};
    });

    handle(socket, events, 'reaction:add', async ({ conversationId, seq, emoji }) => {
      await messages.change(userId, conversationId, { kind: 'react', seq, emoji }, socket.data.sessionId);
      return {};
    });

    handle(socket, events, 'reaction:remove', async ({ conversationId, seq, emoji }) => {
      await messages.change(userId, conversationId, { kind: 'unreact', seq, emoji }, socket.data.sessionId);
      return {};
    });

    handle(socket, events, 'conversation:read', async ({ conversationId, seq }) => {
      await messages.markRead(userId, conversationId, seq, socket.data.sessionId);
      return {};
    });

    handle(socket, events, 'typing', async ({ conversationId }) => {
      await messages.typing(userId, conversationId, socket.data.sessionId);
      return {};
    });
  });
}
