import type {
  PublicConversation,
  PublicFriendRequest,
  PublicMessage,
  ReadEvent,
  TypingEvent,
  ConversationRef,
  PublicUser,
} from '../protocol/index.js';
import { BlocksApi, ConversationsApi, FriendsApi, MessagesApi, UsersApi } from './api.js';
import { Connection, type ConnectionState } from './connection.js';
import { Emitter } from './emitter.js';
import { XFChatError } from './errors.js';
import { createHttp, type HttpRequest, type Session } from './http.js';
import { DEFAULT_BACKOFF, newClientMsgId } from './retry.js';
import { readAllChanges, retryChange, type ChangeOptions, type Changes } from './changes.js';
import { sendWithRetry, type SendOptions } from './send.js';
import { Subscription, type SubscribeOptions } from './subscription.js';

export interface XFChatClientOptions {
  /** The server, e.g. `http://127.0.0.1:3000`. Omit in a page served by XFChat itself (same origin). */
  baseUrl?: string;
  /** A token from an earlier signup/login (e.g. kept in storage across reloads). */
  token?: string;
  /** Socket.IO transports. @default ['websocket'] */
  transports?: Array<'websocket' | 'polling'>;
  /** How long a realtime request waits for its ack before it counts as lost (and a send retries). @default 10000 */
  ackTimeoutMs?: number;
  /** First reconnect/retry delay. @default 250 */
  retryBaseMs?: number;
  /** Longest reconnect/retry delay. @default 5000 */
  retryMaxMs?: number;
  /** A fetch implementation. @default globalThis.fetch */
  fetch?: typeof fetch;
}

export interface AuthResult {
  user: PublicUser;
  token: string;
}

export interface SignupInput {
  username: string;
  password: string;
  displayName?: string;
}

/** Events of {@link XFChatClient.on}: the server's pushes plus the connection's state. */
export interface XFChatClientEvents {
  state: ConnectionState;
  /** The token was refused on (re)connect: expired or logged out. Log in again, then connect(). */
  unauthorized: XFChatError;
  typing: TypingEvent;
  'conversation:read': ReadEvent;
  'friend:request': PublicFriendRequest;
  'friend:accepted': PublicFriendRequest;
  'conversation:added': PublicConversation;
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
  private readonly http: HttpRequest;
  private readonly session: Session;
  private readonly connection: Connection;
  private readonly events = new Emitter<XFChatClientEvents>();
  private readonly subscriptions = new Map<string, Subscription>();
  private readonly backoff;

  constructor(options: XFChatClientOptions = {}) {
    this.session = { token: options.token };
    this.backoff = {
      baseMs: options.retryBaseMs ?? DEFAULT_BACKOFF.baseMs,
      maxMs: options.retryMaxMs ?? DEFAULT_BACKOFF.maxMs,
    };
    this.http = createHttp(
      options.baseUrl ?? '',
      this.session,
      options.fetch ?? globalThis.fetch.bind(globalThis),
    );
    this.users = new UsersApi(this.http);
    this.friends = new FriendsApi(this.http);
    this.blocks = new BlocksApi(this.http);
    this.conversations = new ConversationsApi(this.http, this.session);
    this.messages = new MessagesApi(this.http);
    this.connection = new Connection({
      url: options.baseUrl,
      session: this.session,
      transports: options.transports ?? ['websocket'],
      ackTimeoutMs: options.ackTimeoutMs ?? 10_000,
      backoff: this.backoff,
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

  /** The realtime connection's state, for UIs (see the `state` event). */
  get state(): ConnectionState {
    return this.connection.state;
  }

  /** Creates an account and keeps its token. */
  async signup(input: SignupInput): Promise<AuthResult> {
    const result = await this.http<AuthResult>('POST', '/auth/signup', { body: input });
    this.session.token = result.token;
    return result;
  }

  /** Logs in and keeps the token. */
  async login(username: string, password: string): Promise<AuthResult> {
    const result = await this.http<AuthResult>('POST', '/auth/login', { body: { username, password } });
    this.session.token = result.token;
    return result;
  }

  /** The user the token belongs to. */
  async me(): Promise<PublicUser> {
    return (await this.http<{ user: PublicUser }>('GET', '/auth/me')).user;
  }

  /** Revokes every token of this user on every node, then forgets the token and disconnects. */
  async logout(): Promise<void> {
    await this.http<void>('POST', '/auth/logout');
    this.session.token = undefined;
    for (const subscription of [...this.subscriptions.values()]) subscription.end(undefined);
    this.connection.disconnect();
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
   * subscription per conversation: subscribing again throws until the first is unsubscribed. Starts as soon
   * as the connection is up.
   */
  subscribe(
    conversationId: string,
    onMessage: (message: PublicMessage) => void,
    options: SubscribeOptions = {},
  ): Subscription {
    if (this.subscriptions.has(conversationId))
      throw new Error(`already subscribed to conversation ${conversationId}`);
    const subscription: Subscription = new Subscription(conversationId, onMessage, options, {
      connection: this.connection,
      messages: this.messages,
      backoff: this.backoff,
      onEnded: () => {
        if (this.subscriptions.get(conversationId) === subscription)
          this.subscriptions.delete(conversationId);
      },
    });
    this.subscriptions.set(conversationId, subscription);
    return subscription;
  }

  /** The active subscription of a conversation, if any. */
  subscription(conversationId: string): Subscription | undefined {
    return this.subscriptions.get(conversationId);
  }

  /**
   * Sends a message exactly once: it retries with the same clientMsgId (across timeouts, drops and
   * reconnections) until the server acknowledges, and resolves with the stored message. `replyToSeq` makes it
   * an answer to an earlier message. Rejects on final errors (VALIDATION_FAILED, NOT_FOUND, FORBIDDEN, ...) or
   * with CLIENT_CLOSED.
   */
  send(conversationId: string, body: string, options: SendOptions = {}): Promise<PublicMessage> {
    const deps = {
      connection: this.connection,
      backoff: this.backoff,
      closeSignal: this.connection.closeSignal,
    };
    return sendWithRetry(deps, conversationId, body, options.clientMsgId ?? newClientMsgId(), options);
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
    const message = await this.change(() => this.messages.edit(conversationId, seq, body), options);
    this.subscriptions.get(conversationId)?.handleUpdated(message);
    return message;
  }

  /**
   * Deletes a message: mine, or any in a group I own (`DELETE .../messages/:seq`). Deleting twice is fine.
   * Subscribers (this one included) see the tombstone through `onUpdate`.
   */
  async deleteMessage(conversationId: string, seq: number, options: ChangeOptions = {}): Promise<void> {
    await this.change(() => this.messages.remove(conversationId, seq), options);
  }

  /** Adds my reaction (`PUT .../reactions/:emoji`); adding it again changes nothing. */
  async react(
    conversationId: string,
    seq: number,
    emoji: string,
    options: ChangeOptions = {},
  ): Promise<void> {
    await this.change(() => this.messages.react(conversationId, seq, emoji), options);
  }

  /** Removes my reaction (`DELETE .../reactions/:emoji`); removing one that is not there changes nothing. */
  async unreact(
    conversationId: string,
    seq: number,
    emoji: string,
    options: ChangeOptions = {},
  ): Promise<void> {
    await this.change(() => this.messages.unreact(conversationId, seq, emoji), options);
  }

  /**
   * Every message changed (or created) after version `since`, each once in its current state, read to the end
   * of the feed, and the version to continue from. A subscription does this by itself after a reconnection;
   * this is for apps that sync without one (e.g. on opening a conversation stored earlier).
   */
  changes(conversationId: string, since: number): Promise<Changes> {
    return readAllChanges(this.messages, conversationId, since, 200);
  }

  /** Tells the conversation's other subscribers that I am typing (nothing is stored). */
  async typing(conversationId: string): Promise<void> {
    await this.connection.request('typing', { conversationId });
  }

  /** Moves my read marker to `seq`: over the socket when connected (subscribers see it live), else REST. */
  async markRead(conversationId: string, seq: number): Promise<void> {
    if (this.connection.connected)
      await this.connection.request('conversation:read', { conversationId, seq });
    else await this.messages.read(conversationId, seq);
  }

  /** Ends every subscription, rejects pending sends with CLIENT_CLOSED and closes the connection. Idempotent. */
  close(): void {
    for (const subscription of [...this.subscriptions.values()]) subscription.end(undefined);
    this.connection.close();
    this.events.removeAll();
  }

  private change<T>(attempt: () => Promise<T>, options: ChangeOptions): Promise<T> {
    return retryChange({ backoff: this.backoff, closeSignal: this.connection.closeSignal }, attempt, options);
  }

  private wireEvents(): void {
    const { socket, events } = this.connection;
    events.on('state', (state) => this.events.emit('state', state));
    events.on('unauthorized', (error) => this.events.emit('unauthorized', error));
    socket.on('message:new', (message) => this.subscriptions.get(message.conversationId)?.handleNew(message));
    socket.on('message:updated', (message) =>
      this.subscriptions.get(message.conversationId)?.handleUpdated(message),
    );
    socket.on('typing', (event) => this.events.emit('typing', event));
    socket.on('conversation:read', (event) => this.events.emit('conversation:read', event));
    socket.on('friend:request', (request) => this.events.emit('friend:request', request));
    socket.on('friend:accepted', (request) => this.events.emit('friend:accepted', request));
    socket.on('conversation:added', (conversation) => this.events.emit('conversation:added', conversation));
    socket.on('conversation:removed', (event) => {
      this.subscriptions
        .get(event.conversationId)
        ?.end(new XFChatError('NOT_FOUND', 'You are no longer a participant of this conversation.'));
      this.events.emit('conversation:removed', event);
    });
  }
}
