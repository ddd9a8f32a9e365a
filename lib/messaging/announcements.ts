import type { PublicMessage } from '../protocol/index.js';

/**
 * What the nodes tell each other on the messages channel, and how a commit's news fits NOTIFY's payload limit:
 * the wire format of lib/messaging/fanout.ts, kept apart so that it reads (and is tested) on its own.
 * `xfchat_write()` builds the same payloads in SQL with MESSAGE_ANNOUNCE=commit (statements.ts).
 */

/** What one transaction committed, for the other nodes. */
export interface CommitNews {
  /** New messages, each conversation's in seq order. */
  created: readonly PublicMessage[];
  /**
   * Messages stored before whose clientMsgId came again: a client retries when it got no ack, for instance
   * because the node that committed its message died before acking, and perhaps before announcing it.
   */
  repeated: readonly PublicMessage[];
  /** Messages edited, deleted or reacted to. */
  changed: readonly PublicMessage[];
}

/** NOTIFY takes payloads under 8000 bytes: an announcement stays under this. */
const PAYLOAD_BYTES = 7000;
/** A conversation's new messages go by their seq range when one of them takes more than this in an announcement. */
const LARGE_ITEM_BYTES = 3500;

/** A new message: [conversationId, seq, id, senderId, clientMsgId, body, createdAt in ms, replyToSeq, version] */
export type WireMessage = [
  string,
  number,
  string,
  string | null,
  string,
  string,
  number,
  number | null,
  number,
];
/** New messages too big for the payload: [conversationId, first seq, last seq] */
type WireRange = [string, number, number];
/** A changed message: [conversationId, seq] */
type WireUpdate = [string, number];

export interface Announcement {
  n: string;
  m?: WireMessage[];
  r?: WireRange[];
  u?: WireUpdate[];
  /** 1: node `n` committed unannounced until now; catch up. */
  c?: 1;
  /** 1: node `n` has just started and listens: whoever hears it answers with `p`. */
  h?: 1;
  /** 1: node `n` runs (an answer to a hello). */
  p?: 1;
  /** 1: node `n` runs (its heartbeat, every second while it knows of other nodes). */
  b?: 1;
  /** 1: node `n` is leaving, everything it committed announced. */
  g?: 1;
}

export function isAnnouncement(value: unknown): value is Announcement {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return (
    typeof v.n === 'string' &&
    (Array.isArray(v.m) ||
      Array.isArray(v.r) ||
      Array.isArray(v.u) ||
      v.c === 1 ||
      v.h === 1 ||
      v.p === 1 ||
      v.b === 1 ||
      v.g === 1)
  );
}

/** A new message as announcements carry it. */
export const toWire = (m: PublicMessage): WireMessage => [
  m.conversationId,
  m.seq,
  m.id,
  m.senderId,
  m.clientMsgId,
  m.body,
  Date.parse(m.createdAt),
  m.replyToSeq,
  m.version,
];

/**
 * The announcements of one commit, each under NOTIFY's 8000 bytes: the new messages themselves, except a
 * conversation's whose largest would take over {@link LARGE_ITEM_BYTES} (its seq range, read from `messages` by
 * the nodes with subscribers), the seqs of repeated and of changed messages (read likewise, in their current
 * state). The same payloads as `xfchat_write()` sends with MESSAGE_ANNOUNCE=commit.
 */
export function announcementsOf(node: string, news: CommitNews): Announcement[] {
  const payloads: Announcement[] = [];
  const base = Buffer.byteLength(JSON.stringify({ n: node, m: [], r: [], u: [] }));
  let current: Announcement = { n: node };
  let bytes = base;
  const room = (size: number): void => {
    if (bytes + size + 1 <= PAYLOAD_BYTES || bytes === base) return;
    payloads.push(current);
    current = { n: node };
    bytes = base;
  };
  /** Puts one item (of `size` bytes as JSON) into the current announcement, or a new one when it is full. */
  const add = (size: number, put: (to: Announcement) => void): void => {
    room(size);
    put(current);
    bytes += size + 1;
  };
  const sizeOfJson = (item: unknown): number => Buffer.byteLength(JSON.stringify(item));
  const addRange = (range: WireRange): void => add(sizeOfJson(range), (to) => (to.r ??= []).push(range));

  let at = 0;
  const { created } = news;
  while (at < created.length) {
    const conversationId = (created[at] as PublicMessage).conversationId;
    let end = at;
    while (end < created.length && (created[end] as PublicMessage).conversationId === conversationId) end++;
    const items = created.slice(at, end).map((m) => {
      const item = toWire(m);
      return { item, size: sizeOfJson(item) };
    });
    if (items.some((x) => x.size > LARGE_ITEM_BYTES)) {
      addRange([conversationId, (created[at] as PublicMessage).seq, (created[end - 1] as PublicMessage).seq]);
    } else {
      for (const { item, size } of items) add(size, (to) => (to.m ??= []).push(item));
    }
    at = end;
  }
  for (const m of news.repeated) addRange([m.conversationId, m.seq, m.seq]);
  for (const m of news.changed) {
    const update: WireUpdate = [m.conversationId, m.seq];
    add(sizeOfJson(update), (to) => (to.u ??= []).push(update));
  }
  if (bytes !== base) payloads.push(current);
  return payloads;
}

export const fromWire = (wire: WireMessage): PublicMessage => {
  const [conversationId, seq, id, senderId, clientMsgId, body, createdMs, replyToSeq, version] = wire;
  return {
    id,
    conversationId,
    seq,
    senderId,
    clientMsgId,
    body,
    createdAt: new Date(createdMs).toISOString(),
    replyToSeq,
    editedAt: null,
    deletedAt: null,
    reactions: [],
    version,
  };
};
