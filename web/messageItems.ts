import type { ConnectionState, PublicMessage } from '../lib/client/index.js';
import { dayKey, dayLabel, fullTimestamp, shortTime } from './dates.js';
import { button, el } from './dom.js';
import { linkify, plainText } from './linkify.js';
import { offerCopy } from './notice.js';
import { showControls, startOf } from './text.js';
import type { ConversationState, ConversationStore } from './store.js';

/** A message typed here that the server has not acknowledged yet. */
export interface PendingMessage {
  clientMsgId: string;
  conversationId: string;
  body: string;
  /** The earlier message this one answers, or null. */
  replyToSeq: number | null;
  /** Why it was given up on (a final error), if it was. */
  failed: string | undefined;
  /** Why the last attempt did not get through and it is being tried again (an error code), if so. */
  retrying: string | undefined;
  /** When it was typed (ms since the epoch). */
  typedAt: number;
}

/** What a pending message says while the SDK tries it again after the server could not take it. */
const RETRY_REASONS: Partial<Record<string, string>> = {
  DB_UNAVAILABLE: 'Waiting: the server cannot store messages right now; retrying…',
  OVERLOADED: 'Waiting: the server is busy; retrying…',
  RATE_LIMITED: 'Waiting: you are sending too fast; retrying in a moment…',
  TIMEOUT: 'Waiting: the server did not answer in time; retrying…',
};

/** The status line of a message on its way: refused, waiting for the connection, retrying (and why), or sending. */
export function pendingStatus(pending: PendingMessage, connection: ConnectionState): string {
  if (pending.failed !== undefined) return `Not sent: ${pending.failed}`;
  if (connection !== 'connected') return 'Waiting for connection…';
  const reason = pending.retrying === undefined ? undefined : RETRY_REASONS[pending.retrying];
  return reason ?? 'Sending…';
}

/** What the user can do with a message the server refused. */
export interface PendingActions {
  retry: (pending: PendingMessage) => void;
  edit: (pending: PendingMessage) => void;
  discard: (pending: PendingMessage) => void;
}

/** "Read" once the others' read markers reach a message of mine (a count in groups). */
export function receipt(store: ConversationStore, state: ConversationState, seq: number): string {
  const others = state.participants.filter((p) => p.userId !== store.meId);
  const readers = others.filter((p) => p.lastReadSeq >= seq).length;
  if (readers === 0) return 'Sent';
  return state.type === 'direct' ? 'Read' : `Read by ${readers}`;
}

/** `<time>` with the short form shown and the full timestamp on hover. */
function timeElement(iso: string): HTMLTimeElement {
  const date = new Date(iso);
  return el('time', { text: shortTime(date), attrs: { datetime: iso, title: fullTimestamp(date) } });
}

/** The emoji of the reaction picker. Any other emoji someone reacted with shows as a chip all the same. */
export const REACTION_CHOICES: readonly string[] = ['👍', '❤️', '😂', '😮', '😢', '🎉'];

/** How much of a message a quote shows (its start, on one line). */
const SNIPPET_LENGTH = 90;

/** What a message item needs to know besides the message. */
export interface MessageContext {
  store: ConversationStore;
  state: ConversationState;
  /** The newest state known of an earlier message (one a reply answers); undefined while it is being read. */
  original: (seq: number) => PublicMessage | undefined;
}

/** The start of a text on one line, cut at a word with "…" when long. */
export function snippet(text: string, length = SNIPPET_LENGTH): string {
  // Invisible direction characters show as markers: a quote never reads differently from what was sent.
  const line = showControls(text).replace(/\s+/g, ' ').trim();
  const cut = startOf(line, length);
  if (cut === line) return line;
  const space = cut.lastIndexOf(' ');
  return `${space > length / 2 ? cut.slice(0, space) : cut}…`;
}

/** Who wrote the message a reply answers and the start of its text, as a quote shows them. */
export interface QuoteText {
  sender: string;
  senderId: string | null;
  text: string;
  kind: 'text' | 'deleted' | 'unknown';
}

export function quoteText(ctx: MessageContext, seq: number): QuoteText {
  const original = ctx.original(seq);
  if (!original) return { sender: 'Earlier message', senderId: null, text: '…', kind: 'unknown' };
  const sender = ctx.store.senderLabel(ctx.state, original.senderId);
  if (original.deletedAt !== null)
    return { sender, senderId: original.senderId, text: 'message deleted', kind: 'deleted' };
  return { sender, senderId: original.senderId, text: snippet(original.body), kind: 'text' };
}

/**
 * The compact quote above a reply: the original's sender and the start of its text (or "message deleted").
 * Interactive (a button that jumps to the original) in stored messages; plain in pending ones.
 */
export function quoteElement(ctx: MessageContext, seq: number, interactive: boolean): HTMLElement {
  const quote = quoteText(ctx, seq);
  const label = `In reply to ${quote.sender}: ${quote.text}`;
  // Each takes its own direction, as the message and its sender's name do: a quote of a right-to-left message is
  // laid out right to left, with its numbers in the order sent.
  const children = [
    el('span', { className: 'quote-sender', text: quote.sender, attrs: { dir: 'auto' } }),
    quote.kind === 'text'
      ? el('span', { className: 'quote-text', attrs: { dir: 'auto' } }, ...plainText(quote.text))
      : el('span', { className: 'quote-text gone', text: quote.text }),
  ];
  const dataset: Record<string, string> = { replyTo: String(seq), sender: quote.senderId ?? '' };
  // A plain element has no name of its own: the words "In reply to" are there for screen readers.
  if (!interactive)
    return el(
      'div',
      { className: 'quote', dataset },
      el('span', { className: 'visually-hidden', text: 'In reply to ' }),
      ...children,
    );
  return el(
    'button',
    {
      className: 'quote',
      dataset: { ...dataset, action: 'quote', focus: 'quote' },
      attrs: { type: 'button', 'aria-label': label, title: 'Show the original message' },
    },
    ...children,
  );
}

const listFormat = new Intl.ListFormat('en', { type: 'conjunction' });

/**
 * Who reacted with one emoji, others first and me last: "Ann, Bob and you"; past `most` names, the rest counted
 * ("Ann, Bob, you and 997 others").
 */
export function reactorNames(
  ctx: Pick<MessageContext, 'store' | 'state'>,
  userIds: readonly string[],
  most = Infinity,
): string {
  const { store, state } = ctx;
  const others = userIds.filter((id) => id !== store.meId);
  const mine = userIds.includes(store.meId);
  if (others.length === 0) return mine ? 'You' : '';
  const named =
    others.length + (mine ? 1 : 0) > most ? others.slice(0, Math.max(1, most - (mine ? 1 : 0))) : others;
  const names = named.map((id) => store.senderLabel(state, id));
  if (mine) names.push('you');
  const rest = others.length - named.length;
  if (rest > 0) names.push(`${rest} ${rest === 1 ? 'other' : 'others'}`);
  return listFormat.format(names);
}

/** How many names the actions menu gives of those who reacted with one emoji; the others are counted. */
const MENU_REACTORS = 6;

/**
 * Who reacted with each emoji ("👍 Bob, Cy and you"), for the message's actions menu; or nothing. Under a chip it
 * is a tooltip, shown on hover and keyboard focus, which a touch screen has neither of (a tap on a chip adds or
 * takes back my own): the menu, a tap away on a phone, says it too (MOBILE hunt).
 */
export function whoReactedList(
  ctx: Pick<MessageContext, 'store' | 'state'>,
  message: PublicMessage,
): HTMLElement | null {
  if (message.deletedAt !== null || message.reactions.length === 0) return null;
  return el(
    'ul',
    { className: 'who-reacted', attrs: { 'aria-label': 'Who reacted' } },
    ...message.reactions.map((reaction) =>
      el('li', { text: `${reaction.emoji} ${reactorNames(ctx, reaction.userIds, MENU_REACTORS)}` }),
    ),
  );
}

/**
 * An open actions menu stays while its message changes (focus may be in it): what it says of the reactions follows
 * (which emoji are mine, who reacted).
 */
function followReactionsInMenu(item: HTMLElement, ctx: MessageContext, message: PublicMessage): void {
  const menu = item.querySelector('.tools .menu');
  if (menu === null) return;
  for (const choice of menu.querySelectorAll<HTMLButtonElement>('button[data-action="react"]')) {
    const mine = message.reactions.some(
      (r) => r.emoji === choice.dataset.emoji && r.userIds.includes(ctx.store.meId),
    );
    if (choice.getAttribute('aria-pressed') !== String(mine))
      choice.setAttribute('aria-pressed', String(mine));
  }
  const shown = menu.querySelector('.who-reacted');
  const fresh = whoReactedList(ctx, message);
  if (shown === null) {
    if (fresh !== null) menu.append(fresh);
  } else if (fresh === null) shown.remove();
  else if (shown.textContent !== fresh.textContent) shown.replaceWith(fresh);
}

/** A chip's accessible name: "👍 3 reactions, including you". */
export function reactionLabel(emoji: string, count: number, mine: boolean): string {
  const counted = `${emoji} ${count} ${count === 1 ? 'reaction' : 'reactions'}`;
  if (!mine) return counted;
  return count === 1 ? `${counted}, yours` : `${counted}, including you`;
}

/** The chips under a message: one per emoji with its count, mine pressed, who reacted in a tooltip. */
function reactionsPart(ctx: MessageContext, message: PublicMessage): HTMLElement | null {
  if (message.deletedAt !== null || message.reactions.length === 0) return null;
  const chips = message.reactions.map((reaction, i) => {
    const mine = reaction.userIds.includes(ctx.store.meId);
    const count = reaction.userIds.length;
    const tipId = `reactors-${message.seq}-${i}`;
    return el(
      'span',
      { className: 'chip-wrap' },
      el(
        'button',
        {
          className: mine ? 'chip mine' : 'chip',
          dataset: { action: 'reaction', emoji: reaction.emoji, focus: `reaction:${reaction.emoji}` },
          attrs: {
            type: 'button',
            'aria-pressed': String(mine),
            'aria-label': reactionLabel(reaction.emoji, count, mine),
            'aria-describedby': tipId,
          },
        },
        el('span', { className: 'emoji', text: reaction.emoji, attrs: { 'aria-hidden': 'true' } }),
        el('span', { className: 'count', text: String(count), attrs: { 'aria-hidden': 'true' } }),
      ),
      el('span', {
        className: 'reactors',
        text: reactorNames(ctx, reaction.userIds),
        attrs: { id: tipId, role: 'tooltip' },
      }),
    );
  });
  // Changes here are not announced again and again (aria-live off inside the log): the chips say them on focus.
  return el(
    'div',
    { className: 'reactions', attrs: { role: 'group', 'aria-label': 'Reactions', 'aria-live': 'off' } },
    ...chips,
  );
}

/** "Actions for Bob's message of 14:05": the name of the button that opens a message's actions. */
export function actionsLabel(ctx: MessageContext, message: PublicMessage): string {
  const whose =
    message.senderId === ctx.store.meId
      ? 'your message'
      : `${ctx.store.senderLabel(ctx.state, message.senderId)}’s message`;
  return `Actions for ${whose} of ${shortTime(new Date(message.createdAt))}`;
}

/** The button that opens a message's actions. */
function toolsPart(ctx: MessageContext, message: PublicMessage): HTMLElement | null {
  if (message.deletedAt !== null) return null;
  const label = actionsLabel(ctx, message);
  return el(
    'div',
    { className: 'tools', attrs: { 'aria-live': 'off' } },
    el(
      'button',
      {
        className: 'tools-toggle secondary',
        dataset: { action: 'menu', focus: 'menu' },
        attrs: { type: 'button', 'aria-label': label, 'aria-expanded': 'false' },
      },
      el('span', { text: '⋯', attrs: { 'aria-hidden': 'true' } }),
    ),
  );
}

function metaPart(ctx: MessageContext, message: PublicMessage): HTMLElement {
  const { store, state } = ctx;
  const mine = message.senderId === store.meId;
  // Display names are not unique: the @username (no one else's) always stands beside someone else's name.
  const handle = store.handle(state, message.senderId);
  const edited =
    message.editedAt !== null && message.deletedAt === null
      ? el('time', {
          className: 'edited',
          text: 'edited',
          attrs: { datetime: message.editedAt, title: `Edited ${fullTimestamp(new Date(message.editedAt))}` },
        })
      : null;
  return el(
    'div',
    { className: 'meta' },
    el('span', {
      className: 'sender',
      text: store.senderName(state, message.senderId),
      attrs: { dir: 'auto' },
    }),
    handle === undefined ? null : el('span', { className: 'handle', text: handle }),
    timeElement(message.createdAt),
    edited,
    mine ? el('span', { className: 'receipt', text: receipt(store, state, message.seq) }) : null,
  );
}

function bodyPart(message: PublicMessage): HTMLElement {
  if (message.deletedAt !== null) return el('div', { className: 'body gone', text: 'message deleted' });
  // dir="auto": each body takes its direction from its own text, isolated from the rest of the page.
  return el('div', { className: 'body', attrs: { dir: 'auto' } }, ...linkify(message.body));
}

/** The parts of a message item, in order; the editor and the error line are added by the message actions. */
const PARTS = ['meta', 'quote', 'body', 'editor', 'reactions', 'error', 'tools'] as const;
export type MessagePart = (typeof PARTS)[number];

/** A part of a message item, if it has one. */
export function partOf(item: HTMLElement, part: MessagePart): HTMLElement | null {
  return item.querySelector<HTMLElement>(`:scope > [data-part="${part}"]`);
}

/**
 * Puts `fresh` in the place of the item's `part` (or removes it), unless what it shows is the same (compared
 * node by node: no copy of the markup is kept). Keyboard focus inside the old part moves to the same control of
 * the new one (`data-focus`), or to the item.
 */
export function setPart(item: HTMLElement, part: MessagePart, fresh: HTMLElement | null): void {
  const old = partOf(item, part);
  if (fresh) fresh.dataset.part = part;
  if (old && fresh && old.isEqualNode(fresh)) return;
  const active = document.activeElement;
  const focused = old !== null && active instanceof HTMLElement && old.contains(active) ? active : undefined;
  if (fresh) {
    if (old) old.replaceWith(fresh);
    else {
      const later = PARTS.slice(PARTS.indexOf(part) + 1)
        .map((name) => partOf(item, name))
        .find((element) => element !== null);
      item.insertBefore(fresh, later ?? null);
    }
  } else old?.remove();
  if (!focused) return;
  const key = focused.dataset.focus;
  const same =
    key === undefined ? null : fresh?.querySelector<HTMLElement>(`[data-focus="${CSS.escape(key)}"]`);
  (same ?? item).focus();
}

/**
 * A stored message: `data-seq` orders it in the list, `data-day` (local) places the day separators. Focusable
 * (tabindex -1) so that jumping to it from a reply moves keyboard focus there.
 */
export function messageItem(ctx: MessageContext, message: PublicMessage): HTMLLIElement {
  const item = el('li', {
    className: 'message',
    dataset: {
      seq: String(message.seq),
      day: dayKey(new Date(message.createdAt)),
      sender: message.senderId ?? '',
    },
    attrs: { tabindex: '-1' },
  });
  updateMessageItem(item, ctx, message);
  return item;
}

/**
 * Shows a message's current state in its item, changing only the parts that differ (so what did not change is
 * not announced again, and focus stays): "edited", the new text, the reactions, or "message deleted" in place.
 */
export function updateMessageItem(item: HTMLElement, ctx: MessageContext, message: PublicMessage): void {
  const deleted = message.deletedAt !== null;
  item.classList.toggle('mine', message.senderId === ctx.store.meId);
  item.classList.toggle('deleted', deleted);
  if (message.replyToSeq !== null) item.dataset.replyTo = String(message.replyToSeq);
  setPart(item, 'meta', metaPart(ctx, message));
  setPart(
    item,
    'quote',
    message.replyToSeq === null || deleted ? null : quoteElement(ctx, message.replyToSeq, true),
  );
  setPart(item, 'body', bodyPart(message));
  setPart(item, 'reactions', reactionsPart(ctx, message));
  // The actions menu, while open, lives in the tools part: it stays unless the message is gone.
  if (deleted || !item.classList.contains('menu-open')) setPart(item, 'tools', toolsPart(ctx, message));
  else followReactionsInMenu(item, ctx, message);
  if (deleted) {
    // Nothing is left to edit, and no error about it matters any more; but what was typed in an open editor is not
    // thrown away: it stays, unsaved, with why and "Copy" (focus, if it was there, goes to "Copy").
    item.classList.remove('editing');
    const editor = partOf(item, 'editor');
    const typed = editor?.querySelector('textarea');
    if (editor && typed) {
      const focused = editor.contains(document.activeElement);
      const unsaved = unsavedEdit(item, typed.value);
      setPart(item, 'editor', unsaved);
      if (focused) unsaved.querySelector('button')?.focus();
    }
    setPart(item, 'error', null);
  }
}

/** In place of an editor whose message was deleted meanwhile: the text typed in it, whole, to copy, until dismissed. */
function unsavedEdit(item: HTMLElement, text: string): HTMLElement {
  const unsent = el('pre', {
    className: 'unsent',
    text,
    attrs: { 'aria-label': 'Your unsaved edit', dir: 'auto' },
  });
  const copy = el('button', {
    className: 'secondary',
    attrs: { type: 'button', 'aria-label': 'Copy your unsaved edit' },
  });
  offerCopy(copy, unsent, text);
  return el(
    'div',
    { className: 'editor unsaved-edit' },
    el('p', {
      className: 'error',
      text: 'Not saved: the message was deleted. What you typed is below; copy it to keep it.',
      attrs: { role: 'alert' },
    }),
    unsent,
    el(
      'div',
      { className: 'editor-row' },
      copy,
      el('button', {
        text: 'Dismiss',
        className: 'secondary',
        attrs: { type: 'button', 'aria-label': 'Dismiss your unsaved edit' },
        onClick: () => setPart(item, 'editor', null),
      }),
    ),
  );
}

/** The line above a day's first message: "Today", "Yesterday", "Monday", "Tuesday, 22 October 2024". */
export function daySeparator(day: string, date: Date, now?: Date): HTMLLIElement {
  return el(
    'li',
    { className: 'day-separator', dataset: { day } },
    el('time', { text: dayLabel(date, now), attrs: { datetime: day } }),
  );
}

/** The line above the first message that was unread when the conversation was opened. */
export function newMessagesDivider(): HTMLLIElement {
  return el(
    'li',
    { className: 'new-divider', attrs: { id: 'new-messages' } },
    el('span', { text: 'New messages' }),
  );
}

/** A message on its way, saying whether it waits for the connection, or why it was refused and what to do. */
export function pendingItem(
  pending: PendingMessage,
  connection: ConnectionState,
  actions: PendingActions,
  quote: HTMLElement | null,
): HTMLLIElement {
  const status = pendingStatus(pending, connection);
  return el(
    'li',
    {
      className: pending.failed === undefined ? 'message mine pending' : 'message mine pending failed',
      dataset: { clientMsgId: pending.clientMsgId },
    },
    el(
      'div',
      { className: 'meta' },
      el('span', { className: 'sender', text: 'You' }),
      el('span', { className: 'status', text: status }),
    ),
    quote,
    el('div', { className: 'body', attrs: { dir: 'auto' } }, ...linkify(pending.body)),
    pending.failed === undefined
      ? null
      : el(
          'div',
          { className: 'actions' },
          button('Retry', () => actions.retry(pending), { label: 'Retry sending this message' }),
          button('Edit', () => actions.edit(pending), {
            label: 'Put this message back in the message box',
            secondary: true,
          }),
          button('Discard', () => actions.discard(pending), {
            label: 'Discard this message',
            secondary: true,
          }),
        ),
  );
}
