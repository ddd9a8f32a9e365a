import type {
  AccountUser,
  ConversationListItem,
  PublicConversation,
  PublicFriend,
  PublicFriendRequest,
  PublicMessage,
  PublicParticipant,
  PublicSession,
  PublicUser,
} from '../protocol/index.js';
import { localInvalid } from './checks.js';
import { XFChatError } from './errors.js';
import { tokenSubject, type AnswerShape, type HttpRequest, type Session } from './http.js';
import { abortedError, delay, linkedAbort, type Closing } from './retry.js';

/** A conversation as listed by `GET /conversations`: with its last message and my unread count. */
export type ConversationSummary = ConversationListItem;

export type Friend = PublicFriend;

export interface MessagePage {
  messages: PublicMessage[];
  /** after: newer messages remain; before (or no cursor): older messages exist. */
  hasMore: boolean;
  /**
   * The conversation's last seq and version, read in the same snapshot as `messages`. A `lastSeq` below the last
   * seq you hold (or a `version` below yours) means the server's database was restored to an earlier point.
   */
  lastSeq: number;
  version: number;
}

/** One page of `GET /conversations/:id/changes`. */
export interface ChangesPage {
  /** Every message whose version is above the cursor, in its current state, by version ascending. */
  messages: PublicMessage[];
  /** The conversation's version when the page was read: the next cursor once `hasMore` is false. */
  version: number;
  /** More changes remain: ask again with `since` = the version of the page's last message. */
  hasMore: boolean;
}

/** For the REST calls that take one: a signal that aborts the request (it rejects with CLIENT_CLOSED). */
export interface CallOptions {
  signal?: AbortSignal | undefined;
}

export interface PutOptions {
  /** The seq of an earlier message of the conversation this one answers. */
  replyToSeq?: number | null | undefined;
}

/**
 * A path segment from the application's input, URL-encoded. A string that cannot be (an unpaired surrogate: text cut
 * in the middle of an emoji) is refused as the server refuses it, at once: as a `URIError` it would be taken for a
 * network failure and retried for ever. So is one of only dots: encoded or not, "." and ".." are path segments that
 * URL parsing resolves, so the request would go to another route (`users.get('..')` to `GET /`), and an empty one,
 * which leaves its segment out (`conversations.get('')` would read the list at `GET /conversations/`). Refused here with
 * nothing sent, these are VALIDATION_FAILED with status 0 (there was no answer).
 */
function id(value: string, field = 'id'): string {
  if (value === '') throw localInvalid({ [field]: 'must not be empty' });
  if (/^\.+$/.test(value)) throw localInvalid({ [field]: 'must not be only dots' });
  try {
    return encodeURIComponent(value);
  } catch {
    throw localInvalid({ [field]: 'must be well-formed text' });
  }
}

/** The answers several calls read (checked by the transport: see {@link AnswerShape}). */
const MESSAGE_PAGE: AnswerShape<MessagePage> = {
  messages: 'objects',
  hasMore: 'boolean',
  lastSeq: 'number',
  version: 'number',
};
const CHANGES_PAGE: AnswerShape<ChangesPage> = { messages: 'objects', version: 'number', hasMore: 'boolean' };
export const USER_ANSWER: AnswerShape<{ user: PublicUser }> = { user: 'object' };
const REQUEST_ANSWER: AnswerShape<{ request: PublicFriendRequest }> = { request: 'object' };
const CONVERSATION_ANSWER: AnswerShape<{ conversation: PublicConversation }> = { conversation: 'object' };
const MESSAGE_ANSWER: AnswerShape<{ message: PublicMessage }> = { message: 'object' };

/** Users lookup. */
export class UsersApi {
  constructor(private readonly http: HttpRequest) {}

  /** `GET /users?username=` (exact, case-insensitive); USER_NOT_FOUND if there is none. */
  async findByUsername(username: string): Promise<AccountUser> {
    return (
      await this.http<{ user: AccountUser }>('GET', '/users', { query: { username }, answer: USER_ANSWER })
    ).user;
  }

  /**
   * `GET /users?q=&limit=`: up to `limit` (at most 20) users whose username starts with `prefix`,
   * case-insensitively, by username; never me, nor anyone I blocked or who blocked me.
   */
  async search(prefix: string, limit?: number): Promise<AccountUser[]> {
    const query = { q: prefix, limit };
    return (
      await this.http<{ users: AccountUser[] }>('GET', '/users', { query, answer: { users: 'objects' } })
    ).users;
  }

  /** `GET /users/:id`: anyone by id, a deleted account included (`username: null`, "Deleted user"). */
  async get(userId: string): Promise<PublicUser> {
    return (await this.http<{ user: PublicUser }>('GET', `/users/${id(userId)}`, { answer: USER_ANSWER }))
      .user;
  }
}

/** My signed-in devices. */
export class SessionsApi {
  constructor(private readonly http: HttpRequest) {}

  /** `GET /auth/sessions`: most recently used first; `current` marks this client's. */
  async list(): Promise<PublicSession[]> {
    const answer = { sessions: 'objects' } as const;
    return (await this.http<{ sessions: PublicSession[] }>('GET', '/auth/sessions', { answer })).sessions;
  }

  /** `DELETE /auth/sessions/:id`: signs that device out (NOT_FOUND if it is not one of mine). */
  async revoke(sessionId: string): Promise<void> {
    await this.http('DELETE', `/auth/sessions/${id(sessionId)}`);
  }
}

/** How many times a list waits out RATE_LIMITED before it gives up with it. */
const MAX_LIST_WAITS = 30;

/**
 * What ends a list that waits out RATE_LIMITED or is read page by page: the client's close() (CLIENT_CLOSED), and
 * the end of the session it was started in (UNAUTHORIZED), whichever is current when the list starts.
 */
export interface ListLimits {
  closing: Closing;
  sessionEnd: () => Closing;
}

/**
 * Runs `read` again after `RATE_LIMITED`, as long as the server's `Retry-After` says (at most 10 s a wait, at most
 * {@link MAX_LIST_WAITS} waits). The lists the server answers whole cost the user's read budget in proportion to
 * their length (a friend list of 5000 is 26 reads, more than a burst), and a list of conversations is read page by
 * page: an app asking for one after another must not fail for it.
 *
 * close() and the end of `sessionEnd` abort the read on its way and the wait: nothing keeps a closed client's
 * process alive, and nothing of the list is read under the next session on the client.
 */
async function waitingOutRateLimit<T>(
  read: (signal: AbortSignal) => Promise<T>,
  closing: Closing,
  sessionEnd: Closing,
  waits = { left: MAX_LIST_WAITS },
): Promise<T> {
  const link = linkedAbort(closing, undefined, sessionEnd);
  try {
    for (;;) {
      if (link.signal.aborted) throw abortedError(link.signal);
      try {
        return await read(link.signal);
      } catch (err) {
        if (!(err instanceof XFChatError) || err.code !== 'RATE_LIMITED' || waits.left <= 0) throw err;
        waits.left -= 1;
        await delay(Math.min(err.retryAfter ?? 1, 10) * 1000, link.signal);
      }
    }
  } finally {
    link.release();
  }
}

/** Friend requests and friendships. */
export class FriendsApi {
  constructor(
    private readonly http: HttpRequest,
    private readonly limits: ListLimits,
  ) {}

  /** Sends a request; if that user already asked me, theirs is accepted instead (status "accepted"). */
  async sendRequest(username: string): Promise<PublicFriendRequest> {
    return (
      await this.http<{ request: PublicFriendRequest }>('POST', '/friends/requests', {
        body: { username },
        answer: REQUEST_ANSWER,
      })
    ).request;
  }

  /** Pending requests: incoming (to me) or outgoing (from me). */
  async listRequests(direction: 'incoming' | 'outgoing' = 'incoming'): Promise<PublicFriendRequest[]> {
    const read = (signal: AbortSignal) =>
      this.http<{ requests: PublicFriendRequest[] }>('GET', '/friends/requests', {
        query: { direction },
        signal,
        answer: { requests: 'objects' },
      });
    const { closing, sessionEnd } = this.limits;
    return (await waitingOutRateLimit(read, closing, sessionEnd())).requests;
  }

  async accept(requestId: string): Promise<PublicFriendRequest> {
    const path = `/friends/requests/${id(requestId)}/accept`;
    return (await this.http<{ request: PublicFriendRequest }>('POST', path, { answer: REQUEST_ANSWER }))
      .request;
  }

  async decline(requestId: string): Promise<PublicFriendRequest> {
    const path = `/friends/requests/${id(requestId)}/decline`;
    return (await this.http<{ request: PublicFriendRequest }>('POST', path, { answer: REQUEST_ANSWER }))
      .request;
  }

  /** Withdraws a request I sent. */
  async cancel(requestId: string): Promise<void> {
    await this.http('DELETE', `/friends/requests/${id(requestId)}`);
  }

  /** Every friend, in one answer (waits out RATE_LIMITED: a long list costs the read budget in proportion). */
  async list(): Promise<Friend[]> {
    const read = (signal: AbortSignal) =>
      this.http<{ friends: Friend[] }>('GET', '/friends', { signal, answer: { friends: 'objects' } });
    const { closing, sessionEnd } = this.limits;
    return (await waitingOutRateLimit(read, closing, sessionEnd())).friends;
  }

  async unfriend(userId: string): Promise<void> {
    await this.http('DELETE', `/friends/${id(userId)}`);
  }
}

/** Blocking; a block ends the friendship and pending requests both ways. */
export class BlocksApi {
  constructor(
    private readonly http: HttpRequest,
    private readonly limits: ListLimits,
  ) {}

  async block(userId: string): Promise<void> {
    await this.http('POST', '/blocks', { body: { userId } });
  }

  async unblock(userId: string): Promise<void> {
    await this.http('DELETE', `/blocks/${id(userId)}`);
  }

  /** Everyone I block, in one answer (waits out RATE_LIMITED like the friend list). */
  async list(): Promise<PublicUser[]> {
    const read = (signal: AbortSignal) =>
      this.http<{ blocked: PublicUser[] }>('GET', '/blocks', { signal, answer: { blocked: 'objects' } });
    const { closing, sessionEnd } = this.limits;
    return (await waitingOutRateLimit(read, closing, sessionEnd())).blocked;
  }
}

/** Conversations and their participants. */
export class ConversationsApi {
  constructor(
    private readonly http: HttpRequest,
    private readonly session: Session,
    private readonly limits: ListLimits,
  ) {}

  /** The direct conversation with a friend: created, or the existing one for the pair. */
  async createDirect(userId: string): Promise<PublicConversation> {
    const body = { type: 'direct', userId };
    const answer = CONVERSATION_ANSWER;
    return (await this.http<{ conversation: PublicConversation }>('POST', '/conversations', { body, answer }))
      .conversation;
  }

  /** A group with me as owner; every participant must be my friend. */
  async createGroup(title: string, participantIds: string[]): Promise<PublicConversation> {
    const body = { type: 'group', title, participantIds };
    const answer = CONVERSATION_ANSWER;
    return (await this.http<{ conversation: PublicConversation }>('POST', '/conversations', { body, answer }))
      .conversation;
  }

  /** One page of my conversations, most recent activity first (`GET /conversations?limit=&cursor=`). */
  async listPage(
    options: { limit?: number | undefined; cursor?: string | undefined } = {},
  ): Promise<{ conversations: ConversationSummary[]; nextCursor: string | null }> {
    return await this.readPage(options, undefined);
  }

  /**
   * Every conversation of mine, most recent activity first: all the pages, up to 200 at a time, until nextCursor is
   * null (a page ends early when its conversations' participants pass the server's budget).
   */
  async list(): Promise<ConversationSummary[]> {
    const all: ConversationSummary[] = [];
    let cursor: string | undefined;
    // Each page is a read of the user's budget (RATE_LIMIT_READS_PER_SEC, bursts of twice that): a user in many
    // large groups has more pages than a burst. Wait as the server says, then go on from the same page.
    const waits = { left: MAX_LIST_WAITS };
    // Every page is read in the session the list started in: one page of another account's would be joined in.
    const sessionEnd = this.limits.sessionEnd();
    const read = (after: string | undefined) =>
      waitingOutRateLimit(
        (signal) => this.readPage({ limit: 200, ...(after === undefined ? {} : { cursor: after }) }, signal),
        this.limits.closing,
        sessionEnd,
        waits,
      );
    let pages = 0;
    for (;;) {
      const page = await read(cursor);
      pages += 1;
      all.push(...page.conversations);
      if (page.nextCursor === null) break;
      cursor = page.nextCursor;
    }
    if (pages === 1) return all;
    // A conversation whose activity moved up while later pages were read moved above their cursor, into the pages
    // read already: the top is read again, page by page, until one brings none not seen (their newer states first).
    const seen = new Set(all.map((c) => c.id));
    const top: ConversationSummary[] = [];
    cursor = undefined;
    for (;;) {
      const page = await read(cursor);
      top.push(...page.conversations);
      if (page.nextCursor === null || page.conversations.every((c) => seen.has(c.id))) break;
      for (const c of page.conversations) seen.add(c.id);
      cursor = page.nextCursor;
    }
    const onTop = new Set(top.map((c) => c.id));
    return [...top, ...all.filter((c) => !onTop.has(c.id))];
  }

  /** One page of `GET /conversations`; `signal` aborts it (list() ends with its session). */
  private readPage(
    options: { limit?: number | undefined; cursor?: string | undefined },
    signal: AbortSignal | undefined,
  ): Promise<{ conversations: ConversationSummary[]; nextCursor: string | null }> {
    const query: Record<string, string> = {};
    if (options.limit !== undefined) query.limit = String(options.limit);
    if (options.cursor !== undefined) query.cursor = options.cursor;
    const answer = { conversations: 'objects', nextCursor: 'string|null' } as const;
    type Page = { conversations: ConversationSummary[]; nextCursor: string | null };
    return this.http<Page>('GET', '/conversations', { query, signal, answer });
  }

  async get(conversationId: string): Promise<PublicConversation> {
    return (
      await this.http<{ conversation: PublicConversation }>('GET', `/conversations/${id(conversationId)}`, {
        answer: CONVERSATION_ANSWER,
      })
    ).conversation;
  }

  async rename(conversationId: string, title: string): Promise<PublicConversation> {
    const path = `/conversations/${id(conversationId)}`;
    const options = { body: { title }, answer: CONVERSATION_ANSWER };
    return (await this.http<{ conversation: PublicConversation }>('PATCH', path, options)).conversation;
  }

  async addParticipant(conversationId: string, userId: string): Promise<PublicParticipant> {
    const path = `/conversations/${id(conversationId)}/participants`;
    const options = { body: { userId }, answer: { participant: 'object' } } as const;
    return (await this.http<{ participant: PublicParticipant }>('POST', path, options)).participant;
  }

  /** Removes a participant (group owner), or leaves when `userId` is me. */
  async removeParticipant(conversationId: string, userId: string): Promise<void> {
    await this.http('DELETE', `/conversations/${id(conversationId)}/participants/${id(userId)}`);
  }

  /** Leaves a group (removes myself). */
  async leave(conversationId: string): Promise<void> {
    const me = tokenSubject(this.session.token);
    if (me === undefined) throw new XFChatError('UNAUTHORIZED', 'Log in first.', { status: 0 });
    await this.removeParticipant(conversationId, me);
  }
}

/** Message history, read markers, the idempotent REST send, and edits, deletes, reactions and the changes feed. */
export class MessagesApi {
  constructor(private readonly http: HttpRequest) {}

  /** Messages with seq > `afterSeq`, ascending; `hasMore` when newer ones remain. */
  async after(conversationId: string, afterSeq: number, limit?: number): Promise<MessagePage> {
    const query = { after: afterSeq, limit };
    const path = `/conversations/${id(conversationId)}/messages`;
    return await this.http<MessagePage>('GET', path, { query, answer: MESSAGE_PAGE });
  }

  /** The `limit` newest with seq < `beforeSeq` (or the newest, without it), ascending; `hasMore`: older exist. */
  async before(conversationId: string, beforeSeq?: number, limit?: number): Promise<MessagePage> {
    const query = { before: beforeSeq, limit };
    const path = `/conversations/${id(conversationId)}/messages`;
    return await this.http<MessagePage>('GET', path, { query, answer: MESSAGE_PAGE });
  }

  /** Moves my read marker forward to `seq` (never back). */
  async read(conversationId: string, seq: number, options: CallOptions = {}): Promise<void> {
    await this.http('POST', `/conversations/${id(conversationId)}/read`, { body: { seq }, ...options });
  }

  /** Stores a message once per clientMsgId; the same id again returns the stored one (in its current state). */
  async put(
    conversationId: string,
    clientMsgId: string,
    body: string,
    options: PutOptions = {},
  ): Promise<PublicMessage> {
    const path = `/conversations/${id(conversationId)}/messages/${id(clientMsgId)}`;
    const payload = options.replyToSeq === undefined ? { body } : { body, replyToSeq: options.replyToSeq };
    return (
      await this.http<{ message: PublicMessage }>('PUT', path, { body: payload, answer: MESSAGE_ANSWER })
    ).message;
  }

  /** `PATCH .../messages/:seq`: a new body for my message; resolves with its state (unchanged for the same body). */
  async edit(
    conversationId: string,
    seq: number,
    body: string,
    options: CallOptions = {},
  ): Promise<PublicMessage> {
    const path = `/conversations/${id(conversationId)}/messages/${seq}`;
    const request = { body: { body }, ...options, answer: MESSAGE_ANSWER };
    return (await this.http<{ message: PublicMessage }>('PATCH', path, request)).message;
  }

  /** `DELETE .../messages/:seq`: mine, or any in a group I own; deleting twice is fine. */
  async remove(conversationId: string, seq: number, options: CallOptions = {}): Promise<void> {
    await this.http('DELETE', `/conversations/${id(conversationId)}/messages/${seq}`, options);
  }

  /** `PUT .../reactions/:emoji` (idempotent). */
  async react(conversationId: string, seq: number, emoji: string, options: CallOptions = {}): Promise<void> {
    await this.http('PUT', reactionPath(conversationId, seq, emoji), options);
  }

  /** `DELETE .../reactions/:emoji` (idempotent). */
  async unreact(
    conversationId: string,
    seq: number,
    emoji: string,
    options: CallOptions = {},
  ): Promise<void> {
    await this.http('DELETE', reactionPath(conversationId, seq, emoji), options);
  }

  /** One page of `GET .../changes?since=`: messages changed (or created) after version `since`, by version. */
  async changes(
    conversationId: string,
    since: number,
    limit?: number,
    options: CallOptions = {},
  ): Promise<ChangesPage> {
    const query = { since, limit };
    return await this.http<ChangesPage>('GET', `/conversations/${id(conversationId)}/changes`, {
      query,
      ...options,
      answer: CHANGES_PAGE,
    });
  }
}

/**
 * A reaction's path; the emoji is URL-encoded (a flag or a ZWJ sequence is several code points). An emoji of only
 * dots is refused by id(), as the server refuses it: `DELETE .../reactions/..` would go out as
 * `DELETE .../messages/:seq`, deleting the message.
 */
function reactionPath(conversationId: string, seq: number, emoji: string): string {
  return `/conversations/${id(conversationId)}/messages/${seq}/reactions/${id(emoji, 'emoji')}`;
}
