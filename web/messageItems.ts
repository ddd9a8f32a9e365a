import type { ConnectionState, PublicMessage } from '../lib/client/index.js';
import { el, shortTime } from './dom.js';
import type { ConversationState, ConversationStore } from './store.js';

/** A message typed here that the server has not acknowledged yet. */
export interface PendingMessage {
  clientMsgId: string;
  conversationId: string;
  body: string;
  /** Why it was given up on (a final error), if it was. */
  failed: string | undefined;
}

/** "Read" once the others' read markers reach a message of mine (a count in groups). */
export function receipt(store: ConversationStore, state: ConversationState, seq: number): string {
  const others = state.participants.filter((p) => p.userId !== store.meId);
  const readers = others.filter((p) => p.lastReadSeq >= seq).length;
  if (readers === 0) return 'Sent';
  return state.type === 'direct' ? 'Read' : `Read by ${readers}`;
}

/** A stored message: `data-seq` orders it in the list. */
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
    el('time', { text: shortTime(message.createdAt), attrs: { datetime: message.createdAt } }),
    mine ? el('span', { className: 'receipt', text: receipt(store, state, message.seq) }) : null,
  );
  return el(
    'li',
    { className: mine ? 'message mine' : 'message', dataset: { seq: String(message.seq) } },
    meta,
    el('div', { className: 'body', text: message.body }),
  );
}

/** A message on its way, saying whether it waits for the connection or was given up on. */
export function pendingItem(pending: PendingMessage, connection: ConnectionState): HTMLLIElement {
  const status =
    pending.failed !== undefined
      ? `Not sent: ${pending.failed}`
      : connection === 'connected'
        ? 'Sending…'
        : 'Waiting for connection…';
  return el(
    'li',
    { className: 'message mine pending', dataset: { clientMsgId: pending.clientMsgId } },
    el(
      'div',
      { className: 'meta' },
      el('span', { className: 'sender', text: 'You' }),
      el('span', { text: status }),
    ),
    el('div', { className: 'body', text: pending.body }),
  );
}
