import { ERROR_CATALOG, type ErrorBody } from '../protocol/errors.js';

/** A code of the server's catalog (the contract's error table). */
export type ServerErrorCode = ErrorBody['code'];

/**
 * Codes the SDK itself produces, for failures that never reached the server or never came back:
 * `NETWORK_ERROR` (fetch failed), `TIMEOUT` (no ack in time), `DISCONNECTED` (the socket dropped while waiting),
 * `NOT_CONNECTED` (a realtime call while offline, or a send before connect()), `CLIENT_CLOSED` (close() was
 * called), `BAD_RESPONSE` (the server answered something that is not the contract's envelope),
 * `ALREADY_SUBSCRIBED` (subscribe() to a conversation this client already follows).
 */
export type ClientErrorCode =
  | 'NETWORK_ERROR'
  | 'TIMEOUT'
  | 'DISCONNECTED'
  | 'NOT_CONNECTED'
  | 'CLIENT_CLOSED'
  | 'BAD_RESPONSE'
  | 'ALREADY_SUBSCRIBED';

export type XFChatErrorCode = ServerErrorCode | ClientErrorCode;

export interface XFChatErrorInit {
  /** HTTP status; for SDK-side failures 0, for ack errors the status REST would give. */
  status?: number;
  details?: unknown;
  /** Seconds to wait: a `Retry-After` header, or an ack's `details.retryAfter`. */
  retryAfter?: number;
  cause?: unknown;
}

/** Every failure the SDK reports: the contract's `{code, message, details}` plus the HTTP status. */
export class XFChatError extends Error {
  readonly code: XFChatErrorCode;
  readonly status: number;
  readonly details: unknown;
  readonly retryAfter: number | undefined;

  constructor(code: XFChatErrorCode, message: string, init: XFChatErrorInit = {}) {
    super(message, { cause: init.cause });
    this.name = 'XFChatError';
    this.code = code;
    this.status = init.status ?? (code in ERROR_CATALOG ? ERROR_CATALOG[code as ServerErrorCode].status : 0);
    this.details = init.details;
    this.retryAfter = init.retryAfter;
  }
}

/** An error body from the server (REST envelope or ack) as an XFChatError. */
export function fromErrorBody(body: ErrorBody, init: XFChatErrorInit = {}): XFChatError {
  return new XFChatError(body.code, body.message, {
    retryAfter: retryAfterOf(body.details),
    ...init,
    details: body.details,
  });
}

/** A Socket.IO ack's `details.retryAfter` (REST sends it as the Retry-After header instead). */
function retryAfterOf(details: unknown): number | undefined {
  if (typeof details !== 'object' || details === null) return undefined;
  const { retryAfter } = details as { retryAfter?: unknown };
  return typeof retryAfter === 'number' && retryAfter > 0 ? retryAfter : undefined;
}

/**
 * True if `value` is the contract's `{code, message}` error body: a code of its catalog and a message. JSON of the
 * same outline with a code of its own (a cloud gateway's `{"error":{"code":"ServiceUnavailable",...}}`) is not
 * XFChat's answer: the transport handles it as any other answer that is not the contract's (a gateway's 5xx is
 * NETWORK_ERROR, anything else BAD_RESPONSE).
 */
export function isErrorBody(value: unknown): value is ErrorBody {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return (
    typeof v.code === 'string' &&
    typeof v.message === 'string' &&
    Object.prototype.hasOwnProperty.call(ERROR_CATALOG, v.code)
  );
}

/** Anything thrown, as an XFChatError (unknown errors keep their original as `cause`). */
export function toXFChatError(err: unknown): XFChatError {
  if (err instanceof XFChatError) return err;
  return new XFChatError('NETWORK_ERROR', err instanceof Error ? err.message : String(err), { cause: err });
}

/**
 * Failures worth retrying with the same request: the message may or may not have been stored, or the server
 * asked to come back later. Validation and permission errors are final.
 */
const RETRYABLE = new Set<XFChatErrorCode>([
  'NETWORK_ERROR',
  'TIMEOUT',
  'DISCONNECTED',
  'NOT_CONNECTED',
  'DB_UNAVAILABLE',
  'OVERLOADED',
  'RATE_LIMITED',
  // A REST request that did not reach the server whole in time (a slow uplink): nothing was done.
  'REQUEST_TIMEOUT',
]);

/** Whether the same request may succeed if sent again later. */
export function isRetryable(err: XFChatError): boolean {
  return RETRYABLE.has(err.code);
}
