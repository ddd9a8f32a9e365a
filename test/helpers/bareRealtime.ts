import { createServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server } from 'socket.io';
import { createLogger } from '../../lib/logger.js';
import type { AppServer } from '../../lib/realtime/io.js';
import { createWaitingTransports } from '../../lib/realtime/limits.js';
import { guardTransports } from '../../lib/realtime/transportGuard.js';

export interface BareRealtime {
  io: AppServer;
  port: number;
  url: string;
  close(): Promise<void>;
}

/**
 * A Socket.IO server wired as io.ts wires the node's (the connect timeout, the per-address cap on transports waiting
 * for their handshake in allowRequest, and, unless left out, the transport guard), with the connect timeout given:
 * for tests of transports that never connect a socket, which would wait the node's 10 s.
 */
export async function startBareRealtime(options: {
  perIp: number;
  guard: boolean;
  connectTimeoutMs: number;
}): Promise<BareRealtime> {
  const http: HttpServer = createServer();
  const logger = createLogger('silent');
  const waiting = createWaitingTransports({ perIp: options.perIp, trustProxy: 0, logger });
  const io: AppServer = new Server(http, {
    connectTimeout: options.connectTimeoutMs,
    allowRequest: (req, callback) => {
      waiting.makeRoom(req);
      callback(null, true);
    },
  });
  waiting.watch(io);
  if (options.guard)
    guardTransports(io, { eventsPerSecond: 20, connectTimeoutMs: options.connectTimeoutMs, logger });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const port = (http.address() as AddressInfo).port;
  return {
    io,
    port,
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => void io.close(() => resolve())),
  };
}

/** An engine.io polling handshake, as anyone may send it, that never sends a CONNECT: its session id. */
export async function openPolling(url: string): Promise<string> {
  const text = await (await fetch(`${url}/socket.io/?EIO=4&transport=polling`)).text();
  // `0{"sid":...}`: the open packet.
  return (JSON.parse(text.slice(1)) as { sid: string }).sid;
}
