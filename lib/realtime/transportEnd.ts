import type { AppSocket } from './io.js';

/**
 * How a socket's transport ends, and when it has.
 *
 * One socket per transport: a socket's end ends its transport. Socket.IO would take another CONNECT on it, and what
 * this node sets up per socket on the transport (the write coalescing, the backpressure watch, the connection limits)
 * would pile up there, outside MAX_CONNECTIONS_PER_IP and the handshake timeout, until the node fell over; XFChat has
 * only the main namespace, so a client never reuses a transport.
 *
 * Once the socket has disconnected, its transport ends at once if the client asked (its `disconnect()`: it takes
 * nothing more), else when what it holds has gone, or {@link LINGER_MS} after at the latest. The connection limits
 * count a socket until its transport has finished ({@link onTransportFinished}, limits.ts): a client that stopped
 * reading and disconnects its sockets one after the other would otherwise leave the node holding their queues,
 * outside the per-user bound, until engine.io's ping timeout.
 */

/**
 * How long a disconnected socket's transport may take to hand the client what it still holds (the last acks, the
 * disconnect itself): past it, the transport is ended and that dropped.
 */
export const LINGER_MS = 10_000;

/** The parts of engine.io's transport read here and in backpressure.ts: its name, `drain` events, its `ws` socket. */
export interface TransportView {
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

/** A poll's HTTP response, as engine.io's polling transport holds it while a poll waits. */
export interface PollResponseView {
  /** What the response holds that the kernel has not taken yet (its own buffer and its socket's). */
  readonly writableLength: number;
  readonly writableFinished: boolean;
  readonly socket: { destroy(): void } | null;
  once(event: 'finish' | 'close', listener: () => void): unknown;
}

/** engine.io's polling transport keeps the waiting poll's response in a field it does not type as public. */
export function pollResponseOf(transport: TransportView): PollResponseView | undefined {
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

/**
 * Where a connection keeps the WebSocket it was last asked to upgrade to ({@link followUpgrades}): on the connection
 * itself, which goes with it (a node's state lives in the node, not in a module).
 */
const PROBE = Symbol('xfchat.upgradeProbe');

/** A connection as {@link followUpgrades} sees it. */
type Followed = { _maybeUpgrade?: unknown; [PROBE]?: TransportView };

/**
 * Keeps, for {@link endConnection}, the WebSocket a long-polling connection is asked to upgrade to: engine.io holds it
 * only in the closures of its private `_maybeUpgrade`, which this wraps (once per connection; a version without
 * it is left as it is, and its probes close as engine.io closes them).
 */
export function followUpgrades(conn: AppSocket['conn']): void {
  const followed = conn as unknown as Followed;
  const maybeUpgrade = followed._maybeUpgrade;
  if (typeof maybeUpgrade !== 'function' || PROBE in followed) return;
  followed[PROBE] = undefined;
  followed._maybeUpgrade = (transport: TransportView) => {
    followed[PROBE] = transport;
    return (maybeUpgrade as (t: TransportView) => unknown).call(conn, transport);
  };
}

/**
 * Ends an engine.io connection now, whatever it holds, with the connections of `unreadPolls` (poll answers the client
 * has not read): the one way this node ends a transport (the transport guard, the per-address cap on transports
 * waiting for their handshake, a socket's end). Also one already closing: engine.io's own close of a connection that
 * is closing does nothing, and a long-polling transport closed gracefully (Socket.IO's connect timeout, a socket's
 * disconnect) waits for the client's next poll, or engine.io's 30 s closeTimeout, before it is gone.
 */
export function endConnection(conn: AppSocket['conn'], unreadPolls: Iterable<PollResponseView> = []): void {
  const transport = conn.transport;
  // A WebSocket trying to take over from long polling goes too: engine.io would close it gracefully, and ws then
  // waits 30 s for a close frame a client that reads nothing never sends.
  const probe = (conn as unknown as Followed)[PROBE];
  if (probe !== undefined) websocketOf(probe)?.terminate();
  // Destroying the TCP socket frees ws's buffer now; a close handshake would wait behind those bytes (also once
  // engine.io counts the connection closed: it does from the start of that handshake). Likewise the connections of
  // the polls whose answers were not read.
  websocketOf(transport)?.terminate();
  for (const res of unreadPolls) res.socket?.destroy();
  // `discard`: close without waiting for the write buffer to drain, which it never would.
  conn.close(true);
  // A long-polling transport closing already waits for the client's next poll to say so (engine.io's
  // `shouldClose`, called by that poll or its closeTimeout): a client gone, or one that never reads, polls no more.
  // Taken first, as engine.io's poll takes it, so it runs once.
  const pending = transport as unknown as { shouldClose?: unknown };
  const pendingClose = pending.shouldClose;
  if (typeof pendingClose === 'function') {
    pending.shouldClose = null;
    (pendingClose as () => void).call(transport);
  }
}

/**
 * Ends the socket's transport now ({@link endConnection}), on the next tick: not inside engine.io's send or receive
 * path.
 */
export function endTransport(socket: AppSocket, unreadPolls: Iterable<PollResponseView>): void {
  process.nextTick(() => endConnection(socket.conn, unreadPolls));
}

/** What the backpressure watch knows of a socket's transport (backpressure.ts). */
export interface TransportHold {
  /** Poll answers flushed and not yet handed to the kernel whole. */
  readonly polls: Iterable<PollResponseView>;
  /** Whether the transport was already ended (a socket that did not read what it was sent). */
  readonly cut: boolean;
}

/** Ends the socket's transport when the socket disconnects, as the module's comment says. */
export function endTransportAtDisconnect(socket: AppSocket, hold: TransportHold): void {
  const conn = socket.conn;
  socket.once('disconnect', (reason) => {
    if (hold.cut) return;
    // The client's own disconnect(): it takes nothing more from this socket.
    if (reason === 'client namespace disconnect') {
      endTransport(socket, hold.polls);
      return;
    }
    // Else what the transport holds (the last acks, the disconnect) goes first, for LINGER_MS at the most.
    conn.close();
    const linger = setTimeout(() => endTransport(socket, hold.polls), LINGER_MS).unref();
    onTransportFinished(conn, () => clearTimeout(linger));
  });
}
