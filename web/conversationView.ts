import {
  XFChatError,
  newClientMsgId,
  type PublicMessage,
  type ReadEvent,
  type TypingEvent,
  type XFChatClient,
} from '../lib/client/index.js';
import { dayLabel } from './dates.js';
import { byId } from './dom.js';
import type { Drafts } from './drafts.js';
import {
  daySeparator,
  messageItem,
  newMessagesDivider,
  pendingItem,
  receipt,
  type PendingActions,
  type PendingMessage,
} from './messageItems.js';
import type { ConversationState, ConversationStore } from './store.js';

export interface ConversationViewDeps {
  client: XFChatClient;
  store: ConversationStore;
  drafts: Drafts;
  report: (error: unknown) => void;
  /** Unread counts, previews or drafts changed: redraw the conversation list and the tab title. */
  changed: () => void;
  /** The back button of narrow screens: show the conversation list. */
  back: () => void;
}

/** History page size when nothing is unread. */
const PAGE = 50;
/** The server's largest page. */
const MAX_PAGE = 200;
/** Opening a conversation loads back to its first unread message, but never more than this many messages. */
const MAX_BACKLOG = 1000;
/** Read messages shown above the first unread one, for context. */
const CONTEXT = 3;
/** How close to an edge (px) counts as "at the bottom" / "at the top". */
const EDGE = 48;
/** Room (px) left above the "New messages" line when a conversation opens there. */
const DIVIDER_MARGIN = 16;
/** A typist is shown this long after their last typing event. */
const TYPING_SHOWN_MS = 4000;
/** At most one typing event per this interval while typing. */
const TYPING_THROTTLE_MS = 2000;

/** What the server's refusals mean to the person who wrote the message. */
const SEND_ERRORS: Partial<Record<string, string>> = {
  NOT_FOUND: 'you are no longer in this conversation.',
  FORBIDDEN: 'you may not write in this conversation.',
  BLOCKED: 'you cannot message this person.',
  NOT_FRIENDS: 'you are no longer friends.',
  VALIDATION_FAILED: 'the server refused its text (empty, too long, or with characters it cannot store).',
  PAYLOAD_TOO_LARGE: 'the message is too long.',
  IDEMPOTENCY_CONFLICT: 'a different message was already sent under the same id.',
  RATE_LIMITED: 'you are sending too fast; retry in a moment.',
};

function describeSendError(err: unknown): string {
  if (!(err instanceof XFChatError)) return 'the message could not be sent.';
  return SEND_ERRORS[err.code] ?? err.message;
}

/**
 * The open conversation: history with scroll-back, live messages with day separators and a "New messages"
 * line, the jump-to-latest button, the composer with a draft per conversation, typing and read markers.
 */
export class ConversationView {
  private current: ConversationState | undefined;
  /** The first message that was unread when the conversation was opened (or arrived while away). */
  private unreadFrom: number | undefined;
  private readonly pane = byId('conversation-pane', HTMLDivElement);
  private readonly empty = byId('empty-state', HTMLParagraphElement);
  private readonly title = byId('conversation-title', HTMLHeadingElement);
  private readonly membersLine = byId('conversation-members', HTMLParagraphElement);
  private readonly scroller = byId('message-scroller', HTMLDivElement);
  private readonly list = byId('messages', HTMLOListElement);
  private readonly older = byId('load-older', HTMLButtonElement);
  private readonly jump = byId('jump-latest', HTMLButtonElement);
  private readonly typingLine = byId('typing-indicator', HTMLParagraphElement);
  private readonly input = byId('composer-input', HTMLTextAreaElement);
  private readonly divider = newMessagesDivider();
  private readonly pending = new Map<string, PendingMessage>();
  /** One send chain per conversation, so a user's messages are stored in the order typed. */
  private readonly outbox = new Map<string, Promise<void>>();
  private readonly typists = new Map<string, ReturnType<typeof setTimeout>>();
  /** Conversations with a history page on its way. */
  private readonly loading = new Set<string>();
  private readonly pendingActions: PendingActions = {
    retry: (pending) => this.retry(pending),
    edit: (pending) => this.edit(pending),
    discard: (pending) => this.discard(pending),
  };
  private lastTypingSent = 0;

  constructor(private readonly deps: ConversationViewDeps) {
    byId('composer', HTMLFormElement).addEventListener('submit', (event) => {
      event.preventDefault();
      this.submit();
    });
    this.input.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.submit();
      }
    });
    this.input.addEventListener('input', () => {
      this.keepDraft();
      this.typing();
    });
    this.older.addEventListener('click', () => void this.loadOlder());
    this.jump.addEventListener('click', () => {
      this.scrollToBottom();
      this.markReadSoon();
      this.updateJump();
      this.input.focus();
    });
    byId('back-button', HTMLButtonElement).addEventListener('click', () => deps.back());
    this.scroller.addEventListener('scroll', () => {
      if (this.scroller.scrollTop < EDGE) void this.loadOlder();
      if (this.atBottom()) this.markReadSoon();
      this.updateJump();
    });
    document.addEventListener('visibilitychange', () => this.markReadSoon());
  }

  get currentId(): string | undefined {
    return this.current?.id;
  }

  /**
   * Shows a conversation with its draft in the message box, opened at the first unread message (below a "New
   * messages" line) or at the bottom; loads history back to that message if it is not loaded yet.
   */
  async open(state: ConversationState): Promise<void> {
    if (state !== this.current) {
      this.current = state;
      this.clearTypists();
      this.unreadFrom = state.myLastReadSeq < state.lastSeq ? state.myLastReadSeq + 1 : undefined;
      this.input.value = this.deps.drafts.get(state.id);
    }
    this.empty.hidden = true;
    this.pane.hidden = false;
    this.renderHeader();
    this.list.replaceChildren(
      ...[...state.messages.values()]
        .sort((a, b) => a.seq - b.seq)
        .map((m) => messageItem(this.deps.store, state, m)),
    );
    for (const pending of this.pending.values())
      if (pending.conversationId === state.id) this.list.append(this.pendingElement(pending));
    this.decorate();
    this.older.hidden = !state.hasOlder;
    this.scrollToStart();
    this.input.focus();
    await this.loadToFirstUnread(state);
    if (state !== this.current) return;
    this.scrollToStart();
    this.markReadSoon();
    this.updateJump();
  }

  /** Closes the view (the list is shown, or the conversation was removed). */
  close(): void {
    this.current = undefined;
    this.unreadFrom = undefined;
    this.input.value = '';
    this.pane.hidden = true;
    this.empty.hidden = false;
  }

  /** The conversation's details changed (a rename, members): redraw what shows them. */
  refresh(state: ConversationState): void {
    if (state !== this.current) return;
    this.renderHeader();
    this.updateReceipts();
  }

  /** New messages of any conversation; shown if it is the open one. */
  showMessages(state: ConversationState, messages: readonly PublicMessage[]): void {
    for (const message of messages) {
      this.typistDone(message.senderId);
      if (message.senderId === this.deps.store.meId) this.settle(message.clientMsgId);
    }
    if (state !== this.current) return;
    const stick = this.atBottom();
    const away = !stick || document.visibilityState !== 'visible';
    for (const message of messages) {
      // Messages that come in while the reader looks elsewhere get the "New messages" line above them.
      if (away && this.unreadFrom === undefined && message.senderId !== this.deps.store.meId)
        this.unreadFrom = message.seq;
      this.insert(messageItem(this.deps.store, state, message), message.seq);
    }
    this.decorate();
    if (stick) this.scrollToBottom();
    this.markReadSoon();
    this.updateJump();
  }

  onRead(event: ReadEvent): void {
    if (event.conversationId === this.current?.id) this.updateReceipts();
  }

  onTyping(event: TypingEvent): void {
    if (event.conversationId !== this.current?.id || event.userId === this.deps.store.meId) return;
    clearTimeout(this.typists.get(event.userId));
    this.typists.set(
      event.userId,
      setTimeout(() => this.typistDone(event.userId), TYPING_SHOWN_MS),
    );
    this.renderTyping();
  }

  /** The connection changed: pending messages say whether they are waiting for it. */
  onConnectionState(): void {
    for (const pending of this.pending.values()) this.renderPending(pending);
  }

  private renderHeader(): void {
    const state = this.current;
    if (!state) return;
    const { store } = this.deps;
    this.title.textContent = store.title(state);
    if (state.type === 'group') {
      const names = store
        .members(state)
        .map(
          (p) => `${p.userId === store.meId ? 'You' : p.displayName}${p.role === 'owner' ? ' (owner)' : ''}`,
        );
      this.membersLine.textContent = `${names.length} ${names.length === 1 ? 'member' : 'members'}: ${names.join(', ')}`;
    } else {
      const other = state.participants.find((p) => p.userId !== store.meId);
      this.membersLine.textContent = other ? `@${other.username}` : '';
    }
  }

  /** Keeps what is in the box as the open conversation's draft (the list shows which have one). */
  private keepDraft(): void {
    const state = this.current;
    if (!state) return;
    const had = this.deps.drafts.has(state.id);
    this.deps.drafts.set(state.id, this.input.value);
    if (had !== this.deps.drafts.has(state.id)) this.deps.changed();
  }

  private submit(): void {
    const state = this.current;
    const body = this.input.value;
    if (!state || body.trim() === '') return;
    this.input.value = '';
    this.deps.drafts.delete(state.id);
    // Writing means the reader has caught up: the "New messages" line has done its job.
    this.unreadFrom = undefined;
    const pending: PendingMessage = {
      clientMsgId: newClientMsgId(),
      conversationId: state.id,
      body,
      failed: undefined,
    };
    this.pending.set(pending.clientMsgId, pending);
    this.list.append(this.pendingElement(pending));
    this.decorate();
    this.scrollToBottom();
    this.updateJump();
    this.deps.changed();
    this.send(state, pending);
  }

  private send(state: ConversationState, pending: PendingMessage): void {
    const previous = this.outbox.get(state.id) ?? Promise.resolve();
    const next = previous
      .then(() =>
        this.deps.client.send(state.id, pending.body, { clientMsgId: pending.clientMsgId }).then(
          (message) => this.showMessages(state, this.deps.store.addMessages(state, [message])),
          (err: unknown) => {
            console.error(err);
            pending.failed = describeSendError(err);
            this.renderPending(pending);
          },
        ),
      )
      .catch(this.deps.report);
    this.outbox.set(state.id, next);
  }

  private retry(pending: PendingMessage): void {
    const state = this.deps.store.get(pending.conversationId);
    if (!state) {
      this.discard(pending);
      return;
    }
    pending.failed = undefined;
    this.renderPending(pending);
    this.send(state, pending);
  }

  /** Back into the message box (before whatever is there), to change it and send again. */
  private edit(pending: PendingMessage): void {
    this.discard(pending);
    if (this.current?.id !== pending.conversationId) return;
    this.input.value = this.input.value === '' ? pending.body : `${pending.body}\n${this.input.value}`;
    this.keepDraft();
    this.input.focus();
  }

  private discard(pending: PendingMessage): void {
    this.pending.delete(pending.clientMsgId);
    this.pendingItemOf(pending.clientMsgId)?.remove();
    if (this.current?.id === pending.conversationId) this.input.focus();
  }

  private pendingElement(pending: PendingMessage): HTMLLIElement {
    return pendingItem(pending, this.deps.client.state, this.pendingActions);
  }

  private pendingItemOf(clientMsgId: string): HTMLLIElement | null {
    return this.list.querySelector<HTMLLIElement>(
      `li.pending[data-client-msg-id="${CSS.escape(clientMsgId)}"]`,
    );
  }

  private renderPending(pending: PendingMessage): void {
    const item = this.pendingItemOf(pending.clientMsgId);
    if (!item) return;
    const focused = item.contains(document.activeElement);
    const fresh = this.pendingElement(pending);
    item.replaceWith(fresh);
    if (focused) fresh.querySelector('button')?.focus();
  }

  /** My message is stored: its pending copy goes away (the stored one is shown by seq). */
  private settle(clientMsgId: string): void {
    if (!this.pending.delete(clientMsgId)) return;
    this.pendingItemOf(clientMsgId)?.remove();
  }

  private typing(): void {
    const state = this.current;
    const now = Date.now();
    if (!state || this.deps.client.state !== 'connected' || now - this.lastTypingSent < TYPING_THROTTLE_MS)
      return;
    this.lastTypingSent = now;
    this.deps.client.typing(state.id).catch(this.deps.report);
  }

  /**
   * The newest history page if not loaded yet, then older pages until the first unread message (and a little
   * context above it) is loaded, up to MAX_BACKLOG messages back.
   */
  private async loadToFirstUnread(state: ConversationState): Promise<void> {
    const target = this.unreadFrom === undefined ? undefined : Math.max(1, this.unreadFrom - CONTEXT);
    const size = (from: number) => Math.min(MAX_PAGE, Math.max(PAGE, from - (target ?? from)));
    if (!state.historyLoaded) {
      // Everything up to what the live subscription has delivered; newer ones arrive through it.
      const delivered = this.deps.client.subscription(state.id)?.lastSeq ?? state.lastSeq;
      if (!(await this.loadPage(state, delivered + 1, size(delivered + 1)))) return;
      state.historyLoaded = true;
    }
    while (target !== undefined && state === this.current && state.hasOlder) {
      const oldest = this.oldestLoaded(state);
      if (oldest <= target || state.lastSeq - oldest >= MAX_BACKLOG) return;
      if (!(await this.loadPage(state, oldest, size(oldest)))) return;
    }
  }

  private async loadOlder(): Promise<void> {
    const state = this.current;
    if (!state?.hasOlder || this.loading.has(state.id)) return;
    await this.loadPage(state, this.oldestLoaded(state), PAGE);
  }

  private oldestLoaded(state: ConversationState): number {
    let oldest = Infinity;
    for (const seq of state.messages.keys()) if (seq < oldest) oldest = seq;
    return oldest === Infinity ? state.lastSeq + 1 : oldest;
  }

  /** Loads the `limit` messages before `beforeSeq`; false if that failed (and was reported). */
  private async loadPage(state: ConversationState, beforeSeq: number, limit: number): Promise<boolean> {
    this.loading.add(state.id);
    this.list.setAttribute('aria-busy', 'true');
    try {
      const page = await this.deps.client.messages.before(state.id, beforeSeq, limit);
      state.hasOlder = page.hasMore;
      const fresh = this.deps.store.addMessages(state, page.messages);
      if (state !== this.current) return true;
      // Keep what the reader is looking at in place while older messages go in above it.
      const fromBottom = this.scroller.scrollHeight - this.scroller.scrollTop;
      for (const message of fresh) this.insert(messageItem(this.deps.store, state, message), message.seq);
      this.decorate();
      this.scroller.scrollTop = this.scroller.scrollHeight - fromBottom;
      this.older.hidden = !state.hasOlder;
      this.updateReceipts();
      return true;
    } catch (err) {
      this.deps.report(err);
      return false;
    } finally {
      this.loading.delete(state.id);
      this.list.removeAttribute('aria-busy');
    }
  }

  /** Inserts a message item at its seq position (pending ones stay last). */
  private insert(item: HTMLLIElement, seq: number): void {
    if (this.list.querySelector(`li[data-seq="${seq}"]`)) return;
    const after = [
      ...this.list.querySelectorAll<HTMLLIElement>(':scope > li[data-seq], :scope > li.pending'),
    ].find((child) => child.dataset.seq === undefined || Number(child.dataset.seq) > seq);
    // Before the item that follows, and before the separator or divider that heads it.
    let anchor: Element | null = after ?? null;
    while (anchor?.previousElementSibling && !isMessage(anchor.previousElementSibling))
      anchor = anchor.previousElementSibling;
    this.list.insertBefore(item, anchor);
  }

  /**
   * Puts a day separator above the first message of each day and the "New messages" line above the first
   * unread message (or above the oldest loaded one, when that is still unread), moving or removing the ones
   * already there rather than redrawing, so the log does not announce them again.
   */
  private decorate(): void {
    const separators = new Map<string, HTMLLIElement>();
    for (const item of this.list.querySelectorAll<HTMLLIElement>(':scope > li.day-separator'))
      separators.set(item.dataset.day ?? '', item);
    const used = new Set<Element>();
    const items = [...this.list.querySelectorAll<HTMLLIElement>(':scope > li[data-seq]')];
    const from = this.unreadFrom;
    const firstUnread = from === undefined ? undefined : items.find((i) => Number(i.dataset.seq) >= from);
    let previousDay: string | undefined;
    for (const item of items) {
      const day = item.dataset.day ?? '';
      const heads: HTMLLIElement[] = [];
      if (day !== previousDay) {
        const date = new Date(item.querySelector('time')?.getAttribute('datetime') ?? '');
        const existing = separators.get(day);
        const label = existing?.querySelector('time');
        // The words change with the date: "Today" becomes "Yesterday".
        if (label && label.textContent !== dayLabel(date)) label.textContent = dayLabel(date);
        heads.push(existing ?? daySeparator(day, date));
      }
      if (item === firstUnread) heads.push(this.divider);
      previousDay = day;
      let anchor: Element = item;
      for (const head of heads.reverse()) {
        if (anchor.previousElementSibling !== head) this.list.insertBefore(head, anchor);
        used.add(head);
        anchor = head;
      }
    }
    for (const separator of separators.values()) if (!used.has(separator)) separator.remove();
    if (!used.has(this.divider)) this.divider.remove();
  }

  private updateReceipts(): void {
    const state = this.current;
    if (!state) return;
    for (const item of this.list.querySelectorAll<HTMLLIElement>('li.mine[data-seq]')) {
      const mark = item.querySelector('.receipt');
      if (mark) mark.textContent = receipt(this.deps.store, state, Number(item.dataset.seq));
    }
  }

  /** Moves my read marker to the newest message while the conversation is visibly open at the bottom. */
  private markReadSoon(): void {
    const state = this.current;
    if (!state || document.visibilityState !== 'visible' || !this.atBottom()) return;
    if (state.lastSeq <= state.myLastReadSeq) return;
    state.myLastReadSeq = state.lastSeq;
    this.deps.changed();
    this.updateJump();
    this.deps.client.markRead(state.id, state.lastSeq).catch(this.deps.report);
  }

  /** "Jump to latest", with the count of unread messages below, whenever the bottom is out of view. */
  private updateJump(): void {
    const state = this.current;
    const show = state !== undefined && !this.atBottom();
    this.jump.hidden = !show;
    if (!show) return;
    const unread = this.deps.store.unread(state);
    this.jump.textContent = unread > 0 ? `Jump to latest (${unread} new)` : 'Jump to latest';
  }

  private typistDone(userId: string | null): void {
    if (userId === null || !this.typists.has(userId)) return;
    clearTimeout(this.typists.get(userId));
    this.typists.delete(userId);
    this.renderTyping();
  }

  private clearTypists(): void {
    for (const timer of this.typists.values()) clearTimeout(timer);
    this.typists.clear();
    this.renderTyping();
  }

  private renderTyping(): void {
    const state = this.current;
    const names = state ? [...this.typists.keys()].map((id) => this.deps.store.senderName(state, id)) : [];
    this.typingLine.textContent =
      names.length === 0 ? '' : `${names.join(' and ')} ${names.length === 1 ? 'is' : 'are'} typing…`;
  }

  private atBottom(): boolean {
    return this.scroller.scrollHeight - this.scroller.scrollTop - this.scroller.clientHeight < EDGE;
  }

  private scrollToBottom(): void {
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  /** Where an opened conversation starts: at the "New messages" line if there is one, else at the bottom. */
  private scrollToStart(): void {
    if (this.divider.isConnected) this.scroller.scrollTop = this.divider.offsetTop - DIVIDER_MARGIN;
    else this.scrollToBottom();
  }
}

function isMessage(element: Element): boolean {
  return (
    element instanceof HTMLElement &&
    (element.dataset.seq !== undefined || element.classList.contains('pending'))
  );
}
