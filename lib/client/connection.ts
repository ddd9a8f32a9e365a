import { io, type Socket } from 'socket.io-client';
import type {
  Ack,
  AckCallback,
  ClientToServerEvents,
  ServerToClientEvents,
  SessionEndReason,
} from '../protocol/index.js';
import { ERROR_CATALOG } from '../protocol/errors.js';
import { checkPayload } from './checks.js';
import { Emitter } from './emitter.js';
import { XFChatError, fromErrorBody, isErrorBody, type ServerErrorCode } from './errors.js';
import { abortedError, backoffDelay, closedError, retryAfterMs, type BackoffOptions } from './retry.js';
import type { Session } from './http.js';

/**
 * What a UI shows: `connecting` before the first connection, `connected`, `reconnecting` after a drop
 * (retrying on its own), `disconnected` when stopped (close(), logout, or a refused token).
 */
export type ConnectionState = 'disconnected' | 'connecting' | 'connected' | 'reconnecting';

export type ClientSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

type EventName = keyof ClientToServerEvents;
/** The request payload of a client event. */
export type RequestOf<E extends EventName> = Parameters<ClientToServerEvents[E]>[0];
/** The success fields of a client event's ack. */
export type ResultOf<E extends EventName> =
  Parameters<ClientToServerEvents[E]>[1] extends AckCallback<infer T> ? T : never;

export interface ConnectionEvents {
  state: ConnectionState;
  /** Every successful (re)connection: subscriptions re-subscribe here. */
  connect: undefined;
  /** The token was refused (expired, revoked by logout, or missing): reconnecting stopped. */
  unauthorized: XFChatError;
  /**
   * The server ended this session and said why (`session:ended`); reconnecting stops (right after the listeners, if
   * none of them stopped it).
   */
  sessionEnded: SessionEndReason;
  /** The server's `session:ended` as it arrives, before the disconnect that follows it. */
  endAnnounced: SessionEndReason;
  /** A handshake refused for a reason other than the token (see {@link refusalOf}); reconnecting goes on. */
  connectRefused: XFChatError;
}

export interface ConnectionOptions {
  /** Server URL; undefined means the page's own origin. */
  url: string | undefined;
  session: Session;
  transports: Array<'websocket' | 'polling'>;
  ackTimeoutMs: number;
  backoff: BackoffOptions;
  /**
   * Called when the handshake refuses the token: resolves true once a fresh token is in the session (the
   * connection then retries with it), false when there is none to be had. Without it a refusal is final.
   */
  renewToken?: () => Promise<boolean>;
}

/**
 * Where the socket connects for a `baseUrl`: its origin, with Socket.IO's path under the URL's own path. A server
 * behind a proxy at a sub-path (`https://example.com/chat`) has its REST API at `/chat/...` and its Socket.IO at
 * `/chat/socket.io/`, whereas socket.io-client reads a URL's path as a namespace (XFChat has only `/`) and would
 * retry "Invalid namespace" for ever.
 */
function socketTarget<O extends object>(url: string, options: O): [string, O & { path?: string }] {
  const { origin, pathname } = new URL(url);
  const base = pathname.replace(/\/+$/, '');
  return base === '' ? [origin, options] : [origin, { ...options, path: `${base}/socket.io` }];
}

/**
 * Why the server's middleware refused a handshake: its error body when it sent one (`RATE_LIMITED`, "Too many
 * connections for this user."), else the code it gave as the message (`DB_UNAVAILABLE`). Undefined for a failure of
 * the transport (the server was not reached, or did not answer), which says nothing of the server's.
 */
function refusalOf(err: Error & { data?: unknown }): XFChatError | undefined {
  const body = (err.data as { error?: unknown } | undefined)?.error;
  if (isErrorBody(body)) return fromErrorBody(body);
  if (!Object.hasOwn(ERROR_CATALOG, err.message)) return undefined;
  return new XFChatError(
    err.message as ServerErrorCode,
    `The server refused the connection (${err.message}).`,
  );
}

/**
 * How long a connection must last, if nothing was acknowledged on it, for the reconnection after it to start afresh
 * from the first backoff delay. One cut sooner, before any ack, makes the next reconnection wait longer: a connection
 * the server closes again and again as soon as it gets something (a packet it refuses by closing) backs off like a
 * server that cannot be reached, instead of reconnecting at the shortest delay for ever.
 */
const STABLE_CONNECTION_MS = 10_000;

/**
 * One Socket.IO connection with the token, typed events, state tracking and reconnection, including the two
 * cases socket.io-client does not retry by itself: a disconnect by the server and a handshake refused by
 * its middleware for a reason other than the token (e.g. DB_UNAVAILABLE).
 */
export class Connection {
  readonly socket: ClientSocket;
  readonly events = new Emitter<ConnectionEvents>();
  private current: ConnectionState = 'disconnected';
  private everConnected = false;
  private attempts = 0;
  /**
   * When the current connection was made (performance.now(): a wall clock set back or forward meanwhile would make
   * a quick cut look long, or a long connection quick), and whether anything has been acknowledged on it since.
   */
  private connectedAt = 0;
  private acknowledged = false;
  /** Connections in a row cut before they lasted STABLE_CONNECTION_MS or had anything acknowledged. */
  private quickCuts = 0;
  private connections = 0;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  /** Set when the token was refused; cleared by the next connect(). */
  private refused: XFChatError | undefined;
  /**
   * One token renewal per refused handshake: a renewed token refused at the very next handshake is final. Cleared
   * by a connection, and by a handshake that failed for another reason.
   */
  private renewed = false;
  /** What the server said in `session:ended`, until the disconnect that follows it. */
  private endedReason: SessionEndReason | undefined;
  /**
   * The access token the latest handshake sent: the server holds the socket to its expiry. A refresh that lands
   * while the handshake runs leaves the session a newer one, which the socket must then be given.
   */
  handshakeToken: string | undefined;
  private readonly closed = new AbortController();
  /**
   * What close() and disconnect() reject: a Set, not one abort listener per waiter, because an AbortSignal with more
   * than ten listeners makes Node.js print MaxListenersExceededWarning (many subscriptions waiting for a
   * reconnection).
   */
  private readonly waiters = new Set<(error: XFChatError) => void>();

  constructor(private readonly options: ConnectionOptions) {
    const socketOptions = {
      autoConnect: false,
      forceNew: true,
      transports: options.transports,
      reconnectionDelay: options.backoff.baseMs,
      reconnectionDelayMax: options.backoff.maxMs,
      // A function, so every reconnection sends the token current at that moment.
      auth: (cb: (data: object) => void) => {
        this.handshakeToken = options.session.token;
        cb({ token: this.handshakeToken });
      },
    };
    this.socket =
      options.url === undefined ? io(socketOptions) : io(...socketTarget(options.url, socketOptions));
    this.useOwnBackoff();
    this.socket.on('session:ended', ({ reason }) => {
      this.endedReason = reason;
      this.events.emit('endAnnounced', reason);
    });
    this.socket.on('connect', () => {
      this.attempts = 0;
      this.renewed = false;
      this.connectedAt = performance.now();
      this.acknowledged = false;
      this.connections += 1;
      this.everConnected = true;
      this.setState('connected');
      this.events.emit('connect', undefined);
    });
    this.socket.on('disconnect', (reason) => {
      const ended = this.endedReason;
      this.endedReason = undefined;
      if (this.closed.signal.aborted || reason === 'io client disconnect') {
        this.setState('disconnected');
        return;
      }
      if (ended !== undefined) {
        // The session is over: its tokens are revoked, so reconnecting could only be refused. Told before the stop,
        // so that the client ends what belongs to the session first (its subscriptions' whenReady() hear that they
        // ended, not UNAUTHORIZED) and stops the connection itself; stopped here only if nothing did.
        this.events.emit('sessionEnded', ended);
        if (this.current !== 'disconnected')
          this.stop(new XFChatError('UNAUTHORIZED', `The session ended (${ended}).`));
        return;
      }
      this.backOffAfterQuickCut();
      this.setState('reconnecting');
      // socket.io-client reconnects after transport failures, but not after the server disconnected us.
      if (reason === 'io server disconnect') {
        this.attempts = this.quickCuts;
        this.scheduleRetry();
      }
    });
    this.socket.on('connect_error', (err) => {
      if (this.closed.signal.aborted) return;
      if (err.message === 'UNAUTHORIZED') {
        this.onRefused();
        return;
      }
      // Only a refusal straight after a renewal is final. Once an attempt failed for another reason (the network
      // went again), the renewed token may expire before the next handshake, and deserves a renewal of its own.
      this.renewed = false;
      this.setState(this.everConnected ? 'reconnecting' : 'connecting');
      // `active` is false when the server's middleware refused us: socket.io-client will not retry alone.
      if (this.socket.active) return;
      // The state stays what it was through every refused try: the application hears why the server refuses (too
      // many sockets of this user is no outage, and only the user can end it by closing one).
      const refusal = refusalOf(err);
      if (refusal !== undefined) this.events.emit('connectRefused', refusal);
      this.scheduleRetry();
    });
  }

  get state(): ConnectionState {
    return this.current;
  }

  get connected(): boolean {
    return this.socket.connected;
  }

  /** Counts the connections made: a request made on one connection is moot on the next. */
  get connectionNumber(): number {
    return this.connections;
  }

  /**
   * Starts connecting (idempotent); resolves on the first connection, rejects if the token is refused (at once
   * without a token: nobody is logged in), or with the error of a disconnect() that comes first.
   */
  connect(): Promise<void> {
    if (this.closed.signal.aborted) return Promise.reject(closedError());
    if (this.current === 'disconnected' && this.options.session.token === undefined) {
      const error = new XFChatError(
        'UNAUTHORIZED',
        'Nobody is logged in: call login(), signup() or resume() before connect().',
      );
      this.stop(error);
      return Promise.reject(error);
    }
    if (this.current === 'disconnected') {
      this.refused = undefined;
      // A new start: the quick cuts of an earlier run (before a logout, say) no longer slow it down.
      this.quickCuts = 0;
      this.socket.io.reconnectionDelay(this.options.backoff.baseMs);
      this.setState(this.everConnected ? 'reconnecting' : 'connecting');
      this.socket.connect();
    }
    return this.waitConnected(this.closed.signal, true);
  }

  /**
   * Resolves once connected (at once if already). Rejects when `signal` aborts (with its reason if that is an
   * XFChatError, else CLIENT_CLOSED), with CLIENT_CLOSED at close(), with the error given to disconnect(), and with
   * UNAUTHORIZED when the token is refused if `failOnUnauthorized`.
   */
  waitConnected(signal: AbortSignal, failOnUnauthorized = false): Promise<void> {
    if (this.socket.connected) return Promise.resolve();
    if (failOnUnauthorized && this.refused) return Promise.reject(this.refused);
    return new Promise((resolve, reject) => {
      const cleanup = () => {
        offConnect();
        offUnauthorized();
        signal.removeEventListener('abort', onAbort);
        this.waiters.delete(onStopped);
      };
      const onStopped = (error: XFChatError) => {
        cleanup();
        reject(error);
      };
      const onAbort = () => onStopped(abortedError(signal));
      const offConnect = this.events.on('connect', () => {
        cleanup();
        resolve();
      });
      const offUnauthorized = this.events.on('unauthorized', (err) => {
        if (!failOnUnauthorized) return;
        cleanup();
        reject(err);
      });
      if (this.closed.signal.aborted) {
        onStopped(closedError());
        return;
      }
      if (signal.aborted) {
        onAbort();
        return;
      }
      if (signal !== this.closed.signal) signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.add(onStopped);
    });
  }

  /**
   * Emits a client event and waits for its ack. Never buffers while offline: NOT_CONNECTED at once instead,
   * so a caller that retries never has an old copy queued behind its back. An error ack becomes an
   * XFChatError with the server's code; no ack in time is TIMEOUT; a drop while waiting is DISCONNECTED.
   */
  async request<E extends EventName>(
    event: E,
    payload: RequestOf<E>,
    timeoutMs?: number,
  ): Promise<ResultOf<E>> {
    if (this.closed.signal.aborted) throw closedError();
    // What the server would refuse is refused here, final, never sent: an oversized one would close the connection.
    checkPayload(event, payload);
    if (!this.socket.connected) throw new XFChatError('NOT_CONNECTED', `Cannot send ${event} while offline.`);
    // socket.io's typed overloads do not resolve for a generic event name; the shapes are checked above.
    const timed = this.socket.timeout(timeoutMs ?? this.options.ackTimeoutMs) as unknown as {
      emitWithAck(event: string, payload: unknown): Promise<Ack<object>>;
    };
    let response: Ack<object>;
    try {
      const acked = timed.emitWithAck(event, payload);
      // socket.io keeps what it could not write for the next connection, whoever's session that is: a packet
      // emitted just as a machine wakes from a sleep past the heartbeat (still `connected`, its ping expired; the
      // connection closes on the next tick). Never sent later, its ack fails with the close: DISCONNECTED.
      this.dropBuffered();
      response = await acked;
      this.acknowledged = true;
    } catch (err) {
      // Dropped by close(): the caller's doing, not the network's (DISCONNECTED would be retried).
      if (this.closed.signal.aborted) throw closedError();
      const timedOut = err instanceof Error && /timed out/.test(err.message);
      throw timedOut
        ? new XFChatError('TIMEOUT', `No acknowledgement for ${event} in time.`, { cause: err })
        : new XFChatError('DISCONNECTED', `The connection dropped before ${event} was acknowledged.`, {
            cause: err,
          });
    }
    if (response.ok) return response as unknown as ResultOf<E>;
    throw fromErrorBody(response.error);
  }

  /**
   * Stops the connection because its token is no good any more (refused, or the session ended): waiters reject
   * with `error`, `unauthorized` fires, and nothing reconnects until the next connect().
   */
  stop(error: XFChatError): void {
    clearTimeout(this.retryTimer);
    this.refused = error;
    this.dropBuffered();
    this.socket.disconnect();
    this.setState('disconnected');
    this.events.emit('unauthorized', error);
  }

  /** Reconnects at once with the session's current token (e.g. after logging in as someone else). */
  restart(): void {
    if (this.closed.signal.aborted || this.current === 'disconnected') return;
    clearTimeout(this.retryTimer);
    this.dropBuffered();
    this.socket.disconnect();
    this.setState('reconnecting');
    this.socket.connect();
  }

  /**
   * Disconnects until the next connect() (the session is over: logout, or the server ended it). Everything waiting
   * for the connection, a pending connect() included, rejects with `error`.
   */
  disconnect(error: XFChatError): void {
    clearTimeout(this.retryTimer);
    this.dropBuffered();
    this.socket.disconnect();
    this.setState('disconnected');
    for (const reject of [...this.waiters]) reject(error);
  }

  /** Disconnects for good and rejects everything waiting with CLIENT_CLOSED. Idempotent. */
  close(): void {
    if (this.closed.signal.aborted) return;
    this.closed.abort(closedError());
    for (const reject of [...this.waiters]) reject(closedError());
    clearTimeout(this.retryTimer);
    this.dropBuffered();
    this.socket.disconnect();
    this.setState('disconnected');
    this.events.removeAll();
  }

  /**
   * Takes out whatever socket.io buffered to send on the next connection (see request()): with it out of the buffer,
   * the disconnect fails its ack, and nothing of this connection's goes out under a later login.
   */
  private dropBuffered(): void {
    if (this.socket.sendBuffer.length > 0) this.socket.sendBuffer = [];
  }

  /** The handshake refused the token: renew it once and retry, or stop. */
  private onRefused(): void {
    const renew = this.options.renewToken;
    if (renew === undefined || this.renewed) {
      this.stop(new XFChatError('UNAUTHORIZED', 'The server refused the token.'));
      return;
    }
    this.renewed = true;
    this.setState(this.everConnected ? 'reconnecting' : 'connecting');
    renew().then(
      (fresh) => {
        if (this.closed.signal.aborted || this.current === 'disconnected') return;
        if (fresh) this.socket.connect();
        else
          this.stop(
            new XFChatError(
              'UNAUTHORIZED',
              'The server refused the token and there is none to renew it with.',
            ),
          );
      },
      (err: unknown) => {
        // Closed, or stopped for a session's end, meanwhile (close() aborts the refresh): nothing to try again.
        if (this.closed.signal.aborted || this.current === 'disconnected') return;
        // The refresh itself could not get through (network, server) or was refused RATE_LIMITED: try the whole
        // thing again later, not before its Retry-After.
        this.renewed = false;
        this.scheduleRetry(err instanceof XFChatError ? retryAfterMs(err) : 0);
      },
    );
  }

  /**
   * After a drop: a connection cut before it lasted STABLE_CONNECTION_MS with nothing acknowledged on it counts as a
   * quick cut, and each one in a row doubles the first delay of the reconnection (up to `maxMs`), ours and
   * socket.io-client's alike; a connection that lasted, or had an ack, starts the next reconnection afresh.
   * socket.io-client resets its backoff at every connection, and reconnects after a transport drop by itself: its
   * first delay is set here, before it schedules the reconnection (it does so right after this `disconnect`).
   */
  private backOffAfterQuickCut(): void {
    const lasted = this.acknowledged || performance.now() - this.connectedAt >= STABLE_CONNECTION_MS;
    this.quickCuts = lasted ? 0 : this.quickCuts + 1;
    const { baseMs, maxMs } = this.options.backoff;
    this.socket.io.reconnectionDelay(Math.min(maxMs, baseMs * 2 ** Math.min(this.quickCuts, 20)));
  }

  /**
   * socket.io-client's Manager waits `min * 2^attempts`, jittered, before each reconnection after a transport
   * failure, with `attempts` never bounded: after about 1020 failed attempts in a row (85 minutes offline at the
   * defaults) that is Infinity, its jitter makes it NaN half the time, and NaN is a delay of 0 ms (reconnection
   * attempts as fast as the handshakes fail); below the cap, its jitter left nine delays in ten at exactly `maxMs`
   * (clients cut off by one outage coming back in step). Its delays are {@link backoffDelay}'s instead, the SDK's
   * own: between half and all of `min * 2^attempts` (the exponent at most 20), at most `maxMs`, `min` being the
   * Manager's current first delay (raised after quick cuts). The backoff is internal to socket.io-client: if a
   * version keeps it otherwise, it is left as it is.
   */
  private useOwnBackoff(): void {
    const backoff = (this.socket.io as unknown as { backoff?: { attempts?: unknown; duration?: unknown } })
      .backoff;
    if (
      backoff === undefined ||
      typeof backoff.attempts !== 'number' ||
      typeof backoff.duration !== 'function'
    )
      return;
    const { maxMs } = this.options.backoff;
    backoff.duration = () => {
      const attempt = typeof backoff.attempts === 'number' ? backoff.attempts : 0;
      backoff.attempts = attempt + 1;
      return Math.floor(backoffDelay(attempt, { baseMs: this.socket.io.reconnectionDelay(), maxMs }));
    };
  }

  private scheduleRetry(atLeastMs = 0): void {
    clearTimeout(this.retryTimer);
    if (this.closed.signal.aborted || this.current === 'disconnected') return;
    const wait = Math.max(backoffDelay(this.attempts++, this.options.backoff), atLeastMs);
    this.retryTimer = setTimeout(() => {
      if (!this.closed.signal.aborted && !this.socket.connected) this.socket.connect();
    }, wait);
  }

  private setState(next: ConnectionState): void {
    if (next === this.current) return;
    this.current = next;
    this.events.emit('state', next);
  }
}
