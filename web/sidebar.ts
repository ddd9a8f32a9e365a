import {
  XFChatError,
  type Friend,
  type PublicFriendRequest,
  type PublicUser,
  type XFChatClient,
} from '../lib/client/index.js';
import { fullTimestamp, listDate } from './dates.js';
import { button, byId, el, OneAtATime, replaceItems, updateItems } from './dom.js';
import type { Drafts } from './drafts.js';
import { plainText } from './linkify.js';
import { readRetryWait } from './retry.js';
import type { ConversationStore } from './store.js';
import { ONLY_YOU, showControls, waitWords } from './text.js';

export interface SidebarDeps {
  client: XFChatClient;
  store: ConversationStore;
  drafts: Drafts;
  me: PublicUser;
  /** Shows a conversation in the main pane. */
  open: (conversationId: string) => void;
  /** Opens (creating if needed) the direct conversation with a friend. */
  startDirect: (userId: string) => Promise<void>;
  report: (error: unknown) => void;
  /** Friends, requests or blocks were read again (or someone in them renamed). */
  socialChanged: () => void;
  /**
   * The profiles heard (`user:updated`) since `since` (performance.now()): an answer to a read sent then may show
   * them as they were before, and they are applied again over it.
   */
  profilesHeardSince: (since: number) => PublicUser[];
  /** Reads the conversation list again now ("Try again now" after it could not be read). */
  reloadList: () => void;
}

/** Friendly sentences for the errors a user can cause from the sidebar. */
const FRIEND_ERRORS: Partial<Record<string, string>> = {
  USER_NOT_FOUND: 'No user has that username.',
  CANNOT_FRIEND_SELF: 'That is you.',
  ALREADY_FRIENDS: 'You are already friends.',
  REQUEST_EXISTS: 'A friend request is already pending.',
  BLOCKED: 'You cannot send this user a request.',
  NOT_FOUND: 'That is no longer possible; the list is up to date now.',
  REQUEST_NOT_PENDING: 'That request was already answered or withdrawn.',
  VALIDATION_FAILED: 'Usernames are made of letters, digits, _ . and - only (at most 32).',
};

/** How long typing pauses before the search goes out. */
const SEARCH_DELAY_MS = 250;

function describe(user: PublicUser): string {
  // A deleted account has no username left: it shows as "Deleted user".
  if (user.username === null || user.displayName === user.username) return user.displayName;
  return `${user.displayName} (@${user.username})`;
}

/** A person's name over their @username, and optionally a line saying where things stand. */
function who(user: PublicUser, status?: string): HTMLSpanElement {
  return el(
    'span',
    { className: 'who' },
    el('span', { className: 'name', text: user.displayName }),
    user.username === null ? null : el('span', { className: 'username', text: `@${user.username}` }),
    status === undefined ? null : el('span', { className: 'status', text: status }),
  );
}

/** The left column: me, finding people, friend requests, friends, blocked users and the conversation list. */
export class Sidebar {
  private readonly findInput = byId('find-username', HTMLInputElement);
  private readonly findResults = byId('find-results', HTMLUListElement);
  private readonly findStatus = byId('find-status', HTMLParagraphElement);
  private readonly incoming = byId('incoming-requests', HTMLUListElement);
  private readonly outgoing = byId('outgoing-requests', HTMLUListElement);
  private readonly friends = byId('friends', HTMLUListElement);
  private readonly blockedSection = byId('blocked-section', HTMLElement);
  private readonly blocked = byId('blocked', HTMLUListElement);
  private readonly conversations = byId('conversations', HTMLUListElement);
  /** Under the list: why it could not be read, when it is tried again, and "Try again now". */
  private readonly listErrorText = el('p', { attrs: { role: 'alert' } });
  private readonly listError = el(
    'div',
    { className: 'history-error', attrs: { id: 'conversations-error' } },
    this.listErrorText,
    el('button', { text: 'Try again now', attrs: { type: 'button' }, onClick: () => this.retryList() }),
  );
  private current: string | undefined;
  private friendList: Friend[] = [];
  private incomingList: PublicFriendRequest[] = [];
  private outgoingList: PublicFriendRequest[] = [];
  private blockedList: PublicUser[] = [];
  /** The last search's answer, drawn again whenever friendships change so its lines never go stale. */
  private results: PublicUser[] = [];
  private shownQuery = '';
  /**
   * The words last asked (typing the same again asks nothing); undefined after a search that failed, so that any
   * words typed next, an emptied box included, go out and replace what the status line says of the failure.
   */
  private askedQuery: string | undefined = '';
  private searchTicket = 0;
  /** Counts the reads of friends, requests and blocks: only the newest one's answer is shown. */
  private socialTicket = 0;
  /** The newest read of friends, requests and blocks (see refreshSocial). */
  private newestSocialRead: Promise<void> = Promise.resolve();
  /**
   * The one search waiting to go out: typing paused, or a refused search asked again after the wait the server
   * named. Typing or a new search replaces it.
   */
  private searchTimer: ReturnType<typeof setTimeout> | undefined;
  /**
   * The friend actions, each one at a time (until the lists are read again after it): a double click on "Accept"
   * accepts once, and does not then say that the request was already answered.
   */
  private readonly once = new OneAtATime();

  constructor(private readonly deps: SidebarDeps) {
    this.setMe(deps.me);
    this.listError.hidden = true;
    this.conversations.after(this.listError);
    byId('find-form', HTMLFormElement).addEventListener('submit', (event) => {
      event.preventDefault();
      // Asked again even if it was just asked: someone may have signed up since.
      void this.search(true);
    });
    this.findInput.addEventListener('input', () => {
      clearTimeout(this.searchTimer);
      this.searchTimer = setTimeout(() => void this.search(), SEARCH_DELAY_MS);
    });
    // A friend's "More" menu floats over the list: Escape closes it (focus back on "More"), and so does focus
    // moving out of it, so that it never covers what the keyboard goes to next.
    this.friends.addEventListener('keydown', (event) => {
      const open = event.target instanceof Element ? event.target.closest('details.more[open]') : null;
      if (event.key !== 'Escape' || !(open instanceof HTMLDetailsElement)) return;
      event.preventDefault();
      open.open = false;
      open.querySelector('summary')?.focus();
    });
    this.friends.addEventListener('focusout', (event) => {
      const open = event.target instanceof Element ? event.target.closest('details.more[open]') : null;
      const to = event.relatedTarget;
      if (open instanceof HTMLDetailsElement && to instanceof Node && !open.contains(to)) open.open = false;
    });
  }

  /** My friends, as last loaded. */
  get friendsList(): readonly Friend[] {
    return this.friendList;
  }

  /** Whether I block this user (the "Blocked" list, as last loaded). */
  blocks(userId: string): boolean {
    return this.blockedList.some((user) => user.id === userId);
  }

  /**
   * Whether this user and I are friends or one of us asked the other, as last loaded: neither is possible
   * while one of us blocks the other.
   */
  inTouch(userId: string): boolean {
    return (
      this.friendList.some((friend) => friend.user.id === userId) ||
      this.incomingList.some((request) => request.from.id === userId) ||
      this.outgoingList.some((request) => request.to.id === userId)
    );
  }

  /**
   * Reloads friends, pending requests and blocks (after any friend event: cheap, and always consistent). Reads
   * overlap (events and actions come close together) and may be answered out of order: an older answer arriving
   * after a newer read started would bring back how things stood before, so only the newest read's is shown. A read
   * overtaken so settles as the newest does: resolved once the lists on screen are at least as new as its own answer
   * (an action stays busy until then: `change`, REV3), rejected if the newest failed.
   */
  refreshSocial(): Promise<void> {
    const read = this.readSocial(++this.socialTicket);
    this.newestSocialRead = read;
    return read;
  }

  private async readSocial(ticket: number): Promise<void> {
    const { friends, blocks } = this.deps.client;
    const sent = performance.now();
    let answers: [Friend[], PublicFriendRequest[], PublicFriendRequest[], PublicUser[]];
    try {
      answers = await Promise.all([
        friends.list(),
        friends.listRequests('incoming'),
        friends.listRequests('outgoing'),
        blocks.list(),
      ]);
    } catch (err) {
      // Overtaken, its failure does not matter: the newest read's outcome does.
      if (ticket !== this.socialTicket) return this.newestSocialRead;
      throw err;
    }
    if (ticket !== this.socialTicket) return this.newestSocialRead;
    const [list, incoming, outgoing, blocked] = answers;
    this.friendList = list;
    this.incomingList = incoming;
    this.outgoingList = outgoing;
    this.blockedList = blocked;
    // A rename heard while the lists were read may be older in their answer: it stands.
    for (const user of this.deps.profilesHeardSince(sent)) this.replaceUser(user);
    this.renderSocial();
  }

  /** Says under the conversation list why it could not be read and when it is tried again; undefined: it was read. */
  showListFailure(text: string | undefined): void {
    this.listError.hidden = text === undefined;
    this.listErrorText.textContent = text ?? '';
  }

  private retryList(): void {
    this.showListFailure(undefined);
    this.deps.reloadList();
  }

  /** My own name (at the top), e.g. after I renamed myself here or on another device. */
  setMe(me: PublicUser): void {
    byId('me-name', HTMLSpanElement).textContent = describe(me);
  }

  /** Someone's new name (`user:updated`): every list that shows them follows, without asking the server. */
  updateUser(user: PublicUser): void {
    this.replaceUser(user);
    this.renderSocial();
  }

  private replaceUser(user: PublicUser): void {
    const same = (other: PublicUser) => (other.id === user.id ? user : other);
    this.friendList = this.friendList.map((f) => ({ ...f, user: same(f.user) }));
    this.incomingList = this.incomingList.map((r) => ({ ...r, from: same(r.from) }));
    this.outgoingList = this.outgoingList.map((r) => ({ ...r, to: same(r.to) }));
    this.blockedList = this.blockedList.map(same);
    this.results = this.results.map(same);
  }

  private renderSocial(): void {
    const [list, incoming, outgoing, blocked] = [
      this.friendList,
      this.incomingList,
      this.outgoingList,
      this.blockedList,
    ];
    replaceItems(
      this.friends,
      list.length ? list.map((f) => this.friendItem(f)) : [this.none('No friends yet.')],
    );
    replaceItems(
      this.incoming,
      incoming.length ? incoming.map((r) => this.incomingItem(r)) : [this.none('No pending requests.')],
    );
    replaceItems(
      this.outgoing,
      outgoing.map((r) => this.outgoingItem(r)),
    );
    // What had focus before the section is hidden (which takes focus away): focus goes on near it, not to the page.
    const focused = document.activeElement;
    this.blockedSection.hidden = blocked.length === 0;
    replaceItems(
      this.blocked,
      blocked.map((u) => this.blockedItem(u)),
      focused,
    );
    this.renderResults();
    this.deps.socialChanged();
  }

  /** Marks the open conversation in the list. */
  setCurrent(conversationId: string | undefined): void {
    this.current = conversationId;
    this.renderConversations();
  }

  /** Moves keyboard focus to a conversation's entry (after going back to the list). */
  focusConversation(conversationId: string): void {
    this.conversations
      .querySelector<HTMLButtonElement>(`li[data-key="${CSS.escape(conversationId)}"] button`)
      ?.focus();
  }

  /** Moves keyboard focus into the conversation list (its first entry), or to "New group" if it is empty. */
  focusFirst(): void {
    (
      this.conversations.querySelector<HTMLButtonElement>('li[data-key] button') ??
      byId('new-group-button', HTMLButtonElement)
    ).focus();
  }

  renderConversations(): void {
    const { store, drafts } = this.deps;
    const now = new Date();
    const items = store.sorted().map((state) => {
      const open = state.id === this.current;
      const unread = open ? 0 : store.unread(state);
      const title = store.title(state);
      const group = state.type === 'group';
      const other = group ? undefined : state.participants.find((p) => p.userId !== store.meId);
      const handle = other === undefined ? undefined : store.handle(state, other.userId);
      const draft = !open && drafts.has(state.id) ? drafts.get(state.id) : undefined;
      // What someone wrote takes its own direction (dir="auto", isolated), after a label in the page's.
      // Its numbers are laid out as in the message itself (in the order sent, next to right-to-left letters).
      const written = (text: string) =>
        el('span', { attrs: { dir: 'auto' } }, ...plainText(showControls(text)));
      const preview: [string, HTMLElement?] =
        draft !== undefined
          ? ['Draft: ', written(draft)]
          : state.lastMessage
            ? state.lastMessage.deletedAt === null
              ? [`${store.senderLabel(state, state.lastMessage.senderId)}: `, written(state.lastMessage.body)]
              : [`${store.senderLabel(state, state.lastMessage.senderId)}: message deleted`]
            : ['No messages yet'];
      const when = new Date(state.lastMessage?.createdAt ?? state.lastActivity);
      // The entry's name is its label; what it shows besides (the last message or draft, and when) is read
      // after it as its description, as on screen.
      const previewId = `preview-${state.id}`;
      const whenId = `when-${state.id}`;
      const label = [
        title,
        group ? `group with ${store.otherNames(state)}` : undefined,
        unread > 0 ? `${unread} unread` : undefined,
        draft !== undefined ? 'draft' : undefined,
        handle,
      ]
        .filter((part) => part !== undefined)
        .join(', ');
      const button = el(
        'button',
        {
          className: 'open',
          attrs: {
            type: 'button',
            'aria-label': label,
            'aria-describedby': `${previewId} ${whenId}`,
            'aria-current': String(open),
          },
          dataset: { action: 'open' },
          onClick: () => this.deps.open(state.id),
        },
        el(
          'span',
          { className: 'summary' },
          el(
            'span',
            { className: 'headline' },
            el('span', { className: 'title', text: title, attrs: { dir: 'auto' } }),
            el('time', {
              className: 'when',
              text: listDate(when, now),
              attrs: { id: whenId, datetime: when.toISOString(), title: fullTimestamp(when) },
            }),
          ),
          // Under a direct conversation's name, whose it is: display names are not unique, usernames are.
          group
            ? el('span', { className: 'members' }, ...namesIsolated(store.otherNameList(state)))
            : handle === undefined
              ? null
              : el('span', { className: 'members handle', text: handle }),
          el(
            'span',
            { className: draft !== undefined ? 'preview draft' : 'preview', attrs: { id: previewId } },
            ...preview,
          ),
        ),
        unread > 0
          ? el('span', { className: 'unread', text: String(unread), attrs: { 'aria-hidden': 'true' } })
          : null,
      );
      return el('li', { dataset: { key: state.id } }, button);
    });
    // Updated in place: the entry with focus stays (re-read by a screen reader at each message if replaced). Its
    // button keeps its first listener, which needs nothing but the conversation's id (the item's key).
    updateItems(this.conversations, items.length ? items : [this.none('No conversations yet.')]);
  }

  /**
   * Searches usernames by prefix (as you type, or at once with Enter or "Find", `again` then: the same words are
   * asked again); only the newest answer is shown. `refusals`: how many times in a row these words were refused
   * for the lookup budget (RATE_LIMITED) and asked again by themselves.
   */
  private async search(again = false, refusals = 0): Promise<void> {
    clearTimeout(this.searchTimer);
    const query = this.findInput.value.trim();
    if (query === this.askedQuery && !again) return;
    this.askedQuery = query;
    const ticket = ++this.searchTicket;
    if (query === '') {
      this.results = [];
      this.shownQuery = '';
      this.renderResults(true);
      return;
    }
    try {
      const users = await this.deps.client.users.search(query);
      if (ticket !== this.searchTicket) return;
      this.results = users;
      this.shownQuery = query;
      this.renderResults(true);
    } catch (err) {
      if (ticket !== this.searchTicket) return;
      this.askedQuery = undefined;
      this.results = [];
      // Nothing is known of this search: the line must not say that nobody matched the one before.
      this.shownQuery = '';
      this.renderResults(true);
      if (err instanceof XFChatError && err.code === 'RATE_LIMITED') this.searchLater(query, err, refusals);
      else this.showFindError(err);
    }
  }

  /**
   * A search refused for the lookup budget (spent here, or by another device of mine) is asked again by itself
   * after the wait the server names: the user typed the words and waits for the results, and typing the same words
   * again is not something they would think of. Said in the status line (a live region, so a screen reader hears
   * it), replaced by the results when they come. Only if the box still holds these words: typing or a new search
   * in the meantime replaces this one (the timer is theirs too).
   */
  private searchLater(query: string, err: XFChatError, refusals: number): void {
    // A RATE_LIMITED is always retryable: the wait is defined (the server's, at most an hour, else a backoff).
    const waitMs = readRetryWait(err, refusals) ?? 1000;
    this.findStatus.textContent = `Too many searches at once. Trying again in ${waitWords(waitMs / 1000)}.`;
    clearTimeout(this.searchTimer);
    this.searchTimer = setTimeout(() => {
      if (this.findInput.value.trim() === query) void this.search(true, refusals + 1);
    }, waitMs);
  }

  /**
   * The search results, each with what can be done now (drawn from the current friends and requests). An `answer`
   * to a search also says, in the status line (a polite live region), how many were found: a screen reader hears
   * the outcome of every search, not only of one that found nobody. Drawn again for a change to friends or blocks,
   * the line is left as it is, so that the count is not said again.
   */
  private renderResults(answer = false): void {
    const found = this.results.length;
    if (answer)
      this.findStatus.textContent =
        this.shownQuery === ''
          ? ''
          : found === 0
            ? `No one else’s username starts with “${this.shownQuery}”.`
            : found === 1
              ? '1 person found.'
              : `${found} people found.`;
    replaceItems(
      this.findResults,
      this.results.map((user) => this.resultItem(user)),
    );
  }

  private resultItem(user: PublicUser): HTMLLIElement {
    const name = user.displayName;
    const friend = this.friendList.some((f) => f.user.id === user.id);
    const sent = this.outgoingList.find((r) => r.to.id === user.id);
    const received = this.incomingList.find((r) => r.from.id === user.id);
    // Blocked since the search (the server lists no one I blocked): said, with nothing to do here.
    if (this.blocks(user.id))
      return el('li', { className: 'found', dataset: { key: user.id } }, who(user, 'You blocked them.'));
    const status = friend
      ? 'Your friend.'
      : sent
        ? `Friend request sent to ${name}.`
        : received
          ? 'Wants to be your friend.'
          : undefined;
    const action = friend
      ? this.action(`direct:${user.id}`, 'Chat', () => this.startDirect(user), { label: `Chat with ${name}` })
      : sent
        ? null
        : received
          ? this.action(`request:${received.id}`, 'Accept', () => this.respond(received, true), {
              label: `Accept ${name} as a friend`,
            })
          : this.action(`add:${user.id}`, 'Add friend', () => this.addFriend(user), {
              label: `Add ${name} as a friend`,
            });
    return el('li', { className: 'found', dataset: { key: user.id } }, who(user, status), action);
  }

  private async addFriend(user: PublicUser): Promise<void> {
    this.findStatus.textContent = '';
    // Found by username, so it has one; a deleted account cannot be befriended.
    if (user.username === null) return;
    try {
      await this.deps.client.friends.sendRequest(user.username);
      await this.refreshSocial();
    } catch (err) {
      this.showFindError(err);
    }
  }

  private showFindError(err: unknown): void {
    if (err instanceof XFChatError && err.code === 'RATE_LIMITED') {
      const wait = err.retryAfter === undefined ? 'a minute' : waitWords(err.retryAfter);
      this.findStatus.textContent = `Too many searches and requests at once. Try again in ${wait}.`;
      return;
    }
    const known = err instanceof XFChatError ? FRIEND_ERRORS[err.code] : undefined;
    if (known === undefined) this.deps.report(err);
    else this.findStatus.textContent = known;
  }

  /**
   * A button for the action `key`, done one at a time (see OneAtATime): `act` sends its request. Drawn again while
   * that is on its way, the button says it is busy, and does nothing.
   */
  private action(
    key: string,
    text: string,
    act: () => Promise<void>,
    options: { label: string; secondary?: boolean },
  ): HTMLButtonElement {
    const control: HTMLButtonElement = button(text, () => void this.once.run(key, control, act), options);
    return this.once.mark(key, control);
  }

  /** Opens (creating if needed) the direct conversation with a friend. */
  private async startDirect(user: PublicUser): Promise<void> {
    await this.deps.startDirect(user.id).catch(this.deps.report);
  }

  /**
   * A change to friends or blocks; the lists are reloaded after it, also when it was refused (they were stale).
   * Done when they are: until then the lists may still offer it.
   */
  private async change(work: () => Promise<unknown>): Promise<void> {
    try {
      await work();
    } catch (err) {
      this.showFindError(err);
    }
    await this.refreshSocial().catch(this.deps.report);
  }

  private async respond(request: PublicFriendRequest, accept: boolean): Promise<void> {
    const { friends } = this.deps.client;
    await this.change(() => (accept ? friends.accept(request.id) : friends.decline(request.id)));
  }

  private async unfriend(user: PublicUser): Promise<void> {
    if (!confirm(`Remove ${user.displayName} from your friends? Your conversations stay.`)) return;
    await this.change(() => this.deps.client.friends.unfriend(user.id));
  }

  private async block(user: PublicUser): Promise<void> {
    const question = `Block ${user.displayName}? This also ends your friendship and any friend requests between you.`;
    if (!confirm(question)) return;
    await this.change(() => this.deps.client.blocks.block(user.id));
  }

  private friendItem(friend: Friend): HTMLLIElement {
    const name = friend.user.displayName;
    return el(
      'li',
      { dataset: { key: friend.user.id } },
      who(friend.user),
      el(
        'span',
        { className: 'actions' },
        this.action(`direct:${friend.user.id}`, 'Message', () => this.startDirect(friend.user), {
          label: `Message ${name}`,
        }),
        el(
          'details',
          { className: 'more' },
          el('summary', {
            text: 'More',
            attrs: { 'aria-label': `More for ${name}` },
            dataset: { action: 'More' },
          }),
          el(
            'span',
            { className: 'menu' },
            this.action(`unfriend:${friend.user.id}`, 'Unfriend', () => this.unfriend(friend.user), {
              label: `Unfriend ${name}`,
              secondary: true,
            }),
            this.action(`block:${friend.user.id}`, 'Block', () => this.block(friend.user), {
              label: `Block ${name}`,
              secondary: true,
            }),
          ),
        ),
      ),
    );
  }

  private incomingItem(request: PublicFriendRequest): HTMLLIElement {
    const name = request.from.displayName;
    return el(
      'li',
      { className: 'request', dataset: { key: request.id } },
      who(request.from, 'Wants to be friends.'),
      el(
        'span',
        { className: 'actions' },
        // Accepting and declining are one action: while either is on its way, a click on the other does nothing.
        this.action(`request:${request.id}`, 'Accept', () => this.respond(request, true), {
          label: `Accept friend request from ${name}`,
        }),
        this.action(`request:${request.id}`, 'Decline', () => this.respond(request, false), {
          label: `Decline friend request from ${name}`,
          secondary: true,
        }),
        this.action(`block:${request.from.id}`, 'Block', () => this.block(request.from), {
          label: `Block ${name}`,
          secondary: true,
        }),
      ),
    );
  }

  private outgoingItem(request: PublicFriendRequest): HTMLLIElement {
    const cancel = () => this.change(() => this.deps.client.friends.cancel(request.id));
    return el(
      'li',
      { dataset: { key: request.id } },
      who(request.to, 'Waiting for an answer.'),
      this.action(`request:${request.id}`, 'Cancel', cancel, {
        label: `Cancel friend request to ${request.to.displayName}`,
        secondary: true,
      }),
    );
  }

  private blockedItem(user: PublicUser): HTMLLIElement {
    const unblock = () => this.change(() => this.deps.client.blocks.unblock(user.id));
    return el(
      'li',
      { dataset: { key: user.id } },
      who(user),
      this.action(`unblock:${user.id}`, 'Unblock', unblock, {
        label: `Unblock ${user.displayName}`,
        secondary: true,
      }),
    );
  }

  private none(text: string): HTMLLIElement {
    return el('li', { className: 'none', text });
  }
}

/**
 * "Bob, Carol" as nodes, each name in a `<bdi>`: two right-to-left names side by side would otherwise make one
 * right-to-left run, drawn last name first ("Carol ,Bob" in Hebrew letters) in the list's left-to-right line.
 */
function namesIsolated(names: string[]): Array<Node | string> {
  if (names.length === 0) return [ONLY_YOU];
  return names.flatMap((name, i) => [...(i === 0 ? [] : [', ']), el('bdi', { text: name })]);
}
