import { EventEmitter } from 'node:events';

/**
 * What may reach a log line. Drivers attach themselves to their errors (pg-pool puts the whole `client`, with its
 * connection settings, `processID` and `secretKey`, on an idle client's error); a logged socket or request drags
 * its whole object graph along. So every logged value passes through here: errors become
 * `{type, message, code, stack}`, anything that is a live object (an EventEmitter: clients, connections, pools,
 * sockets, streams) becomes its class name, secret-named keys are redacted, and the line has a size budget.
 */

/**
 * Names of secrets: a key (or a URL's query parameter) whose name, lowercased and without separators, ends with one
 * of these holds one (`token`, `access_token`, `refreshToken`, `X-Auth-Token`, `newPassword`, `sslpassword`,
 * `clientSecret`, `api-key`, `Set-Cookie`, `Proxy-Authorization`...), while `tokenTtlSeconds` or
 * `passwordChangedAt` do not.
 */
const SECRET_NAME =
  /(token|tokens|password|passwd|passphrase|secret|secrets|secretkey|privatekey|apikey|accesskey|authorization|cookie|cookies|credential|credentials|connectionstring)$/;
/** Short names that are secrets only whole (`pwd`; `sig`, a signed URL's signature). */
const SECRET_WHOLE_NAME = /^(pwd|sig|signature|jwt|bearer)$/;

/** Whether a key or a query parameter names a secret (case, `_`, `-` and the like ignored). */
export function isSecretName(name: string): boolean {
  const bare = name.toLowerCase().replace(/[^a-z0-9]/g, '');
  return SECRET_NAME.test(bare) || SECRET_WHOLE_NAME.test(bare);
}

/** What the code itself puts in a secret's place (describeConfig's "(set)"): kept, it tells the operator something. */
const PLACEHOLDERS: ReadonlySet<unknown> = new Set(['(set)', '[redacted]']);
/** Keys only a database driver's objects have: such an object is dropped whole even if it is not an emitter. */
const DRIVER_KEYS = ['secretKey', 'processID', 'connectionParameters'];
/** A password in a URL (`postgres://user:password@host`). */
const URL_PASSWORD = /(\b[a-z][a-z0-9+.-]*:\/\/[^:/?#\s@]*:)[^@/?#\s]+@/gi;
/**
 * A parameter in a URL's query or fragment (`/auth/me?access_token=...`, `postgres://...?sslpassword=...`), a bare
 * query string (`token=...&x=1`), a cookie header (`a=1; session_token=...`) or libpq's `key=value` settings:
 * its value is hidden when its name names a secret.
 */
const PARAMETER = /(^|[?&#;\s])([^=&#?;\s]+)=([^&#;\s"'<>]+)/g;
/**
 * Tokens by their shape, whatever they are sent as (a query parameter, a header or a path of a name no list
 * knows): a JWT (an access token: `eyJ`, then two more base64url parts), and a run of exactly 43 base64url
 * characters standing alone (a refresh token's shape: 32 bytes) with letters of both cases, as random base64url
 * has but for about one in 2.7 billion: the names of one case (the newest migration's,
 * `20261205100000_release_0_2_0_writes_current`, a database's, a host's) are not hidden. A percent-escape before
 * either (`Bearer%20eyJ...`) separates it as a space would.
 */
const JWT = /(?:(?<=%[0-9A-Fa-f]{2})|\b)eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*/g;
const OPAQUE_TOKEN = /(?:(?<=%[0-9A-Fa-f]{2})|(?<![A-Za-z0-9_-]))[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])/g;

/** Characters of strings (and keys) one line may carry in all; what is over is cut. */
export const LINE_BUDGET = 5120;
/** A log message's own cap (it is outside the budget of the merge object). */
const MAX_MESSAGE = 1024;
const MAX_STRING = 2048;
const MAX_STACK = 4096;
const MAX_DEPTH = 4;
const MAX_KEYS = 32;
const MAX_ITEMS = 16;
const MAX_CAUSES = 3;

/** A logged error: never more than this. */
export interface LoggedError {
  type: string;
  message: string;
  code?: string | number;
  stack?: string;
}

interface Budget {
  left: number;
}

function decodedName(name: string): string {
  try {
    return decodeURIComponent(name);
  } catch {
    return name;
  }
}

function hideMixedCase(run: string): string {
  return /[A-Z]/.test(run) && /[a-z]/.test(run) ? '***' : run;
}

/** A string without the secrets it may carry: a URL's password, secret-named parameters' values, tokens. */
function scrub(text: string): string {
  let clean = text.includes('://') ? text.replace(URL_PASSWORD, '$1***@') : text;
  if (clean.length >= 43) clean = clean.replace(JWT, 'eyJ***').replace(OPAQUE_TOKEN, hideMixedCase);
  if (clean.includes('=')) {
    clean = clean.replace(PARAMETER, (whole: string, lead: string, name: string) =>
      isSecretName(decodedName(name)) ? `${lead}${name}=***` : whole,
    );
  }
  return clean;
}

function cut(text: string, max: number, budget: Budget): string {
  const clean = scrub(text);
  const allowed = Math.max(0, Math.min(max, budget.left));
  budget.left -= Math.min(clean.length, allowed);
  return clean.length <= allowed ? clean : `${clean.slice(0, allowed)}…[${clean.length - allowed} more]`;
}

interface ErrorLike {
  name?: unknown;
  message?: unknown;
  code?: unknown;
  stack?: unknown;
  cause?: unknown;
  errors?: unknown;
}

function isErrorLike(value: unknown): value is Error & ErrorLike {
  return value instanceof Error;
}

/** The error's message, or for an AggregateError (a connect to several addresses) its errors' messages. */
function messageOf(err: ErrorLike): string {
  const own = typeof err.message === 'string' ? err.message : '';
  if (own !== '' || !Array.isArray(err.errors)) return own;
  return (err.errors as unknown[])
    .slice(0, MAX_CAUSES)
    .map((e) => (isErrorLike(e) ? messageOf(e) : String(e)))
    .join('; ');
}

function errorChain(err: Error & ErrorLike): Array<Error & ErrorLike> {
  const chain = [err];
  for (let cause = err.cause; isErrorLike(cause) && chain.length <= MAX_CAUSES; cause = cause.cause) {
    if (chain.includes(cause)) break;
    chain.push(cause);
  }
  return chain;
}

/**
 * The error's code, or the one of the driver's error it wraps: a failed query comes as a DBError (db-errors) whose
 * SQLSTATE is on `nativeError`.
 */
function codeOf(err: ErrorLike & { nativeError?: unknown }): string | number | undefined {
  if (typeof err.code === 'string' || typeof err.code === 'number') return err.code;
  const inner = err.nativeError;
  if (typeof inner !== 'object' || inner === null) return undefined;
  const code = (inner as ErrorLike).code;
  return typeof code === 'string' || typeof code === 'number' ? code : undefined;
}

function serializeErrorWithin(err: Error & ErrorLike, budget: Budget): LoggedError {
  const chain = errorChain(err);
  const type = typeof err.name === 'string' && err.name !== 'Error' ? err.name : err.constructor.name;
  const message = chain
    .map((e, i) => (i === 0 ? messageOf(e) : `caused by ${String(e.name)}: ${messageOf(e)}`))
    .join('; ');
  const logged: LoggedError = { type, message: cut(message, MAX_STRING, budget) };
  const code = codeOf(err);
  if (code !== undefined) logged.code = code;
  const stack = chain
    .map((e) => (typeof e.stack === 'string' ? e.stack : ''))
    .filter((s) => s !== '')
    .join('\ncaused by: ');
  if (stack !== '') logged.stack = cut(stack, MAX_STACK, budget);
  return logged;
}

/** An error as it may be logged: `{type, message, code, stack}`, causes folded into message and stack. */
export function serializeError(err: unknown): unknown {
  return isErrorLike(err) ? serializeErrorWithin(err, { left: LINE_BUDGET }) : safeLogValue(err);
}

function looksLikeDriverObject(value: object): boolean {
  return DRIVER_KEYS.some((key) => key in value);
}

function safeWithin(value: unknown, depth: number, budget: Budget, seen: WeakSet<object>): unknown {
  if (typeof value === 'string') return cut(value, MAX_STRING, budget);
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'function' || typeof value === 'symbol') return `[${typeof value}]`;
  if (value === null || typeof value !== 'object') {
    budget.left -= 8;
    return value;
  }
  if (isErrorLike(value)) return serializeErrorWithin(value, budget);
  if (value instanceof Date) return value;
  if (value instanceof EventEmitter || looksLikeDriverObject(value)) return `[${value.constructor.name}]`;
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return `[${value.byteLength} bytes]`;
  if (seen.has(value)) return '[circular]';
  if (depth >= MAX_DEPTH || budget.left <= 0) return Array.isArray(value) ? '[Array]' : '[Object]';
  seen.add(value);
  if (Array.isArray(value)) {
    const items = value.slice(0, MAX_ITEMS).map((item) => safeWithin(item, depth + 1, budget, seen));
    if (value.length > MAX_ITEMS) items.push(`…[${value.length - MAX_ITEMS} more]`);
    return items;
  }
  const out: Record<string, unknown> = {};
  const keys = Object.keys(value);
  for (const key of keys.slice(0, MAX_KEYS)) {
    budget.left -= key.length + 4;
    const child = (value as Record<string, unknown>)[key];
    // Keys are scrubbed as values are: a parsed query string is keyed by whatever the client sent (`/x?<token>`).
    out[scrub(key)] =
      isSecretName(key) && !PLACEHOLDERS.has(child)
        ? '[redacted]'
        : safeWithin(child, depth + 1, budget, seen);
  }
  if (keys.length > MAX_KEYS) out['…'] = `${keys.length - MAX_KEYS} more keys`;
  return out;
}

/** Any value as it may be logged (see the top of this file). */
export function safeLogValue(value: unknown): unknown {
  return safeWithin(value, 0, { left: LINE_BUDGET }, new WeakSet());
}

/**
 * pino's `formatters.log`: the merge object of one line, made safe under one budget, `err` first so the cause
 * of the line is the last thing to be cut. `req` and `res` are left to pino-http's serializers.
 */
export function safeLogObject(object: Record<string, unknown>): Record<string, unknown> {
  const budget: Budget = { left: LINE_BUDGET };
  const seen = new WeakSet<object>();
  const out: Record<string, unknown> = {};
  const keys = Object.keys(object).sort((a, b) => Number(b === 'err') - Number(a === 'err'));
  for (const key of keys) {
    const value = object[key];
    if (key === 'req' || key === 'res') out[key] = value;
    else if (isSecretName(key) && !PLACEHOLDERS.has(value)) out[key] = '[redacted]';
    else out[key] = safeWithin(value, 0, budget, seen);
  }
  return out;
}

/** Whether `text` comes out of the log's checks as it went in (no token's shape, no secret parameter, no password). */
export function logsAsIs(text: string): boolean {
  return scrub(text) === text;
}

/** A log message (or interpolation argument) cut to a length that keeps the line within its bound. */
export function safeMessage(message: string): string {
  return cut(message, MAX_MESSAGE, { left: MAX_MESSAGE });
}
