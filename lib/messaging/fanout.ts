import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import type { ControlBus } from '../cluster/controlBus.js';
import type { Logger } from '../logger.js';
import type { Notifier } from '../notifier.js';
import type { PublicMessage } from '../protocol/index.js';
import { readChangedUpTo, readMessages, readMessagesAfter } from './reads.js';
import { MESSAGES_CHANNEL, type Announce } from './statements.js';

/**
 * Committed writes between nodes. The writing node delivers to its own subscribers itself, after the commit;
 * the other nodes hear of each commit by a NOTIFY sent inside the write transaction (see statements.ts), so a
 * message that commits reaches them even if its writer dies the next instant, and one that rolls back never
 * does. A payload carries the messages themselves when they fit in NOTIFY's 8000 bytes, and otherwise their seq
 * ranges, which a node reads from `messages` only if it has subscribers of the conversation; changed messages
 * (edits, deletes, reactions) are announced by seq and read in their current state the same way.
 *
 * Alone, a node announces nothing: it asks the Socket.IO adapter how many nodes there are before each commit.
 */
export interface Fanout {
  /** This node's id in announcements (its own are ignored when they come back). */
  readonly node: string;
  /** What the next commit announces: undefined while no other node runs. */
  announce(): Promise<Announce | undefined>;
  /** Notes what this node's subscribers of a conversation have been given (delivered, or read in a page). */
  seen(conversationId: string, seq: number, version: number): void;
  /**
   * After the LISTEN connection was lost (its announcements with it), gives this node's subscribers what they
   * missed: messages after the last seq they were given, and changes after the last version.
   */
  catchUp(): void;
}

export interface FanoutDeps {
  bus: Pick<ControlBus, 'listen'>;
  knex: Knex;
  notify: Pick<Notifier, 'messagesCommitted' | 'messagesUpdated' | 'hasSubscribersHere'>;
  /** Nodes in the cluster, this one included (the adapter's heartbeat view). */
  nodeCount: () => Promise<number>;
  logger: Logger;
}

/** Past this many conversations tracked, those without subscribers here are forgotten. */
const MAX_TRACKED = 10_000;

/** A new message: [conversationId, seq, id, senderId, clientMsgId, body, createdAt in ms, replyToSeq, version] */
type WireMessage = [string, number, string, string | null, string, string, number, number | null, number];
/** New messages too big for the payload: [conversationId, first seq, last seq] */
type WireRange = [string, number, number];
/** A changed message: [conversationId, seq] */
type WireUpdate = [string, number];

interface Announcement {
  n: string;
  m?: WireMessage[];
  r?: WireRange[];
  u?: WireUpdate[];
}

function isAnnouncement(value: unknown): value is Announcement {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return typeof v.n === 'string' && (Array.isArray(v.m) || Array.isArray(v.r) || Array.isArray(v.u));
}

const fromWire = (wire: WireMessage): PublicMessage => {
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

/** What a node delivers for one conversation: new messages, or the current state of changed ones. */
interface Delivery {
  kind: 'new' | 'updated';
  messages: PublicMessage[];
}

export async function createFanout(deps: FanoutDeps): Promise<Fanout> {
  const { knex, notify, logger } = deps;
  const node = randomUUID();
  /** Per conversation, the delivery still reading its range: later ones wait for it, so order is kept. */
  const reading = new Map<string, Promise<void>>();
  /** Per conversation with subscribers here, the last seq and version they were given. */
  const given = new Map<string, { seq: number; version: number }>();

  function seen(conversationId: string, seq: number, version: number): void {
    const known = given.get(conversationId);
    if (!known) {
      if (given.size >= MAX_TRACKED) prune();
      given.set(conversationId, { seq, version });
      return;
    }
    known.seq = Math.max(known.seq, seq);
    known.version = Math.max(known.version, version);
  }

  function prune(): void {
    for (const conversationId of given.keys()) {
      if (!notify.hasSubscribersHere(conversationId)) given.delete(conversationId);
    }
  }

  const hand = ({ kind, messages }: Delivery) => {
    for (const m of messages) seen(m.conversationId, m.seq, m.version);
    if (kind === 'new') notify.messagesCommitted(messages);
    else notify.messagesUpdated(messages);
  };

  function deliver(conversationId: string, delivery: () => Promise<Delivery> | Delivery): void {
    const before = reading.get(conversationId);
    if (before === undefined) {
      const ready = delivery();
      if (ready instanceof Promise) track(conversationId, ready);
      else hand(ready);
      return;
    }
    track(
      conversationId,
      before.then(() => delivery()),
    );
  }

  function track(conversationId: string, loading: Promise<Delivery>): void {
    const done = loading.then(
      hand,
      // The messages are committed; a subscriber here fills the gap with afterSeq at its next message.
      (err: unknown) => logger.warn({ err, conversationId }, 'reading announced messages failed'),
    );
    reading.set(conversationId, done);
    void done.then(() => {
      if (reading.get(conversationId) === done) reading.delete(conversationId);
    });
  }

  function onAnnouncement(payload: unknown): void {
    if (!isAnnouncement(payload)) {
      logger.warn('ignoring a malformed message announcement');
      return;
    }
    if (payload.n === node) return;
    if (payload.m) {
      const byConversation = new Map<string, PublicMessage[]>();
      for (const wire of payload.m) {
        const message = fromWire(wire);
        const list = byConversation.get(message.conversationId);
        if (list) list.push(message);
        else byConversation.set(message.conversationId, [message]);
      }
      for (const [conversationId, messages] of byConversation) {
        if (notify.hasSubscribersHere(conversationId))
          deliver(conversationId, () => ({ kind: 'new', messages }));
      }
    }
    for (const [conversationId, first, last] of payload.r ?? []) {
      if (!notify.hasSubscribersHere(conversationId)) continue;
      deliver(conversationId, async () => ({
        kind: 'new',
        messages: await readMessages(knex, conversationId, { first, last }),
      }));
    }
    const updated = new Map<string, number[]>();
    for (const [conversationId, seq] of payload.u ?? []) {
      if (notify.hasSubscribersHere(conversationId))
        updated.set(conversationId, [...(updated.get(conversationId) ?? []), seq]);
    }
    for (const [conversationId, seqs] of updated) {
      deliver(conversationId, async () => ({
        kind: 'updated',
        messages: await readMessages(knex, conversationId, [...new Set(seqs)]),
      }));
    }
  }

  await deps.bus.listen(MESSAGES_CHANNEL, onAnnouncement);

  return {
    node,
    seen,
    catchUp() {
      prune();
      for (const [conversationId, known] of given) {
        const { seq, version } = known;
        deliver(conversationId, async () => ({
          kind: 'new',
          messages: await readMessagesAfter(knex, conversationId, seq),
        }));
        deliver(conversationId, async () => ({
          kind: 'updated',
          messages: await readChangedUpTo(knex, conversationId, version, seq),
        }));
      }
    },
    async announce() {
      return (await deps.nodeCount()) > 1 ? { node } : undefined;
    },
  };
}
