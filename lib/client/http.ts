import { XFChatError, fromErrorBody, isErrorBody } from './errors.js';

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
 * A JSON-over-fetch transport. `baseUrl` may be empty in a browser page served by XFChat (same origin).
 * Errors come back as XFChatError with the contract's code; a network failure is NETWORK_ERROR (status 0).
 */
export function createHttp(baseUrl: string, session: Session, fetchImpl: typeof fetch): HttpRequest {
  const root = baseUrl.replace(/\/+$/, '');
  return async <T>(method: HttpMethod, path: string, options: RequestOptions = {}): Promise<T> => {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    if (session.token !== undefined && options.anonymous !== true)
      headers.authorization = `Bearer ${session.token}`;
    let response: Response;
    try {
      response = await fetchImpl(`${root}${withQuery(path, options.query)}`, {
        method,
        headers,
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
      });
    } catch (err) {
      throw new XFChatError('NETWORK_ERROR', `${method} ${path} failed: the server cannot be reached.`, {
        cause: err,
      });
    }
    const text = await response.text();
    let parsed: unknown;
    try {
      parsed = text === '' ? undefined : JSON.parse(text);
    } catch (err) {
      throw new XFChatError('BAD_RESPONSE', `${method} ${path} answered ${response.status} without JSON.`, {
        status: response.status,
        cause: err,
      });
    }
    if (response.ok) return parsed as T;
    const envelope = (parsed as { error?: unknown } | undefined)?.error;
    if (isErrorBody(envelope)) {
      throw fromErrorBody(envelope, { status: response.status, retryAfter: retryAfter(response.headers) });
    }
    throw new XFChatError('BAD_RESPONSE', `${method} ${path} answered ${response.status}.`, {
      status: response.status,
    });
  };
}
