import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import type { ControlBus } from '../cluster/controlBus.js';
import type { MessageAnnounce } from '../config.js';
import type { Logger } from '../logger.js';
import type { Notifier, PassedOver } from '../notifier.js';
import type { PublicMessage } from '../protocol/index.js';
import { createLogThrottle } from '../serverErrorLog.js';
import { PAGE_LIMIT } from '../protocol/schemas.js';
import {
  announcementsOf,
  fromWire,
  isAnnouncement,
  type Announcement,
  type CommitNews,
} from './announcements.js';
import { Given } from './given.js';
import { readChangedAfter, readMessages, readMessagesAfter } from './reads.js';
import { MESSAGES_CHANNEL, type Announce } from './statements.js';

/**
 * Committed writes between nodes. The writing node delivers to its own subscribers itself, after the commit;
 * the other nodes hear of each commit by a NOTIFY the writing node sends right after it ({@link Fanout.publish},
 * MESSAGE_ANNOUNCE=after), or that the write transaction sends itself (`commit`; see statements.ts). A payload
 * carries the messages themselves when they fit in NOTIFY's 8000 bytes, and otherwise their seq ranges, which a
 * node reads from `messages` only if it has subscribers of the conversation; changed messages (edits, deletes,
 * reactions) are announced by seq and read in their current state the same way.
 *
 * Announced after the commit, a commit whose writer dies in between is never announced. Every node therefore
 * says it runs every second while it knows of others (the heartbeat); a node silent for a few seconds counts as
 * gone, and the others catch their subscribers up from `messages`. A hole below what a conversation's subscribers
 * were given that lasts (a later seq was announced, an earlier one never) is read from `messages` too.
 *
 * Alone, a node announces nothing: it asks the Socket.IO adapter how many nodes there are before each commit.
 * The adapter's views of the cluster differ for seconds, though (a node hears of a newcomer when the newcomer's
 * adapter says hello, the newcomer of it only at its next heartbeat if it was not yet listening; a node whose
 * heartbeats came late is dropped from one view and not from the other). So a node also says hello on this
 * channel once it listens, the others answer, and a node heard from lately is announced to whatever the adapter
 * counts. And whenever the count of nodes grows on a node, it has been committing unannounced to the nodes it now
 * counts: it catches its own subscribers up and tells every node to catch theirs up (a "catch-up" announcement),
 * at once and again a moment later, for a transaction that began unannounced and committed after the first call.
 * docs/messaging.md has the whole picture.
 */
export interface Fanout {
  /** This node's id in announcements (its own are ignored when they come back). */
  readonly node: string;
  /**
   * Whether the next commit is announced, and how: undefined while no other node runs; `inCommit` when the write
   * transaction itself sends the NOTIFY (MESSAGE_ANNOUNCE=commit), otherwise the node calls {@link publish}
   * after the commit.
   */
  announce(): Promise<Announce | undefined>;
  /** Announces what a transaction committed (MESSAGE_ANNOUNCE=after), right after the commit. */
  publish(news: CommitNews): void;
  /**
   * A page read gave everything of a conversation up to `seq` and `version`: where a catch-up starts. With
   * `reader`, the page is that subscriber's (a socket joined the conversation's room just before reading it): the
   * states its page gave are left out of what this node delivers to it later (see {@link Fresh.except}).
   */
  seen(conversationId: string, seq: number, version: number, reader?: PageReader): void;
  /**
   * A subscriber's page of the conversation is about to be read (its socket is in the room already): until it
   * is {@link seen} or {@link pageNotRead}, a conversation not followed yet does not start its marks from anything
   * newer than that page.
   */
  readingPage(conversationId: string): void;
  /** The page announced by {@link readingPage} was not read (the read failed). */
  pageNotRead(conversationId: string): void;
  /**
   * This node's own commit in one conversation, about to be delivered here: answers what this node's subscribers
   * were not given yet (a catch-up may have read it first), and how to deliver it, and notes it as given.
   */
  delivered(kind: 'new' | 'updated', conversationId: string, messages: readonly PublicMessage[]): Fresh;
  /**
   * After the LISTEN connection was lost (its announcements with it), or when another node says it committed
   * unannounced, gives this node's subscribers what they lack: the messages after the seq up to which every one
   * was given, and the changes after the version up to which every one was (lib/messaging/given.ts).
   */
  catchUp(): void;
  /**
   * A write of this node to these conversations failed as an outage does, after it was sent: it may have
   * committed, even after the node gave up on it, and then nobody was told (its retry is a duplicate, which
   * delivers nothing). At the heartbeat a second later, each conversation's row lock is waited for (the write, if
   * it still runs, holds it), then this node's subscribers are caught up on it and the other nodes asked to catch
   * up; while PostgreSQL does not answer, again at each heartbeat.
   */
  outcomeUnknown(conversationIds: readonly string[]): void;
  /**
   * The control bus connection ended (it reconnects): the removals committed from now on until it listens again
   * are not heard here, and what is delivered to a conversation's room checks its removals first (see
   * {@link FanoutDeps.removalsChecked}), from now on until each conversation's check after the reconnect passed.
   */
  lost(): void;
  /**
   * The control bus connection is back: checks the removals of every conversation with subscribers here, catches
   * this node's subscribers up, and, if announcements of this node failed meanwhile, every other node's.
   */
  reconnected(): void;
  /**
   * Shutdown, once every accepted command is committed and announced: tells the other nodes this one is leaving,
   * so they forget it without catching up as they would for a node that fell silent.
   */
  goodbye(): Promise<void>;
  /** Stops watching the count of nodes. */
  close(): void;
}

export interface FanoutDeps {
  bus: Pick<ControlBus, 'listen' | 'notify'>;
  knex: Knex;
  notify: Pick<
    Notifier,
    'messagesCommitted' | 'messagesUpdated' | 'hasSubscribersHere' | 'conversationsWithSubscribersHere'
  >;
  /** Nodes in the cluster, this one included (the adapter's heartbeat view). */
  nodeCount: () => Promise<number>;
  logger: Logger;
  /** How often the count of nodes is looked at (a local read). @default 1000 */
  peerCheckMs?: number;
  /** After the count grew, how long until the second catch-up (here and on the other nodes). @default 3000 */
  peerSettleMs?: number;
  /** MESSAGE_ANNOUNCE: `commit` announces in the write transaction, `after` right after it. @default 'after' */
  mode?: MessageAnnounce;
  /**
   * How long another node may stay silent (no heartbeat, no announcement) before it counts as gone and this
   * node catches its subscribers up on what it may have committed unannounced. @default 3500
   */
  peerGoneMs?: number;
  /** How long a hole below what a conversation's subscribers were given may stay before a catch-up. @default 1000 */
  holeSettleMs?: number;
  /** How often the heartbeat runs. @default 1000 */
  beatMs?: number;
  /**
   * How long after a write of unknown outcome failed its conversation is settled ({@link Fanout.outcomeUnknown}):
   * time for a statement already on its way to reach PostgreSQL and take the lock. @default 1000
   */
  outcomeSettleMs?: number;
  /**
   * Before a catch-up hands what it read from `messages` to this node's subscribers: takes out of the room here
   * every participant removed by a removal committed before that read which this node has not heard of yet
   * (`beforeCatchUp` in lib/messaging/removals.ts); a catch-up reads whatever has committed, heard of or not.
   * Announcements need no such step while the control bus listens: a removal's event comes before them on the
   * same LISTEN connection, in commit order. After that connection was lost, the removals committed meanwhile
   * were never heard: from the loss until a conversation's check after the reconnect has passed, each delivery
   * to its room checks first ({@link Fanout.lost}).
   * @default none (a fanout without removals, in tests)
   */
  removalsChecked?: (conversationId: string) => Promise<void>;
}

/**
 * What a node's subscribers lack of a delivery, by the event that gives it to them: `message:new` for `created`,
 * `message:updated` for `changed`, in that order. A change of a message they were not given yet (its
 * `message:new` is still on its way from the node that wrote it) goes out as the message's `message:new`, in its
 * current state, and its first state is passed over when it arrives: no subscriber gets a message's
 * `message:updated` before its `message:new` (but while a conversation's first pages are read: see Starting), or a
 * first state after a newer one.
 */
export interface Fresh {
  created: readonly PublicMessage[];
  changed: readonly PublicMessage[];
  /**
   * Per message of `created` or `changed`, the subscribers whose own page gave it in this state or a newer one
   * (absent when there are none): its event leaves them out. A subscriber joins the conversation's room before
   * reading its page, so its page can show a message changed (or deleted) while the node's subscribers have not
   * been given the message's first state yet; without this, that first state would reach it after its page.
   */
  except?: PassedOver;
}

/** A subscriber's page: who reads it (a socket id), and the messages it gave. */
export interface PageReader {
  id: string;
  messages: readonly PublicMessage[];
}

/**
 * A run of seqs one page gave, each in its state as of the page's snapshot (`version`): any state of them up to
 * that version is the one the page gave or an older one, and a later change takes a version above it.
 */
interface PageRun {
  first: number;
  last: number;
  version: number;
}

/**
 * What one subscriber's pages gave above what the node had given the conversation's subscribers when they were
 * read: disjoint runs of seqs by `first` (the last one holds the highest seq), each with the newest page's version
 * that covered it; and the highest version among them. Kept until the node's marks pass both; from then on the
 * marks alone leave those states out.
 */
interface PageGiven {
  runs: PageRun[];
  version: number;
}

/** The last run of `runs` (by `first`) that starts at or before `seq`, by bisection; -1 if none does. */
function runAt(runs: readonly PageRun[], seq: number): number {
  let low = 0;
  let high = runs.length - 1;
  let found = -1;
  while (low <= high) {
    const middle = (low + high) >> 1;
    if ((runs[middle]?.first ?? Infinity) <= seq) {
      found = middle;
      low = middle + 1;
    } else high = middle - 1;
  }
  return found;
}

/** Whether the runs cover this state of message `seq`: its page gave it in this state or a newer one. */
function covers(runs: readonly PageRun[], seq: number, version: number): boolean {
  const run = runs[runAt(runs, seq)];
  return run !== undefined && seq <= run.last && version <= run.version;
}

/**
 * A subscriber's runs with a newer page's runs (sorted, disjoint) added: where they overlap earlier runs, the newer
 * page's version (its newer snapshot) replaces theirs.
 */
function withRuns(runs: readonly PageRun[], added: readonly PageRun[]): PageRun[] {
  const result: PageRun[] = [];
  for (const r of runs) {
    let from = r.first;
    for (let i = Math.max(0, runAt(added, r.first)); from <= r.last; i++) {
      const a = added[i];
      if (a === undefined || a.first > r.last) break;
      if (a.last < from) continue;
      if (a.first > from) result.push({ first: from, last: a.first - 1, version: r.version });
      from = a.last + 1;
    }
    if (from <= r.last) result.push({ first: from, last: r.last, version: r.version });
  }
  result.push(...added);
  return result.sort((a, b) => a.first - b.first);
}

const NOTHING: Fresh = { created: [], changed: [] };

/**
 * Of several states of one message in one delivery, the newest only. Each `message:updated` carries the whole
 * message, and a subscriber keeps the newest state it has: a member toggling a reaction 40 times in one commit
 * would otherwise send every subscriber 40 copies of a message that may hold thousands of reactions (a big group's
 * sockets were cut for what waited for them, though they read).
 */
export function newestStates(messages: readonly PublicMessage[]): PublicMessage[] {
  if (messages.length < 2) return [...messages];
  const newest = new Map<number, PublicMessage>();
  for (const m of messages) {
    const held = newest.get(m.seq);
    if (held === undefined || held.version < m.version) newest.set(m.seq, m);
  }
  return messages.filter((m) => newest.get(m.seq) === m);
}

/** Every message delivered as the event of its kind, changes in their newest state only. */
const asKind = (kind: 'new' | 'updated', messages: readonly PublicMessage[]): Fresh =>
  kind === 'new' ? { created: messages, changed: [] } : { created: [], changed: newestStates(messages) };

/** The runs of seqs a subscriber's page gave, as of its snapshot `version`. */
function runsOf(reader: PageReader, version: number): PageRun[] {
  const runs: PageRun[] = [];
  for (const m of reader.messages) {
    const run = runs.at(-1);
    if (run !== undefined && run.last + 1 === m.seq) run.last = m.seq;
    else runs.push({ first: m.seq, last: m.seq, version });
  }
  return runs;
}

/** Past this many conversations tracked, those without subscribers here are forgotten. */
const MAX_TRACKED = 10_000;

/**
 * Subscribers' pages are kept only while the node's marks are behind them (announcements on their way, a node
 * that lags), a run of seqs a page (fewer when a newer page of the same subscriber covers them again). Past
 * {@link MAX_READER_RUNS} runs of one subscriber, its lowest are forgotten; past this many runs kept for one
 * conversation, the runs the marks passed are, then its oldest subscribers' pages; past {@link MAX_KEPT_RUNS}
 * across all, a new page is not kept. Either way, a reader may then get a state older than its page's, which a
 * client drops by version; what it holds in the end is the same.
 */
const MAX_CONVERSATION_RUNS = 100_000;
const MAX_KEPT_RUNS = 500_000;
const MAX_READER_RUNS = 256;

/** One conversation's subscribers' pages, oldest first, and how many runs they hold. */
interface Pages {
  readers: Map<string, PageGiven>;
  runs: number;
}

/** What a node delivers for one conversation: new messages, or the current state of changed ones. */
interface Delivery {
  kind: 'new' | 'updated';
  messages: PublicMessage[];
  /** Read from `messages` now: each message's current state, which may be newer than its first. */
  read?: boolean;
  /** Read by a catch-up: every seq (new) or version (updated) up to this one is now given. */
  through?: number;
  /** The catch-up read a whole page: there may be more. */
  full?: boolean;
  /** The last delivery of a catch-up. */
  endsCatchUp?: boolean;
}

/**
 * A conversation not followed yet whose subscribers' pages are being read: the marks start when the last of them
 * is in, from the oldest (a page read from an older snapshot but answered later must not find the marks past it,
 * or the states between the two snapshots would count as given to it). What reaches the room meanwhile is noted,
 * to be counted as given then.
 */
interface Starting {
  /** Pages still being read. */
  reading: number;
  pages: Array<{ seq: number; version: number; reader: PageReader }>;
  delivered: Array<{ kind: 'new' | 'updated'; seq: number; version: number; read: boolean }>;
  /** Per message that went out meanwhile, the newest state's version: an older state after it is passed over. */
  newest: Map<number, number>;
}

/** Past this many seqs and versions given out of order in one conversation, it is caught up from `messages`. */
const MAX_UNSETTLED = 256;

/** How long a goodbye waits for this node's writes of unknown outcome to let go of their locks. */
const GOODBYE_SETTLE_MS = 5000;

/** How many heartbeats a write of unknown outcome is settled at, at most, before it is given up with a warning. */
const MAX_SETTLE_TRIES = 30;

/** A conversation a write of unknown outcome went to (see {@link Fanout.outcomeUnknown}). */
interface UnknownOutcome {
  /** When the (latest) write failed. */
  failedAt: number;
  /** The other nodes were asked to catch up after its lock was free once: never again for this write. */
  othersAsked: boolean;
  /** Heartbeats it was settled at; past {@link MAX_SETTLE_TRIES} it is given up. */
  tries: number;
}

export async function createFanout(deps: FanoutDeps): Promise<Fanout> {
  const { knex, notify, logger, removalsChecked } = deps;
  const node = randomUUID();
  /** Per conversation, the delivery still reading its range: later ones wait for it, so order is kept. */
  const reading = new Map<string, Promise<void>>();
  /** Per conversation with subscribers here, what they were given. */
  const given = new Map<string, Given>();
  /** Per conversation, per subscriber (socket id), what its page gave beyond the conversation's marks. */
  const pages = new Map<string, Pages>();
  /** Per conversation with subscribers' pages being read while it is not followed yet (see {@link Starting}). */
  const starting = new Map<string, Starting>();
  /** The runs all of them hold. */
  let keptRuns = 0;
  /**
   * After the control bus lost its connection: `all` until it listens again, then the conversations with
   * subscribers here at the reconnect whose removals have not been checked since (each leaves once checked, and
   * the set goes once empty). Undefined otherwise: deliveries check nothing.
   */
  let removalsMissed: Set<string> | 'all' | undefined;
  /** Per conversation with a catch-up queued or reading: whether to run another after it. */
  const catchingUp = new Map<string, boolean>();
  /**
   * Per conversation whose subscribers were given something above a hole: the marks then, and since when
   * (performance.now()) they have not moved. Under steady traffic from two nodes some hole is often open; only
   * marks that stay put mean a missing announcement.
   */
  const holes = new Map<string, { since: number; seq: number; version: number }>();
  /** The other nodes heard from (any announcement, hello, answer or heartbeat), and when. */
  const peers = new Map<string, number>();
  const mode = deps.mode ?? 'after';
  const peerGoneMs = deps.peerGoneMs ?? 3500;
  const holeSettleMs = deps.holeSettleMs ?? 1000;
  /** An announcement of this node failed: the others are asked to catch up at the next heartbeat or reconnection. */
  let announcementsLost = false;
  const outcomeSettleMs = deps.outcomeSettleMs ?? 1000;
  /** Conversations a write of unknown outcome went to, and how far each is settled; see outcomeUnknown. */
  const unknownOutcomes = new Map<string, UnknownOutcome>();
  /** The settle under way (the heartbeat's), which the goodbye waits for. */
  let settlingOutcomes: Promise<void> | undefined;
  /** Announcements sent and not yet settled, and who waits for them all to settle (the goodbye). */
  let publishing = 0;
  let published: (() => void) | undefined;
  function settledOne(): void {
    publishing -= 1;
    if (publishing === 0) published?.();
  }
  /**
   * A step that failed, as every one does while PostgreSQL is away: a notice (every heartbeat, one a second), the
   * node count (one a second), a read of announced or changed messages (one per conversation with subscribers). Each
   * kind is logged once every 10 s with `suppressed` (the fields are the first failure's), like the other lines of
   * an outage (lib/serverErrorLog.ts).
   */
  const failures = createLogThrottle();
  function logFailure(err: unknown, what: string, fields: Record<string, unknown> = {}): void {
    const suppressed = failures.take(what);
    if (suppressed !== undefined) logger.warn({ err, ...fields, suppressed }, `${what} failed`);
  }

  /** Whether what is delivered to the conversation's room here must check its removals first. */
  function mayHaveMissedRemovals(conversationId: string): boolean {
    return removalsMissed === 'all' || (removalsMissed?.has(conversationId) ?? false);
  }

  /** Checks the conversation's removals; once passed after the reconnect, its deliveries check nothing more. */
  async function checkMissedRemovals(conversationId: string): Promise<void> {
    const missed = removalsMissed;
    await removalsChecked?.(conversationId);
    if (missed instanceof Set && missed === removalsMissed) {
      missed.delete(conversationId);
      if (missed.size === 0) removalsMissed = undefined;
    }
  }

  /** A conversation without subscribers here: whoever subscribes next starts from the page they read. */
  function forget(conversationId: string): void {
    // No socket here to keep a removed participant's messages from.
    if (removalsMissed instanceof Set && removalsMissed.delete(conversationId) && removalsMissed.size === 0)
      removalsMissed = undefined;
    given.delete(conversationId);
    const kept = pages.get(conversationId);
    if (kept === undefined) return;
    keptRuns -= kept.runs;
    pages.delete(conversationId);
  }

  function dropPage(kept: Pages, reader: string, page: PageGiven): void {
    kept.readers.delete(reader);
    kept.runs -= page.runs.length;
    keptRuns -= page.runs.length;
  }

  function prune(): void {
    for (const conversationId of given.keys()) {
      if (!notify.hasSubscribersHere(conversationId)) forget(conversationId);
    }
  }

  /**
   * Notes what a subscriber's page gave that the conversation's subscribers may still be given in older states:
   * the page's runs of seqs, as of its snapshot `version`, unless the marks cover them already.
   */
  function keepPage(conversationId: string, marks: Given, reader: PageReader, version: number): void {
    const runs = runsOf(reader, version);
    // A first state reaches the room while its seq is not given; an older change while its version is not.
    const ahead = version > marks.version ? runs : runs.filter((r) => r.last > marks.seq);
    if (ahead.length === 0 || keptRuns + ahead.length > MAX_KEPT_RUNS) return;
    let kept = pages.get(conversationId);
    if (kept === undefined) {
      kept = { readers: new Map(), runs: 0 };
      pages.set(conversationId, kept);
    }
    const earlier = kept.readers.get(reader.id);
    const page = earlier ?? { runs: [], version: 0 };
    // Taken out and put back: the oldest page is the first one.
    if (earlier !== undefined) dropPage(kept, reader.id, earlier);
    page.runs = withRuns(page.runs, ahead);
    if (page.runs.length > MAX_READER_RUNS) page.runs.splice(0, page.runs.length - MAX_READER_RUNS);
    page.version = Math.max(page.version, version);
    kept.readers.set(reader.id, page);
    kept.runs += page.runs.length;
    keptRuns += page.runs.length;
    if (kept.runs <= MAX_CONVERSATION_RUNS) return;
    // Past the bound, the runs the marks passed go, then the oldest pages, to 90 % of it: the next such pass is
    // thousands of runs away.
    dropPassedRuns(kept, marks);
    for (const [oldest, oldestPage] of kept.readers) {
      if (kept.runs <= MAX_CONVERSATION_RUNS * 0.9 || oldest === reader.id) break;
      dropPage(kept, oldest, oldestPage);
    }
  }

  /**
   * Forgets the runs of one conversation's pages that the marks have passed (a node that lags passes its
   * subscribers' older pages while they read newer ones): only when it holds too many, as this reads them all.
   */
  function dropPassedRuns(kept: Pages, marks: Given): void {
    for (const [reader, page] of kept.readers) {
      const runs = page.runs.filter((r) => r.last > marks.seq || r.version > marks.version);
      kept.runs -= page.runs.length - runs.length;
      keptRuns -= page.runs.length - runs.length;
      page.runs = runs;
      if (runs.length === 0) kept.readers.delete(reader);
    }
  }

  /** Who each delivered message passes over: the readers whose page gave it in this state or a newer one. */
  function readersGiven(
    readers: ReadonlyMap<string, PageGiven>,
    delivered: readonly PublicMessage[][],
  ): Map<PublicMessage, string[]> | undefined {
    let except: Map<PublicMessage, string[]> | undefined;
    for (const messages of delivered) {
      for (const m of messages) {
        for (const [reader, page] of readers) {
          if (!covers(page.runs, m.seq, m.version)) continue;
          except ??= new Map();
          const list = except.get(m);
          if (list) list.push(reader);
          else except.set(m, [reader]);
        }
      }
    }
    return except;
  }

  /** Forgets the pages the conversation's marks have passed: the marks leave out what they gave. */
  function settlePages(conversationId: string, marks: Given, kept = pages.get(conversationId)): void {
    if (kept === undefined) return;
    for (const [reader, page] of kept.readers) {
      const seq = page.runs.at(-1)?.last ?? 0;
      if (marks.seq >= seq && marks.version >= page.version) dropPage(kept, reader, page);
    }
    if (kept.readers.size === 0) pages.delete(conversationId);
  }

  /** Marks of a conversation not tracked yet, starting at this message: nothing before it is known. */
  function startMarksAt(conversationId: string, seq: number, version: number): Given {
    if (given.size >= MAX_TRACKED) prune();
    const marks = new Given(seq - 1, version - 1);
    given.set(conversationId, marks);
    return marks;
  }

  /**
   * Leaves out what this node's subscribers were given already, and notes the rest as given. A conversation
   * without subscribers here is forgotten: whoever subscribes next starts from the page they read.
   */
  function accept(
    kind: Delivery['kind'],
    conversationId: string,
    messages: readonly PublicMessage[],
    read = false,
  ): Fresh {
    const first = messages[0];
    if (first === undefined) return NOTHING;
    if (!notify.hasSubscribersHere(conversationId)) {
      forget(conversationId);
      return asKind(kind, messages);
    }
    let marks = given.get(conversationId);
    if (marks === undefined) {
      // Subscribers' pages being read start the marks (from the oldest), not this delivery.
      const start = starting.get(conversationId);
      if (start !== undefined) return deliverWhileStarting(start, kind, messages, read);
      // A change of a conversation not followed yet says nothing of its seqs: only a new message starts it.
      if (kind !== 'new') return asKind(kind, messages);
      marks = startMarksAt(conversationId, first.seq, first.version);
    }
    const created: PublicMessage[] = [];
    const changed: PublicMessage[] = [];
    for (const m of messages) {
      if (kind === 'new' && !marks.hasSeq(m.seq)) {
        marks.giveMessage(m.seq, m.version);
        // Read from messages, this state may be newer than the first: an older one that comes later is passed over.
        if (read) marks.giveVersion(m.version, m.seq);
        created.push(m);
        continue;
      }
      // A new message given already is not given again: its first state arriving late (after a newer one, which
      // a change that came first gave, below) is passed over and counts as given, so no catch-up looks for it;
      // a newer state (read from messages, after a change whose announcement is still on its way) is a change.
      if (marks.hasVersion(m.version)) continue;
      if (!marks.hasSeq(m.seq)) {
        // The message itself was not given yet: its current state goes out as its message:new.
        marks.giveMessage(m.seq, m.version);
        marks.giveVersion(m.version, m.seq);
        created.push(m);
        continue;
      }
      // "Current state": a change older than one already given of the same message is passed over (and counts
      // as given, so no catch-up looks for it).
      const stale = marks.hasNewerState(m.seq, m.version);
      marks.giveVersion(m.version, m.seq);
      if (!stale) changed.push(m);
    }
    noteHoles(conversationId, marks);
    // Every state above counts as given; of one message's, only the newest goes out.
    const newest = newestStates(changed);
    // One lookup on the delivery path; a conversation without pages kept stops here.
    const kept = pages.get(conversationId);
    if (kept === undefined) return { created, changed: newest };
    const except = readersGiven(kept.readers, [created, newest]);
    settlePages(conversationId, marks, kept);
    return except === undefined ? { created, changed: newest } : { created, changed: newest, except };
  }

  /**
   * Delivers to the whole room while its marks wait for pages being read, but not to the subscribers whose page
   * (in already) gave the state; notes what went out, to count it as given when the marks start.
   */
  function deliverWhileStarting(
    start: Starting,
    kind: Delivery['kind'],
    messages: readonly PublicMessage[],
    read: boolean,
  ): Fresh {
    let except: Map<PublicMessage, string[]> | undefined;
    const pageRuns = start.pages.map((page) => ({
      id: page.reader.id,
      runs: runsOf(page.reader, page.version),
    }));
    const out: PublicMessage[] = [];
    for (const m of messages) {
      start.delivered.push({ kind, seq: m.seq, version: m.version, read });
      // A message's first state after a change of it that went out (another node's deletion heard before the
      // message itself): passed over, as the marks will, not shown after it (a deleted message's text again).
      if ((start.newest.get(m.seq) ?? 0) >= m.version) continue;
      start.newest.set(m.seq, m.version);
      out.push(m);
      const readers = pageRuns.filter((page) => covers(page.runs, m.seq, m.version)).map((page) => page.id);
      if (readers.length === 0) continue;
      except ??= new Map();
      except.set(m, readers);
    }
    const fresh = asKind(kind, out);
    return except === undefined ? fresh : { ...fresh, except };
  }

  /** The last page being read is in (or failed): the marks start from the oldest page, with what went out since. */
  function startMarks(conversationId: string, start: Starting): void {
    starting.delete(conversationId);
    if (start.pages.length === 0 || given.has(conversationId)) return;
    if (given.size >= MAX_TRACKED) prune();
    const marks = new Given(
      Math.min(...start.pages.map((page) => page.seq)),
      Math.min(...start.pages.map((page) => page.version)),
    );
    given.set(conversationId, marks);
    for (const d of start.delivered) {
      if (d.kind === 'new' && !marks.hasSeq(d.seq)) {
        marks.giveMessage(d.seq, d.version);
        if (d.read) marks.giveVersion(d.version, d.seq);
      } else if (!marks.hasSeq(d.seq)) {
        // A change of a message no page gave, told meanwhile (another node's change heard before the message's
        // own announcement): the message counts as given in that state, so that its first state, announced later,
        // is passed over (it went out after the change as message:new: a deleted message's text, shown again).
        marks.giveMessage(d.seq, d.version);
        marks.giveVersion(d.version, d.seq);
      } else {
        marks.giveVersion(d.version, d.seq);
      }
    }
    for (const page of start.pages) keepPage(conversationId, marks, page.reader, page.version);
    settlePages(conversationId, marks);
    noteHoles(conversationId, marks);
  }

  /**
   * Holes come and go as two nodes' announcements cross; one that lasts means an announcement that will not
   * come (its writer died between its commit and its announcement, or its NOTIFY failed): see the heartbeat.
   */
  function noteHoles(conversationId: string, marks: Given): void {
    if (marks.unsettled === 0) holes.delete(conversationId);
    else if (!holes.has(conversationId)) watchHoles(conversationId, marks, performance.now());
  }

  /** Times the holes below `marks` from `now`. */
  function watchHoles(conversationId: string, marks: Given, now: number): void {
    holes.set(conversationId, { since: now, seq: marks.seq, version: marks.version });
  }

  /** Delivers to this node's subscribers what they lack, and moves the marks over what a catch-up read. */
  function hand(conversationId: string, delivery: Delivery): void {
    const { kind, messages, through } = delivery;
    const fresh = accept(kind, conversationId, messages, delivery.read);
    const marks = given.get(conversationId);
    if (marks && through !== undefined) {
      if (kind === 'new') marks.raise(through, 0);
      else marks.raise(0, through);
      noteHoles(conversationId, marks);
      settlePages(conversationId, marks);
    }
    if (fresh.created.length > 0) notify.messagesCommitted(fresh.created, fresh.except);
    if (fresh.changed.length > 0) notify.messagesUpdated(fresh.changed, fresh.except);
    if (delivery.full === true) catchingUp.set(conversationId, true);
    if (delivery.endsCatchUp === true) {
      const again = catchingUp.get(conversationId) === true;
      catchingUp.delete(conversationId);
      if (again) catchUpConversation(conversationId);
    } else if (marks !== undefined && marks.unsettled > MAX_UNSETTLED && !catchingUp.has(conversationId)) {
      catchUpConversation(conversationId);
    }
  }

  function deliver(conversationId: string, delivery: () => Promise<Delivery> | Delivery): void {
    const before = reading.get(conversationId);
    if (before === undefined) {
      const ready = delivery();
      if (ready instanceof Promise) track(conversationId, ready);
      else hand(conversationId, ready);
      return;
    }
    track(
      conversationId,
      before.then(() => delivery()),
    );
  }

  function track(conversationId: string, loading: Promise<Delivery>): void {
    const done = loading.then(
      (delivery) => {
        try {
          hand(conversationId, delivery);
        } catch (err) {
          // A defect, not an outage: logged every time. Thrown, it would reject `done`, which nothing awaits, and
          // end the process.
          logger.error({ err, conversationId }, 'delivering announced messages failed');
        }
      },
      // The messages are committed; a subscriber here fills the gap with afterSeq at its next message.
      (err: unknown) => logFailure(err, 'reading announced messages', { conversationId }),
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
    if (payload.g === 1) {
      peers.delete(payload.n);
      return;
    }
    peers.set(payload.n, performance.now());
    if (payload.h === 1) send({ n: node, p: 1 }, 'answering a new node');
    if (payload.c === 1) catchUp();
    if (payload.m) {
      const byConversation = new Map<string, PublicMessage[]>();
      for (const wire of payload.m) {
        const message = fromWire(wire);
        const list = byConversation.get(message.conversationId);
        if (list) list.push(message);
        else byConversation.set(message.conversationId, [message]);
      }
      for (const [conversationId, messages] of byConversation) {
        if (!notify.hasSubscribersHere(conversationId)) forget(conversationId);
        else if (!mayHaveMissedRemovals(conversationId))
          deliver(conversationId, () => ({ kind: 'new', messages }));
        else
          deliver(conversationId, async () => {
            await checkMissedRemovals(conversationId);
            return { kind: 'new', messages };
          });
      }
    }
    for (const [conversationId, first, last] of payload.r ?? []) {
      if (!notify.hasSubscribersHere(conversationId)) {
        forget(conversationId);
        continue;
      }
      deliver(conversationId, async () => {
        const messages = await readMessages(knex, conversationId, { first, last });
        if (mayHaveMissedRemovals(conversationId)) await checkMissedRemovals(conversationId);
        return { kind: 'new', messages, read: true };
      });
    }
    const updated = new Map<string, number[]>();
    for (const [conversationId, seq] of payload.u ?? []) {
      if (notify.hasSubscribersHere(conversationId))
        updated.set(conversationId, [...(updated.get(conversationId) ?? []), seq]);
      else forget(conversationId);
    }
    for (const [conversationId, seqs] of updated) {
      deliver(conversationId, async () => {
        const messages = await readMessages(knex, conversationId, [...new Set(seqs)]);
        if (mayHaveMissedRemovals(conversationId)) await checkMissedRemovals(conversationId);
        return { kind: 'updated', messages };
      });
    }
  }

  function send(notice: Announcement, what: string): void {
    deps.bus
      .notify(MESSAGES_CHANNEL, notice)
      // A hello, an answer or a heartbeat lost: the next heartbeat says the same. A catch-up notice lost: the
      // others' subscribers wait for a hole to last, or the next catch-up.
      .catch((err: unknown) => logFailure(err, what));
  }

  /** Committed messages, for the other nodes (MESSAGE_ANNOUNCE=after). */
  function publish(news: CommitNews): void {
    for (const announcement of announcementsOf(node, news)) {
      publishing += 1;
      deps.bus.notify(MESSAGES_CHANNEL, announcement).then(settledOne, (err: unknown) => {
        // Committed all the same. The other nodes see a hole at the conversation's next message, and are told
        // to catch up at the next heartbeat, or once the connection is back, or before this node's goodbye.
        logFailure(err, 'announcing committed messages');
        announcementsLost = true;
        settledOne();
      });
    }
  }

  await deps.bus.listen(MESSAGES_CHANNEL, onAnnouncement);
  // Listening already, this node cannot miss the answers (the adapter says its hello before it listens, and may
  // count the others only at their next heartbeat).
  send({ n: node, h: 1 }, 'saying hello to the other nodes');

  /**
   * Reads what this node's subscribers of a conversation lack: the messages after the seq mark, then every message
   * changed (or sent) after the version mark, each in its current state: a message given in an older state goes
   * out as a change, one not given yet as new. Queued like announcements; what those queued behind it repeat, the
   * marks leave out. Asked for while one is queued or reading, another runs after it. Answers whether this call
   * started one (false: it joined the one under way); `failed` is called if one of its reads fails.
   */
  function catchUpConversation(conversationId: string, failed?: () => void): boolean {
    if (catchingUp.has(conversationId)) {
      catchingUp.set(conversationId, true);
      return false;
    }
    catchingUp.set(conversationId, false);
    deliver(conversationId, async (): Promise<Delivery> => {
      const after = given.get(conversationId)?.seq;
      if (after === undefined) return { kind: 'new', messages: [] };
      let messages: PublicMessage[];
      try {
        messages = await readMessagesAfter(knex, conversationId, after);
        if (messages.length > 0) await removalsChecked?.(conversationId);
      } catch (err) {
        failed?.();
        throw err;
      }
      return {
        kind: 'new',
        messages,
        read: true,
        through: messages.at(-1)?.seq ?? after,
        full: messages.length >= PAGE_LIMIT.max,
      };
    });
    deliver(conversationId, async (): Promise<Delivery> => {
      const marks = given.get(conversationId);
      if (marks === undefined) return { kind: 'updated', messages: [], endsCatchUp: true };
      try {
        // Every message changed (or sent) after the version mark, whatever its seq: the mark then moves over
        // every version read, so none may be left out (a message above the seq mark, sent and changed while the
        // first read ran, would have its change counted as given, and its announcement passed over).
        const messages = await readChangedAfter(knex, conversationId, marks.version);
        if (messages.length > 0) await removalsChecked?.(conversationId);
        return {
          kind: 'updated',
          messages,
          through: messages.at(-1)?.version ?? marks.version,
          full: messages.length >= PAGE_LIMIT.max,
          endsCatchUp: true,
        };
      } catch (err) {
        // Ends this catch-up all the same; the next one (a reconnect, a node count that grows) reads it again.
        failed?.();
        logFailure(err, 'catching up on changed messages', { conversationId });
        return { kind: 'updated', messages: [], endsCatchUp: true };
      }
    });
    return true;
  }

  function catchUp(): void {
    prune();
    for (const conversationId of given.keys()) catchUpConversation(conversationId);
  }

  /** Catches this node's subscribers up, and every other node's (what this node committed unannounced). */
  function catchUpEverywhere(): void {
    catchUp();
    send({ n: node, c: 1 }, 'asking the other nodes to catch up');
  }

  /** After announcements failed: asks the others to catch up, and asks again at the next heartbeat if that fails. */
  function askForCatchUpIfLost(): void {
    if (!announcementsLost) return;
    announcementsLost = false;
    deps.bus.notify(MESSAGES_CHANNEL, { n: node, c: 1 }).catch((err: unknown) => {
      logFailure(err, 'asking the other nodes to catch up');
      announcementsLost = true;
    });
  }

  /**
   * Waits until no write holds these conversations' row locks: a write of unknown outcome that still runs on
   * PostgreSQL holds its conversation's (`FOR NO KEY UPDATE`, which `FOR SHARE` waits for) until it commits or
   * rolls back.
   */
  async function waitForWrite(conversationId: string, lockTimeoutMs?: number): Promise<void> {
    const wait = 'SELECT 1 FROM conversations WHERE id = ? FOR SHARE';
    if (lockTimeoutMs === undefined) {
      await knex.raw(wait, [conversationId]);
      return;
    }
    // The bound held by PostgreSQL itself: a wait given up in Node alone would go on holding a connection.
    await knex.transaction(async (trx) => {
      await trx.raw("SELECT set_config('lock_timeout', ?, true)", [
        `${Math.max(1, Math.ceil(lockTimeoutMs))}ms`,
      ]);
      await trx.raw(wait, [conversationId]);
    });
  }

  /**
   * Settles the writes of unknown outcome that failed at least {@link outcomeSettleMs} ago, one conversation at a
   * time: once its row lock is free, whatever the write committed is in `messages`, and the catch-ups (here, and
   * on the other nodes asked by the next heartbeat) read it. What PostgreSQL does not answer for is tried again
   * at the next heartbeat.
   */
  async function settleOutcomes(now: number): Promise<void> {
    let askOthers = false;
    for (const [conversationId, outcome] of [...unknownOutcomes]) {
      if (now - outcome.failedAt < outcomeSettleMs) continue;
      outcome.tries += 1;
      if (outcome.tries > MAX_SETTLE_TRIES) {
        unknownOutcomes.delete(conversationId);
        logger.warn(
          { conversationId },
          'gave up settling a write of unknown outcome: its subscribers get it with the next message or subscribe',
        );
        continue;
      }
      try {
        await waitForWrite(conversationId);
      } catch (err) {
        logFailure(err, 'waiting for a write of unknown outcome', { conversationId });
        break;
      }
      // Once per write: a retry here is for this node's own reads.
      if (!outcome.othersAsked) askOthers = true;
      outcome.othersAsked = true;
      // Settled once its catch-up here has read (one already under way is joined, and this one is tried again at
      // the next heartbeat); a read that fails puts it back. A write that failed again meanwhile is settled later.
      const again = () => {
        if (!unknownOutcomes.has(conversationId)) unknownOutcomes.set(conversationId, outcome);
      };
      if (catchUpConversation(conversationId, again) && unknownOutcomes.get(conversationId) === outcome) {
        unknownOutcomes.delete(conversationId);
      }
    }
    if (askOthers && othersRun()) {
      announcementsLost = true;
      askForCatchUpIfLost();
    }
  }

  /** Whether other nodes run, as far as this one knows: its announcements have listeners. */
  const othersRun = (): boolean => nodes > 1 || peers.size > 0;

  let nodes = await deps.nodeCount();
  let settle: NodeJS.Timeout | undefined;
  const watch = setInterval(() => {
    deps.nodeCount().then(
      (count) => {
        if (count > nodes) {
          catchUpEverywhere();
          clearTimeout(settle);
          settle = setTimeout(catchUpEverywhere, deps.peerSettleMs ?? 3000);
          settle.unref();
        }
        nodes = count;
      },
      (err: unknown) => logFailure(err, 'counting the nodes'),
    );
  }, deps.peerCheckMs ?? 1000);
  watch.unref();

  /**
   * The heartbeat: says this node runs while it knows of others, and catches its subscribers up when another
   * node falls silent (it may have died between a commit and its announcement) or a hole lasts.
   */
  const beat = setInterval(() => {
    if (othersRun()) send({ n: node, b: 1 }, 'the heartbeat');
    askForCatchUpIfLost();
    const now = performance.now();
    if (unknownOutcomes.size > 0 && settlingOutcomes === undefined) {
      settlingOutcomes = settleOutcomes(now)
        .catch((err: unknown) => logger.error({ err }, 'settling writes of unknown outcome failed'))
        .finally(() => (settlingOutcomes = undefined));
    }
    let gone = false;
    for (const [peer, heardAt] of peers) {
      if (now - heardAt <= peerGoneMs) continue;
      peers.delete(peer);
      gone = true;
      logger.info({ node: peer }, 'another node fell silent: catching up on what it committed');
    }
    if (gone) catchUp();
    for (const [conversationId, hole] of holes) {
      const marks = given.get(conversationId);
      if (marks === undefined || marks.unsettled === 0) holes.delete(conversationId);
      else if (marks.seq !== hole.seq || marks.version !== hole.version) {
        // The holes seen before were filled (others may have opened): watch the marks from here.
        watchHoles(conversationId, marks, now);
      } else if (now - hole.since > holeSettleMs) {
        watchHoles(conversationId, marks, now);
        catchUpConversation(conversationId);
      }
    }
  }, deps.beatMs ?? 1000);
  beat.unref();

  return {
    node,
    seen(conversationId, seq, version, reader) {
      const start = starting.get(conversationId);
      if (start !== undefined && reader !== undefined) start.reading -= 1;
      // Only a conversation not followed yet starts from a page: raising the marks of one followed already
      // would pass over what its earlier subscribers still lack, and leave out what they are about to get. Its
      // reader's page is kept instead, until the marks pass it.
      const marks = given.get(conversationId);
      if (marks !== undefined) {
        if (reader !== undefined) keepPage(conversationId, marks, reader, version);
        if (start !== undefined && start.reading === 0) starting.delete(conversationId);
        return;
      }
      if (start !== undefined) {
        // Another read (a REST page, newer or not) says nothing of what the pages being read gave.
        if (reader === undefined) return;
        start.pages.push({ seq, version, reader });
        if (start.reading === 0) startMarks(conversationId, start);
        return;
      }
      if (given.size >= MAX_TRACKED) prune();
      given.set(conversationId, new Given(seq, version));
    },
    readingPage(conversationId) {
      const start = starting.get(conversationId);
      if (start !== undefined) start.reading += 1;
      else starting.set(conversationId, { reading: 1, pages: [], delivered: [], newest: new Map() });
    },
    pageNotRead(conversationId) {
      const start = starting.get(conversationId);
      if (start === undefined) return;
      start.reading -= 1;
      if (start.reading === 0) startMarks(conversationId, start);
    },
    delivered: accept,
    catchUp,
    outcomeUnknown(conversationIds) {
      const now = performance.now();
      for (const conversationId of conversationIds) {
        unknownOutcomes.set(conversationId, { failedAt: now, othersAsked: false, tries: 0 });
      }
    },
    lost() {
      removalsMissed = 'all';
    },
    reconnected() {
      // Before anything heard from now on is delivered to their rooms (it queues behind), and before the catch-up.
      const subscribed = notify.conversationsWithSubscribersHere();
      removalsMissed = subscribed.length > 0 ? new Set(subscribed) : undefined;
      for (const conversationId of subscribed) {
        deliver(conversationId, async (): Promise<Delivery> => {
          if (mayHaveMissedRemovals(conversationId)) await checkMissedRemovals(conversationId);
          return { kind: 'new', messages: [] };
        });
      }
      catchUp();
      askForCatchUpIfLost();
    },
    async goodbye() {
      // No heartbeat after the goodbye: the others would count this node again, then find it silent.
      clearInterval(beat);
      if (!othersRun()) return;
      // The others forget this node at its goodbye, without catching up: an announcement that failed must be made
      // up for first. So the announcements on their way settle, and if one was lost the others are asked to catch
      // up; if even that fails, no goodbye: they catch up after the silence.
      if (publishing > 0) await new Promise<void>((resolve) => (published = resolve));
      published = undefined;
      // A write of unknown outcome not settled yet may have committed unannounced too, or may commit later: the
      // others are asked to catch up once its lock is free, so that they read what it committed. If it does not
      // come free in time, no goodbye either: they catch up after the silence.
      // The heartbeat's settle under way ends first: nothing of it goes out after the goodbye.
      await settlingOutcomes;
      if (unknownOutcomes.size > 0) {
        const deadline = performance.now() + GOODBYE_SETTLE_MS;
        try {
          // One statement each: no lock of one conversation held while another's is waited for.
          for (const conversationId of unknownOutcomes.keys()) {
            await waitForWrite(conversationId, deadline - performance.now());
          }
        } catch (err) {
          logger.warn(
            { err },
            'writes of unknown outcome not settled before the goodbye: leaving without one',
          );
          return;
        }
        unknownOutcomes.clear();
        announcementsLost = true;
      }
      if (announcementsLost) {
        announcementsLost = false;
        try {
          await deps.bus.notify(MESSAGES_CHANNEL, { n: node, c: 1 });
        } catch (err) {
          logger.warn({ err }, 'asking the other nodes to catch up before the goodbye failed');
          return;
        }
      }
      await deps.bus
        .notify(MESSAGES_CHANNEL, { n: node, g: 1 })
        // The others then catch up after the silence: slower, and just as complete.
        .catch((err: unknown) => logger.warn({ err }, 'saying goodbye to the other nodes failed'));
    },
    close() {
      clearInterval(watch);
      clearInterval(beat);
      clearTimeout(settle);
    },
    publish,
    async announce() {
      // The adapter may not count a node that said hello yet; nodes heard from count too.
      const others = peers.size > 0 || (await deps.nodeCount()) > 1;
      return others ? { node, inCommit: mode === 'commit' } : undefined;
    },
  };
}
