import type { IncomingMessage } from 'node:http';

/**
 * Whether an HTTP/1.1 request lacks the Host header it must carry (RFC 9112, 3.2: such a request is answered 400).
 * Node's own check (`requireHostHeader`) is off (lib/server.ts): its bare 400 had neither the envelope nor an
 * X-Request-Id; Express answers it with the envelope (lib/http/app.ts), the Socket.IO engine in its own format
 * (lib/realtime/io.ts).
 */
export function lacksHost(req: IncomingMessage): boolean {
  return req.httpVersion !== '1.0' && req.headers.host === undefined;
}
