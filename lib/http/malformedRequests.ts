import { randomUUID } from 'node:crypto';
import { STATUS_CODES, type Server as HttpServer } from 'node:http';
import type { Duplex } from 'node:stream';
import { AppError, toHttp } from '../errors.js';
import type { Logger } from '../logger.js';

/** A whole HTTP/1.1 response carrying the error envelope, for requests Express never sees. */
function envelopeResponse(error: AppError): string {
  const { status, body } = toHttp(error);
  const json = JSON.stringify(body);
  return [
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}`,
    'Content-Type: application/json; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(json)}`,
    `X-Request-Id: ${randomUUID()}`,
    'Connection: close',
    '',
    json,
  ].join('\r\n');
}

/**
 * The answer to a request that did not arrive whole within `HTTP_IDLE_TIMEOUT_MS` (its head or body trickled in,
 * or stopped coming): `408 REQUEST_TIMEOUT` with the error envelope. The connection is closed after it.
 */
export function requestTimeoutResponse(): string {
  return envelopeResponse(new AppError('REQUEST_TIMEOUT'));
}

/**
 * Answers what Node's HTTP parser refuses before Express sees it, with the contract's error envelope instead of
 * Node's bare `400`: an unknown method, a raw space or non-ASCII byte in the path, conflicting
 * `Content-Length` / `Transfer-Encoding`, a bad chunk, headers over Node's 16 KiB. The rules mirror Node's own
 * `clientError` default: answer only on a connection that has not written anything yet (never inside another
 * response), then close it. A request timeout is `408 REQUEST_TIMEOUT`, also with the envelope. `CONNECT` (which
 * no route serves and Node would drop without a word) gets 404 like any unknown route.
 */
export function answerMalformedRequests(server: HttpServer, logger: Logger): void {
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex & { bytesWritten?: number }) => {
    logger.debug({ code: err.code }, 'malformed HTTP request refused');
    if (err.code === 'ECONNRESET' || !socket.writable || (socket.bytesWritten ?? 0) > 0) {
      socket.destroy();
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
