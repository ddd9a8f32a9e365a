import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { logsAsIs } from '../logSafety.js';

const REQUEST_ID_PATTERN = /^[A-Za-z0-9._-]{1,128}$/;

/**
 * The request's id, set as the answer's `X-Request-Id` header the first time it is asked for (every answer carries
 * one: the server asks on every request, lib/server.ts, as the Socket.IO engine answers some before Express sees
 * them; Express's log asks again and gets the same). A client's own id is kept only if the log shows it as it is:
 * one shaped like a token would be logged as `***`, and the answer's id would lead to no line.
 */
export function requestIdOf(req: IncomingMessage, res: ServerResponse): string {
  const set = res.getHeader('X-Request-Id');
  if (typeof set === 'string') return set;
  const incoming = req.headers['x-request-id'];
  const id =
    typeof incoming === 'string' && REQUEST_ID_PATTERN.test(incoming) && logsAsIs(incoming)
      ? incoming
      : randomUUID();
  res.setHeader('X-Request-Id', id);
  return id;
}
