import {
  XFChatError,
  newClientMsgId,
  type PublicMessage,
  type ReadEvent,
  type TypingEvent,
  type XFChatClient,
} from '../lib/client/index.js';
import { byId } from './dom.js';
import { messageItem, pendingItem, receipt, type PendingMessage } from './messageItems.js';
import type { ConversationState, ConversationStore } from './store.js';

export interface ConversationViewDeps {
  client: XFChatClient;
  store: ConversationStore;
  report: (error: unknown) => void;
  /** Unread counts or previews changed: redraw the conversation list. */
  changed: () => void;
}

const PAGE = 50;
/** How close to an edge (px) counts as "at the bottom" / "at the top". */
const EDGE = 48;
/** A typist is shown this long after their last typing event. */
const TYPING_SHOWN_MS = 4000;
/** At most one typing event per this interval while typing. */
const TYPING_THROTTLE_MS = 2000;

/** The open conversation: history with scroll-back, live messages, the composer, typing and read markers. */
export class ConversationView {
  private current: ConversationState | undefined;
  private readonly pane = byId('conversation-pane', HTMLDivElement);
  private readonly empty = byId('empty-state', HTMLParagraphElement);
  private readonly title = byId('conversation-title', HTMLHeadingElement);
  private readonly scroller = byId('message-scroller', HTMLDivElement);
  private readonly list = byId('messages', HTMLOListElement);
  private readonly older = byId('load-older', HTMLButtonElement);
  private readonly typingLine = byId('typing-indicator', HTMLParagraphElement);
  private readonly input = byId('composer-input', HTMLTextAreaElement);
  private readonly pending = new Map<string, PendingMessage>();
  /** One send chain per conversation, so a user's messages are stored in the order typed. */
  private readonly outbox = new Map<string, Promise<void>>();
  private readonly typists = new Map<string, ReturnType<typeof setTimeout>>();
  private lastTypingSent = 0;
  private loadingOlder = false;

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
    this.input.addEventListener('input', () => this.typing());
    this.older.addEventListener('click', () => void this.loadOlder());
    this.scroller.addEventListener('scroll', () => {
      if (this.scroller.scrollTop < EDGE) void this.loadOlder();
      if (this.atBottom()) this.markReadSoon();
    });
    document.addEventListener('visibilitychange', () => this.markReadSoon());
  }

  get currentId(): string | undefined {
    return this.current?.id;
  }

  /** Shows a conversation: what is loaded at once, then the newest history page if not loaded yet. */
  async open(state: ConversationState): Promise<void> {
    this.current = state;
    this.clearTypists();
    this.empty.hidden = true;
    this.pane.hidden = false;
    this.title.textContent = this.deps.store.title(state);
    this.list.replaceChildren(
      ...[...state.messages.values()]
        .sort((a, b) => a.seq - b.seq)
        .map((m) => messageItem(this.deps.store, state, m)),
    );
    for (const pending of this.pending.values())
      if (pending.conversationId === state.id) this.list.append(pendingItem(pending, this.deps.client.state));
    this.older.hidden = !state.hasOlder;
    this.scrollToBottom();
    this.input.focus();
    if (!state.historyLoaded) await this.loadNewest(state);
    this.markReadSoon();
  }

  /** Closes the view (e.g. the conversation was removed). */
  close(): void {
    this.current = undefined;
    this.pane.hidden = true;
    this.empty.hidden = false;
  }

  /** New messages of any conversation; shown if it is the open one. */
  showMessages(state: ConversationState, messages: readonly PublicMessage[]): void {
    for (const message of messages) {
      this.typistDone(message.senderId);
      if (message.senderId === this.deps.store.meId) this.settle(message.clientMsgId);
    }
    if (state !== this.current) return;
    const stick = this.atBottom();
    for (const message of messages) this.insert(messageItem(this.deps.store, state, message), message.seq);
    if (stick) this.scrollToBottom();
    this.markReadSoon();
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
    for (const item of this.list.querySelectorAll<HTMLLIElement>('li.pending')) {
      const pending = this.pending.get(item.dataset.clientMsgId ?? '');
      if (pending) item.replaceWith(pendingItem(pending, this.deps.client.state));
    }
  }

  private submit(): void {
    const state = this.current;
    const body = this.input.value;
    if (!state || body.trim() === '') return;
    this.input.value = '';
    const pending: PendingMessage = {
      clientMsgId: newClientMsgId(),
      conversationId: state.id,
      body,
      failed: undefined,
    };
    this.pending.set(pending.clientMsgId, pending);
    this.list.append(pendingItem(pending, this.deps.client.state));
    this.scrollToBottom();
    const previous = this.outbox.get(state.id) ?? Promise.resolve();
    const next = previous.then(() =>
      this.deps.client.send(state.id, body, { clientMsgId: pending.clientMsgId }).then(
        (message) => this.showMessages(state, this.deps.store.addMessages(state, [message])),
        (err: unknown) => {
          pending.failed = err instanceof XFChatError ? err.message : 'The message could not be sent.';
          this.onConnectionState();
        },
      ),
    );
    this.outbox.set(state.id, next);
  }

  /** My message is stored: its pending copy goes away (the stored one is shown by seq). */
  private settle(clientMsgId: string): void {
    if (!this.pending.delete(clientMsgId)) return;
    this.list.querySelector(`li.pending[data-client-msg-id="${CSS.escape(clientMsgId)}"]`)?.remove();
  }

  private typing(): void {
    const state = this.current;
    const now = Date.now();
    if (!state || this.deps.client.state !== 'connected' || now - this.lastTypingSent < TYPING_THROTTLE_MS)
      return;
    this.lastTypingSent = now;
    this.deps.client.typing(state.id).catch(this.deps.report);
  }

  private async loadNewest(state: ConversationState): Promise<void> {
    // Everything up to what the live subscription has delivered; newer ones arrive through it.
    const delivered = this.deps.client.subscription(state.id)?.lastSeq ?? state.lastSeq;
    await this.loadPage(state, delivered + 1);
    state.historyLoaded = true;
  }

  private async loadOlder(): Promise<void> {
    const state = this.current;
    if (!state?.hasOlder || this.loadingOlder) return;
    const oldest = Math.min(...state.messages.keys());
    await this.loadPage(state, oldest);
  }

  private async loadPage(state: ConversationState, beforeSeq: number): Promise<void> {
    this.loadingOlder = true;
    this.list.setAttribute('aria-busy', 'true');
    try {
      const page = await this.deps.client.messages.before(state.id, beforeSeq, PAGE);
      state.hasOlder = page.hasMore;
      const fresh = this.deps.store.addMessages(state, page.messages);
      if (state !== this.current) return;
      // Keep what the reader is looking at in place while older messages go in above it.
      const fromBottom = this.scroller.scrollHeight - this.scroller.scrollTop;
      for (const message of fresh) this.insert(messageItem(this.deps.store, state, message), message.seq);
      this.scroller.scrollTop = this.scroller.scrollHeight - fromBottom;
      this.older.hidden = !state.hasOlder;
      this.updateReceipts();
    } catch (err) {
      this.deps.report(err);
    } finally {
      this.loadingOlder = false;
      this.list.removeAttribute('aria-busy');
    }
  }

  /** Inserts a message item at its seq position (pending ones stay last). */
  private insert(item: HTMLLIElement, seq: number): void {
    if (this.list.querySelector(`li[data-seq="${seq}"]`)) return;
    const after = [...this.list.children].find(
      (child) =>
        child instanceof HTMLElement && (child.dataset.seq === undefined || Number(child.dataset.seq) > seq),
    );
    this.list.insertBefore(item, after ?? null);
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
    this.deps.client.markRead(state.id, state.lastSeq).catch(this.deps.report);
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
}
