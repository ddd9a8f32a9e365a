import { randomUUID } from 'node:crypto';
import {
  STATUS_CODES,
  type IncomingMessage,
  type Server as HttpServer,
  type ServerResponse,
} from 'node:http';
import type { Duplex } from 'node:stream';
import { AppError, toHttp } from '../errors.js';
import type { Logger } from '../logger.js';
import { STRICT_TRANSPORT_SECURITY } from './transportSecurity.js';

/**
 * A whole HTTP/1.1 response carrying the error envelope, for requests Express never sees: `requestId` when the
 * request's own is known (lib/http/requestId.ts), else a new one.
 */
function envelopeResponse(error: AppError, requestId: string = randomUUID()): string {
  const { status, body } = toHttp(error);
  const json = JSON.stringify(body);
  return [
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}`,
    'Content-Type: application/json; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(json)}`,
    `X-Request-Id: ${requestId}`,
    `Strict-Transport-Security: ${STRICT_TRANSPORT_SECURITY}`,
    'Connection: close',
    '',
    json,
  ].join('\r\n');
}

/**
 * The answer to a request that did not arrive whole within `HTTP_IDLE_TIMEOUT_MS` (its head or body trickled in,
 * or its body stopped coming; a head that stops coming leaves the connection silent, and it is closed without an
 * answer): `408 REQUEST_TIMEOUT` with the error envelope, and `requestId`, the request's (its head arrived whole).
 * The connection is closed after it.
 */
export function requestTimeoutResponse(requestId?: string): string {
  return envelopeResponse(new AppError('REQUEST_TIMEOUT'), requestId);
}

/** Closes the connection once `answer` has gone out (or was abandoned): nothing else is read or answered on it. */
function closeAfter(answer: ServerResponse, socket: Duplex): void {
  // Node then writes `Connection: close` if the head has not gone out yet, and ends the connection after it.
  answer.shouldKeepAlive = false;
  const close = () => socket.end(() => socket.destroy());
  if (answer.writableFinished) close();
  else {
    answer.once('finish', close);
    // Abandoned: its request's handler failed to end it, or the client went.
    answer.once('close', () => {
      if (!answer.writableFinished) socket.destroy();
    });
  }
}

/**
 * Answers what Node's HTTP parser refuses before Express sees it, with the contract's error envelope instead of
 * Node's bare `400`: an unknown method, a raw space or non-ASCII byte in the path, conflicting
 * `Content-Length` / `Transfer-Encoding`, a bad chunk, headers over Node's 16 KiB. Answered on a fresh connection
 * and on a kept-alive one after its earlier answers alike, never inside another response: behind requests still
 * being answered (pipelined), their answers go out, in order, and the connection closes after the last of them
 * without a word for the refused bytes. A request timeout is `408 REQUEST_TIMEOUT`, also with the envelope.
 * `CONNECT` (which no route serves and Node would drop without a word) gets 404 like any unknown route.
 */
export function answerMalformedRequests(server: HttpServer, logger: Logger): void {
  // Each connection's answers not yet finished, in the order of their requests (Node writes them in that order).
  const unfinished = new WeakMap<Duplex, ServerResponse[]>();
  server.prependListener('request', (req: IncomingMessage, res: ServerResponse) => {
    let answers = unfinished.get(req.socket);
    if (answers === undefined) unfinished.set(req.socket, (answers = []));
    answers.push(res);
    const done = () => {
      const at = answers.indexOf(res);
      if (at >= 0) answers.splice(at, 1);
    };
    res.once('finish', done);
    res.once('close', done);
  });
  // Connections already refused: the parser reports each later chunk again, and one answer (or close) is enough.
  const refused = new WeakSet<Duplex>();
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (refused.has(socket)) return;
    refused.add(socket);
    logger.debug({ code: err.code }, 'malformed HTTP request refused');
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    // The last answer still to go out for a request that arrived whole, or whose answer has begun (one that answered
    // before reading its body): it and those before it go out, in order, then the connection closes. A 400 now would
    // be read as the answer of the first of them. An answer is written only for the request the error is in: the
    // first since the last finished answer, or the one whose body the parser refused.
    const answers = unfinished.get(socket) ?? [];
    const last = answers.findLast((answer) => answer.req.complete || answer.headersSent);
    if (last !== undefined) {
      closeAfter(last, socket);
      return;
    }
    const response =
      err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? requestTimeoutResponse()
        : envelopeResponse(
            new AppError('VALIDATION_FAILED', {
              message: 'The request is not valid HTTP.',
              details: { request: err.code === 'HPE_HEADER_OVERFLOW' ? 'headers too large' : 'malformed' },
            }),
          );
    // Then closed for good: a client that keeps its half of the connection open holds nothing here.
    socket.end(response, () => socket.destroy());
  });
  server.on('connect', (_req, socket: Duplex) => {
    socket.end(envelopeResponse(new AppError('NOT_FOUND', { message: 'No such route.' })), () =>
      socket.destroy(),
    );
  });
}

/**
 * The request's head again, as Node's parser would read a plain HTTP/1.1 request: without `Upgrade`, and with
 * `Connection: close` in place of the client's `Connection` (which named the upgrade). Header bytes were decoded as
 * latin1 by Node, so encoding them back as latin1 gives the bytes the client sent.
 */
function headWithoutUpgrade(req: IncomingMessage): Buffer {
  const lines = [`${req.method ?? 'GET'} ${req.url ?? '/'} HTTP/${req.httpVersion}`];
  const { rawHeaders } = req;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] ?? '';
    const value = rawHeaders[i + 1] ?? '';
    const lower = name.toLowerCase();
    if (lower !== 'upgrade' && lower !== 'connection') lines.push(`${name}: ${value}`);
  }
  lines.push('Connection: close', '', '');
  return Buffer.from(lines.join('\r\n'), 'latin1');
}

/**
 * Serves a request that offers to switch protocols, when this node does not take the upgrade, as the plain
 * HTTP/1.1 request it also is (RFC 9110 7.8 lets a server ignore an `Upgrade` it does not take): `Upgrade: h2c`, which
 * `curl --http2` and Java's HttpClient send over plain http, or `Upgrade: websocket` to a REST path. As soon as the
 * server has an `'upgrade'` listener (the engine's, for Socket.IO's WebSockets), Node hands every request with an
 * upgrade to it instead of to `'request'`, and such a request got no answer at all. The listeners already attached
 * (the engine's, and lib/server.ts's note of the sockets Socket.IO takes over) are called only for a WebSocket upgrade
 * under `enginePath`, and such a request is never served here: the engine hands every upgrade under its path
 * to `ws`, which answers any other (`h2c` on a long-polling request) with a bare 400, where the plain request is a
 * polling one the engine serves.
 *
 * Node's parser has stopped after the head, so the body, chunked or not, is still on the socket unread (partly in
 * `head`). Rather than answer through a `ServerResponse` bound to the socket and frame and bound that body by hand,
 * the head is put back without the upgrade, in front of what has arrived, and the socket handed to the server as a
 * new connection (Node documents emitting `'connection'` to inject one): its own parser reads the request again, with
 * its limits, timeouts and `Expect` handling, and the app serves it like any other, `X-Request-Id` and all. With
 * `Connection: close`, the connection ends after that answer: a client cannot take one socket through this again
 * and again (each pass adds the server's per-connection listeners to it).
 */
export function serveDeclinedUpgrades(server: HttpServer, enginePath: string): void {
  const engine = server.listeners('upgrade') as Array<
    (req: IncomingMessage, socket: Duplex, head: Buffer) => void
  >;
  server.removeAllListeners('upgrade');
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    // What `ws` takes: one protocol, `websocket`, in any case.
    if (
      req.url?.startsWith(enginePath) === true &&
      req.headers.upgrade?.trim().toLowerCase() === 'websocket'
    ) {
      for (const listener of engine) listener.call(server, req, socket, head);
      return;
    }
    const reinject = () => {
      if (socket.destroyed) return;
      socket.unshift(Buffer.concat([headWithoutUpgrade(req), head]));
      server.emit('connection', socket);
    };
    // Pipelined behind a request still being answered on this connection: that answer keeps the socket until it
    // ends, and the connection injected now would queue its own behind it for ever. It goes in once that one is done.
    const answering = (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage;
    if (answering && !answering.writableFinished) answering.once('close', reinject);
    else reinject();
  });
}
