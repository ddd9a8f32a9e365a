import type { AppSocket } from './io.js';

/**
 * The parts of engine.io's connection and websocket transport this module relies on (engine.io 6, ws 8). They
 * are not public API, so each is checked before use: without them a socket simply writes as engine.io does.
 */
interface Corkable {
  cork(): void;
  uncork(): void;
}
interface EngineTransport {
  name: string;
  send(packets: unknown[]): void;
  /** ws's WebSocket on the websocket transport; its `_socket` is the TCP socket. */
  socket?: { _socket?: Partial<Corkable> };
}
interface EngineConnection {
  transport: EngineTransport;
  flush(): void;
  on(event: 'upgrade', listener: (transport: EngineTransport) => void): void;
}

function isCorkable(value: Partial<Corkable> | undefined): value is Corkable {
  return typeof value?.cork === 'function' && typeof value.uncork === 'function';
}

/** Sends every packet of one flush inside one cork: one `writev` for all of them instead of one each. */
function corkSends(transport: EngineTransport): void {
  const tcp = transport.socket?._socket;
  if (transport.name !== 'websocket' || !isCorkable(tcp)) return;
  const send = transport.send.bind(transport);
  transport.send = (packets) => {
    tcp.cork();
    try {
      send(packets);
    } finally {
      tcp.uncork();
    }
  };
}

export interface WriteCoalescing {
  /** Makes `socket` write once per turn of the event loop (below). */
  coalesce(socket: AppSocket): void;
  /** Writes out at once what every socket holds for its turn: before the sockets close, so that no ack is cut. */
  flushAll(): void;
}

/**
 * Coalesces each socket's writes per turn of the event loop. engine.io writes each packet as soon as it is emitted,
 * one system call per packet: per message that is the `message:new` to each subscriber and the sender's ack, and at
 * load a socket gets several messages per turn. Here the socket's flush waits until the turn's microtasks have run
 * (`setImmediate`), so everything emitted to it meanwhile (a commit's broadcasts and the acks its continuations
 * write) leaves in one flush, and the flush's frames leave in one corked write. Order is unchanged; the delay is
 * the rest of the current turn. A node that stops writes out what the sockets hold before it closes them: the
 * acks its drain waited for were emitted, but would otherwise leave only after the close had discarded them.
 */
export function createWriteCoalescing(): WriteCoalescing {
  /** The flushes held for their turn. */
  const held = new Set<() => void>();
  return {
    coalesce(socket) {
      const conn = socket.conn as unknown as Partial<EngineConnection>;
      if (typeof conn.flush !== 'function' || typeof conn.on !== 'function' || conn.transport === undefined)
        return;
      const flush = conn.flush.bind(conn);
      const flushHeld = () => {
        if (held.delete(flushHeld)) flush();
      };
      conn.flush = () => {
        if (held.has(flushHeld)) return;
        held.add(flushHeld);
        setImmediate(flushHeld);
      };
      corkSends(conn.transport);
      conn.on('upgrade', corkSends);
    },
    flushAll() {
      for (const flushHeld of [...held]) flushHeld();
    },
  };
}
