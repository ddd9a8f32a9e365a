import { expect } from 'chai';
import type { Ack, ERROR_CATALOG, ErrorBody, ErrorCode } from '../../lib/protocol/index.js';

/** The envelope of every failed REST response: `{"error": {"code", "message", "details"?}}`. */
export interface ErrorResponse {
  error: ErrorBody;
}

/** The HTTP status the catalog gives `C`: an `expectError` whose status and code disagree does not compile. */
export type StatusOf<C extends ErrorCode> = (typeof ERROR_CATALOG)[C]['status'];

/**
 * Asserts a failed REST response: its status, and the code in its error envelope. Returns the envelope's
 * `error`, for assertions on `details` or `message`. `what` names the case in a failure message.
 */
export function expectError<C extends ErrorCode>(
  res: { status: number; body: unknown },
  status: StatusOf<C>,
  code: C,
  what?: string,
): ErrorBody {
  const context = [what, JSON.stringify(res.body)].filter((part) => part !== undefined).join(': ');
  expect(res.status, context).to.equal(status);
  const error = (res.body as Partial<ErrorResponse> | undefined)?.error;
  expect(error?.code, context).to.equal(code);
  return error as ErrorBody;
}

/** Asserts a failed Socket.IO ack with `code`; returns its error. `what` names the case in a failure message. */
export function expectAckError(ack: Ack, code: ErrorCode, what?: string): ErrorBody {
  const context = [what, JSON.stringify(ack)].filter((part) => part !== undefined).join(': ');
  expect(ack.ok, context).to.equal(false);
  if (ack.ok) throw new Error(context);
  expect(ack.error.code, context).to.equal(code);
  return ack.error;
}

/** The error code of a failed ack (for acks compared together); throws on success. */
export function errorCodeOf(ack: Ack): ErrorCode {
  if (ack.ok) throw new Error(`expected an error ack, got ${JSON.stringify(ack)}`);
  return ack.error.code;
}
