import { WebSocketServer, type ServerOptions } from 'ws';
import type { Logger } from '../logger.js';
import { RateLimiter } from '../rateLimiter.js';
import { createLogThrottle } from '../serverErrorLog.js';
import { endConnection, followUpgrades } from './transportEnd.js';
import type { AppServer, AppSocket } from './io.js';

/**
 * Packets a transport (an engine.io connection) may send before a socket of it connects: a client sends one
 * CONNECT, and one more each time it retries a refused handshake. Socket.IO answers every other one (a CONNECT for
 * an unknown namespace, a second one while the first is checked) with an error packet, and those answers queue
 * for a client that does not read: 1.8 million CONNECTs in 10 s took a node from 127 to 604 MB.
 */
export const PACKETS_BEFORE_CONNECT = 10;

/** How far past SOCKET_EVENTS_PER_SEC a transport's packets may go before it is ended (a client that bursts is
 * answered RATE_LIMITED by the socket's guard; only a flood gets here). */
export const FAR_PAST = 10;

/**
 * ws answers every ping frame with a pong as it arrives, queued without bound for a client that does not read (a
 * flood of pings took a node to 1 GB, and tearing it down then held the event loop for seconds). Socket.IO keeps
 * its own heartbeat in engine.io packets, so the pongs of ws frames are not needed: this is ws's server without
 * them, for Socket.IO's `wsEngine`.
 */
export class WsServerWithoutAutoPong extends WebSocketServer {
  constructor(options: ServerOptions) {
    super({ ...options, autoPong: false });
  }
}

/**
 * What every transport may send, counted per transport as engine.io reads it, before Socket.IO parses it:
 * - before a socket of it connects, at most {@link PACKETS_BEFORE_CONNECT} packets;
 * - after, at most {@link FAR_PAST} times SOCKET_EVENTS_PER_SEC packets a second (and as many at once), of every
 *   kind (events, acks, CONNECTs for other namespaces, heartbeats): the per-socket guard answers events past
 *   SOCKET_EVENTS_PER_SEC with RATE_LIMITED or drops them, and this ends a transport that sends far past it (one
 *   that sent 1.9 million dropped packets in 10 s kept a core busy), while a client's burst is only answered;
 * - a transport still without a socket `connectTimeoutMs` after it opened is ended (Socket.IO's own close at that
 *   time waits for its write buffer to drain, which a client that does not read never lets happen, and a long-polling
 *   transport so closed waits for its client's next poll, or engine.io's 30 s closeTimeout).
 * A transport is ended at once: its write buffer discarded, its websocket terminated. The end is logged (warn),
 * once per reason every 10 s with `suppressed`, how many of that reason went unlogged since: a hostile client opens
 * transports as fast as they are ended, and one line each was hundreds a second.
 */
export function guardTransports(
  io: AppServer,
  options: { eventsPerSecond: number; connectTimeoutMs: number; logger: Logger },
): void {
  const { logger } = options;
  const rate = new RateLimiter({
    ratePerSecond: options.eventsPerSecond * FAR_PAST,
    burst: options.eventsPerSecond * FAR_PAST,
    idleMs: 60_000,
  });
  const connected = new WeakSet<object>();
  const logThrottle = createLogThrottle();
  let transports = 0;

  function end(conn: AppSocket['conn'], reason: string): void {
    if (conn.readyState === 'closed') return;
    const suppressed = logThrottle.take(reason);
    if (suppressed !== undefined)
      logger.warn({ address: conn.remoteAddress, reason, suppressed }, 'closing a transport');
    endConnection(conn);
  }

  io.engine.on('connection', (conn: AppSocket['conn']) => {
    followUpgrades(conn);
    // The rate's key: engine.io's own id of a transport is not public.
    const key = String((transports += 1));
    let beforeConnect = 0;
    const timer = setTimeout(() => {
      if (!connected.has(conn)) end(conn, 'no socket connected in time');
    }, options.connectTimeoutMs);
    timer.unref();
    conn.once('close', () => {
      clearTimeout(timer);
      rate.forget(key);
    });
    // A pong answers a ping of this node: before CONNECT, one per ping sent is not counted (with pings every half
    // HTTP_IDLE_TIMEOUT_MS, a client whose CONNECT waits for its token would answer more than the cap allows).
    let pings = 0;
    conn.on('packetCreate', (packet: { type?: string }) => {
      if (packet.type === 'ping') pings += 1;
    });
    conn.on('packet', (packet: { type?: string }) => {
      if (!connected.has(conn)) {
        if (packet.type === 'pong' && pings > 0) {
          pings -= 1;
          return;
        }
        beforeConnect += 1;
        if (beforeConnect > PACKETS_BEFORE_CONNECT) end(conn, 'too many packets before a socket connected');
        return;
      }
      if (!rate.take(key).allowed) end(conn, 'packets far past SOCKET_EVENTS_PER_SEC');
    });
  });
  io.on('connection', (socket) => connected.add(socket.conn));
}
