import type { ConnectionState, PublicMessage } from '../lib/client/index.js';
import { dayKey, dayLabel, fullTimestamp, shortTime } from './dates.js';
import { button, el } from './dom.js';
import { linkify } from './linkify.js';
import type { ConversationState, ConversationStore } from './store.js';

/** A message typed here that the server has not acknowledged yet. */
export interface PendingMessage {
  clientMsgId: string;
  conversationId: string;
  body: string;
  /** Why it was given up on (a final error), if it was. */
  failed: string | undefined;
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

/** A stored message: `data-seq` orders it in the list, `data-day` (local) places the day separators. */
export function messageItem(
  store: ConversationStore,
  state: ConversationState,
  message: PublicMessage,
): HTMLLIElement {
  const mine = message.senderId === store.meId;
  const meta = el(
    'div',
    { className: 'meta' },
    el('span', { className: 'sender', text: store.senderName(state, message.senderId) }),
    timeElement(message.createdAt),
    mine ? el('span', { className: 'receipt', text: receipt(store, state, message.seq) }) : null,
  );
  return el(
    'li',
    {
      className: mine ? 'message mine' : 'message',
      dataset: { seq: String(message.seq), day: dayKey(new Date(message.createdAt)) },
    },
    meta,
    el('div', { className: 'body' }, ...linkify(message.body)),
  );
}

/** The line above a day's first message: "Today", "Yesterday", "Monday", "Tuesday, 22 October 2024". */
export function daySeparator(day: string, date: Date): HTMLLIElement {
  return el(
    'li',
    { className: 'day-separator', dataset: { day } },
    el('time', { text: dayLabel(date), attrs: { datetime: day } }),
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
): HTMLLIElement {
  const status =
    pending.failed !== undefined
      ? `Not sent: ${pending.failed}`
      : connection === 'connected'
        ? 'Sending…'
        : 'Waiting for connection…';
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
    el('div', { className: 'body', text: pending.body }),
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
