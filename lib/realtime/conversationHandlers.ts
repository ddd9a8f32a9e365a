import { toAck, toAppError } from '../errors.js';
import { CLIENT_MSG_ID, MESSAGE_BODY, Validator } from '../http/validate.js';
import type { Services } from '../services.js';
import type { AppSocket } from './io.js';
import { conversationRoom, type ClientToServerEvents } from './protocol.js';

/** History page size of `conversation:subscribe`: 1..200, default 50, larger values clamped. */
const DEFAULT_LIMIT = 50;
const MAX_LIMIT = 200;

type Handler = (payload: unknown) => Promise<object>;

/**
 * Wires one client event: whatever arrives (no payload, not an object, no ack callback) the handler never throws;
 * its result is acked `{ok: true, ...result}`, its error `{ok: false, error}` through the catalog. Server errors
 * are logged once here, with the socket and user ids.
 */
function handle(
  services: Services,
  socket: AppSocket,
  event: keyof ClientToServerEvents,
  handler: Handler,
): void {
  socket.on(event, (...args: unknown[]) => {
    const last = args.at(-1);
    const ack = typeof last === 'function' ? (last as (response: unknown) => void) : undefined;
    // A client that emits only a callback sends no payload.
    const payload = ack !== undefined && args.length === 1 ? undefined : args[0];
    const reply = (response: unknown) => {
      try {
        ack?.(response);
      } catch (err) {
        services.logger.warn({ err, event, socketId: socket.id }, 'ack callback failed');
      }
    };
    // An async wrapper turns a synchronous throw into a rejection too.
    const running = (async () => handler(payload))();
    running.then(
      (result) => reply({ ok: true, ...result }),
      (err: unknown) => {
        const error = toAppError(err);
        if (error.status >= 500) {
          const level = error.code === 'INTERNAL' ? 'error' : 'warn';
          services.logger[level](
            {
              err: error.cause ?? error,
              code: error.code,
              event,
              socketId: socket.id,
              userId: socket.data.userId,
            },
            'socket event failed',
          );
        }
        reply(toAck(error));
      },
    );
  });
}

/** The conversation id of a payload; VALIDATION_FAILED when missing or not a UUID. */
function conversationIdOf(payload: unknown): string {
  const v = new Validator(payload);
  const conversationId = v.uuid('conversationId');
  v.done();
  return conversationId!;
}

/**
 * The conversation events of the contract on every connection: subscribe / unsubscribe, send, read markers and
 * typing. Every one checks that the socket's user takes part in the conversation (NOT_FOUND otherwise).
 */
export function registerConversationHandlers(services: Services): void {
  const { messages } = services;
  services.io.on('connection', (socket) => {
    const userId = socket.data.userId;

    handle(services, socket, 'conversation:subscribe', async (payload) => {
      const v = new Validator(payload);
      const conversationId = v.uuid('conversationId');
      const afterSeq = v.int('afterSeq', { min: 0, max: Number.MAX_SAFE_INTEGER, optional: true });
      const limit =
        v.int('limit', { min: 1, max: MAX_LIMIT, optional: true, clampMax: true }) ?? DEFAULT_LIMIT;
      v.done();
      const room = conversationRoom(conversationId!);
      await messages.assertParticipant(userId, conversationId!);
      // Join before reading: a message committed meanwhile is either in the page or arrives as message:new.
      await socket.join(room);
      try {
        // history() checks membership again: a removal that raced the join is caught here.
        const page = await messages.history(
          userId,
          conversationId!,
          afterSeq === undefined ? { kind: 'newest', limit } : { kind: 'after', seq: afterSeq, limit },
        );
        return { messages: page.messages, hasMore: page.hasMore, lastSeq: page.lastSeq };
      } catch (err) {
        await socket.leave(room);
        throw err;
      }
    });

    handle(services, socket, 'conversation:unsubscribe', async (payload) => {
      const conversationId = conversationIdOf(payload);
      await messages.assertParticipant(userId, conversationId);
      await socket.leave(conversationRoom(conversationId));
      return {};
    });

    handle(services, socket, 'message:send', async (payload) => {
      const v = new Validator(payload);
      const conversationId = v.uuid('conversationId');
      const clientMsgId = v.string('clientMsgId', CLIENT_MSG_ID);
      const body = v.string('body', MESSAGE_BODY);
      v.done();
      const { message, duplicate } = await messages.send(userId, {
        conversationId: conversationId!,
        clientMsgId: clientMsgId!,
        body: body!,
      });
      return { message, duplicate };
    });

    handle(services, socket, 'conversation:read', async (payload) => {
      const v = new Validator(payload);
      const conversationId = v.uuid('conversationId');
      const seq = v.int('seq', { min: 0, max: Number.MAX_SAFE_INTEGER });
      v.done();
      await messages.markRead(userId, conversationId!, seq!);
      return {};
    });

    handle(services, socket, 'typing', async (payload) => {
      await messages.typing(userId, conversationIdOf(payload));
      return {};
    });
  });
}
