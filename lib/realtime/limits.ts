import type { IncomingMessage } from 'node:http';
import type { ExtendedError } from 'socket.io';
import { AppError, toAck } from '../errors.js';
import { addressKey, clientAddress, isOriginAllowed } from '../requestOrigin.js';
import type { Logger } from '../logger.js';
import { RateLimiter } from '../rateLimiter.js';
import { endConnection, followUpgrades, onTransportFinished } from './transportEnd.js';
import type { AppServer, AppSocket } from './io.js';
import { clientEventSchemas } from '../protocol/schemas.js';

/** The events a client may emit: those with a schema. Anything else is answered with an error ack. */
const CLIENT_EVENTS: ReadonlySet<string> = new Set(Object.keys(clientEventSchemas));

/**
 * engine.io's `allowRequest`: refuses a handshake whose browser Origin is outside CORS_ORIGINS and not this
 * server's own host. `cors` alone only tells browsers what to do; this refuses the connection itself.
 */
export function originAllowRequest(
  origins: readonly string[],
  trustProxy: number,
): (req: IncomingMessage, callback: (err: string | null | undefined, success: boolean) => void) => void {
  return (req, callback) => {
    if (isOriginAllowed(req, origins, trustProxy)) callback(null, true);
    else callback('origin not allowed', false);
  };
}

/**
 * Transports (engine.io connections) that have not connected a socket yet, per client IP: each costs memory
 * (about 7 KB) until its socket connects or Socket.IO's connect timeout ends it, and anyone may open them, with
 * one anonymous request apiece. Past `perIp` waiting at once from one address, a new one ends the address's oldest
 * waiting one (0 is off). A client's transport waits only for its own handshake, a few milliseconds: refusing the
 * new one instead would let one anonymous client, opening a hundred transports a second, keep every other user
 * behind its address (a NAT, an office) from connecting at all.
 */
export interface WaitingTransports {
  /** For `allowRequest`: makes room for one more transport of the request's address. */
  makeRoom(req: IncomingMessage): void;
  /** Counts the server's transports from their creation until their socket connects or they close. */
  watch(io: AppServer): void;
}

type Transport = AppSocket['conn'];

export function createWaitingTransports(options: {
  perIp: number;
  trustProxy: number;
  logger: Logger;
}): WaitingTransports {
  /** Per address, its waiting transports in the order they opened; an address with none is not in the map. */
  const waiting = new Map<string, Set<Transport>>();
  /** Each waiting transport's way out of the count, called once: at its socket's connection, its close or its end. */
  const leave = new WeakMap<Transport, () => void>();
  let lastWarnedAt = Number.NEGATIVE_INFINITY;
  const addressOf = (req: IncomingMessage) =>
    addressKey(clientAddress(req.headers, req.socket.remoteAddress, options.trustProxy));
  return {
    makeRoom(req) {
      if (options.perIp <= 0) return;
      const address = addressOf(req);
      const those = waiting.get(address);
      if (!those || those.size < options.perIp) return;
      const [oldest] = those;
      if (oldest === undefined) return;
      leave.get(oldest)?.();
      // Nothing it holds is waited for, also when it is closing already (Socket.IO's connect timeout closes it
      // gracefully, and a long-polling transport closed so stays until its client polls again).
      endConnection(oldest);
      if (performance.now() - lastWarnedAt >= 60_000) {
        lastWarnedAt = performance.now();
        options.logger.warn(
          { address, waiting: options.perIp },
          'too many connections waiting for their handshake from one address: ending the oldest',
        );
      }
    },
    watch(io) {
      if (options.perIp <= 0) return;
      io.engine.on('connection', (transport: Transport) => {
        followUpgrades(transport);
        const address = addressOf(transport.request);
        let those = waiting.get(address);
        if (!those) waiting.set(address, (those = new Set()));
        those.add(transport);
        const done = () => {
          leave.delete(transport);
          const now = waiting.get(address);
          if (!now?.delete(transport)) return;
          if (now.size === 0) waiting.delete(address);
        };
        leave.set(transport, done);
        transport.once('close', done);
      });
      io.on('connection', (socket) => leave.get(socket.conn)?.());
    },
  };
}

export interface ConnectionLimits {
  /**
   * Socket.IO middleware, registered after authentication so refused tokens never hold a slot. Refuses the
   * connection with `connect_error` "RATE_LIMITED" when the client's IP already has `perIp` live sockets on this
   * node, or its user `perUser`. Both are checked before either slot is taken, so a refusal holds nothing.
   */
  readonly middleware: (socket: AppSocket, next: (err?: ExtendedError) => void) => void;
  /** Live sockets of an address on this node. */
  countIp(address: string): number;
  /** Live sockets of a user on this node. */
  countUser(userId: string): number;
}

/** Counts per key; a count at 0 leaves the map. */
class LiveCounts {
  private readonly live = new Map<string, number>();
  get(key: string): number {
    return this.live.get(key) ?? 0;
  }
  add(key: string): void {
    this.live.set(key, this.get(key) + 1);
  }
  remove(key: string): void {
    const n = this.get(key) - 1;
    if (n <= 0) this.live.delete(key);
    else this.live.set(key, n);
  }
}

function refusal(message: string): ExtendedError {
  const err: ExtendedError = new Error('RATE_LIMITED');
  err.data = toAck(new AppError('RATE_LIMITED', { message }));
  return err;
}

/**
 * Live sockets per client IP and per user on this node; a limit of 0 is off. The per-user cap is what stops one
 * account from opening sockets without end; the per-IP cap is a coarse net set high (offices and carrier-grade
 * NAT put thousands of users behind one address).
 */
export function createConnectionLimits(options: {
  perIp: number;
  perUser: number;
  trustProxy: number;
}): ConnectionLimits {
  const byIp = new LiveCounts();
  const byUser = new LiveCounts();
  return {
    middleware: (socket, next) => {
      // The connection may have closed while the handshake's token was checked: its 'close' has fired already,
      // and Socket.IO drops such a socket without a 'disconnect', so a slot taken now would never come back.
      if (socket.conn.readyState !== 'open') {
        next(new Error('connection closed'));
        return;
      }
      const address = addressKey(
        clientAddress(socket.handshake.headers, socket.handshake.address, options.trustProxy),
      );
      const { userId } = socket.data;
      if (options.perIp > 0 && byIp.get(address) >= options.perIp) {
        next(refusal('Too many connections from this address.'));
        return;
      }
      if (options.perUser > 0 && byUser.get(userId) >= options.perUser) {
        next(refusal('Too many connections for this user.'));
        return;
      }
      byIp.add(address);
      byUser.add(userId);
      // When the transport has finished (still to come: it is open above), not at the socket's 'disconnect': a
      // socket disconnected keeps its transport, and what it queues, until that has gone to the client
      // (transportEnd.ts, at most LINGER_MS), and that counts against the caps as long. It also covers a socket that
      // went away between this middleware and the connection.
      onTransportFinished(socket.conn, () => {
        byIp.remove(address);
        byUser.remove(userId);
      });
      next();
    },
    countIp: (address) => byIp.get(address),
    countUser: (userId) => byUser.get(userId),
  };
}

type Packet = [event: string, ...args: unknown[]];

/**
 * Per-socket packet guard, installed with `socket.use` on every connection. Every packet counts against
 * `eventsPerSecond` (bursts of twice that) first, whatever it is: known or unknown event, with or without an
 * ack, so no kind of packet floods the node for free. Then:
 * - over the rate: answered RATE_LIMITED (dropped when it has no ack to answer);
 * - without an acknowledgement callback: dropped (every client event takes one, and a handler must never call
 *   a missing ack);
 * - an unknown event: answered VALIDATION_FAILED.
 */
export function socketPacketGuard(
  socket: AppSocket,
  options: { eventsPerSecond: number; logger: Logger },
): (packet: Packet, next: (err?: Error) => void) => void {
  const limiter = new RateLimiter({
    ratePerSecond: options.eventsPerSecond,
    burst: options.eventsPerSecond * 2,
  });
  return (packet, next) => {
    const [event] = packet;
    const ack = packet.at(-1);
    const reply =
      packet.length >= 2 && typeof ack === 'function' ? (ack as (response: unknown) => void) : undefined;
    const taken = limiter.take(socket.id);
    if (!taken.allowed) {
      reply?.(toAck(new AppError('RATE_LIMITED', { retryAfter: taken.retryAfterSeconds })));
      return;
    }
    if (reply === undefined) {
      options.logger.debug(
        { socketId: socket.id, event: String(event).slice(0, 64) },
        'packet without ack dropped',
      );
      return;
    }
    if (!CLIENT_EVENTS.has(event)) {
      reply(
        toAck(
          new AppError('VALIDATION_FAILED', { message: 'Unknown event.', details: { event: 'unknown' } }),
        ),
      );
      return;
    }
    next();
  };
}
