import type { IncomingMessage, Server as HttpServer } from 'node:http';
import { createAdapter } from '@socket.io/postgres-adapter';
import { Server, type Socket } from 'socket.io';
import type { DatabaseClock } from '../cluster/clock.js';
import { controlBusSilentAtMostMs, type ControlBus } from '../cluster/controlBus.js';
import type { Config } from '../config.js';
import { authenticateToken } from '../auth/tokens.js';
import type { Database } from '../db.js';
import { toAppError } from '../errors.js';
import type { Logger } from '../logger.js';
import { createServerErrorLog } from '../serverErrorLog.js';
import { LISTEN_SILENT_AT_MOST_MS, createAdapterPool, reconnectingOnce } from './adapterPool.js';
import { boundedParser } from './boundedParser.js';
import {
  QUEUE_MAX_MS,
  deliveringHereFirst,
  sayGoodbye,
  sentOrAfter,
  settledOrAfter,
} from './localFirstAdapter.js';
import { guardTransports, WsServerWithoutAutoPong } from './transportGuard.js';
import { lacksHost } from '../requestHost.js';
import { COUNTED_TRANSPORT_OPTIONS, createBackpressure, type Backpressure } from './backpressure.js';
import { endTransportAtDisconnect } from './transportEnd.js';
import { createWriteCoalescing } from './coalesce.js';
import {
  createConnectionLimits,
  createWaitingTransports,
  originAllowRequest,
  socketPacketGuard,
} from './limits.js';
import type { ClientToServerEvents, ServerToClientEvents } from '../protocol/index.js';
import { joinUserRoom, type InterServerEvents } from './notifier.js';
import { createSocketRevalidation, endEndedSessions } from './revalidation.js';
import { createConversationEvents, type ConversationEvents } from './conversationEvents.js';

export interface SocketData {
  userId: string;
  /** The session of the handshake's token; ending it ends this socket (lib/auth/sessions.ts). */
  sessionId: string;
  /** Token expiry, ms since the epoch: the socket is disconnected then, unless `auth:refresh` moved it. */
  expiresAt: number;
}

export type AppServer = Server<ClientToServerEvents, ServerToClientEvents, InterServerEvents, SocketData>;
export type AppSocket = Socket<ClientToServerEvents, ServerToClientEvents, InterServerEvents, SocketData>;

export interface Realtime {
  readonly io: AppServer;
  /** The groups' detail events and the removals told here; closed by its owner after the control bus. */
  readonly conversationEvents: ConversationEvents;
  /** What this node holds for each socket (SOCKET_MAX_BUFFERED_BYTES). */
  readonly backpressure: Backpressure;
  attach(httpServer: HttpServer): void;
  /**
   * The control bus, which carries other nodes' removals of participants and additions to groups, lost its
   * connection: what it misses until it listens again is looked for then.
   */
  controlBusLost(): void;
  /** The control bus listens again: this node's sockets are checked against the database, and told what they missed. */
  controlBusListening(): void;
  /** Disconnects every socket of this node and stops the adapter; idempotent. */
  close(): Promise<void>;
}

/** NOTIFY's payload is shorter than 8000 bytes (PostgreSQL's limit). */
const NOTIFY_MAX_PAYLOAD_BYTES = 7999;
/** setTimeout's limit; a longer token lifetime is re-armed when this fires. */
const MAX_TIMER_MS = 2_147_483_647;
/** Socket.IO's heartbeat (its defaults, stated): a client that answers no ping for their sum is gone. */
const PING_INTERVAL_MS = 25_000;
const PING_TIMEOUT_MS = 20_000;
/** How long a new transport may take to send its handshake (a CONNECT with its token). */
const CONNECT_TIMEOUT_MS = 10_000;
/** How often every socket's queue is looked at for the stall timeout. */
const BACKPRESSURE_SWEEP_MS = 5000;

/**
 * A WebSocket handshake (no sid yet) of an Engine.IO revision other than 4, the one this server speaks, read as the
 * engine reads its query (its own parse, `req._query`, once made: the last of repeated names wins).
 */
function unsupportedWebSocketRevision(req: IncomingMessage): boolean {
  const query =
    (req as IncomingMessage & { _query?: Record<string, unknown> })._query ??
    Object.fromEntries(new URL(req.url ?? '/', 'http://engine.invalid').searchParams.entries());
  return query.transport === 'websocket' && query.EIO !== '4';
}

/**
 * The Socket.IO server: the postgres adapter for cross-node fan-out, token auth on the handshake (never the
 * query string), one room per user.
 */
export function createRealtime(deps: {
  config: Readonly<Config>;
  db: Database;
  logger: Logger;
  clock: DatabaseClock;
  /** Carries the groups' changes, which this node tells its sockets in order (./conversationEvents.ts). */
  controlBus: Pick<ControlBus, 'subscribe'>;
}): Realtime {
  const { config, db, logger, clock, controlBus } = deps;
  const originAllowed = originAllowRequest(config.corsOrigins, config.trustProxy);
  const waitingTransports = createWaitingTransports({
    perIp: config.limits.connectionsPerIp,
    trustProxy: config.trustProxy,
    logger,
  });
  // The adapter listening again after a lost connection: what it missed meanwhile is checked for.
  const adapterPool = createAdapterPool(
    config.database,
    logger,
    () => revalidation.listening('adapter'),
    // Noticed at most LISTEN_SILENT_AT_MOST_MS after it went silent: what the node missed is told from then.
    () => revalidation.listenLost('adapter', LISTEN_SILENT_AT_MOST_MS),
  );
  const postgresAdapter = createAdapter(adapterPool, {
    // The adapter sends by NOTIFY up to this many bytes, through its attachments table above. Its default, 8000,
    // lost every broadcast of exactly 8000 bytes (PostgreSQL refused the NOTIFY).
    payloadThreshold: NOTIFY_MAX_PAYLOAD_BYTES,
    errorHandler: (err: Error) => logger.warn({ err }, 'socket.io adapter error'),
  });
  const io: AppServer = new Server({
    serveClient: false,
    // What this node holds for a socket is counted (backpressure.ts): no compression streams in between.
    ...COUNTED_TRANSPORT_OPTIONS,
    // A long-poll waits silently until the next ping: at most half HTTP_IDLE_TIMEOUT_MS, or the connection's idle
    // timeout cuts every idle polling client, again and again.
    pingInterval: Math.min(PING_INTERVAL_MS, Math.floor(config.limits.httpIdleTimeoutMs / 2)),
    pingTimeout: PING_TIMEOUT_MS,
    maxHttpBufferSize: config.limits.socketMaxBytes,
    // The same cap on a whole Socket.IO message, binary attachments included.
    parser: boundedParser(config.limits.socketMaxBytes),
    // Browsers get CORS headers for the listed origins; allowRequest refuses other browser origins outright, and
    // a new transport from an address with too many waiting for their handshake ends the oldest of them.
    // With credentials, so that a long-polling page of another origin keeps a load balancer's sticky-session cookie
    // (the node sets no cookie of its own, and authenticates by the token in the handshake, never by a cookie).
    cors: config.corsOrigins.length > 0 ? { origin: [...config.corsOrigins], credentials: true } : undefined,
    allowRequest: (req, callback) => {
      // engine.io answers a WebSocket of a protocol it does not speak (EIO=3: socket.io-client 2.x) after its 101,
      // with HTTP text inside the WebSocket: refused here, before the switch. (Over polling it answers 400 itself.)
      if (unsupportedWebSocketRevision(req)) {
        callback('Unsupported protocol version', false);
        return;
      }
      originAllowed(req, (err, allowed) => {
        if (!allowed) callback(err, false);
        else {
          waitingTransports.makeRoom(req);
          callback(null, true);
        }
      });
    },
    // A transport whose client sends no handshake in this long is closed (Socket.IO's default is 45 s); the
    // transport guard then tears down one that would wait for its buffer to drain, or for its next poll.
    connectTimeout: CONNECT_TIMEOUT_MS,
    // ws without its automatic pongs: they queued without bound for a client sending pings and reading nothing.
    wsEngine: WsServerWithoutAutoPong,
    adapter: deliveringHereFirst((nsp) => {
      const adapter = postgresAdapter(nsp);
      reconnectingOnce(adapter);
      return adapter;
    }, logger),
  });

  const conversationEvents = createConversationEvents({ io, knex: db.knex, logger, controlBus });
  const revalidation = createSocketRevalidation({
    io,
    knex: db.knex,
    logger,
    clock,
    removalsTold: conversationEvents,
  });

  const writes = createWriteCoalescing();
  // A socket with bytes waiting that takes none of them for a heartbeat's span has stopped reading: a hostile
  // client can answer pings blindly, so the heartbeat alone would keep it.
  const backpressure = createBackpressure({
    maxBufferedBytes: config.limits.socketMaxBufferedBytes,
    stallMs: PING_INTERVAL_MS + PING_TIMEOUT_MS,
    sweepMs: BACKPRESSURE_SWEEP_MS,
    logger,
  });

  // Socket.IO makes a socket of every CONNECT packet, also of one that arrives while the connection's first is
  // still being authenticated: without this, one connection could start any number of token checks (a query
  // each), one frame apiece. Once a socket is connected, Socket.IO itself closes a connection that sends another.
  const authenticating = new WeakSet<object>();
  const logAuthFailure = createServerErrorLog();
  io.use((socket, next) => {
    const { conn } = socket;
    if (authenticating.has(conn)) {
      next(new Error('VALIDATION_FAILED'));
      return;
    }
    authenticating.add(conn);
    const auth = socket.handshake.auth as Record<string, unknown> | undefined;
    authenticateToken(auth?.token, config.auth, db.knex, clock.now())
      .finally(() => authenticating.delete(conn))
      .then(({ user, claims }) => {
        socket.data = { userId: user.id, sessionId: claims.sessionId, expiresAt: claims.exp * 1000 };
        next();
      })
      .catch((err: unknown) => {
        const appError = toAppError(err);
        // An outage fails every handshake (and clients retry): once per code every 10 s (lib/serverErrorLog.ts).
        if (appError.code !== 'UNAUTHORIZED') logAuthFailure(logger, appError, {}, 'socket auth failed');
        // The client sees only the code: "UNAUTHORIZED", or DB_UNAVAILABLE while the database is down.
        next(new Error(appError.code === 'UNAUTHORIZED' ? 'UNAUTHORIZED' : appError.code));
      });
  });

  // After authentication, so a refused token never holds one of the IP's or the user's slots.
  io.use(
    createConnectionLimits({
      perIp: config.limits.connectionsPerIp,
      perUser: config.limits.socketsPerUser,
      trustProxy: config.trustProxy,
    }).middleware,
  );

  io.on('connection', (socket) => {
    endTransportAtDisconnect(socket, backpressure.watch(socket));
    // First: every packet of this socket passes the guard (ack present, known event, per-socket rate).
    socket.use(socketPacketGuard(socket, { eventsPerSecond: config.limits.socketEventsPerSecond, logger }));
    writes.coalesce(socket);
    void joinUserRoom(socket);
    // A session end that committed after the handshake's check but before this join sent its disconnect to the
    // session's room while this socket was not in it yet: look once more, now that it is, and end it as the
    // session end would have (`session:ended`, then the disconnect), so the client knows not to reconnect.
    const { userId, sessionId } = socket.data;
    endEndedSessions(io, db.knex, new Map([[sessionId, userId]])).catch((err: unknown) =>
      logger.warn({ err, userId }, 'socket token re-check failed'),
    );
    let timer: NodeJS.Timeout | undefined;
    // Reads expiresAt each time it fires: `auth:refresh` moves it later and the timer simply re-arms. By
    // PostgreSQL's clock, as the node that signed the token counted `exp`.
    const arm = () => {
      const remaining = socket.data.expiresAt - clock.now();
      if (remaining <= 0) {
        socket.disconnect(true);
        return;
      }
      timer = setTimeout(arm, Math.min(remaining, MAX_TIMER_MS));
    };
    arm();
    socket.on('disconnect', () => clearTimeout(timer));
  });

  let closing: Promise<void> | undefined;
  async function doClose(): Promise<void> {
    backpressure.close();
    revalidation.close();
    // What the sockets hold for their turn (the drain's last acks among it) leaves before they close.
    writes.flushAll();
    void io.local.disconnectSockets(true);
    const adapter = io.of('/').adapter;
    // Also closes the HTTP server it is attached to: no new connections from here on. It waits for every connection
    // to close, the requests still being answered (which may broadcast: a rename committing) and the WebSockets'
    // closing handshakes: a client that never answers would hold it LINGER_MS (transportEnd.ts), so lib/server.ts
    // ends the connections still open CLOSING_HANDSHAKE_MS into this close.
    const closed = io.close();
    // The adapter's goodbye goes after the broadcasts queued before it (localFirstAdapter.ts): once nothing is left
    // open, or QUEUE_MAX_MS into the close, whichever comes first (the other nodes stop counting this one at its
    // goodbye, not 10 s after its last heartbeat).
    await settledOrAfter(closed, QUEUE_MAX_MS);
    sayGoodbye(adapter);
    await closed;
    await sentOrAfter(adapter, QUEUE_MAX_MS);
    await adapterPool.end();
  }

  return {
    io,
    conversationEvents,
    backpressure,
    controlBusLost: () => revalidation.listenLost('control bus', controlBusSilentAtMostMs(config.database)),
    controlBusListening: () => revalidation.listening('control bus'),
    attach(httpServer) {
      // The engine leaves the upgrades outside its path alone (its default closes them unanswered a second later):
      // lib/server.ts serves them as plain HTTP requests (serveDeclinedUpgrades).
      io.attach(httpServer, { destroyUpgrade: false });
      // The engine exists from here on.
      // An HTTP/1.1 request without Host is refused (RFC 9112): the engine answers it in its own format, a 400
      // (`{"code":3,"message":"Bad request"}`, or before the switch for a WebSocket).
      io.engine.use((req: IncomingMessage, _res: unknown, next: (err?: Error) => void) => {
        next(lacksHost(req) ? new Error('missing Host') : undefined);
      });
      waitingTransports.watch(io);
      guardTransports(io, {
        eventsPerSecond: config.limits.socketEventsPerSecond,
        connectTimeoutMs: CONNECT_TIMEOUT_MS,
        logger,
      });
    },
    close() {
      closing ??= doClose();
      return closing;
    },
  };
}
