/**
 * N, the naive server: what one would write first. Socket.IO with the events and acks the load generator uses,
 * and one PostgreSQL transaction per message on a pg.Pool (DB_POOL_SIZE connections, 25 in the bench): BEGIN,
 * bump the conversation's last_seq, insert the row, COMMIT, then the sender's ack and the broadcast to the room.
 * No actor, no batching, no idempotency lookup, no membership check. Like E0, it takes the user id from the
 * handshake's `auth.userId` without verifying the token. Started by the bench on 127.0.0.1 and an ephemeral port
 * (DATABASE_URL, DB_POOL_SIZE from the environment).
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { Server } from 'socket.io';
import type { ErrorBody } from '../lib/errors.js';
import {
  type ClientToServerEvents,
  type PublicMessage,
  type SendRequest,
  type ServerToClientEvents,
} from '../lib/protocol/index.js';
import { conversationRoom, userRoom } from './rooms.js';

interface NaiveSocketData {
  userId: string;
}

const LAST_SEQ = 'SELECT last_seq FROM conversations WHERE id = $1';
const NEXT_SEQ = 'UPDATE conversations SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq';
const INSERT_MESSAGE = `INSERT INTO messages (conversation_id, sender_id, seq, client_msg_id, body)
  VALUES ($1, $2, $3, $4, $5) RETURNING id, created_at`;

/** A failure the client is told about by code; anything else is INTERNAL. */
class NaiveError extends Error {
  constructor(
    readonly code: ErrorBody['code'],
    message: string,
  ) {
    super(message);
  }
}

function errorBody(err: unknown): ErrorBody {
  if (err instanceof NaiveError) return { code: err.code, message: err.message };
  return { code: 'INTERNAL', message: err instanceof Error ? err.message : String(err) };
}

/** BEGIN; next seq; INSERT; COMMIT on one pooled connection. A failed ROLLBACK discards the connection. */
async function storeMessage(pool: pg.Pool, request: SendRequest, senderId: string): Promise<PublicMessage> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query('BEGIN');
    try {
      const updated = await client.query<{ last_seq: string }>(NEXT_SEQ, [request.conversationId]);
      const seqRow = updated.rows[0];
      if (!seqRow) throw new NaiveError('NOT_FOUND', 'no such conversation');
      const seq = Number(seqRow.last_seq);
      const inserted = await client.query<{ id: string; created_at: Date }>(INSERT_MESSAGE, [
        request.conversationId,
        senderId,
        seq,
        request.clientMsgId,
        request.body,
      ]);
      await client.query('COMMIT');
      const row = inserted.rows[0]!;
      return {
        id: row.id,
        conversationId: request.conversationId,
        seq,
        senderId,
        clientMsgId: request.clientMsgId,
        body: request.body,
        createdAt: row.created_at.toISOString(),
        replyToSeq: null,
        editedAt: null,
        deletedAt: null,
        reactions: [],
        version: seq,
      };
    } catch (err) {
      try {
        await client.query('ROLLBACK');
      } catch (rollbackError) {
        broken = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
      }
      throw err;
    }
  } finally {
    client.release(broken);
  }
}

export interface NaiveServer {
  /** Listens on 127.0.0.1 and an ephemeral port; resolves with the port. */
  listen(): Promise<number>;
  /** Disconnects every socket, stops listening and ends the pool. Idempotent. */
  close(): Promise<void>;
}

/** Builds N over `databaseUrl`; nothing listens (and nothing connects) until used. */
export function createNaiveServer(databaseUrl: string, poolSize: number): NaiveServer {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: poolSize, application_name: 'bench-naive' });
  pool.on('error', (err) => process.stderr.write(`naive: idle pool connection failed: ${err.message}\n`));
  const httpServer = createServer();
  const io = new Server<ClientToServerEvents, ServerToClientEvents, Record<string, never>, NaiveSocketData>(
    httpServer,
    { serveClient: false, maxHttpBufferSize: 65_536 },
  );

  // The same handshake as E0: the user id is taken from auth.userId, the token is not checked.
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
      pool.query<{ last_seq: string }>(LAST_SEQ, [request.conversationId]).then(
        (result) => {
          const row = result.rows[0];
          if (row) {
            const last = Number(row.last_seq);
            ack({ ok: true, messages: [], hasMore: false, lastSeq: last, version: last });
          } else ack({ ok: false, error: { code: 'NOT_FOUND', message: 'no such conversation' } });
        },
        (err: unknown) => {
          process.stderr.write(`naive: subscribe failed: ${errorBody(err).message}\n`);
          ack({ ok: false, error: errorBody(err) });
        },
      );
    });
    socket.on('message:send', (request, ack) => {
      storeMessage(pool, request, socket.data.userId).then(
        (message) => {
          // The sender's ack, then the broadcast to the room, as E0 does (bench/echoServer.ts says how XFChat differs).
          ack({ ok: true, message, duplicate: false });
          io.to(conversationRoom(request.conversationId)).emit('message:new', message);
        },
        (err: unknown) => {
          process.stderr.write(`naive: send failed: ${errorBody(err).message}\n`);
          ack({ ok: false, error: errorBody(err) });
        },
      );
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
      }).then(() => pool.end());
      return closing;
    },
  };
}

const invokedDirectly =
  process.argv[1] !== undefined && fileURLToPath(import.meta.url) === path.resolve(process.argv[1]);
if (invokedDirectly) {
  const databaseUrl = process.env.DATABASE_URL;
  if (!databaseUrl) {
    process.stderr.write('naive: DATABASE_URL is required\n');
    process.exit(2);
  }
  const poolSize = Number(process.env.DB_POOL_SIZE ?? '25');
  const server = createNaiveServer(databaseUrl, poolSize);
  process.on('SIGTERM', () => {
    server.close().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`naive: close failed: ${err instanceof Error ? err.message : String(err)}\n`);
        process.exit(1);
      },
    );
  });
  await server.listen();
}
