import { XFChatError, fromErrorBody, isErrorBody } from './errors.js';
import { closedError, linkedAbort, timerMs, untilAborted, type Closing } from './retry.js';

/** The mutable auth state shared by the REST helpers, the token keeper and the realtime connection. */
export interface Session {
  /** The access token. */
  token: string | undefined;
  /** The session's current refresh token (single-use; replaced at every refresh). */
  refreshToken?: string | undefined;
  /** When `token` expires, ms since the epoch by this machine's clock (from `expiresIn`). */
  expiresAt?: number | undefined;
}

/**
 * The user id (`sub`) inside a token, read without verifying it (the server does that): enough to know who "me"
 * is for calls like leaving a conversation. Undefined if the token is not a readable JWT.
 */
export function tokenSubject(token: string | undefined): string | undefined {
  const payload = token?.split('.')[1];
  if (payload === undefined) return undefined;
  try {
    const json = atob(payload.replace(/-/g, '+').replace(/_/g, '/'));
    const sub = (JSON.parse(json) as { sub?: unknown }).sub;
    return typeof sub === 'string' ? sub : undefined;
  } catch {
    return undefined; // not a JWT: no subject, the server will answer UNAUTHORIZED anyway
  }
}

export type Query = Record<string, string | number | undefined>;

export interface RequestOptions {
  body?: unknown;
  query?: Query;
  /** Send no bearer token (signup, login, refresh). */
  anonymous?: boolean;
  /** Aborts the request (also while its answer is on its way): it rejects with CLIENT_CLOSED. */
  signal?: AbortSignal;
}

export interface HttpLimits {
  /** How long a request may take, answer body included, before it fails with TIMEOUT (retryable). */
  timeoutMs: number;
  /** The client's close(): every request on its way rejects with CLIENT_CLOSED. */
  closing: Closing;
}

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/**
 * The kind of one top-level field of an answer: `object` (a JSON object), `objects` (an array of JSON objects),
 * `string`, `string|null`, `number` or `boolean`.
 */
export type FieldKind = 'object' | 'objects' | 'string' | 'string|null' | 'number' | 'boolean';

/**
 * What a call reads of a 2xx answer: every field of `T`, with its kind. Checked before the answer is handed on, so
 * that an answer that is not the contract's (an empty 200 or another JSON from something in between) fails as
 * BAD_RESPONSE there rather than as a TypeError wherever the SDK or the application reads it. Light on purpose: the
 * envelope's fields and their kinds, not every nested field (XFChat's own answers are its shapes; this catches
 * answers that are not XFChat's), in a few lines rather than a schema library in the bundle.
 */
export type AnswerShape<T> = { readonly [K in keyof T]-?: FieldKind };

/**
 * Sends one JSON request and throws XFChatError for any failure. With `answer`, resolves with the 2xx answer once
 * it is a JSON object with those fields (BAD_RESPONSE otherwise); without, the call reads nothing of it (a 204).
 */
export interface HttpRequest {
  <T extends object>(
    method: HttpMethod,
    path: string,
    options: RequestOptions & { answer: AnswerShape<T> },
  ): Promise<T>;
  (method: HttpMethod, path: string, options?: RequestOptions): Promise<void>;
}

/** Options of any request, with or without an answer to read: what a wrapper of {@link HttpRequest} passes on. */
export type AnyRequestOptions = RequestOptions & { answer?: Readonly<Record<string, FieldKind>> };

/** The one signature behind {@link HttpRequest}'s two, for the functions that implement or wrap it. */
export type UntypedRequest = (
  method: HttpMethod,
  path: string,
  options?: AnyRequestOptions,
) => Promise<unknown>;

/**
 * An {@link UntypedRequest} as an {@link HttpRequest}: it resolves with an answer only after checking it against the
 * caller's `answer`, which is what makes the answer a `T`.
 */
export function typedRequest(request: UntypedRequest): HttpRequest {
  return request as HttpRequest;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function hasKind(value: unknown, kind: FieldKind): boolean {
  switch (kind) {
    case 'object':
      return isObject(value);
    case 'objects':
      return Array.isArray(value) && value.every(isObject);
    case 'string|null':
      return value === null || typeof value === 'string';
    default:
      return typeof value === kind;
  }
}

/** What keeps `body` from being the answer `shape` describes, or undefined if nothing does. */
function shapeProblem(body: unknown, shape: Readonly<Record<string, FieldKind>>): string | undefined {
  if (body === undefined) return 'an empty body';
  if (!isObject(body)) return 'JSON that is not an object';
  for (const [field, kind] of Object.entries(shape)) {
    if (!hasKind(body[field], kind))
      return `"${field}" that is not ${kind === 'objects' ? 'an array of objects' : kind}`;
  }
  return undefined;
}

function withQuery(path: string, query: Query | undefined): string {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined) params.set(key, String(value));
  }
  const text = params.toString();
  return text === '' ? path : `${path}?${text}`;
}

/**
 * Seconds of a Retry-After header. XFChat sends delta-seconds; a proxy or load balancer in front of it may send an
 * HTTP-date (RFC 9110), counted from now: one that has passed (a stale maintenance page, a clock behind) is no
 * hint, rather than a wait of 0 that a caller would retry at once, again and again.
 */
function retryAfter(headers: Headers, now = Date.now()): number | undefined {
  const value = headers.get('retry-after')?.trim();
  if (value === undefined || value === '') return undefined;
  if (/^\d+$/.test(value)) return Number(value);
  const at = Date.parse(value);
  return Number.isNaN(at) || at <= now ? undefined : Math.ceil((at - now) / 1000);
}

/**
 * A 5xx from something between the client and XFChat (a reverse proxy or load balancer: nginx's HTML 502 while a
 * node restarts, a 503 with no healthy node, a 504 gateway timeout). XFChat itself always answers with the
 * contract's envelope; 500 and 501 without it are not a gateway's and stay BAD_RESPONSE.
 */
function isGatewayStatus(status: number): boolean {
  return status >= 502 && status <= 599;
}

/**
 * A JSON-over-fetch transport. `baseUrl` may be empty in a browser page served by XFChat (same origin).
 * Errors come back as XFChatError with the contract's code; a network failure, or a proxy's 5xx without the
 * contract's envelope, is NETWORK_ERROR (retryable); no complete answer within `limits.timeoutMs` is TIMEOUT
 * (retryable); close() and the request's `signal` abort it with CLIENT_CLOSED (or the signal's own XFChatError); any
 * other answer that is not the contract's, a 2xx that is not the answer the call reads included, is BAD_RESPONSE.
 */
export function createHttp(
  baseUrl: string,
  session: Session,
  fetchImpl: typeof fetch,
  limits: HttpLimits,
): HttpRequest {
  const root = baseUrl.replace(/\/+$/, '');
  return typedRequest(async (method, path, options = {}) => {
    if (limits.closing.closed) throw closedError();
    const headers: Record<string, string> = { accept: 'application/json' };
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    if (session.token !== undefined && options.anonymous !== true)
      headers.authorization = `Bearer ${session.token}`;
    const link = linkedAbort(limits.closing, options.signal);
    const timer = setTimeout(
      () =>
        link.abort(
          new XFChatError('TIMEOUT', `${method} ${path} got no answer within ${limits.timeoutMs} ms.`),
        ),
      timerMs(limits.timeoutMs),
    );
    let response: Response;
    let text: string;
    try {
      try {
        response = await untilAborted(
          fetchImpl(`${root}${withQuery(path, options.query)}`, {
            method,
            headers,
            body: options.body === undefined ? undefined : JSON.stringify(options.body),
            signal: link.signal,
          }),
          link.signal,
        );
      } catch (err) {
        if (link.signal.aborted) throw link.signal.reason as XFChatError;
        throw new XFChatError('NETWORK_ERROR', `${method} ${path} failed: the server cannot be reached.`, {
          cause: err,
        });
      }
      try {
        text = await untilAborted(response.text(), link.signal);
      } catch (err) {
        if (link.signal.aborted) throw link.signal.reason as XFChatError;
        throw new XFChatError('NETWORK_ERROR', `${method} ${path}: the answer was cut off.`, { cause: err });
      }
    } finally {
      clearTimeout(timer);
      link.release();
    }
    let parsed: unknown;
    let parseError: unknown;
    try {
      parsed = text === '' ? undefined : JSON.parse(text);
    } catch (err) {
      parseError = err;
    }
    if (response.ok && parseError === undefined) {
      // A call that reads nothing of its answer (a 204) takes any 2xx with JSON or nothing.
      if (options.answer === undefined) return undefined;
      const problem = shapeProblem(parsed, options.answer);
      if (problem === undefined) return parsed;
      throw new XFChatError(
        'BAD_RESPONSE',
        `${method} ${path} answered ${response.status} with ${problem}, not the contract's answer.`,
        { status: response.status },
      );
    }
    const envelope = (parsed as { error?: unknown } | undefined)?.error;
    if (!response.ok && isErrorBody(envelope)) {
      throw fromErrorBody(envelope, { status: response.status, retryAfter: retryAfter(response.headers) });
    }
    if (isGatewayStatus(response.status)) {
      throw new XFChatError(
        'NETWORK_ERROR',
        `${method} ${path} answered ${response.status} from something in between (a proxy or gateway), not XFChat.`,
        { status: response.status, retryAfter: retryAfter(response.headers) },
      );
    }
    throw new XFChatError(
      'BAD_RESPONSE',
      parseError === undefined
        ? `${method} ${path} answered ${response.status}.`
        : `${method} ${path} answered ${response.status} without JSON.`,
      parseError === undefined ? { status: response.status } : { status: response.status, cause: parseError },
    );
  });
}
