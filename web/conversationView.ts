import {
  XFChatError,
  newClientMsgId,
  type PublicMessage,
  type ReadEvent,
  type TypingEvent,
  type XFChatClient,
} from '../lib/client/index.js';
import { dayKey, dayLabel } from './dates.js';
import { byId, el, enterAddsLine, onEnterChange, sendsOnKey } from './dom.js';
import type { Drafts } from './drafts.js';
import { plainText } from './linkify.js';
import type { Outbox, OutboxEntry } from './outbox.js';
import { MessageActions } from './messageActions.js';
import { readRetryWait } from './retry.js';
import {
  daySeparator,
  messageItem,
  newMessagesDivider,
  pendingItem,
  quoteElement,
  quoteText,
  receipt,
  snippet,
  updateMessageItem,
  actionsLabel,
  type MessageContext,
  type PendingActions,
  type PendingMessage,
} from './messageItems.js';
import type { ConversationState, ConversationStore } from './store.js';
import { MAX_MESSAGE_CODE_POINTS, codePointLength, waitWords } from './text.js';

export interface ConversationViewDeps {
  client: XFChatClient;
  store: ConversationStore;
  drafts: Drafts;
  /** Messages not acknowledged yet, kept across reloads. */
  outbox: Outbox;
  report: (error: unknown) => void;
  /** Unread counts, previews or drafts changed: redraw the conversation list and the tab title. */
  changed: () => void;
  /** The back button of narrow screens: show the conversation list. */
  back: () => void;
  /** Whether I block this user (the "Blocked" list). */
  blocks: (userId: string) => boolean;
  /** Whether this user and I are friends or one of us asked the other (impossible under a block). */
  inTouch: (userId: string) => boolean;
  /** Reads friends, requests and blocks again; `ConversationView.socialChanged` follows. */
  refreshSocial: () => void;
  /** Whether this page is signing out (its drafts are being forgotten): no draft may be saved again then. */
  signingOut: () => boolean;
  /**
   * Whether this page is reloading itself (the session ended or changed, the server's data was restored): what is on
   * its way is then kept for the next page, or was forgotten with the session, and nothing asks to stay.
   */
  restarting: () => boolean;
}

/** History page size when nothing is unread. */
const PAGE = 50;
/** The server's largest page. */
const MAX_PAGE = 200;
/** Opening a conversation loads back to its first unread message, but never more than this many messages. */
const MAX_BACKLOG = 1000;
/** Read messages shown above the first unread one, for context. */
const CONTEXT = 3;
/** New messages read out one by one up to this many at once; more are read out as a count. */
const ANNOUNCED_AT_ONCE = 3;
/** How close to an edge (px) counts as "at the bottom" / "at the top". */
const EDGE = 48;
/** Room (px) left above the "New messages" line when a conversation opens there. */
const DIVIDER_MARGIN = 16;
/** A typist is shown this long after their last typing event. */
const TYPING_SHOWN_MS = 4000;
/** At most one typing event per this interval while typing. */
const TYPING_THROTTLE_MS = 2000;
/** How long a message shown by jumping to it from a reply stays highlighted. */
const HIGHLIGHT_MS = 2000;
/** A day, in ms. */
const DAY_MS = 86_400_000;

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

/**
 * Refusals of a message that no retry can change: the conversation is not mine to write in (any more), a block, the
 * text itself, or its clientMsgId taken by another text. Such a message leaves the outbox, so that no reload sends
 * it again behind the writer's back (after the block is lifted, say), and stays on the page as "Not sent", with why,
 * "Retry" (which keeps it again), "Edit" and "Discard". Any other end of a send (the page or the session closing,
 * an answer the SDK did not expect, an internal error of the server) leaves it kept, to go out on the next load.
 */
const REFUSED_FOR_GOOD = new Set([
  'NOT_FOUND',
  'FORBIDDEN',
  'BLOCKED',
  'NOT_FRIENDS',
  'VALIDATION_FAILED',
  'PAYLOAD_TOO_LARGE',
  'IDEMPOTENCY_CONFLICT',
]);

/**
 * Refusals of a typing event that say nothing the writer can act on (the typing is nothing they asked for):
 * not worth a popup. A block shows in the view instead; a conversation I am no longer in is removed by its event.
 */
const QUIET_TYPING_ERRORS = new Set(['BLOCKED', 'NOT_FOUND', 'FORBIDDEN']);

/** Why history could not be read, as the pane says it. */
const HISTORY_ERRORS: Partial<Record<string, string>> = {
  DB_UNAVAILABLE: 'the server cannot read messages right now',
  OVERLOADED: 'the server is busy',
  RATE_LIMITED: 'too many requests in a short time',
  NETWORK_ERROR: 'the server could not be reached',
  TIMEOUT: 'the server did not answer in time',
};

function describeSendError(err: unknown): string {
  if (!(err instanceof XFChatError)) return 'the message could not be sent.';
  return SEND_ERRORS[err.code] ?? err.message;
}

/**
 * The open conversation: history with scroll-back, live messages with day separators and a "New messages"
 * line, the jump-to-latest button, the composer with a draft per conversation (and the message it answers),
 * typing and read markers; messages that change (edited, deleted, reacted to) are redrawn in place, and a
 * reply's quote jumps to its original.
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
  /** Whether the reader was at the bottom when the log last scrolled, or was scrolled there. */
  private pinned = true;
  /** The log's height when last seen, to tell it getting shorter. */
  private scrollerHeight: number | undefined;
  private readonly list = byId('messages', HTMLOListElement);
  private readonly older = byId('load-older', HTMLButtonElement);
  private readonly jump = byId('jump-latest', HTMLButtonElement);
  private readonly typingLine = byId('typing-indicator', HTMLParagraphElement);
  /** A polite live region that reads out new messages from others in the open conversation, and only those. */
  private readonly announcer = byId('message-announcer', HTMLDivElement);
  private readonly input = byId('composer-input', HTMLTextAreaElement);
  private readonly sendButton = byId('composer-send', HTMLButtonElement);
  /** Why nobody can write here (a block, a deleted account), above the message box. */
  private readonly lockedLine = byId('composer-locked', HTMLParagraphElement);
  private readonly count = byId('composer-count', HTMLParagraphElement);
  /**
   * The count's live region, told only when the length crosses into the last tenth, past the limit or back under
   * it: the count itself changes at each keystroke, and a live region read out at each would drown the typing.
   */
  private readonly countStatus = byId('composer-count-status', HTMLParagraphElement);
  private countBand: 'room' | 'near' | 'over' = 'room';
  private readonly replyPreview = byId('reply-preview', HTMLDivElement);
  private readonly replyLabel = byId('reply-label', HTMLSpanElement);
  private readonly replyText = byId('reply-text', HTMLSpanElement);
  private readonly historyError = byId('history-error', HTMLDivElement);
  private readonly historyErrorText = byId('history-error-text', HTMLParagraphElement);
  /** The last failure to read a history page (what the pane says, and whether and when to try again). */
  private historyFailure: unknown;
  /** Failed tries in a row to read the open conversation's history (for the backoff). */
  private historyAttempts = 0;
  private historyRetryTimer: ReturnType<typeof setTimeout> | undefined;
  private historyRetry: (() => Promise<void>) | undefined;
  /** Per conversation, the message the composer answers ("Reply"), until sent or cancelled. */
  private readonly replies = new Map<string, number>();
  private readonly actions: MessageActions;
  /** Originals read for the quote of a reply (`conversationId:seq`), one read at a time. */
  private readonly originalsAsked = new Set<string>();
  private originalsQueue: Promise<void> = Promise.resolve();
  private highlightTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly divider = newMessagesDivider();
  private readonly pending = new Map<string, PendingMessage>();
  /** One send chain per conversation, so a user's messages are stored in the order typed. */
  private readonly outbox = new Map<string, Promise<void>>();
  /** The conversation whose opening history is being loaded: nothing in it is marked read meanwhile. */
  private openingHistory: ConversationState | undefined;
  /** What stops the SDK sending each pending message (by clientMsgId), while a send of it runs or waits. */
  private readonly stops = new Map<string, AbortController>();
  private readonly typists = new Map<string, ReturnType<typeof setTimeout>>();
  /** Conversations with a history page on its way. */
  private readonly loading = new Set<string>();
  private readonly pendingActions: PendingActions = {
    retry: (pending) => this.retry(pending),
    edit: (pending) => this.edit(pending),
    discard: (pending) => this.discard(pending),
  };
  /**
   * When the last typing event went out, on the monotonic clock (performance.now()): a computer clock set back (NTP
   * after a resume, or by hand) would otherwise stop them for as long as the step.
   */
  private lastTypingSent = -Infinity;
  /**
   * Direct conversations where a send or a typing event was refused as BLOCKED though I block nobody there (the
   * server does not say whose block it is), with the last seq known then. Forgotten once something shows that
   * the block is gone: a newer message, the other's typing, a friendship or request between us, or a reload.
   */
  private readonly refusedAsBlocked = new Map<string, number>();
  /**
   * Another tab of this browser wrote its own text over the open conversation's stored draft, or sent its text and
   * removed it, while this tab's box holds other text: that text is saved again when this tab leaves the
   * conversation or the page (see `keepDraftTakenOver`).
   */
  private draftTakenOver = false;
  /** What this tab last loaded or saved as the open conversation's draft. */
  private draftSavedHere = '';

  constructor(private readonly deps: ConversationViewDeps) {
    this.actions = new MessageActions({
      client: deps.client,
      store: deps.store,
      list: this.list,
      report: deps.report,
      current: () => this.current,
      redraw: (state, seq) => {
        this.redraw(state, seq);
        deps.changed();
      },
      reply: (state, seq) => this.startReply(state, seq),
      jumpTo: (state, seq) => void this.jumpTo(state, seq).catch(deps.report),
    });
    byId('reply-cancel', HTMLButtonElement).addEventListener('click', () => {
      this.cancelReply();
      this.input.focus();
    });
    byId('composer', HTMLFormElement).addEventListener('submit', (event) => {
      event.preventDefault();
      this.submit();
    });
    this.describeEnter();
    onEnterChange(() => this.describeEnter());
    this.input.addEventListener('keydown', (event) => {
      if (sendsOnKey(event)) {
        event.preventDefault();
        this.submit();
      } else if (event.key === 'Escape' && this.current && this.replies.has(this.current.id)) {
        event.preventDefault();
        this.cancelReply();
      }
    });
    this.input.addEventListener('input', () => {
      this.updateCount();
      this.keepDraft();
      this.typing();
    });
    this.older.addEventListener('click', () => void this.loadOlder());
    byId('history-retry', HTMLButtonElement).addEventListener('click', () => {
      const again = this.historyRetry;
      // The box goes away with the button that has focus: focus goes first to where the reader writes, or it
      // would fall to the page (a keyboard user starting again from its top).
      if (this.historyError.contains(document.activeElement)) this.focusComposer();
      this.clearHistoryError();
      if (again) void again().catch(deps.report);
    });
    this.jump.addEventListener('click', () => {
      this.scrollToBottom();
      this.markReadSoon();
      this.updateJump();
      this.input.focus();
    });
    byId('back-button', HTMLButtonElement).addEventListener('click', () => deps.back());
    this.scroller.addEventListener('scroll', () => {
      this.pinned = this.atBottom();
      if (this.scroller.scrollTop < EDGE) void this.loadOlder();
      if (this.atBottom()) this.markReadSoon();
      this.updateJump();
    });
    // The log gets shorter when the window does (a phone's keyboard opening, the phone turned, a header that grew):
    // its bottom would drop out of view, and with it the reader's place at the bottom, so that new messages were no
    // longer followed (MOBILE hunt). A reader at the bottom stays there, as with the reply preview.
    new ResizeObserver(() => {
      const height = this.scroller.clientHeight;
      // Shorter only (taller, the bottom stays in view), and not hidden (the list's view on a phone).
      const shorter = this.scrollerHeight !== undefined && height > 0 && height < this.scrollerHeight;
      this.scrollerHeight = height;
      // Not while focus is in the log (an editor open on an earlier message, the keyboard opened for it): the
      // browser keeps what has focus in view, and the bottom would take it away (review).
      const focusInLog = this.scroller.contains(document.activeElement);
      if (shorter && this.pinned && !focusInLog && !this.atBottom()) {
        this.scrollToBottom();
        this.updateJump();
      }
    }).observe(this.scroller);
    document.addEventListener('visibilitychange', () => this.markReadSoon());
    window.addEventListener('storage', (event) => {
      this.draftChangedElsewhere(event);
      // Another tab went away with messages not sent: this one sends them now (each clientMsgId is stored once,
      // whichever tab sends it), not the next page of this browser to load, which may be days away.
      if (
        event.storageArea === localStorage &&
        event.key === this.deps.outbox.handOverKey() &&
        event.newValue
      )
        this.resumePending();
    });
    window.addEventListener('pagehide', () => {
      this.keepDraftTakenOver();
      if ([...this.pending.values()].some((p) => p.failed === undefined)) this.deps.outbox.handOver();
    });
    // Unsent messages are kept and sent by another tab of this browser, or after a reload; with no other tab, a
    // closed one sends nothing until a page is opened again.
    // A reload the page does by itself is not the user's to cancel: "Stay" would leave a closed client on screen.
    window.addEventListener('beforeunload', (event) => {
      if (this.deps.restarting()) return;
      if (![...this.pending.values()].some((p) => p.failed === undefined)) return;
      event.preventDefault();
      // Older browsers ask only when returnValue is set.
      event.returnValue = '';
    });
  }

  /**
   * Sends again the messages a previous page of this browser did not see acknowledged (closed or reloaded
   * before the server answered, or while offline), with their own clientMsgIds: the server stores each once.
   * Those of conversations not in the list are neither sent nor dropped: they are returned, for the caller to
   * find out whether I am still in them (and to show their text if not). Call once the conversations are known,
   * and again when one joins the list.
   */
  resumePending(): OutboxEntry[] {
    const elsewhere: OutboxEntry[] = [];
    const kept = this.deps.outbox.entries();
    const taken = new Map<ConversationState, PendingMessage[]>();
    for (const entry of kept) {
      if (this.pending.has(entry.clientMsgId)) continue;
      const state = this.deps.store.get(entry.conversationId);
      if (!state) {
        elsewhere.push(entry);
        continue;
      }
      const pending: PendingMessage = { ...entry, failed: undefined, retrying: undefined };
      this.pending.set(pending.clientMsgId, pending);
      if (state === this.current) this.list.append(this.pendingElement(pending));
      taken.set(state, [...(taken.get(state) ?? []), pending]);
    }
    // Messages typed here after one taken over (from a tab that closed) and not sent yet go again behind it: a
    // conversation's messages are sent in the order typed, in whichever tab (each clientMsgId is stored once, so
    // one already on its way is not stored twice).
    const place = new Map(kept.map((entry, i) => [entry.clientMsgId, i]));
    for (const [state, messages] of taken) {
      const first = place.get(messages[0]!.clientMsgId) ?? 0;
      const later = [...this.pending.values()].filter(
        (p) =>
          p.conversationId === state.id &&
          p.failed === undefined &&
          !messages.includes(p) &&
          (place.get(p.clientMsgId) ?? -1) > first,
      );
      for (const p of later) this.stopSending(p.clientMsgId);
      const inOrder = [...messages, ...later].sort(
        (a, b) => (place.get(a.clientMsgId) ?? 0) - (place.get(b.clientMsgId) ?? 0),
      );
      for (const p of inOrder) this.send(state, p);
    }
    return elsewhere;
  }

  get currentId(): string | undefined {
    return this.current?.id;
  }

  /**
   * Shows a conversation with its draft in the message box, opened at the first unread message (below a "New
   * messages" line) or at the bottom; loads history back to that message if it is not loaded yet.
   *
   * The conversation already open (its entry in the list clicked again, a notification of it) is left as it is,
   * and focus goes back to where the reader writes: the inline editor if one is open, else the message box.
   * Drawing it again would close that editor and lose what was typed in it, and move the reader from their place.
   */
  async open(state: ConversationState): Promise<void> {
    if (state === this.current) {
      if (!this.actions.focusEditor()) this.focusComposer();
      return;
    }
    this.keepDraftTakenOver();
    this.current = state;
    this.clearHistoryError();
    this.historyAttempts = 0;
    this.clearTypists();
    this.announcer.replaceChildren();
    this.unreadFrom = state.myLastReadSeq < state.lastSeq ? state.myLastReadSeq + 1 : undefined;
    this.input.value = this.deps.drafts.get(state.id);
    this.draftSavedHere = this.input.value;
    this.updateCount();
    this.empty.hidden = true;
    this.pane.hidden = false;
    this.actions.reset();
    this.renderHeader();
    const context = this.context(state);
    this.list.replaceChildren(
      ...[...state.messages.values()].sort((a, b) => a.seq - b.seq).map((m) => messageItem(context, m)),
    );
    for (const pending of this.pending.values())
      if (pending.conversationId === state.id) this.list.append(this.pendingElement(pending));
    this.decorate();
    this.renderReply();
    this.older.hidden = !state.hasOlder;
    this.scrollToStart();
    this.focusComposer();
    await this.showHistory(state);
  }

  /**
   * Focus to where the reader writes: the message box, or, while nobody can write here (the box is off and takes
   * no focus), the line saying why, else the conversation's title. Not left where it was: on a phone the list
   * entry that opened the conversation is hidden now, and focus would fall to the page (the next Tab from its top).
   */
  private focusComposer(): void {
    if (!this.input.disabled) this.input.focus();
    else if (!this.lockedLine.hidden && this.lockedLine.textContent !== '') this.lockedLine.focus();
    else this.title.focus();
  }

  /**
   * Loads the history an opened conversation starts with, then puts the reader at its start; if that fails,
   * the pane says why and tries again by itself (after the server's Retry-After, or with backoff).
   */
  private async showHistory(state: ConversationState): Promise<void> {
    // While the pages down to the first unread message come in, the view sits at the bottom between pages: a
    // scroll there marked everything read, hundreds of messages the reader had not seen (SYNC hunt).
    this.openingHistory = state;
    let loaded: boolean;
    try {
      loaded = await this.loadToFirstUnread(state);
    } finally {
      if (this.openingHistory === state) this.openingHistory = undefined;
    }
    if (state !== this.current) return;
    if (!loaded) {
      this.historyFailed(state, () => this.showHistory(state));
      return;
    }
    this.scrollToStart();
    this.markReadSoon();
    this.updateJump();
  }

  /**
   * A history page could not be read: the pane says why, with "Try again now", and `again` runs by itself after
   * the server's Retry-After or a growing wait, if the failure is one that passes (the database or the network
   * is down, too many requests). A conversation I am no longer in is not tried again.
   */
  private historyFailed(state: ConversationState, again: () => Promise<void>): void {
    if (state !== this.current) return;
    const err = this.historyFailure;
    if (err instanceof XFChatError && (err.code === 'NOT_FOUND' || err.code === 'CLIENT_CLOSED')) {
      this.deps.report(err);
      return;
    }
    console.error(err);
    this.clearHistoryError();
    this.historyRetry = again;
    const reason =
      err instanceof XFChatError
        ? (HISTORY_ERRORS[err.code] ?? err.message.replace(/\.$/, ''))
        : 'something went wrong';
    this.historyError.hidden = false;
    const wait = readRetryWait(err, this.historyAttempts);
    if (wait === undefined) {
      this.historyErrorText.textContent = `Could not load the messages: ${reason}.`;
      return;
    }
    this.historyAttempts += 1;
    this.historyErrorText.textContent = `Could not load the messages: ${reason}. Trying again in ${waitWords(wait / 1000)}…`;
    this.historyRetryTimer = setTimeout(() => {
      this.historyRetryTimer = undefined;
      if (state !== this.current) return;
      this.clearHistoryError();
      void again().catch(this.deps.report);
    }, wait);
  }

  private clearHistoryError(): void {
    clearTimeout(this.historyRetryTimer);
    this.historyRetryTimer = undefined;
    this.historyRetry = undefined;
    this.historyError.hidden = true;
    this.historyErrorText.textContent = '';
  }

  /**
   * I am no longer in a conversation: its messages still on their way are dropped (the server would refuse
   * them) and their texts returned, with the draft's, so that nothing written is lost without a word.
   */
  takeUnsent(conversationId: string): string[] {
    const texts: string[] = [];
    for (const pending of [...this.pending.values()]) {
      if (pending.conversationId !== conversationId) continue;
      texts.push(pending.body);
      this.stopSending(pending.clientMsgId);
      this.pending.delete(pending.clientMsgId);
      this.deps.outbox.remove(pending.clientMsgId);
      this.pendingItemOf(pending.clientMsgId)?.remove();
    }
    const draft =
      this.current?.id === conversationId ? this.input.value : this.deps.drafts.get(conversationId);
    if (draft.trim() !== '') texts.push(draft);
    // Taken: it is not to be saved again as the draft of a conversation I am no longer in.
    if (this.current?.id === conversationId) this.draftTakenOver = false;
    return texts;
  }

  /** Closes the view (the list is shown, or the conversation was removed). */
  close(): void {
    this.keepDraftTakenOver();
    this.actions.reset();
    this.clearHistoryError();
    this.current = undefined;
    this.renderReply();
    this.unreadFrom = undefined;
    this.input.value = '';
    this.updateCount();
    this.pane.hidden = true;
    this.empty.hidden = false;
  }

  /**
   * The conversation's details changed (a rename, members), or its read markers (the list read again): redraw what
   * shows them, the count on "Jump to latest" too.
   */
  refresh(state: ConversationState): void {
    if (state !== this.current) return;
    this.renderHeader();
    this.updateReceipts();
    this.updateJump();
  }

  /**
   * A user's name changed (or became known): their messages, the quotes of them, the reactions they made, the
   * message the composer answers and the typing line say the new one.
   */
  renamed(): void {
    const state = this.current;
    if (!state) return;
    const context = this.context(state);
    // Only the parts that show the name change (messageItems.setPart compares what each part shows).
    for (const item of this.list.querySelectorAll<HTMLLIElement>(':scope > li[data-seq]')) {
      const message = state.messages.get(Number(item.dataset.seq));
      if (message) updateMessageItem(item, context, message);
    }
    for (const pending of this.pending.values())
      if (pending.conversationId === state.id && pending.replyToSeq !== null) this.renderPending(pending);
    this.renderReply();
    this.renderTyping();
  }

  /**
   * A message's new state (an edit, a delete, a reaction change), already in the store: its item, the quotes
   * of it in replies, and the composer's reply preview show it.
   */
  redraw(state: ConversationState, seq: number): void {
    if (state !== this.current) return;
    const context = this.context(state);
    const message = state.messages.get(seq);
    const item = this.itemOf(seq);
    if (message && item) updateMessageItem(item, context, message);
    this.actions.redrawn();
    this.refreshReplies(state, seq);
  }

  /** New messages of any conversation; shown if it is the open one. */
  showMessages(state: ConversationState, messages: readonly PublicMessage[]): void {
    // A message stored after a send or a typing was refused as BLOCKED: the block is gone.
    const refusedAt = this.refusedAsBlocked.get(state.id);
    if (refusedAt !== undefined && messages.some((m) => m.seq > refusedAt)) this.unblocked(state.id);
    for (const message of messages) {
      this.typistDone(message.senderId);
      if (message.senderId === this.deps.store.meId) this.settle(message.clientMsgId);
    }
    if (state !== this.current) return;
    const stick = this.atBottom();
    const away = !stick || document.visibilityState !== 'visible';
    for (const message of messages) {
      // Messages that come in while the reader looks elsewhere get the "New messages" line above them, unless it
      // is above others still unread: a line the reader has read past (here or in another tab) has done its job.
      const caughtUp = this.unreadFrom === undefined || state.myLastReadSeq >= this.unreadFrom;
      if (away && caughtUp && message.senderId !== this.deps.store.meId) this.unreadFrom = message.seq;
      this.insert(messageItem(this.context(state), message), message.seq);
    }
    this.decorate();
    if (stick) this.scrollToBottom();
    this.markReadSoon();
    this.updateJump();
    this.announce(state, messages);
  }

  /**
   * Has a screen reader say new messages from others: "Bob: see you at noon", one line each; a burst (catching
   * up after a reconnection) as a count, not a long reading.
   */
  private announce(state: ConversationState, messages: readonly PublicMessage[]): void {
    const { store } = this.deps;
    const others = messages.filter((m) => m.senderId !== store.meId && m.deletedAt === null);
    if (others.length === 0) return;
    const lines =
      others.length > ANNOUNCED_AT_ONCE
        ? [`${others.length} new messages`]
        : others.map((m) => `${store.senderLabel(state, m.senderId)}: ${snippet(m.body, 200)}`);
    this.announcer.replaceChildren(...lines.map((text) => el('p', { text })));
  }

  /**
   * A read marker moved (already in the store): the receipts of my messages follow; my own (read on another device
   * or tab) also lowers the count on "Jump to latest", as it does the tab title's.
   */
  onRead(event: ReadEvent): void {
    if (event.conversationId !== this.current?.id) return;
    this.updateReceipts();
    if (event.userId === this.deps.store.meId) this.updateJump();
  }

  onTyping(event: TypingEvent): void {
    // The server passes on no typing under a block.
    if (event.userId !== this.deps.store.meId) this.unblocked(event.conversationId);
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
    // The title takes its own direction (a group named in Hebrew reads right to left), the heading stays in place.
    this.title.replaceChildren(el('span', { text: store.title(state), attrs: { dir: 'auto' } }));
    if (state.type === 'group') {
      const members = store.members(state);
      // Each name in a `<bdi>`: its own direction, not its neighbours' (a right-to-left name beside a number or
      // another such name would run into it). Names are not unique: everyone else's @username is beside theirs.
      const items = members.flatMap((p, i) => {
        const handle = store.handle(state, p.userId);
        const after = `${handle === undefined ? '' : ` ${handle}`}${p.role === 'owner' ? ' (owner)' : ''}`;
        return [...(i === 0 ? [] : [', ']), el('bdi', { text: store.senderName(state, p.userId) }), after];
      });
      this.membersLine.replaceChildren(
        `${members.length} ${members.length === 1 ? 'member' : 'members'}: `,
        ...items,
      );
    } else {
      const other = state.participants.find((p) => p.userId !== store.meId);
      this.membersLine.textContent =
        other === undefined
          ? ''
          : other.username === null
            ? 'This account was deleted. The history stays; nobody reads new messages here.'
            : `@${other.username}`;
    }
    this.renderLock();
  }

  /**
   * Why nobody can write in `state`: the other person's account was deleted (messages would pile up unread), or
   * a block stands between us (the server refuses them); undefined if one can.
   */
  private lock(state: ConversationState): { placeholder: string; line: string } | undefined {
    const { store } = this.deps;
    if (store.otherIsDeleted(state)) return { placeholder: 'This account was deleted', line: '' };
    const other =
      state.type === 'direct' ? state.participants.find((p) => p.userId !== store.meId) : undefined;
    if (other === undefined) return undefined;
    if (this.deps.blocks(other.userId))
      return {
        placeholder: 'You blocked this person',
        line: `You blocked ${store.title(state)}. Unblock them (under “Blocked”) to write here again.`,
      };
    if (this.refusedAsBlocked.has(state.id))
      return {
        placeholder: 'You cannot message this person',
        line: 'You cannot message this person: one of you has blocked the other.',
      };
    return undefined;
  }

  /** The message box is off, and the line above it says why, while nobody can write in the open conversation. */
  private renderLock(): void {
    const state = this.current;
    const lock = state === undefined ? undefined : this.lock(state);
    const focused = document.activeElement === this.input;
    this.input.disabled = lock !== undefined;
    this.sendButton.disabled = lock !== undefined || this.tooLong();
    this.input.placeholder = lock?.placeholder ?? 'Write a message';
    const line = lock?.line ?? '';
    if (this.lockedLine.textContent !== line) this.lockedLine.textContent = line;
    this.lockedLine.hidden = line === '';
    // A box turned off under the writer's hands: focus goes to why, rather than to nowhere.
    if (focused && lock !== undefined && line !== '') this.lockedLine.focus();
  }

  /** A send or a typing event of mine was refused as BLOCKED: the view says so, and the box is off. */
  private refusedByBlock(state: ConversationState): void {
    if (state.type !== 'direct') return;
    this.refusedAsBlocked.set(state.id, state.lastSeq);
    if (state === this.current) this.renderLock();
    // The Blocked list may be out of date (a block made on another device): read again, it says whose block it is.
    this.deps.refreshSocial();
  }

  /** Something shows that no block stands in `conversationId` now: the box is on again. */
  private unblocked(conversationId: string): void {
    if (!this.refusedAsBlocked.delete(conversationId)) return;
    if (conversationId === this.current?.id) this.renderLock();
  }

  /**
   * Friends, requests or blocks were read again: a refusal that my own block explains, or a friendship or a
   * request between us (impossible under a block), is no longer a reason to keep the box off; the open
   * conversation shows what stands now.
   */
  socialChanged(): void {
    const { store } = this.deps;
    for (const id of [...this.refusedAsBlocked.keys()]) {
      const state = store.get(id);
      const other = state?.participants.find((p) => p.userId !== store.meId);
      if (other === undefined || this.deps.blocks(other.userId) || this.deps.inTouch(other.userId))
        this.refusedAsBlocked.delete(id);
    }
    this.renderLock();
  }

  /** Keeps what is in the box as the open conversation's draft (the list shows which have one). */
  private keepDraft(): void {
    const state = this.current;
    if (!state) return;
    this.draftTakenOver = false;
    this.draftSavedHere = this.input.value;
    const had = this.deps.drafts.has(state.id);
    this.deps.drafts.set(state.id, this.input.value);
    if (had !== this.deps.drafts.has(state.id)) this.deps.changed();
  }

  /**
   * Another tab changed a stored draft (drafts are shared by the tabs of this browser, one per conversation). If it
   * is the open conversation's and it no longer holds what this tab's box holds (the other tab wrote its own text
   * over it, or sent its text and removed it), this tab's text is no longer saved: it will be, when this tab
   * leaves the conversation or the page. Its own text sent from the other tab (the draft it had loaded) is not.
   */
  private draftChangedElsewhere(event: StorageEvent): void {
    const state = this.current;
    if (!state || event.storageArea !== localStorage || event.key !== this.deps.drafts.key(state.id)) return;
    const mine = this.input.value;
    const sentMine = event.newValue === null && event.oldValue === mine;
    if (sentMine && mine.trim() !== '') {
      // The other tab sent (or cleared) this very text: left in this box, Enter here would send it a second time.
      this.input.value = '';
      this.draftSavedHere = '';
      this.draftTakenOver = false;
      this.updateCount();
      // A reply begun here went with that text: the next one typed is not meant as one.
      this.cancelReply();
      return;
    }
    this.draftTakenOver = mine.trim() !== '' && event.newValue !== mine && !sentMine;
  }

  /**
   * Saves the box as the open conversation's draft again if another tab took the stored one over (see
   * `draftChangedElsewhere`): on leaving the conversation or the page, so that this tab's text survives a reload,
   * a restart of the browser or a switch; never while signing out.
   */
  private keepDraftTakenOver(): void {
    const state = this.current;
    if (!this.draftTakenOver || !state) return;
    this.draftTakenOver = false;
    if (this.deps.signingOut() || this.input.value.trim() === '') return;
    this.deps.drafts.set(state.id, this.input.value);
  }

  /** Whether the box holds more than the server takes (counted in code points, as the server counts). */
  private tooLong(): boolean {
    return codePointLength(this.input.value) > MAX_MESSAGE_CODE_POINTS;
  }

  /**
   * The length of what is in the box, shown near the limit; past it, Send is off and the line says by how much
   * (nothing is ever cut: pasted text stays whole, to be shortened by the writer).
   */
  private updateCount(): void {
    const length = codePointLength(this.input.value);
    const over = length > MAX_MESSAGE_CODE_POINTS;
    const limit = MAX_MESSAGE_CODE_POINTS.toLocaleString('en');
    this.count.hidden = length <= MAX_MESSAGE_CODE_POINTS * 0.9;
    this.count.classList.toggle('over', over);
    this.count.textContent = over
      ? `Too long to send: ${length.toLocaleString('en')} characters, the limit is ${limit}. Shorten it by ${(length - MAX_MESSAGE_CODE_POINTS).toLocaleString('en')}.`
      : `${length.toLocaleString('en')} of ${limit} characters`;
    if (over) this.input.setAttribute('aria-invalid', 'true');
    else this.input.removeAttribute('aria-invalid');
    const band = over ? 'over' : this.count.hidden ? 'room' : 'near';
    if (band !== this.countBand) {
      this.countBand = band;
      this.countStatus.textContent =
        band === 'room'
          ? ''
          : band === 'over' || this.countStatus.textContent === ''
            ? this.count.textContent
            : `Short enough to send: ${this.count.textContent}`;
    }
    this.sendButton.disabled = over || (this.current !== undefined && this.lock(this.current) !== undefined);
  }

  /**
   * What Enter does in the message box, said to screen readers (the box's description) and shown by the on-screen
   * keyboard's Enter key (`enterKeyHint`): it sends, or, on a touch-only device, starts a new line (`enterAddsLine`).
   */
  private describeEnter(): void {
    const addsLine = enterAddsLine();
    byId('composer-hint', HTMLElement).textContent = addsLine
      ? 'Enter starts a new line; the Send button or Ctrl+Enter sends.'
      : 'Enter sends, Shift+Enter starts a new line.';
    this.input.enterKeyHint = addsLine ? 'enter' : 'send';
  }

  private submit(): void {
    const state = this.current;
    const body = this.input.value;
    if (!state || body.trim() === '') return;
    if (this.tooLong()) {
      // Enter does not send it either: the count line says why, and its live region says it again.
      this.count.hidden = false;
      // (Emptied first, and said again a moment later: the same words set again are no change to read out.)
      const said = this.count.textContent;
      this.countStatus.textContent = '';
      setTimeout(() => {
        if (this.countBand === 'over') this.countStatus.textContent = said;
      }, 100);
      return;
    }
    this.input.value = '';
    this.updateCount();
    // The stored draft goes only if it is what was sent (or what this tab last saved): another tab of this
    // conversation may have written its own text there meanwhile, which stays.
    const stored = this.deps.drafts.get(state.id);
    if (stored === body || stored === this.draftSavedHere) this.deps.drafts.delete(state.id);
    this.draftTakenOver = false;
    this.draftSavedHere = '';
    // Writing means the reader has caught up: the "New messages" line has done its job.
    this.unreadFrom = undefined;
    const pending: PendingMessage = {
      clientMsgId: newClientMsgId(),
      conversationId: state.id,
      body,
      replyToSeq: this.replies.get(state.id) ?? null,
      failed: undefined,
      retrying: undefined,
      typedAt: Date.now(),
    };
    this.cancelReply();
    this.pending.set(pending.clientMsgId, pending);
    this.keep(pending);
    this.list.append(this.pendingElement(pending));
    this.decorate();
    this.scrollToBottom();
    this.updateJump();
    this.deps.changed();
    this.send(state, pending);
  }

  /**
   * Kept until the server has it (or refuses it for good): a reload or a closed tab sends it again (same
   * clientMsgId) on the next load.
   */
  private keep(pending: PendingMessage): void {
    const state = this.deps.store.get(pending.conversationId);
    this.deps.outbox.keep({
      conversationId: pending.conversationId,
      clientMsgId: pending.clientMsgId,
      body: pending.body,
      replyToSeq: pending.replyToSeq,
      typedAt: pending.typedAt,
      // To name the conversation if I am no longer in it when a later page finds this message unsent.
      title: state && this.deps.store.title(state),
      group: state?.type === 'group',
    });
  }

  private send(state: ConversationState, pending: PendingMessage): void {
    const previous = this.outbox.get(state.id) ?? Promise.resolve();
    const stop = new AbortController();
    this.stops.set(pending.clientMsgId, stop);
    const next = previous
      .then(() => {
        if (stop.signal.aborted) return;
        return this.deps.client
          .send(state.id, pending.body, {
            clientMsgId: pending.clientMsgId,
            replyToSeq: pending.replyToSeq,
            signal: stop.signal,
            // The message says why it waits (the server cannot store it now, is busy, or this is too fast).
            onRetry: ({ reason }) => {
              if (pending.retrying === reason) return;
              pending.retrying = reason;
              this.renderPending(pending);
            },
          })
          .then(
            (message) => {
              this.stopped(pending.clientMsgId, stop);
              this.settle(message.clientMsgId);
              this.unblocked(state.id);
              this.showMessages(state, this.deps.store.addMessages(state, [message]));
            },
            (err: unknown) => {
              this.stopped(pending.clientMsgId, stop);
              // Taken back from the page (its text shown elsewhere, or discarded): nothing more to say of it.
              if (stop.signal.aborted) return;
              console.error(err);
              if (err instanceof XFChatError && REFUSED_FOR_GOOD.has(err.code))
                this.deps.outbox.remove(pending.clientMsgId);
              pending.failed = describeSendError(err);
              pending.retrying = undefined;
              this.renderPending(pending);
              // The log is not a live region: a screen reader hears of the refusal here, once for each failure.
              if (state === this.current)
                this.announcer.replaceChildren(
                  el('p', { text: `Your message was not sent: ${pending.failed}` }),
                );
              if (err instanceof XFChatError && err.code === 'BLOCKED') this.refusedByBlock(state);
            },
          );
      })
      .catch(this.deps.report);
    this.outbox.set(state.id, next);
  }

  /** A send is over: its stop goes (unless a later send of the same message has its own by now). */
  private stopped(clientMsgId: string, stop: AbortController): void {
    if (this.stops.get(clientMsgId) === stop) this.stops.delete(clientMsgId);
  }

  /**
   * Stops the SDK's sending of a message the page let go of: its text given back (a removal's notice says it was
   * not sent) or discarded. Without this the SDK went on retrying it, and stored it once the conversation took it
   * again (added back to the group, the database back), behind the user's back.
   */
  private stopSending(clientMsgId: string): void {
    this.stops.get(clientMsgId)?.abort();
    this.stops.delete(clientMsgId);
  }

  private retry(pending: PendingMessage): void {
    const state = this.deps.store.get(pending.conversationId);
    if (!state) {
      this.discard(pending);
      return;
    }
    pending.failed = undefined;
    pending.retrying = undefined;
    // On its way again: kept again (a refusal for good took it out of the outbox).
    this.keep(pending);
    this.renderPending(pending);
    this.send(state, pending);
  }

  /** Back into the message box (before whatever is there, answering what it answered), to change and resend. */
  private edit(pending: PendingMessage): void {
    this.discard(pending);
    const state = this.current;
    if (state?.id !== pending.conversationId) return;
    if (pending.replyToSeq !== null) this.startReply(state, pending.replyToSeq);
    this.input.value = this.input.value === '' ? pending.body : `${pending.body}\n${this.input.value}`;
    this.updateCount();
    this.keepDraft();
    this.input.focus();
  }

  private discard(pending: PendingMessage): void {
    this.stopSending(pending.clientMsgId);
    this.pending.delete(pending.clientMsgId);
    this.deps.outbox.remove(pending.clientMsgId);
    this.pendingItemOf(pending.clientMsgId)?.remove();
    if (this.current?.id === pending.conversationId) this.input.focus();
  }

  private pendingElement(pending: PendingMessage): HTMLLIElement {
    const state = this.deps.store.get(pending.conversationId);
    const quote =
      state && pending.replyToSeq !== null
        ? quoteElement(this.context(state), pending.replyToSeq, false)
        : null;
    return pendingItem(pending, this.deps.client.state, this.pendingActions, quote);
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
    // Stored: nothing to send again after a reload (also when another tab of this browser sent it).
    this.deps.outbox.remove(clientMsgId);
    if (!this.pending.delete(clientMsgId)) return;
    this.pendingItemOf(clientMsgId)?.remove();
  }

  /** What drawing a message of `state` needs: the store, and the originals its replies quote. */
  private context(state: ConversationState): MessageContext {
    return { store: this.deps.store, state, original: (seq) => this.original(state, seq) };
  }

  /** The newest state known of a message a reply quotes; one not known yet is read (once) and drawn then. */
  private original(state: ConversationState, seq: number): PublicMessage | undefined {
    const known = this.deps.store.message(state, seq);
    if (known) return known;
    const key = `${state.id}:${seq}`;
    if (this.originalsAsked.has(key)) return undefined;
    this.originalsAsked.add(key);
    // One read at a time: a page full of replies to older messages must not spend the whole read budget at once.
    this.originalsQueue = this.originalsQueue.then(async () => {
      try {
        const page = await this.deps.client.messages.after(state.id, seq - 1, 1);
        const message = page.messages.find((m) => m.seq === seq);
        if (!message) return;
        this.deps.store.update(state, message);
        this.refreshReplies(state, seq);
      } catch (err) {
        // The quote keeps saying "Earlier message"; it is read again the next time it is drawn.
        console.error(err);
        this.originalsAsked.delete(key);
      }
    });
    return undefined;
  }

  /**
   * The replies to `seq` (or to any of a set of seqs), stored and pending, and the composer's reply preview quote
   * the originals' current state.
   */
  private refreshReplies(state: ConversationState, seq: number | ReadonlySet<number>): void {
    if (state !== this.current) return;
    const answers = (to: number | null) =>
      to !== null && (typeof seq === 'number' ? to === seq : seq.has(to));
    const context = this.context(state);
    const selector =
      typeof seq === 'number'
        ? `:scope > li[data-seq][data-reply-to="${seq}"]`
        : ':scope > li[data-seq][data-reply-to]';
    for (const item of this.list.querySelectorAll<HTMLLIElement>(selector)) {
      if (!answers(Number(item.dataset.replyTo))) continue;
      const message = state.messages.get(Number(item.dataset.seq));
      if (message) updateMessageItem(item, context, message);
    }
    for (const pending of this.pending.values())
      if (pending.conversationId === state.id && answers(pending.replyToSeq)) this.renderPending(pending);
    if (answers(this.replies.get(state.id) ?? null)) this.renderReply();
  }

  /** The oldest (`first`) or newest (`last`) stored message shown, looking only at the ends of the list. */
  private edgeMessage(which: 'first' | 'last'): HTMLLIElement | null {
    let element = which === 'first' ? this.list.firstElementChild : this.list.lastElementChild;
    while (element && !(element instanceof HTMLLIElement && element.dataset.seq !== undefined))
      element = which === 'first' ? element.nextElementSibling : element.previousElementSibling;
    return element;
  }

  private itemOf(seq: number): HTMLLIElement | null {
    return this.list.querySelector<HTMLLIElement>(`:scope > li[data-seq="${seq}"]`);
  }

  /** "Reply": the composer answers this message (shown above it) until it is sent or the reply cancelled. */
  private startReply(state: ConversationState, seq: number): void {
    this.replies.set(state.id, seq);
    if (state !== this.current) return;
    this.renderReply();
    this.input.focus();
  }

  private cancelReply(): void {
    const state = this.current;
    if (!state) return;
    this.replies.delete(state.id);
    this.renderReply();
  }

  /** The quote above the message box of the message it answers, and the box described by it; or nothing. */
  private renderReply(): void {
    const state = this.current;
    const seq = state === undefined ? undefined : this.replies.get(state.id);
    // The preview takes room from the log: a reader at the bottom stays there.
    const stick = this.atBottom();
    if (state === undefined || seq === undefined) {
      this.replyPreview.hidden = true;
      this.input.setAttribute('aria-describedby', 'composer-hint');
      if (stick) this.scrollToBottom();
      return;
    }
    const quote = quoteText(this.context(state), seq);
    this.replyLabel.textContent = `Replying to ${quote.senderId === this.deps.store.meId ? 'yourself' : quote.sender}`;
    // As the quote in the log: the start of the message in its own direction, its numbers in the order sent.
    if (quote.kind === 'text') this.replyText.replaceChildren(...plainText(quote.text));
    else this.replyText.textContent = quote.text;
    this.replyText.classList.toggle('gone', quote.kind !== 'text');
    this.replyPreview.hidden = false;
    this.input.setAttribute('aria-describedby', 'reply-quote composer-hint');
    if (stick) this.scrollToBottom();
  }

  /**
   * Shows a message (the original of a reply): older history is loaded back to it if needed, then it is
   * scrolled to the middle, briefly highlighted, and focused (so a screen reader reads it).
   */
  private async jumpTo(state: ConversationState, seq: number): Promise<void> {
    while (!this.itemOf(seq) && state === this.current && state.hasOlder) {
      const oldest = this.oldestLoaded(state);
      if (oldest <= seq) break;
      const size = Math.min(MAX_PAGE, Math.max(PAGE, oldest - seq + CONTEXT));
      if (!(await this.loadPage(state, oldest, size))) {
        this.historyFailed(state, () => this.jumpTo(state, seq));
        return;
      }
    }
    const item = this.itemOf(seq);
    if (!item || state !== this.current) return;
    item.scrollIntoView({ block: 'center' });
    item.focus({ preventScroll: true });
    for (const shown of this.list.querySelectorAll(':scope > li.highlight'))
      shown.classList.remove('highlight');
    clearTimeout(this.highlightTimer);
    item.classList.add('highlight');
    this.highlightTimer = setTimeout(() => item.classList.remove('highlight'), HIGHLIGHT_MS);
    this.updateJump();
  }

  private typing(): void {
    const state = this.current;
    const now = performance.now();
    if (!state || this.deps.client.state !== 'connected' || now - this.lastTypingSent < TYPING_THROTTLE_MS)
      return;
    if (this.lock(state) !== undefined) return;
    this.lastTypingSent = now;
    this.deps.client.typing(state.id).then(
      () => this.unblocked(state.id),
      (err: unknown) => {
        if (err instanceof XFChatError && err.code === 'BLOCKED') this.refusedByBlock(state);
        if (err instanceof XFChatError && QUIET_TYPING_ERRORS.has(err.code)) console.error(err);
        else this.deps.report(err);
      },
    );
  }

  /**
   * The newest history page if not loaded yet, then older pages until the first unread message (and a little
   * context above it) is loaded, up to MAX_BACKLOG messages back.
   */
  private async loadToFirstUnread(state: ConversationState): Promise<boolean> {
    const target = this.unreadFrom === undefined ? undefined : Math.max(1, this.unreadFrom - CONTEXT);
    const size = (from: number) => Math.min(MAX_PAGE, Math.max(PAGE, from - (target ?? from)));
    if (!state.historyLoaded) {
      // Everything up to what the live subscription has delivered; newer ones arrive through it.
      const delivered = this.deps.client.subscription(state.id)?.lastSeq ?? state.lastSeq;
      if (!(await this.loadPage(state, delivered + 1, size(delivered + 1)))) return false;
      state.historyLoaded = true;
    }
    while (target !== undefined && state === this.current && state.hasOlder) {
      const oldest = this.oldestLoaded(state);
      if (oldest <= target || state.lastSeq - oldest >= MAX_BACKLOG) return true;
      if (!(await this.loadPage(state, oldest, size(oldest)))) return false;
    }
    return true;
  }

  private async loadOlder(): Promise<void> {
    const state = this.current;
    // Not while a failed read waits to be tried again: scrolling must not hammer a server that is down.
    if (!state?.hasOlder || this.loading.has(state.id) || !this.historyError.hidden) return;
    if (!(await this.loadPage(state, this.oldestLoaded(state), PAGE)))
      this.historyFailed(state, () => this.loadOlder());
  }

  private oldestLoaded(state: ConversationState): number {
    let oldest = Infinity;
    for (const seq of state.messages.keys()) if (seq < oldest) oldest = seq;
    return oldest === Infinity ? state.lastSeq + 1 : oldest;
  }

  /** Loads the `limit` messages before `beforeSeq`; false if that failed (the failure is `historyFailure`). */
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
      const context = this.context(state);
      // Newest first: each older message then goes in at the top, without looking through the list.
      for (const message of [...fresh].reverse()) this.insert(messageItem(context, message), message.seq);
      // A newer state of one already shown is drawn (rare: a page normally brings only new ones), and replies
      // shown before their originals were loaded quote them now (one look through the list for the whole page).
      const drawn = new Set(fresh.map((m) => m.seq));
      for (const message of page.messages) {
        const item = drawn.has(message.seq) ? null : this.itemOf(message.seq);
        const now = state.messages.get(message.seq);
        if (item && now) updateMessageItem(item, context, now);
      }
      this.actions.redrawn();
      this.refreshReplies(state, new Set(page.messages.map((m) => m.seq)));
      this.decorate();
      this.scroller.scrollTop = this.scroller.scrollHeight - fromBottom;
      // "Load older messages" goes away after the last page: if it had focus, focus goes to the oldest message,
      // where the reader goes on, rather than to the page (a keyboard user starting again from its top).
      if (!state.hasOlder && document.activeElement === this.older) this.edgeMessage('first')?.focus();
      this.older.hidden = !state.hasOlder;
      this.updateReceipts();
      this.historyAttempts = 0;
      return true;
    } catch (err) {
      this.historyFailure = err;
      return false;
    } finally {
      this.loading.delete(state.id);
      this.list.removeAttribute('aria-busy');
    }
  }

  /**
   * Inserts a message item at its seq position (pending ones stay last). A message newer than the newest shown
   * (a live one) or older than the oldest (a history page) goes in at its end without a look through the list.
   */
  private insert(item: HTMLLIElement, seq: number): void {
    const first = this.edgeMessage('first');
    const last = this.edgeMessage('last');
    if (!first || !last || seq > Number(last.dataset.seq)) {
      // After the newest message: before the first pending one (they come after its decorations), or at the end.
      let pending: Element | null = last ? last.nextElementSibling : this.list.firstElementChild;
      while (pending && !pending.classList.contains('pending')) pending = pending.nextElementSibling;
      this.list.insertBefore(item, pending);
      return;
    }
    if (seq < Number(first.dataset.seq)) {
      // Before the oldest one, and before the separator or divider that heads it.
      let anchor: Element = first;
      while (anchor.previousElementSibling && !isMessage(anchor.previousElementSibling))
        anchor = anchor.previousElementSibling;
      this.list.insertBefore(item, anchor);
      return;
    }
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

  /** Says the days again ("Today" becomes "Yesterday"): at midnight, when nothing else changes. */
  relabelDays(): void {
    if (this.currentId !== undefined) this.decorate();
  }

  /**
   * The computer's time zone changed (a laptop after a flight): each message shown is drawn again (its time, its
   * "edited" time, its actions' name), and its day, in the new zone.
   */
  timeZoneChanged(): void {
    const state = this.current;
    if (state === undefined) return;
    const context = this.context(state);
    for (const item of this.list.querySelectorAll<HTMLLIElement>(':scope > li[data-seq]')) {
      const message = state.messages.get(Number(item.dataset.seq));
      if (message === undefined) continue;
      item.dataset.day = dayKey(new Date(message.createdAt));
      updateMessageItem(item, context, message);
      // An open actions menu is left as it is (updateMessageItem): its button and the menu are renamed in place.
      if (item.classList.contains('menu-open')) {
        const label = actionsLabel(context, message);
        item.querySelector('button.tools-toggle')?.setAttribute('aria-label', label);
        item.querySelector('.tools .menu')?.setAttribute('aria-label', label);
      }
    }
    this.actions.redrawn();
    this.decorate();
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
    const dateOf = (item: Element) => new Date(item.querySelector('time')?.getAttribute('datetime') ?? '');
    // Today is the reader's, or the newest message's day if that is later (a clock behind the server's, around
    // midnight), so that two days do not both read "Today"; a day later at most: a server whose clock is days ahead
    // must not turn the reader's today into a weekday (days after that day still read "Today").
    const newest = items.length > 0 ? dateOf(items[items.length - 1]!).getTime() : Number.NaN;
    const now = new Date(
      Number.isNaN(newest) ? Date.now() : Math.min(Math.max(Date.now(), newest), Date.now() + DAY_MS),
    );
    let previousDay: string | undefined;
    for (const item of items) {
      const day = item.dataset.day ?? '';
      const heads: HTMLLIElement[] = [];
      if (day !== previousDay) {
        const date = dateOf(item);
        const existing = separators.get(day);
        const label = existing?.querySelector('time');
        // The words change with the date: "Today" becomes "Yesterday".
        const words = dayLabel(date, now);
        if (label && label.textContent !== words) label.textContent = words;
        heads.push(existing ?? daySeparator(day, date, now));
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
    if (state === this.openingHistory || state.lastSeq <= state.myLastReadSeq) return;
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
    const names = state ? [...this.typists.keys()].map((id) => this.deps.store.senderLabel(state, id)) : [];
    const text =
      names.length === 0 ? '' : `${names.join(' and ')} ${names.length === 1 ? 'is' : 'are'} typing…`;
    // A polite live region: the same words set again (each typing event renews a typist) would be said again.
    if (this.typingLine.textContent !== text) this.typingLine.textContent = text;
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
