import { XFChatError, fromErrorBody, isErrorBody } from './errors.js';
import { closedError, linkedAbort, type Closing } from './retry.js';

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

/** Sends one JSON request; resolves with the parsed body (undefined for 204), throws XFChatError otherwise. */
export type HttpRequest = <T>(method: HttpMethod, path: string, options?: RequestOptions) => Promise<T>;

function withQuery(path: string, query: Query | undefined): string {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined) params.set(key, String(value));
  }
  const text = params.toString();
  return text === '' ? path : `${path}?${text}`;
}

/** Seconds of a Retry-After header (only the delta-seconds form is used by XFChat). */
function retryAfter(headers: Headers): number | undefined {
  const value = headers.get('retry-after');
  return value !== null && /^\d+$/.test(value) ? Number(value) : undefined;
}

/**
 * Settles like `work`, or rejects with the signal's reason as soon as it aborts, even if `work` (an application's
 * own `fetch` option, say) does not honour the signal.
 */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as XFChatError);
    if (signal.aborted) {
      onAbort();
      return;
    }
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
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
 * (retryable); close() and the request's `signal` abort it with CLIENT_CLOSED.
 */
export function createHttp(
  baseUrl: string,
  session: Session,
  fetchImpl: typeof fetch,
  limits: HttpLimits,
): HttpRequest {
  const root = baseUrl.replace(/\/+$/, '');
  return async <T>(method: HttpMethod, path: string, options: RequestOptions = {}): Promise<T> => {
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
      limits.timeoutMs,
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
    if (response.ok && parseError === undefined) return parsed as T;
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
  };
}
