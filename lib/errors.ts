import { ERROR_CATALOG, type ErrorBody, type ErrorCode } from './protocol/errors.js';

export { ERROR_CATALOG, type ErrorBody, type ErrorCode };

/**
 * Every error a client sees is an AppError with a code from the catalog (lib/protocol/errors.ts); anything
 * else becomes INTERNAL, and its message never reaches the client.
 */
export interface AppErrorOptions {
  message?: string;
  details?: unknown;
  cause?: unknown;
  /** Seconds, sent as Retry-After with RATE_LIMITED. */
  retryAfter?: number;
}

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: unknown;
  readonly retryAfter: number | undefined;

  constructor(code: ErrorCode, options: AppErrorOptions = {}) {
    super(options.message ?? ERROR_CATALOG[code].message, { cause: options.cause });
    this.name = 'AppError';
    this.code = code;
    this.status = ERROR_CATALOG[code].status;
    this.details = options.details;
    this.retryAfter = options.retryAfter;
  }

  toBody(): ErrorBody {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }
}

/** A failed field check: `details` maps each field to what is wrong with it. */
export function validationError(details: Record<string, string>): AppError {
  return new AppError('VALIDATION_FAILED', { details });
}

/** The SQLSTATEs XFChat tells apart by name (PostgreSQL's Appendix A), named in this one place. */
export const SQLSTATE = {
  uniqueViolation: '23505',
  invalidAuthorizationSpecification: '28000',
  invalidPassword: '28P01',
  invalidCatalogName: '3D000',
  readOnlySqlTransaction: '25006',
  insufficientResources: '53000',
  diskFull: '53100',
  outOfMemory: '53200',
  tooManyConnections: '53300',
  configurationLimitExceeded: '53400',
  lockNotAvailable: '55P03',
  queryCanceled: '57014',
  adminShutdown: '57P01',
  crashShutdown: '57P02',
  cannotConnectNow: '57P03',
  idleSessionTimeout: '57P05',
} as const;

/**
 * SQLSTATEs that mean "the database cannot do it now", not "your request is wrong": it is going or gone, out of
 * resources, or refusing writes (a server still in recovery: a failover onto a standby not yet promoted, or a
 * database put read-only), or a wait for a lock past a timeout. Clients retry them (DB_UNAVAILABLE); nothing was
 * done.
 */
const UNAVAILABLE_SQLSTATES = new Set<string>([
  SQLSTATE.adminShutdown,
  SQLSTATE.crashShutdown,
  SQLSTATE.cannotConnectNow,
  SQLSTATE.idleSessionTimeout,
  SQLSTATE.insufficientResources,
  SQLSTATE.diskFull,
  SQLSTATE.outOfMemory,
  SQLSTATE.tooManyConnections,
  SQLSTATE.configurationLimitExceeded,
  SQLSTATE.queryCanceled, // statement_timeout
  SQLSTATE.lockNotAvailable, // lock_timeout
  SQLSTATE.readOnlySqlTransaction,
  // connection_exception and its kinds
  '08000',
  '08001',
  '08003',
  '08004',
  '08006',
]);

/**
 * SQLSTATEs of a call PostgreSQL refused before it wrote anything, though they answer DB_UNAVAILABLE: a server that
 * cannot write now (read-only, out of resources), a lock not had in time.
 */
const REFUSED_BEFORE_WRITING = new Set<string>([
  SQLSTATE.readOnlySqlTransaction,
  SQLSTATE.insufficientResources,
  SQLSTATE.diskFull,
  SQLSTATE.outOfMemory,
  SQLSTATE.configurationLimitExceeded,
  SQLSTATE.lockNotAvailable,
]);

const UNAVAILABLE_ERRNOS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'EAI_AGAIN',
  // Out of file descriptors: no connection to PostgreSQL can be opened.
  'EMFILE',
  'ENFILE',
]);

interface DriverErrorShape {
  name?: unknown;
  code?: unknown;
  message?: unknown;
}

/** True for errors that mean PostgreSQL is unreachable, restarting, or the pool is exhausted. */
export function isDbUnavailable(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const e = err as DriverErrorShape;
  // KnexTimeoutError: no pool connection in time; DatabaseStalledError: PostgreSQL has stopped answering (lib/dbStall.ts).
  if (e.name === 'KnexTimeoutError' || e.name === 'DatabaseStalledError') return true;
  if (typeof e.code === 'string' && (UNAVAILABLE_SQLSTATES.has(e.code) || UNAVAILABLE_ERRNOS.has(e.code)))
    return true;
  if (typeof e.message === 'string') {
    // "timeout expired": pg's own connect timeout (DB_CONNECT_TIMEOUT_MS), as a host that accepts and never answers;
    // "Query read timeout": pg's query_timeout, when no answer came a second past statement_timeout. Each is the
    // whole message as pg throws it, or its end after the statement when Knex ran it ("<sql> - Query read timeout").
    return /Connection terminated|connection timeout|(?:^| - )timeout expired$|(?:^| - )Query read timeout$|Client has encountered a connection error|not queryable|Timeout acquiring a connection|pool is probably full|Unable to acquire a connection/i.test(
      e.message,
    );
  }
  return false;
}

/** The SQLSTATE of a PostgreSQL error, if it is one (objection wraps, so look through `nativeError`). */
export function sqlState(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as { code?: unknown; nativeError?: unknown };
  if (typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code)) return e.code;
  return e.nativeError === undefined ? undefined : sqlState(e.nativeError);
}

/** Whether PostgreSQL refused the call before it wrote anything (the outcome is known: nothing was written). */
export function refusedBeforeWriting(err: unknown): boolean {
  return REFUSED_BEFORE_WRITING.has(sqlState(err) ?? '');
}

/** Whether `err` leaves unknown whether the call committed: PostgreSQL unavailable, not a refusal of the call. */
export function outcomeLeftUnknown(err: unknown): boolean {
  return isDbUnavailable(err) && !refusedBeforeWriting(err);
}

/**
 * Whether `err` ended a wait for locks: query_canceled (the statement timeout, DB_STATEMENT_TIMEOUT_MS, cancelled the
 * call) or lock_not_available (an operator's `lock_timeout`).
 */
export function lockWaitEnded(err: unknown): boolean {
  const state = sqlState(err);
  return state === SQLSTATE.queryCanceled || state === SQLSTATE.lockNotAvailable;
}

/** The constraint a PostgreSQL error names, if any. */
export function constraintName(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as { constraint?: unknown; nativeError?: unknown };
  if (typeof e.constraint === 'string') return e.constraint;
  return e.nativeError === undefined ? undefined : constraintName(e.nativeError);
}

/**
 * Turns anything thrown into an AppError. Database errors are translated, never passed through: the
 * original stays as `cause` for the log.
 */
export function toAppError(err: unknown): AppError {
  if (err instanceof AppError) return err;
  const inner = typeof err === 'object' && err !== null && 'nativeError' in err ? err.nativeError : err;
  if (isDbUnavailable(err) || isDbUnavailable(inner)) return new AppError('DB_UNAVAILABLE', { cause: err });
  return new AppError('INTERNAL', { cause: err });
}

/** The `{error: ...}` envelope of an HTTP error response. */
export function toHttp(err: AppError): { status: number; body: { error: ErrorBody } } {
  return { status: err.status, body: { error: err.toBody() } };
}

/**
 * A failed Socket.IO acknowledgement. An ack has no headers: what REST sends as Retry-After goes in
 * `details.retryAfter` (seconds).
 */
export function toAck(err: AppError): { ok: false; error: ErrorBody } {
  const body = err.toBody();
  if (err.retryAfter !== undefined && body.details === undefined)
    body.details = { retryAfter: err.retryAfter };
  return { ok: false, error: body };
}
