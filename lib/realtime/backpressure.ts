import type { Logger } from '../logger.js';
import type { AppSocket } from './io.js';

/**
 * Bounds what this node holds for each socket (SOCKET_MAX_BUFFERED_BYTES).
 *
 * Where bytes wait: engine.io queues packets in the socket's `writeBuffer` while its transport is not writable,
 * and the websocket transport hands one batch at a time to `ws`, whose `bufferedAmount` is what the TCP socket
 * has not yet passed to the kernel. A client that stops reading fills the kernel's buffers, then `ws`'s, then
 * the `writeBuffer`, without end: every answer and broadcast for it stays in the node's heap.
 *
 * What is measured: `pending` (bytes of packets created and not yet flushed to the transport, counted on
 * engine.io's `packetCreate`, reset on its `flush`) plus the websocket's `bufferedAmount`, or, for long-polling,
 * what the poll responses it was flushed into still hold (each one until it has been handed to the kernel whole:
 * a client that opens polls and never reads their answers must not pile them up in the node). All are O(1) per
 * packet (a long-polling socket has one poll in flight, a few at most): the size of a broadcast's encoded string
 * is computed once for all its recipients.
 *
 * What happens:
 * - on every packet: when bytes were already waiting and this one takes the total over the cap, the socket is
 *   disconnected at once (the transport destroyed, so its buffers are freed now, not after a close handshake);
 *   a single packet on an empty queue is let through whatever its size, so a big history page never costs a
 *   reading client its connection;
 * - on a sweep every few seconds: a socket with bytes waiting of which it has taken none for `stallMs` is
 *   disconnected (a client that stopped reading and is sent nothing more, or one huge packet never taken);
 * - {@link Backpressure.writable} lets producers that answer a request (history pages) wait until the socket
 *   has taken most of what waits for it, instead of piling answers up;
 * - once the socket has disconnected, its transport ends at once if the client asked (its `disconnect()`: it
 *   takes nothing more), else when what it holds has gone, or {@link LINGER_MS} after at the latest. The
 *   connection limits count a socket until its transport has closed (limits.ts): a client that stopped reading and
 *   disconnects its sockets one after the other would otherwise leave the node holding their queues, outside the
 *   per-user bound, until engine.io's ping timeout.
 */
/**
 * engine.io options this accounting needs: long-poll answers uncompressed. A compressed answer goes through a zlib
 * stream piped into the response, which holds (uncounted) all but the response's own few KB: a client that stops
 * reading a compressed poll would hold megabytes in the node that the cap never sees. WebSocket frames are not
 * compressed either (engine.io's default); a proxy in front may compress.
 */
export const COUNTED_TRANSPORT_OPTIONS = { httpCompression: false, perMessageDeflate: false } as const;

/**
 * How long a disconnected socket's transport may take to hand the client what it still holds (the last acks, the
 * disconnect itself): past it, the transport is ended and that dropped.
 */
export const LINGER_MS = 10_000;

export interface Backpressure {
  /** Tracks a new socket until it disconnects. */
  watch(socket: AppSocket): void;
  /** Bytes this node holds for the socket right now (0 for an unknown one). */
  queued(socket: AppSocket): number;
  /**
   * Resolves once at most half the cap waits for the socket (at once, normally), or when it disconnects.
   * Producers of request answers await it before building the next one.
   */
  writable(socket: AppSocket): Promise<void>;
  /** Stops the sweep; idempotent. */
  close(): void;
}

export interface BackpressureOptions {
  /** SOCKET_MAX_BUFFERED_BYTES; 0 turns every check here off. */
  maxBufferedBytes: number;
  /** A socket with bytes waiting that has taken none of them for this long is disconnected. */
  stallMs: number;
  /** How often every socket is looked at. */
  sweepMs: number;
  logger: Logger;
  now?: () => number;
}

interface EnginePacket {
  data?: unknown;
}

/** The parts of engine.io's transport read here: its name, `drain` events, and for websocket the `ws` socket. */
interface TransportView {
  readonly name: string;
  on(event: 'drain', listener: () => void): unknown;
  off(event: 'drain', listener: () => void): unknown;
}
interface WsView {
  readonly bufferedAmount: number;
  /** ws's states: 3 is CLOSED. */
  readonly readyState: number;
  terminate(): void;
  once(event: 'close', listener: () => void): unknown;
}
const WS_CLOSED = 3;

/** The parts of an engine.io connection read here. */
interface ConnView {
  readonly readyState: string;
  readonly transport: TransportView;
  once(event: 'close', listener: () => void): unknown;
}

/**
 * Calls `done` once the connection's transport has finished: engine.io's connection closed and, for a WebSocket, its
 * `ws` closed too (engine.io counts a WebSocket closed when it asks for the closing handshake, while `ws` still holds
 * what the client has not read, until its own 30 s close timeout).
 */
export function onTransportFinished(conn: ConnView, done: () => void): void {
  const finish = () => {
    const ws = websocketOf(conn.transport);
    if (ws !== undefined && ws.readyState !== WS_CLOSED) ws.once('close', done);
    else done();
  };
  if (conn.readyState === 'closed') finish();
  else conn.once('close', finish);
}
/** A poll's HTTP response, as engine.io's polling transport holds it while a poll waits. */
interface PollResponseView {
  /** What the response holds that the kernel has not taken yet (its own buffer and its socket's). */
  readonly writableLength: number;
  readonly writableFinished: boolean;
  readonly socket: { destroy(): void } | null;
  once(event: 'finish' | 'close', listener: () => void): unknown;
}

/** engine.io's polling transport keeps the waiting poll's response in a field it does not type as public. */
function pollResponseOf(transport: TransportView): PollResponseView | undefined {
  if (transport.name !== 'polling') return undefined;
  const res = (transport as unknown as { res?: Partial<PollResponseView> | null }).res;
  return typeof res?.writableLength === 'number' && typeof res.once === 'function'
    ? (res as PollResponseView)
    : undefined;
}

/** engine.io's websocket transport keeps its `ws` socket in a field it does not type as public. */
export function websocketOf(transport: TransportView): WsView | undefined {
  if (transport.name !== 'websocket') return undefined;
  const ws = (transport as unknown as { socket?: Partial<WsView> }).socket;
  return typeof ws?.bufferedAmount === 'number' &&
    typeof ws.terminate === 'function' &&
    typeof ws.once === 'function'
    ? (ws as WsView)
    : undefined;
}

interface SocketState {
  pending: number;
  flushes: number;
  /** At the last sweep: */
  seenFlushes: number;
  seenBuffered: number;
  /** Since when bytes have waited without the client taking any (undefined: nothing waits, or it moved). */
  stalledSince: number | undefined;
  transport: TransportView;
  /** Poll responses flushed into and not yet handed to the kernel whole. */
  polls: Set<PollResponseView>;
  waiters: Array<() => void>;
  cut: boolean;
}

export function createBackpressure(options: BackpressureOptions): Backpressure {
  const { maxBufferedBytes: max, logger } = options;
  const now = options.now ?? (() => performance.now());
  const states = new Map<AppSocket, SocketState>();
  const resumeAt = Math.floor(max / 2);

  // A broadcast hands the same encoded string to every recipient: measure it once.
  let lastData: unknown;
  let lastSize = 0;
  function sizeOf(data: unknown): number {
    if (data === undefined) return 1;
    if (data === lastData) return lastSize;
    let size = 1;
    if (typeof data === 'string') size += Buffer.byteLength(data);
    else if (ArrayBuffer.isView(data) || data instanceof ArrayBuffer) size += data.byteLength;
    lastData = data;
    lastSize = size;
    return size;
  }

  const buffered = (state: SocketState): number => {
    let bytes = websocketOf(state.transport)?.bufferedAmount ?? 0;
    for (const res of state.polls) bytes += res.writableLength;
    return bytes;
  };
  const queuedOf = (state: SocketState): number => state.pending + buffered(state);

  function wake(state: SocketState): void {
    if (state.waiters.length === 0 || queuedOf(state) > resumeAt) return;
    for (const resolve of state.waiters.splice(0)) resolve();
  }

  /** Ends the socket's transport now, whatever it holds (not inside engine.io's send or receive path). */
  function endTransport(socket: AppSocket, state: SocketState): void {
    process.nextTick(() => {
      const transport = socket.conn.transport;
      // Destroying the TCP socket frees ws's buffer now; a close handshake would wait behind those bytes. Likewise
      // the connections of the polls whose answers were not read.
      websocketOf(transport)?.terminate();
      for (const res of state.polls) res.socket?.destroy();
      // `discard`: close without waiting for the write buffer to drain, which it never would.
      socket.conn.close(true);
      // A long-polling transport closing already waits for the client's next poll to say so (engine.io's
      // `shouldClose`, called by that poll or its 30 s closeTimeout): a client gone polls no more.
      const pendingClose = (transport as unknown as { shouldClose?: unknown }).shouldClose;
      if (typeof pendingClose === 'function') (pendingClose as () => void).call(transport);
    });
  }

  function cut(socket: AppSocket, state: SocketState, queued: number, reason: string): void {
    if (state.cut) return;
    state.cut = true;
    logger.warn(
      { socketId: socket.id, userId: socket.data.userId, queuedBytes: queued, reason },
      'disconnecting a socket that does not read what it is sent',
    );
    endTransport(socket, state);
  }

  function watch(socket: AppSocket): void {
    const conn = socket.conn;
    const state: SocketState = {
      pending: 0,
      flushes: 0,
      seenFlushes: 0,
      seenBuffered: 0,
      stalledSince: undefined,
      transport: conn.transport,
      polls: new Set(),
      waiters: [],
      cut: false,
    };
    // One socket per transport: its end ends the transport. Socket.IO would take another CONNECT on it, and what
    // this node sets up per socket on the transport (the write coalescing, this watch, the connection limits) would
    // pile up there, outside MAX_CONNECTIONS_PER_IP and the handshake timeout, until the node fell over; XFChat has
    // only the main namespace, so a client never reuses a transport.
    socket.once('disconnect', (reason) => {
      if (state.cut) return;
      // The client's own disconnect(): it takes nothing more from this socket.
      if (reason === 'client namespace disconnect') {
        endTransport(socket, state);
        return;
      }
      // Else what the transport holds (the last acks, the disconnect) goes first, for LINGER_MS at the most.
      conn.close();
      const linger = setTimeout(() => endTransport(socket, state), LINGER_MS).unref();
      onTransportFinished(conn, () => clearTimeout(linger));
    });
    if (max <= 0) return;
    states.set(socket, state);
    const onDrain = () => wake(state);
    state.transport.on('drain', onDrain);
    conn.on('packetCreate', (packet: EnginePacket) => {
      const size = sizeOf(packet.data);
      const before = queuedOf(state);
      state.pending += size;
      if (before > 0 && before + size > max)
        cut(socket, state, before + size, 'over SOCKET_MAX_BUFFERED_BYTES');
    });
    conn.on('flush', () => {
      // Emitted just before engine.io writes the packets into the waiting poll's response.
      const res = pollResponseOf(state.transport);
      if (res && !res.writableFinished && !state.polls.has(res)) {
        state.polls.add(res);
        const taken = () => {
          state.polls.delete(res);
          wake(state);
        };
        res.once('finish', taken);
        res.once('close', taken);
      }
      state.pending = 0;
      state.flushes += 1;
    });
    conn.on('upgrade', (transport: TransportView) => {
      state.transport.off('drain', onDrain);
      state.transport = transport;
      transport.on('drain', onDrain);
    });
    socket.once('disconnect', () => {
      state.transport.off('drain', onDrain);
      states.delete(socket);
      for (const resolve of state.waiters.splice(0)) resolve();
    });
  }

  function sweep(): void {
    const t = now();
    for (const [socket, state] of states) {
      const inTransport = buffered(state);
      const queued = state.pending + inTransport;
      // The cap itself is checked where the queue grows, on each packet; here only whether it moves.
      if (queued === 0) {
        state.stalledSince = undefined;
      } else if (
        state.stalledSince === undefined ||
        state.flushes !== state.seenFlushes ||
        inTransport < state.seenBuffered
      ) {
        // Bytes wait but some moved since the last look: a slow reader, not a stopped one.
        state.stalledSince = t;
      } else if (t - state.stalledSince >= options.stallMs) {
        cut(socket, state, queued, 'nothing read for the stall timeout');
      }
      state.seenFlushes = state.flushes;
      state.seenBuffered = inTransport;
      wake(state);
    }
  }

  const timer = max > 0 ? setInterval(sweep, options.sweepMs) : undefined;
  timer?.unref();

  return {
    watch,
    queued: (socket) => {
      const state = states.get(socket);
      return state ? queuedOf(state) : 0;
    },
    writable(socket) {
      const state = states.get(socket);
      if (!state || queuedOf(state) <= resumeAt) return Promise.resolve();
      return new Promise((resolve) => state.waiters.push(resolve));
    },
    close() {
      clearInterval(timer);
    },
  };
}
