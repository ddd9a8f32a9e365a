import type {
  AccountUser,
  AuthResponse,
  AuthTokens,
  PublicConversation,
  PublicFriendRequest,
  PublicMessage,
  ReadEvent,
  SessionEndReason,
  TypingEvent,
  ConversationRef,
  PublicUser,
} from '../protocol/index.js';
import {
  BlocksApi,
  ConversationsApi,
  FriendsApi,
  MessagesApi,
  SessionsApi,
  USER_ANSWER,
  UsersApi,
  type ListLimits,
} from './api.js';
import { checkPayload, conversationKey, localInvalid, payloadProblem } from './checks.js';
import { Connection, type ConnectionState } from './connection.js';
import { callSafely, Emitter } from './emitter.js';
import { XFChatError, isRetryable, toXFChatError } from './errors.js';
import {
  createHttp,
  typedRequest,
  type AnswerShape,
  type HttpRequest,
  type Session,
  type UntypedRequest,
} from './http.js';
import {
  backoffDelay,
  Closing,
  closedError,
  DEFAULT_BACKOFF,
  linkedAbort,
  MAX_TIMER_MS,
  newClientMsgId,
  retryAfterMs,
  timerMs,
  untilAborted,
} from './retry.js';
import { readAllChanges, retryChange, type ChangeOptions, type Changes } from './changes.js';
import { sendWithRetry, type SendOptions } from './send.js';
import { SendQueue } from './sendQueue.js';
import { CatchUpPace } from './pace.js';
import { Subscription, type SubscribeOptions } from './subscription.js';
import { TOKENS_ANSWER, TokenKeeper } from './tokens.js';

export interface XFChatClientOptions {
  /**
   * The server, an absolute http(s) URL such as `http://127.0.0.1:3000`, without credentials, query or fragment
   * (anything else throws VALIDATION_FAILED). Omit it only in a page served by XFChat itself (same origin): outside
   * a page served over http(s) (Node.js, say) there is no origin to fall back on, and leaving it out throws
   * VALIDATION_FAILED.
   */
  baseUrl?: string | undefined;
  /**
   * An access token from an earlier signup/login. Without a refresh token it works until it expires; prefer
   * {@link XFChatClient.resume} with a stored refresh token.
   */
  token?: string | undefined;
  /**
   * Called with every new pair of tokens (signup, login, resume, and each refresh): persist
   * `tokens.refreshToken` here to resume after a reload. The same as the `tokens` event.
   */
  onTokens?: ((tokens: AuthTokens) => void) | undefined;
  /** Socket.IO transports. @default ['websocket'] */
  transports?: Array<'websocket' | 'polling'> | undefined;
  /** How long a realtime request waits for its ack before it counts as lost (and a send retries). @default 10000 */
  ackTimeoutMs?: number | undefined;
  /** First reconnect/retry delay. @default 250 */
  retryBaseMs?: number | undefined;
  /** Longest reconnect/retry delay. @default 5000 */
  retryMaxMs?: number | undefined;
  /** A fetch implementation. @default globalThis.fetch */
  fetch?: typeof fetch | undefined;
  /**
   * How long a REST request may take, its answer included, before it fails with TIMEOUT (which the calls that retry
   * treat like a network error). Like the other times here: a positive number of ms (VALIDATION_FAILED otherwise),
   * and one longer than a timer waits (2^31-1 ms), `Infinity` included, is taken as that longest wait. @default 30000
   */
  requestTimeoutMs?: number | undefined;
}

/**
 * How long a refused refresh waits for the live socket to say why (`session:ended`): the server refuses a reused
 * refresh token with the same 401 as an expired one, and tells the session's sockets the reason a moment later.
 */
const END_REASON_WAIT_MS = 1500;

/** The origin of the page the SDK runs in, if it is an http(s) one; undefined outside a page (Node.js). */
function pageOrigin(): string | undefined {
  const origin = (globalThis as { location?: { origin?: unknown } }).location?.origin;
  return typeof origin === 'string' && /^https?:\/\//i.test(origin) ? origin : undefined;
}

/**
 * The `baseUrl` option, checked once: an absolute http(s) URL without credentials, query or fragment, or absent
 * (undefined or empty) for the page's own origin. Anything else would only fail at the first call (fetch refuses a
 * URL with credentials; a query or a fragment would swallow every request's path), as a retryable NETWORK_ERROR or
 * a wrong answer, and changes would retry it for ever. So would an absent one outside a page served over http(s)
 * (Node.js, say, with `baseUrl: process.env.XFCHAT_URL` unset): no origin to fall back on, connect() would wait for
 * ever and changes retry for ever.
 */
function checkedBaseUrl(baseUrl: string | undefined): string {
  if (baseUrl === undefined || baseUrl === '') {
    if (pageOrigin() !== undefined) return '';
    throw new XFChatError(
      'VALIDATION_FAILED',
      'baseUrl is required outside a page served by XFChat: the server, such as http://127.0.0.1:3000.',
      { status: 0, details: { baseUrl: 'is required outside a page served by XFChat' } },
    );
  }
  let url: URL | undefined;
  try {
    url = new URL(baseUrl);
  } catch {
    // not an absolute URL: refused below
  }
  let problem: string | undefined;
  if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:'))
    problem = 'must be an absolute http:// or https:// URL';
  else if (url.username !== '' || url.password !== '') problem = 'must not hold a user name or password';
  else if (url.search !== '' || baseUrl.includes('?')) problem = 'must not have a query (?...)';
  else if (url.hash !== '' || baseUrl.includes('#')) problem = 'must not have a fragment (#...)';
  if (problem === undefined) return baseUrl;
  throw new XFChatError(
    'VALIDATION_FAILED',
    `baseUrl must be an http:// or https:// URL without credentials, query or fragment, such as http://127.0.0.1:3000; got ${JSON.stringify(baseUrl)}.`,
    { status: 0, details: { baseUrl: problem } },
  );
}

/**
 * A time option in ms: its default when absent; a positive number, a longer one than a timer waits (Infinity, for
 * "no limit", included) taken as that longest wait (about 24.9 days); anything else (0, a negative number, NaN, not
 * a number) throws VALIDATION_FAILED.
 */
function checkedMs(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value === 'number' && value > 0) return Math.min(value, MAX_TIMER_MS);
  throw new XFChatError(
    'VALIDATION_FAILED',
    `${name} must be a positive number of milliseconds; got ${String(value)}.`,
    {
      status: 0,
      details: { [name]: 'must be a positive number' },
    },
  );
}

/** What signup and login resolve with: the user (an account that exists: its username is there) and the tokens. */
export interface AuthResult extends AuthResponse {
  user: AccountUser;
}

const AUTH_ANSWER: AnswerShape<AuthResult> = { ...TOKENS_ANSWER, ...USER_ANSWER };

/** Payload of the `sessionEnded` event. */
export interface SessionEnded {
  reason: SessionEndReason;
}

export interface SignupInput {
  username: string;
  password: string;
  displayName?: string | undefined;
}

/** Events of {@link XFChatClient.on}: the server's pushes plus the connection's state. */
export interface XFChatClientEvents {
  state: ConnectionState;
  /** The token was refused on (re)connect and could not be refreshed. Log in again, then connect(). */
  unauthorized: XFChatError;
  /**
   * This session is over and the client has forgotten its tokens: show the login screen. `reason` says why:
   * `logged_out` (from another device), `revoked`, `password_changed`, `expired`, `reused` (the refresh token
   * was used twice: possibly stolen) or `deleted`. Not fired for this client's own logout(), logoutAll() or
   * deleteAccount(), except for a deleteAccount() that rejects after the session ended all the same.
   */
  sessionEnded: SessionEnded;
  /** New tokens (the same as the `onTokens` option): persist `refreshToken`. */
  tokens: AuthTokens;
  /** A background refresh failed (network, server); it is retried with backoff. */
  refreshError: XFChatError;
  /**
   * The server refused a (re)connection for a reason other than the token, with its code and message: `RATE_LIMITED`
   * (too many sockets of this user, `MAX_SOCKETS_PER_USER`, or from this address), `DB_UNAVAILABLE`... Fired at each
   * refused try; the state stays `connecting` or `reconnecting`, and the SDK keeps trying with backoff.
   */
  connectRefused: XFChatError;
  /** A friend's or co-participant's profile changed (or the account was deleted). */
  'user:updated': PublicUser;
  typing: TypingEvent;
  'conversation:read': ReadEvent;
  'friend:request': PublicFriendRequest;
  'friend:accepted': PublicFriendRequest;
  'conversation:added': PublicConversation;
  /** A conversation of mine was renamed or its participants changed. */
  'conversation:updated': PublicConversation;
  'conversation:removed': ConversationRef;
}

/**
 * The XFChat client: REST helpers, one realtime connection, ordered exactly-once subscriptions and
 * exactly-once sends. Works in Node.js 20+ and in browsers.
 */
export class XFChatClient {
  readonly users: UsersApi;
  readonly friends: FriendsApi;
  readonly blocks: BlocksApi;
  readonly conversations: ConversationsApi;
  readonly messages: MessagesApi;
  /** My signed-in devices: list and revoke. */
  readonly sessions: SessionsApi;
  private readonly http: HttpRequest;
  private readonly keeper: TokenKeeper;
  /**
   * Set during this client's own logout or account deletion, so the server's `session:ended` (and the socket
   * refused after it) is not reported as news.
   */
  private leaving = false;
  /**
   * The reason of a session end heard (and kept quiet) during this client's own logout or account deletion: told
   * after all when the deletion fails, as the application then still takes the session for a live one.
   */
  private endedWhileLeaving: SessionEndReason | undefined;
  private readonly closing = new Closing();
  /**
   * The end of the session held now: closed (with UNAUTHORIZED) when it ends here, and replaced by a fresh one for the
   * next. What retries or reads page by page (changes, lists, a REST call's retry after a refresh) stops at the end
   * of the session it started in, so that none of it goes out under the next session on this client.
   */
  private sessionEnd = new Closing();
  private readonly session: Session;
  private readonly connection: Connection;
  private readonly events = new Emitter<XFChatClientEvents>();
  private readonly subscriptions = new Map<string, Subscription>();
  private readonly sends = new SendQueue();
  private readonly backoff;
  /** The pace of the subscriptions' catch-up reads, which take turns (lib/client/pace.ts). */
  private readonly pace = new CatchUpPace();

  constructor(options: XFChatClientOptions = {}) {
    this.session = { token: options.token };
    this.backoff = {
      baseMs: checkedMs('retryBaseMs', options.retryBaseMs, DEFAULT_BACKOFF.baseMs),
      maxMs: checkedMs('retryMaxMs', options.retryMaxMs, DEFAULT_BACKOFF.maxMs),
    };
    const ackTimeoutMs = checkedMs('ackTimeoutMs', options.ackTimeoutMs, 10_000);
    const requestTimeoutMs = checkedMs('requestTimeoutMs', options.requestTimeoutMs, 30_000);
    const baseUrl = checkedBaseUrl(options.baseUrl);
    const plainHttp = createHttp(baseUrl, this.session, options.fetch ?? globalThis.fetch.bind(globalThis), {
      timeoutMs: requestTimeoutMs,
      closing: this.closing,
    });
    this.keeper = new TokenKeeper({
      session: this.session,
      http: plainHttp,
      backoff: this.backoff,
      onTokens: (tokens) => this.tokensChanged(tokens, options.onTokens),
      onEnded: (reason) => this.sessionEnded(reason),
      onRefreshError: (error) => this.events.emit('refreshError', error),
      awaitEndReason: () => this.awaitEndReason(),
    });
    this.http = this.withRefresh(plainHttp);
    const lists: ListLimits = { closing: this.closing, sessionEnd: () => this.sessionEnd };
    this.users = new UsersApi(this.http);
    this.friends = new FriendsApi(this.http, lists);
    this.blocks = new BlocksApi(this.http, lists);
    this.conversations = new ConversationsApi(this.http, this.session, lists);
    this.messages = new MessagesApi(this.http);
    this.sessions = new SessionsApi(this.http);
    this.connection = new Connection({
      url: baseUrl === '' ? undefined : baseUrl,
      session: this.session,
      transports: options.transports ?? ['websocket'],
      ackTimeoutMs,
      backoff: this.backoff,
      renewToken: () => (this.keeper.canRefresh ? this.keeper.refresh() : Promise.resolve(false)),
    });
    this.wireEvents();
  }

  /** The bearer token in use, if any. */
  get token(): string | undefined {
    return this.session.token;
  }

  set token(token: string | undefined) {
    this.session.token = token;
  }

  /** The session's current refresh token (it changes at every refresh: see the `tokens` event). */
  get refreshToken(): string | undefined {
    return this.session.refreshToken;
  }

  /** The realtime connection's state, for UIs (see the `state` event). */
  get state(): ConnectionState {
    return this.connection.state;
  }

  /**
   * Creates an account, starts its first session and keeps its tokens. A session this client held is over here
   * once it succeeds: see {@link login}.
   */
  async signup(input: SignupInput): Promise<AuthResult> {
    const options = { body: input, anonymous: true, answer: AUTH_ANSWER };
    const result = await this.http<AuthResult>('POST', '/auth/signup', options);
    this.endHeldSession();
    this.keeper.start(result);
    return result;
  }

  /**
   * Logs in (a new session: one device) and keeps its tokens. A session this client held is over here once the
   * login succeeds (a failed one leaves it as it was), as at a logout that does not tell the server: its sends not
   * yet acknowledged and its retrying changes reject with UNAUTHORIZED, its subscriptions end and the connection
   * closes (call connect() again), so nothing made under it goes out under the new one.
   */
  async login(username: string, password: string): Promise<AuthResult> {
    const options = { body: { username, password }, anonymous: true, answer: AUTH_ANSWER };
    const result = await this.http<AuthResult>('POST', '/auth/login', options);
    this.endHeldSession();
    this.keeper.start(result);
    return result;
  }

  /**
   * Resumes a session from a stored refresh token (e.g. after a page reload): trades it for fresh tokens and
   * answers the user. Rejects with UNAUTHORIZED when the session is over (then log in again). Any other failure
   * may be retried with the same token: one whose refresh failed left nothing behind (no token, no retry), and one
   * whose refresh went through (then `GET /auth/me` failed) keeps the new session, which the retry picks up
   * instead of presenting the spent token again. Another session this client held is over here at once, as at a
   * login.
   */
  async resume(refreshToken: string): Promise<AccountUser> {
    if (!this.keeper.continues(refreshToken)) this.endHeldSession();
    if (!(await this.keeper.resume(refreshToken))) {
      throw new XFChatError('UNAUTHORIZED', 'The session has ended; log in again.');
    }
    return this.me();
  }

  /** The user the token belongs to. */
  async me(): Promise<AccountUser> {
    return (await this.http<{ user: AccountUser }>('GET', '/auth/me', { answer: USER_ANSWER })).user;
  }

  /**
   * Ends this session (this device only) on every node, and forgets it here in any case: tokens, subscriptions
   * and connection, and every send not yet acknowledged rejects with UNAUTHORIZED. Rejects if the server could
   * not be told (the session then stays valid there until it expires).
   */
  async logout(): Promise<void> {
    await this.leave(() => this.http('POST', '/auth/logout'));
  }

  /** Ends every session of this user (every device); forgets this one here in any case, like logout(). */
  async logoutAll(): Promise<void> {
    await this.leave(() => this.http('POST', '/auth/logout-all'));
  }

  /**
   * Changes the password (INVALID_CREDENTIALS if `currentPassword` is wrong); every other session of the user
   * ends, this one stays signed in.
   */
  async changePassword(currentPassword: string, newPassword: string): Promise<void> {
    await this.http('POST', '/auth/password', { body: { currentPassword, newPassword } });
  }

  /** Changes my display name; friends and co-participants get `user:updated`. */
  async updateProfile(changes: { displayName: string }): Promise<AccountUser> {
    const options = { body: changes, answer: USER_ANSWER };
    return (await this.http<{ user: AccountUser }>('PATCH', '/users/me', options)).user;
  }

  /**
   * Deletes my account for good (INVALID_CREDENTIALS if `password` is wrong), then forgets the session like
   * logout(). A refused or failed deletion leaves the session as it was, unless the server ended it meanwhile (a
   * deletion done whose answer was lost, heard on the live socket): then `sessionEnded` fires before the rejection.
   */
  async deleteAccount(password: string): Promise<void> {
    await this.leave(() => this.http('DELETE', '/users/me', { body: { password } }), false);
  }

  /**
   * Opens the realtime connection (idempotent). Resolves once connected; rejects with UNAUTHORIZED if the
   * token is refused. After that it reconnects by itself and re-subscribes after every reconnection.
   */
  connect(): Promise<void> {
    return this.connection.connect();
  }

  /** Listens to a server push or a connection event; returns a function that removes the listener. */
  on<K extends keyof XFChatClientEvents>(
    event: K,
    listener: (payload: XFChatClientEvents[K]) => void,
  ): () => void {
    return this.events.on(event, listener);
  }

  /**
   * Delivers a conversation's messages to `onMessage` in seq order, each exactly once, catching up after
   * gaps and reconnections, and their later changes (edits, deletes, reactions) to `options.onUpdate`, each
   * state once and never an older one, catching up after reconnections with the changes feed. One
   * subscription per conversation: subscribing again throws an XFChatError with code ALREADY_SUBSCRIBED until
   * the first is unsubscribed; after close(), CLIENT_CLOSED. A conversation id that is not a UUID, or an afterSeq or
   * limit the server would refuse, throws VALIDATION_FAILED (status 0). The id is taken in any case (the server's
   * ids are lower case, and so is the subscription's). Starts as soon as the connection is up.
   */
  subscribe(
    conversationId: string,
    onMessage: (message: PublicMessage) => void,
    options: SubscribeOptions = {},
  ): Subscription {
    if (this.closing.closed) throw closedError();
    if (typeof onMessage !== 'function')
      throw new XFChatError('VALIDATION_FAILED', 'subscribe() needs an onMessage function.', {
        status: 0,
        details: { onMessage: 'must be a function' },
      });
    const key = conversationKey(conversationId);
    // What every (re)subscription sends, checked once here: a conversation id that is no UUID, a bad afterSeq or
    // limit would be refused at each one (one past SOCKET_MAX_BYTES would close the connection each time).
    const request: Record<string, unknown> = { conversationId: key };
    if (options.afterSeq !== undefined) request.afterSeq = options.afterSeq;
    if (options.limit !== undefined) request.limit = options.limit;
    checkPayload('conversation:subscribe', request);
    // Sent only at a catch-up after a reconnection, as the changes feed's `since`: refused then, far from here.
    const { sinceVersion } = options;
    if (sinceVersion !== undefined && !(Number.isSafeInteger(sinceVersion) && sinceVersion >= 0))
      throw localInvalid({ sinceVersion: 'must be a whole number from 0' });
    if (this.subscriptions.has(key))
      throw new XFChatError('ALREADY_SUBSCRIBED', `Already subscribed to conversation ${key}.`);
    const subscription: Subscription = new Subscription(key, onMessage, options, {
      connection: this.connection,
      messages: this.messages,
      backoff: this.backoff,
      pace: this.pace,
      onEnded: () => {
        if (this.subscriptions.get(key) === subscription) this.subscriptions.delete(key);
      },
      resubscribed: () => this.subscriptions.has(key),
    });
    this.subscriptions.set(key, subscription);
    return subscription;
  }

  /** The active subscription of a conversation (its id in any case), if any. */
  subscription(conversationId: string): Subscription | undefined {
    return this.subscriptions.get(conversationKey(conversationId));
  }

  /**
   * Sends a message exactly once: it retries with the same clientMsgId (across timeouts, drops and
   * reconnections) until the server acknowledges, and resolves with the stored message. `replyToSeq` makes it
   * an answer to an earlier message. Sends to one conversation are stored in call order: each waits until the
   * previous one is acknowledged or has failed. Rejects at once with NOT_CONNECTED unless connect() was called
   * (it waits while connecting or reconnecting), on final errors (VALIDATION_FAILED, NOT_FOUND, FORBIDDEN, ...),
   * or with CLIENT_CLOSED. A send the server would refuse as it stands (a body that is not 1-4000 characters, a
   * conversation id that is not a UUID, ...) rejects with VALIDATION_FAILED (status 0) at once, nothing sent.
   */
  send(conversationId: string, body: string, options: SendOptions = {}): Promise<PublicMessage> {
    if (this.closing.closed) return Promise.reject(closedError());
    const key = conversationKey(conversationId);
    const clientMsgId = options.clientMsgId ?? newClientMsgId();
    // Refused at once, final, before it waits behind the conversation's other sends: what the server would refuse (a
    // body past 4000 characters, an id that is no UUID...), and what would close the connection unanswered.
    const request: Record<string, unknown> = { conversationId: key, clientMsgId, body };
    if (options.replyToSeq !== undefined) request.replyToSeq = options.replyToSeq;
    const invalid = payloadProblem('message:send', request);
    if (invalid !== undefined) return Promise.reject(invalid);
    if (this.connection.state === 'disconnected')
      return Promise.reject(new XFChatError('NOT_CONNECTED', 'Call connect() before send().'));
    return this.sends.enqueue(
      key,
      (stop) => {
        const deps = { connection: this.connection, backoff: this.backoff, closeSignal: stop };
        return sendWithRetry(deps, key, body, clientMsgId, options);
      },
      options.signal,
    );
  }

  /**
   * Edits my message (`PATCH .../messages/:seq` over REST, retried on transient failures like every change
   * below) and resolves with its new state, which the conversation's subscription also hands to `onUpdate`.
   * FORBIDDEN (not mine), MESSAGE_DELETED, BLOCKED, NOT_FOUND, VALIDATION_FAILED are final.
   */
  async edit(
    conversationId: string,
    seq: number,
    body: string,
    options: ChangeOptions = {},
  ): Promise<PublicMessage> {
    const key = conversationKey(conversationId);
    const message = await this.change((signal) => this.messages.edit(key, seq, body, { signal }), options);
    this.subscriptions.get(conversationKey(message.conversationId))?.handleUpdated(message);
    return message;
  }

  /**
   * Deletes a message: mine, or any in a group I own (`DELETE .../messages/:seq`). Deleting twice is fine.
   * Subscribers (this one included) see the tombstone through `onUpdate`.
   */
  async deleteMessage(conversationId: string, seq: number, options: ChangeOptions = {}): Promise<void> {
    const key = conversationKey(conversationId);
    await this.change((signal) => this.messages.remove(key, seq, { signal }), options);
  }

  /** Adds my reaction (`PUT .../reactions/:emoji`); adding it again changes nothing. */
  async react(
    conversationId: string,
    seq: number,
    emoji: string,
    options: ChangeOptions = {},
  ): Promise<void> {
    const key = conversationKey(conversationId);
    await this.change((signal) => this.messages.react(key, seq, emoji, { signal }), options);
  }

  /** Removes my reaction (`DELETE .../reactions/:emoji`); removing one that is not there changes nothing. */
  async unreact(
    conversationId: string,
    seq: number,
    emoji: string,
    options: ChangeOptions = {},
  ): Promise<void> {
    const key = conversationKey(conversationId);
    await this.change((signal) => this.messages.unreact(key, seq, emoji, { signal }), options);
  }

  /**
   * Every message changed (or created) after version `since`, each once in its current state, read to the end
   * of the feed, and the version to continue from. A subscription does this by itself after a reconnection;
   * this is for apps that sync without one (e.g. on opening a conversation stored earlier). Each page is retried
   * on transient failures like a change.
   */
  changes(conversationId: string, since: number, options: ChangeOptions = {}): Promise<Changes> {
    // Each page is retried like a change (reads are idempotent); RATE_LIMITED waits for Retry-After. Every page is
    // read in the session the call was made in.
    const sessionEnd = this.sessionEnd;
    const key = conversationKey(conversationId);
    return readAllChanges(
      (cursor) =>
        this.change((signal) => this.messages.changes(key, cursor, 200, { signal }), options, sessionEnd),
      since,
    );
  }

  /** Tells the conversation's other subscribers that I am typing (nothing is stored). */
  async typing(conversationId: string): Promise<void> {
    await this.connection.request('typing', { conversationId: conversationKey(conversationId) });
  }

  /**
   * Moves my read marker to `seq`: over the socket when connected (subscribers see it live), else REST. Retried
   * like a change until it gets an answer (a marker only moves forward, so sending it again is harmless): a
   * connection that drops on its way sends it again over REST.
   */
  async markRead(conversationId: string, seq: number, options: ChangeOptions = {}): Promise<void> {
    const key = conversationKey(conversationId);
    // Checked once, whichever way it goes: refused, it is final (VALIDATION_FAILED, status 0), nothing sent.
    checkPayload('conversation:read', { conversationId: key, seq });
    await this.change(async (signal) => {
      if (this.connection.connected) {
        try {
          await this.connection.request('conversation:read', { conversationId: key, seq });
          return;
        } catch (err) {
          const code = toXFChatError(err).code;
          if (code !== 'DISCONNECTED' && code !== 'NOT_CONNECTED' && code !== 'TIMEOUT') throw err;
        }
      }
      await this.messages.read(key, seq, { signal });
    }, options);
  }

  /** Ends every subscription, rejects pending sends with CLIENT_CLOSED and closes the connection. Idempotent. */
  close(): void {
    this.endSubscriptions();
    this.keeper.close();
    this.sends.close();
    this.closing.close();
    this.connection.close();
    this.events.removeAll();
  }

  /** Runs a change with its retries, all of them in the session it was made in (`sessionEnd`'s). */
  private change<T>(
    attempt: (signal: AbortSignal) => Promise<T>,
    options: ChangeOptions,
    sessionEnd = this.sessionEnd,
  ): Promise<T> {
    return retryChange({ backoff: this.backoff, closing: this.closing, sessionEnd }, attempt, options);
  }

  /**
   * Runs a request that ends this session (logout, deletion), then forgets everything of it locally. A logout
   * forgets locally whatever the server answered (UNAUTHORIZED: the session had already ended elsewhere, which is
   * what was asked; any other failure is passed on, so the application knows the server may still hold the
   * session until it expires). A deletion the server refused (a wrong password, an unreachable server) leaves the
   * session as it was, unless the session ended meanwhile: then `sessionEnded` tells it, with the server's reason.
   */
  private async leave(request: () => Promise<void>, forgetAnyway = true): Promise<void> {
    this.leaving = true;
    this.endedWhileLeaving = undefined;
    let failure: XFChatError | undefined;
    try {
      await request();
    } catch (err) {
      failure = toXFChatError(err);
    } finally {
      this.leaving = false;
    }
    if (failure !== undefined && !forgetAnyway) {
      // A failed deletion keeps the session, unless the server ended it meanwhile: a deletion done whose answer
      // was lost (the live socket hears `session:ended` "deleted" before the answer would have come), or an end
      // from elsewhere. The session is forgotten already (sessionEnded() ran, quietly): without the event, the
      // application, told only that the deletion failed, would go on with a client that has no session.
      if (this.endedWhileLeaving !== undefined)
        this.events.emit('sessionEnded', { reason: this.endedWhileLeaving });
      throw failure;
    }
    this.endLocally(new XFChatError('UNAUTHORIZED', 'Logged out: the session this belonged to has ended.'));
    if (failure !== undefined && failure.code !== 'UNAUTHORIZED') throw failure;
  }

  /**
   * Forgets the session: its tokens, subscriptions and connection, and settles with `error` every send not settled
   * yet (queued, or in flight: that one may or may not have been stored) and everything waiting for the
   * connection, a pending connect() included. Nothing of this session is ever sent under a later one.
   */
  private endLocally(error: XFChatError): void {
    this.keeper.clear();
    this.endSubscriptions();
    this.sends.failAll(error);
    const ended = this.sessionEnd;
    this.sessionEnd = new Closing();
    ended.close(error);
    this.connection.disconnect(error);
  }

  /**
   * Before a new session (signup, login, resume()) takes the place of one this client holds: the held one ends here
   * as at a logout, without telling the server (it stays valid there until it expires or is revoked).
   */
  private endHeldSession(): void {
    if (this.session.token === undefined && this.session.refreshToken === undefined) return;
    this.endLocally(
      new XFChatError(
        'UNAUTHORIZED',
        'Signed in again: the session this belonged to has ended on this client.',
      ),
    );
  }

  /** Ends every subscription as a session's end and close() do: whenReady() rejects with CLIENT_CLOSED. */
  private endSubscriptions(): void {
    for (const subscription of [...this.subscriptions.values()]) subscription.end(undefined);
  }

  /**
   * After a refused refresh: the reason the server gives on the live socket (`session:ended`, which follows the
   * refusal by a few milliseconds), or undefined at once without a connection, or once the socket dropped or
   * 1.5 s passed without one.
   */
  private awaitEndReason(): Promise<SessionEndReason | undefined> {
    if (!this.connection.connected) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const done = (reason: SessionEndReason | undefined) => {
        clearTimeout(timer);
        offAnnounced();
        offState();
        resolve(reason);
      };
      const timer = setTimeout(() => done(undefined), END_REASON_WAIT_MS);
      const offAnnounced = this.connection.events.on('endAnnounced', (reason) => done(reason));
      const offState = this.connection.events.on('state', (state) => {
        if (state !== 'connected') done(undefined);
      });
    });
  }

  /**
   * The REST transport with the session kept alive: an expired token is refreshed before the request, and a
   * request answered UNAUTHORIZED is sent once more after a successful refresh. Both only within the session the
   * call was made in: one that ends meanwhile (a login as someone else, say) fails the call with UNAUTHORIZED
   * rather than send it with the next session's token.
   */
  private withRefresh(plain: HttpRequest): HttpRequest {
    const request: UntypedRequest = plain;
    return typedRequest(async (method, path, options) => {
      if (options?.anonymous === true) return request(method, path, options);
      const sessionEnd = this.sessionEnd;
      // A wait for a refresh (shared with the session's other calls, and as slow as the server) ends for this call
      // when it is aborted, at close() (CLIENT_CLOSED) and at the end of its session (UNAUTHORIZED); the refresh
      // itself goes on for the others.
      const link = linkedAbort(this.closing, options?.signal, sessionEnd);
      try {
        await untilAborted(this.keeper.ensureFresh(), link.signal);
        if (sessionEnd.error !== undefined) throw sessionEnd.error;
        try {
          return await request(method, path, options);
        } catch (err) {
          if (!(err instanceof XFChatError) || err.code !== 'UNAUTHORIZED' || !this.keeper.canRefresh)
            throw err;
          if (sessionEnd.closed) throw err;
          const refreshed = await untilAborted(this.keeper.refresh(), link.signal);
          if (!refreshed || sessionEnd.closed) throw err;
          return await request(method, path, options);
        }
      } finally {
        link.release();
      }
    });
  }

  /** New tokens: the application persists them; a live socket takes the new access token at once. */
  private tokensChanged(tokens: AuthTokens, onTokens: ((tokens: AuthTokens) => void) | undefined): void {
    this.events.emit('tokens', tokens);
    callSafely(onTokens, tokens);
    // Not connected: the next handshake sends the new token, or, if one is running with the old token, the
    // socket is given the new one once it connects (wireEvents()).
    if (this.connection.connected) this.giveSocket(tokens.token);
  }

  /** Moves the live socket's expiry to `token`'s (`auth:refresh`). */
  private giveSocket(token: string, attempt = 0): void {
    this.connection.request('auth:refresh', { token }).catch((err: unknown) => {
      if (!(err instanceof XFChatError)) return;
      // The socket refused the new token (its session ended meanwhile, say; a new login on this client has closed
      // the connection before its tokens come): reconnect with it, and the handshake settles it.
      if (err.code === 'UNAUTHORIZED') {
        this.connection.restart();
        return;
      }
      // A drop needs nothing: the next handshake sends the new token anyway. Refused for now (a busy socket's event
      // budget, the database, a timeout): the server would cut the socket at the older token's expiry, so the
      // session's token (this one, or a newer one by then) is given again, after Retry-After or a backoff, while
      // the socket is up.
      if (err.code === 'DISCONNECTED' || err.code === 'NOT_CONNECTED' || !isRetryable(err)) return;
      const wait = err.retryAfter !== undefined ? retryAfterMs(err) : backoffDelay(attempt, this.backoff);
      const timer = setTimeout(() => {
        const current = this.session.token;
        if (this.closing.closed || current === undefined || !this.connection.connected) return;
        this.giveSocket(current, current === token ? attempt + 1 : 0);
      }, timerMs(wait));
      // In Node.js the retry alone does not keep the process running (a closed client's does nothing anyway).
      (timer as { unref?: () => void }).unref?.();
    });
  }

  /** The server ended the session (or refused its refresh): stop, forget, and tell the application once. */
  private sessionEnded(reason: SessionEndReason): void {
    const error = new XFChatError('UNAUTHORIZED', `The session ended (${reason}).`);
    // The subscriptions end first: stop() tells whoever waits for the connection that the token is no good, and a
    // subscription's whenReady() must hear that the subscription ended (CLIENT_CLOSED), not that.
    this.endSubscriptions();
    if (this.connection.state !== 'disconnected') this.connection.stop(error);
    this.endLocally(error);
    if (!this.leaving) this.events.emit('sessionEnded', { reason });
    else this.endedWhileLeaving = reason;
  }

  private wireEvents(): void {
    const { socket, events } = this.connection;
    events.on('state', (state) => this.events.emit('state', state));
    events.on('connectRefused', (error) => this.events.emit('connectRefused', error));
    // A refresh that landed while the handshake ran: the server holds the socket to the old token's expiry.
    events.on('connect', () => {
      const { token } = this.session;
      if (token !== undefined && token !== this.connection.handshakeToken) this.giveSocket(token);
    });
    // This client's own logout or deletion makes the server end the session and drop the socket: no news.
    events.on('unauthorized', (error) => {
      if (!this.leaving) this.events.emit('unauthorized', error);
    });
    events.on('endAnnounced', (reason) => this.keeper.noteEndReason(reason));
    events.on('sessionEnded', (reason) => this.keeper.end(reason));
    socket.on('user:updated', (user) => this.events.emit('user:updated', user));
    socket.on('message:new', (message) =>
      this.subscriptions.get(conversationKey(message.conversationId))?.handleNew(message),
    );
    socket.on('message:updated', (message) =>
      this.subscriptions.get(conversationKey(message.conversationId))?.handleUpdated(message),
    );
    socket.on('typing', (event) => this.events.emit('typing', event));
    socket.on('conversation:read', (event) => this.events.emit('conversation:read', event));
    socket.on('friend:request', (request) => this.events.emit('friend:request', request));
    socket.on('friend:accepted', (request) => this.events.emit('friend:accepted', request));
    socket.on('conversation:added', (conversation) => this.events.emit('conversation:added', conversation));
    socket.on('conversation:updated', (conversation) =>
      this.events.emit('conversation:updated', conversation),
    );
    socket.on('conversation:removed', (event) => {
      this.subscriptions
        .get(conversationKey(event.conversationId))
        ?.end(new XFChatError('NOT_FOUND', 'You are no longer a participant of this conversation.'));
      this.events.emit('conversation:removed', event);
    });
  }
}
