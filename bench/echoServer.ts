/**
 * E0, the transport ceiling: a Socket.IO server with XFChat's events and load shape but no database. Subscribe
 * joins the conversation's room; a send is acknowledged with a message (seq from a counter) and broadcast to the
 * room, as XFChat does after its commit. Started by the bench on 127.0.0.1 and an ephemeral port.
 */
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Server } from 'socket.io';
import type { ClientToServerEvents, PublicMessage, ServerToClientEvents } from '../lib/protocol/index.js';
import { conversationRoom, userRoom } from './rooms.js';

interface EchoSocketData {
  userId: string;
}

export interface EchoServer {
  /** Listens on 127.0.0.1 and an ephemeral port; resolves with the port. */
  listen(): Promise<number>;
  /** Disconnects every socket and stops listening. Idempotent. */
  close(): Promise<void>;
}

/** Builds E0; nothing listens until listen(). */
export function createEchoServer(): EchoServer {
  const httpServer = createServer();
  const io = new Server<ClientToServerEvents, ServerToClientEvents, Record<string, never>, EchoSocketData>(
    httpServer,
    { serveClient: false, maxHttpBufferSize: 65_536 },
  );
  const lastSeq = new Map<string, number>();

  io.use((socket, next) => {
    const auth = socket.handshake.auth as Record<string, unknown>;
    if (typeof auth.userId !== 'string') {
      next(new Error('UNAUTHORIZED'));
      return;
    }
    socket.data = { userId: auth.userId };
    next();
  });

  io.on('connection', (socket) => {
    void socket.join(userRoom(socket.data.userId));
    socket.on('conversation:subscribe', (request, ack) => {
      void socket.join(conversationRoom(request.conversationId));
      const last = lastSeq.get(request.conversationId) ?? 0;
      ack({ ok: true, messages: [], hasMore: false, lastSeq: last, version: last });
    });
    socket.on('message:send', (request, ack) => {
      const seq = (lastSeq.get(request.conversationId) ?? 0) + 1;
      lastSeq.set(request.conversationId, seq);
      const message: PublicMessage = {
        id: randomUUID(),
        conversationId: request.conversationId,
        seq,
        senderId: socket.data.userId,
        clientMsgId: request.clientMsgId,
        body: request.body,
        createdAt: new Date().toISOString(),
        replyToSeq: null,
        editedAt: null,
        deletedAt: null,
        reactions: [],
        version: seq,
      };
      // The sender's ack, then the broadcast. XFChat delivers to its own subscribers first, then acks, so its ack
      // also waits for that broadcast (about 0.2 ms at light load; docs/performance.md, goal 6).
      ack({ ok: true, message, duplicate: false });
      io.to(conversationRoom(request.conversationId)).emit('message:new', message);
    });
  });

  let closing: Promise<void> | undefined;
  return {
    listen() {
      return new Promise((resolve, reject) => {
        httpServer.once('error', reject);
        httpServer.listen(0, '127.0.0.1', () => resolve((httpServer.address() as AddressInfo).port));
      });
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        void io.close(() => resolve());
      });
      return closing;
    },
  };
}

const invokedDirectly =
  process.argv[1] !== undefined && fileURLToPath(import.meta.url) === path.resolve(process.argv[1]);
if (invokedDirectly) {
  const server = createEchoServer();
  process.on('SIGTERM', () => {
    void server.close().then(() => process.exit(0));
  });
  await server.listen();
}
