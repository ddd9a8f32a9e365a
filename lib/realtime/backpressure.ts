import type { Logger } from '../logger.js';
import type { AppSocket } from './io.js';
import {
  endTransport,
  pollResponseOf,
  type PollResponseView,
  type TransportHold,
  type TransportView,
  websocketOf,
} from './transportEnd.js';

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
 * - the socket's unread poll answers, and whether it was cut, are what ending its transport needs
 *   (transportEnd.ts): {@link Backpressure.watch} returns them.
 */
/**
 * engine.io options this accounting needs: long-poll answers uncompressed. A compressed answer goes through a zlib
 * stream piped into the response, which holds (uncounted) all but the response's own few KB: a client that stops
 * reading a compressed poll would hold megabytes in the node that the cap never sees. WebSocket frames are not
 * compressed either (engine.io's default); a proxy in front may compress.
 */
export const COUNTED_TRANSPORT_OPTIONS = { httpCompression: false, perMessageDeflate: false } as const;

export interface Backpressure {
  /** Tracks a new socket until it disconnects; what ending its transport needs to know of it (transportEnd.ts). */
  watch(socket: AppSocket): TransportHold;
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

  function cut(socket: AppSocket, state: SocketState, queued: number, reason: string): void {
    if (state.cut) return;
    state.cut = true;
    logger.warn(
      { socketId: socket.id, userId: socket.data.userId, queuedBytes: queued, reason },
      'disconnecting a socket that does not read what it is sent',
    );
    endTransport(socket, state.polls);
  }

  function watch(socket: AppSocket): TransportHold {
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
    if (max <= 0) return state;
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
    return state;
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
