import { expect } from 'chai';
import type { Knex } from 'knex';
import { loadDatabaseConfig } from '../../lib/config.js';
import { createDatabase, type Database } from '../../lib/db.js';
import { createLogger, type Logger } from '../../lib/logger.js';
import { toWire } from '../../lib/messaging/announcements.js';
import { createFanout, type Fanout, type Fresh } from '../../lib/messaging/fanout.js';
import type { PassedOver } from '../../lib/notifier.js';
import type { PublicMessage } from '../../lib/protocol/index.js';
import type { MessageCommand } from '../../lib/messaging/types.js';
import { commitUnannounced as commitElsewhere, rows } from '../helpers/chat.js';
import { createTestDatabase } from '../helpers/postgres.js';
import { testConfig } from '../helpers/server.js';
import { captureLogs } from '../helpers/logCapture.js';
import { insertUser } from '../helpers/users.js';
import { waitFor } from '../helpers/waitFor.js';

const logger = createLogger('silent');

/** What `delivered()` answers: messages to deliver as `message:new`, or as `message:updated`, or nothing. */
const asNew = (...created: PublicMessage[]): Fresh => ({ created, changed: [] });
const asChange = (...changed: PublicMessage[]): Fresh => ({ created: [], changed });
const NONE: Fresh = { created: [], changed: [] };

describe('messaging/fanout: a node that another node did not know yet catches up (PostgreSQL)', () => {
  let db: Database;
  let alice: string;
  let conversationId: string;
  let fanout: Fanout | undefined;

  before(async () => {
    const url = await createTestDatabase();
    db = createDatabase(loadDatabaseConfig({ DATABASE_URL: url }), logger);
    alice = (await insertUser(db.knex, testConfig(url))).id;
    const [row] = await rows<{ id: string }>(
      db.knex,
      "INSERT INTO conversations (type, title) VALUES ('group', 't') RETURNING id",
    );
    conversationId = row!.id;
    await db.knex('conversation_participants').insert({ conversation_id: conversationId, user_id: alice });
  });

  afterEach(() => fanout?.close());

  after(async () => {
    await db.close();
  });

  /** Commits commands without announcing them (another node that does not count this one, or this node). */
  const commitUnannounced = (commands: MessageCommand[]) => commitElsewhere(db, conversationId, commands);

  let sent = 0;
  /** Sends, unannounced. */
  const sendUnannounced = (...bodies: string[]) =>
    commitUnannounced(
      bodies.map((body) => ({
        kind: 'send',
        senderId: alice,
        clientMsgId: `m-${++sent}`,
        body,
        replyToSeq: null,
      })),
    );

  /** A fanout whose node count, announcements and deliveries the test holds. */
  async function startFanout(options: {
    nodes: number;
    peerGoneMs?: number;
    holeSettleMs?: number;
    beatMs?: number;
    /** Whether the notice `payload` fails (as when the connection is lost). */
    failNotify?: (payload: unknown) => boolean;
    /** Delivering new messages to this node's subscribers throws (a defect). */
    deliveryThrows?: boolean;
    /** The node count fails (a test of the log). */
    failNodeCount?: () => boolean;
    logger?: Logger;
    /** Its reads (by default the test's database). */
    knex?: Knex;
  }) {
    const state = {
      nodes: options.nodes,
      delivered: [] as number[],
      updated: [] as Array<[number, number]>,
      /** The seq and version of every message:new. */
      created: [] as Array<[number, number]>,
      /** Per message delivered with subscribers left out: its seq, its version and who. */
      passedOver: [] as Array<[number, number, readonly string[]]>,
      /** What it sent on the channel: its hello first, then answers and catch-up notices (not its heartbeats). */
      notices: [] as unknown[],
      beats: 0,
      announcement: undefined as ((payload: unknown) => void) | undefined,
    };
    const notePassedOver = (messages: readonly PublicMessage[], except: PassedOver | undefined) => {
      for (const m of messages) {
        const readers = except?.get(m);
        if (readers) state.passedOver.push([m.seq, m.version, readers]);
      }
    };
    fanout = await createFanout({
      bus: {
        listen: (_channel, handler) => {
          state.announcement = handler;
          return Promise.resolve();
        },
        notify: (_channel, payload) => {
          if (options.failNotify?.(payload) === true) return Promise.reject(new Error('connection lost'));
          if ((payload as { b?: number }).b === 1) state.beats += 1;
          else state.notices.push(payload);
          return Promise.resolve();
        },
      },
      knex: options.knex ?? db.knex,
      notify: {
        hasSubscribersHere: () => true,
        conversationsWithSubscribersHere: () => [conversationId],
        messagesCommitted: (messages, except) => {
          if (options.deliveryThrows === true) throw new Error('a defect in delivering');
          state.delivered.push(...messages.map((m) => m.seq));
          state.created.push(...messages.map((m): [number, number] => [m.seq, m.version]));
          notePassedOver(messages, except);
        },
        messagesUpdated: (messages, except) => {
          state.updated.push(...messages.map((m): [number, number] => [m.seq, m.version]));
          notePassedOver(messages, except);
        },
      },
      nodeCount: () =>
        options.failNodeCount?.() === true
          ? Promise.reject(new Error('connection lost'))
          : Promise.resolve(state.nodes),
      logger: options.logger ?? logger,
      peerCheckMs: 20,
      peerSettleMs: 150,
      peerGoneMs: options.peerGoneMs,
      holeSettleMs: options.holeSettleMs,
      beatMs: options.beatMs,
    });
    const announce = (payload: unknown) => {
      if (!state.announcement) throw new Error('the fanout did not LISTEN');
      state.announcement(payload);
    };
    return { fanout, state, announce };
  }

  /** A new message as another node announces it. */
  const wire = toWire;

  it('reads what was committed unannounced when another node appears, once, and drops the repeats', async () => {
    const given = await sendUnannounced('given-1');
    const { fanout, state, announce } = await startFanout({ nodes: 1 });
    // This node's subscriber has been given the last message (a history page, say).
    fanout.seen(conversationId, given.at(-1)!.seq, given.at(-1)!.version);
    // Another node commits two before it has heard of this node: nothing is announced.
    const missed = await sendUnannounced('missed-1', 'missed-2');
    expect(state.delivered).to.deep.equal([]);

    state.nodes = 2;
    await waitFor(() => state.delivered.length === 2, { what: 'the catch-up after the new node count' });
    expect(state.delivered).to.deep.equal(missed.map((m) => m.seq));
    // The same messages announced late (queued behind the catch-up) are not delivered again.
    announce({ n: 'the-other-node', m: missed.map(wire) });
    // The second catch-up, a moment later, finds nothing new either.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(state.delivered).to.deep.equal(missed.map((m) => m.seq));
  });

  it('logs a delivery that throws after a read, and goes on: nothing rejects unhandled', async () => {
    const logs = captureLogs('info');
    const given = await sendUnannounced('seen-before');
    const { fanout, announce } = await startFanout({ nodes: 2, deliveryThrows: true, logger: logs.logger });
    fanout.seen(conversationId, given.at(-1)!.seq, given.at(-1)!.version);
    await sendUnannounced('read, then delivered');
    announce({ n: 'the-other-node', c: 1 });
    await waitFor(() => logs.entries().some((l) => l.msg === 'delivering announced messages failed'), {
      what: 'the failed delivery logged',
    });
    const line = logs.entries().find((l) => l.msg === 'delivering announced messages failed');
    expect(line).to.include({ level: 50, conversationId });
    // A turn for a rejection nothing handles to surface (mocha fails the test on one).
    await new Promise((resolve) => setTimeout(resolve, 50));
  });

  it('catches up when another node says it committed unannounced, though this node’s count never changed', async () => {
    const given = await sendUnannounced('seen-before');
    const { fanout, state, announce } = await startFanout({ nodes: 2 });
    fanout.seen(conversationId, given.at(-1)!.seq, given.at(-1)!.version);
    // The other node did not count this one (it had not heard it yet, or dropped it for a late heartbeat).
    const missed = await sendUnannounced('unannounced');
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(state.delivered, 'nothing without a catch-up').to.deep.equal([]);

    announce({ n: 'the-other-node', c: 1 });
    await waitFor(() => state.delivered.length === 1, { what: 'the catch-up the other node asked for' });
    expect(state.delivered).to.deep.equal(missed.map((m) => m.seq));
    // Its own notice coming back to it, or a repeat, delivers nothing twice.
    announce({ n: fanout.node, c: 1 });
    announce({ n: 'the-other-node', c: 1 });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(state.delivered).to.deep.equal(missed.map((m) => m.seq));
  });

  it('asks every node to catch up when its own count grows, at once and again a moment later', async () => {
    const { fanout, state } = await startFanout({ nodes: 1 });
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(state.notices, 'its hello, nothing else while the count stays').to.deep.equal([
      { n: fanout.node, h: 1 },
    ]);
    state.nodes = 2;
    await waitFor(() => state.notices.length === 2, { what: 'the first catch-up notice' });
    await waitFor(() => state.notices.length === 3, { what: 'the second, after the settle time' });
    expect(state.notices.slice(1)).to.deep.equal([
      { n: fanout.node, c: 1 },
      { n: fanout.node, c: 1 },
    ]);
    // A count that falls does not ask; growing again does.
    state.nodes = 1;
    await new Promise((resolve) => setTimeout(resolve, 250));
    expect(state.notices).to.have.length(3);
    state.nodes = 2;
    await waitFor(() => state.notices.length === 4, { what: 'a notice when the count grows again' });
  });

  it('catches up on what another node committed unannounced below this node’s own later writes', async () => {
    const [before] = await sendUnannounced('before');
    const { fanout, state, announce } = await startFanout({ nodes: 2 });
    fanout.seen(conversationId, before!.seq, before!.version);
    // The other node, not counting this one yet, edits the message given and sends one; this node then sends
    // and edits, and delivers its own writes at once: its subscribers are given seqs and versions above holes.
    const [edited] = await commitUnannounced([
      { kind: 'edit', userId: alice, seq: before!.seq, body: 'edited' },
    ]);
    const [missed] = await sendUnannounced('missed');
    const [own] = await sendUnannounced('own');
    const [ownEdit] = await commitUnannounced([
      { kind: 'edit', userId: alice, seq: own!.seq, body: 'own, edited' },
    ]);
    expect(fanout.delivered('new', conversationId, [own!])).to.deep.equal(asNew(own!));
    expect(fanout.delivered('updated', conversationId, [ownEdit!])).to.deep.equal(asChange(ownEdit!));

    announce({ n: 'the-other-node', c: 1 });
    await waitFor(
      () => {
        expect({ delivered: state.delivered, updated: state.updated }).to.deep.equal({
          delivered: [missed!.seq],
          updated: [[before!.seq, edited!.version]],
        });
        return true;
      },
      { what: 'the catch-up to fill both holes, and nothing of this node’s own' },
    );
    // The marks now stand past everything: another catch-up, or its own writes coming back, deliver nothing.
    expect(fanout.delivered('new', conversationId, [own!])).to.deep.equal(NONE);
    announce({ n: 'the-other-node', c: 1 });
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(state.delivered).to.deep.equal([missed!.seq]);
    expect(state.updated).to.deep.equal([[before!.seq, edited!.version]]);
  });

  it('passes over a state of a message older than one its subscribers were given (states arrive out of order)', async () => {
    const [message] = await sendUnannounced('to be edited twice');
    const { fanout } = await startFanout({ nodes: 2 });
    fanout.seen(conversationId, message!.seq, message!.version);
    const [first] = await commitUnannounced([
      { kind: 'edit', userId: alice, seq: message!.seq, body: 'first' },
    ]);
    const [second] = await commitUnannounced([
      { kind: 'edit', userId: alice, seq: message!.seq, body: 'second' },
    ]);
    // The newer state comes first (this node's own write), the older one after it (another node's announcement).
    expect(fanout.delivered('updated', conversationId, [second!])).to.deep.equal(asChange(second!));
    expect(fanout.delivered('updated', conversationId, [first!]), 'the older state').to.deep.equal(NONE);
    // Both versions count as given: nothing is left for a catch-up, and neither comes again.
    expect(fanout.delivered('updated', conversationId, [second!])).to.deep.equal(NONE);
    expect(fanout.delivered('updated', conversationId, [first!])).to.deep.equal(NONE);
    // Another message's changes are not affected.
    const [other] = await sendUnannounced('another');
    expect(fanout.delivered('new', conversationId, [other!])).to.deep.equal(asNew(other!));
    const [otherEdit] = await commitUnannounced([
      { kind: 'edit', userId: alice, seq: other!.seq, body: 'x' },
    ]);
    expect(fanout.delivered('updated', conversationId, [otherEdit!])).to.deep.equal(asChange(otherEdit!));
  });

  it('gives a change of a message not given yet as that message’s message:new, and passes over its first state after it', async () => {
    const [given] = await sendUnannounced('given');
    const { fanout, state, announce } = await startFanout({ nodes: 2, holeSettleMs: 100 });
    fanout.seen(conversationId, given!.seq, given!.version);
    // Another node sends; this node edits that message before the other node's announcement arrives here.
    const [sent] = await sendUnannounced('sent on the other node');
    const [edit] = await commitUnannounced([
      { kind: 'edit', userId: alice, seq: sent!.seq, body: 'edited here' },
    ]);
    expect(fanout.delivered('updated', conversationId, [edit!]), 'the edit, first').to.deep.equal(
      asNew(edit!),
    );
    // The other node's announcement of the first state comes after it: passed over, and nothing is left to catch
    // up on (no hole: the first state's version counts as given).
    announce({ n: 'the-other-node', m: [toWire(sent!)] });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(state.delivered, 'the first state, late').to.deep.equal([]);
    expect(state.updated).to.deep.equal([]);
    // Later changes of it are changes again.
    const [again] = await commitUnannounced([{ kind: 'edit', userId: alice, seq: sent!.seq, body: 'again' }]);
    expect(fanout.delivered('updated', conversationId, [again!])).to.deep.equal(asChange(again!));
    // A change of a message given before, and a new message, are as they were.
    const [givenEdit] = await commitUnannounced([
      { kind: 'edit', userId: alice, seq: given!.seq, body: 'x' },
    ]);
    expect(fanout.delivered('updated', conversationId, [givenEdit!])).to.deep.equal(asChange(givenEdit!));
    const [next] = await sendUnannounced('next');
    expect(fanout.delivered('new', conversationId, [next!])).to.deep.equal(asNew(next!));
  });

  it('delivers only the newest of several states of one message in one delivery, and counts them all as given', async () => {
    const [message, other] = await sendUnannounced('toggled', 'other');
    const { fanout } = await startFanout({ nodes: 2 });
    fanout.seen(conversationId, other!.seq, other!.version);
    const [first, second, otherEdit, third] = await commitUnannounced([
      { kind: 'edit', userId: alice, seq: message!.seq, body: 'one' },
      { kind: 'edit', userId: alice, seq: message!.seq, body: 'two' },
      { kind: 'edit', userId: alice, seq: other!.seq, body: 'x' },
      { kind: 'edit', userId: alice, seq: message!.seq, body: 'three' },
    ]);
    expect(fanout.delivered('updated', conversationId, [first!, second!, otherEdit!, third!])).to.deep.equal(
      asChange(otherEdit!, third!),
    );
    for (const state of [first!, second!, third!]) {
      expect(fanout.delivered('updated', conversationId, [state])).to.deep.equal(NONE);
    }
    // A conversation not followed here (no marks): the same, every state of it being the whole message.
    fanout.close();
    const { fanout: fresh } = await startFanout({ nodes: 2 });
    expect(fresh.delivered('updated', conversationId, [first!, second!, third!])).to.deep.equal(
      asChange(third!),
    );
  });

  it('leaves the states a subscriber’s own page gave out of its deliveries, while the others get them', async () => {
    const [given] = await sendUnannounced('given');
    const { fanout, state, announce } = await startFanout({ nodes: 2 });
    // The first subscriber's page: the conversation's marks start there.
    fanout.seen(conversationId, given!.seq, given!.version);
    // Another node sends and deletes; its announcements are on their way.
    const [sent] = await sendUnannounced('sent on the other node');
    const [deleted] = await commitUnannounced([{ kind: 'delete', userId: alice, seq: sent!.seq }]);
    // A second subscriber joins and reads its page now: it shows the deletion.
    fanout.seen(conversationId, deleted!.seq, deleted!.version, {
      id: 'late',
      messages: [given!, deleted!],
    });
    announce({ n: 'the-other-node', m: [toWire(sent!)] });
    expect(state.delivered, 'the first state, to the first subscriber').to.deep.equal([sent!.seq]);
    expect(state.passedOver, 'not to the second').to.deep.equal([[sent!.seq, sent!.version, ['late']]]);
    // The deletion (this node's own delivery here; an announcement is handled alike) passes it over too.
    expect(fanout.delivered('updated', conversationId, [deleted!])).to.deep.equal({
      created: [],
      changed: [deleted!],
      except: new Map([[deleted!, ['late']]]),
    });
    // The marks have passed its page: what comes next goes to every subscriber.
    const [next] = await sendUnannounced('next');
    expect(fanout.delivered('new', conversationId, [next!])).to.deep.equal(asNew(next!));
    // A page that starts the marks keeps nothing: the marks leave out what it gave, for everyone.
    fanout.close();
    const { fanout: fresh } = await startFanout({ nodes: 2 });
    fresh.seen(conversationId, next!.seq, next!.version, { id: 'first', messages: [next!] });
    expect(fresh.delivered('new', conversationId, [next!])).to.deep.equal(NONE);
    const [after] = await sendUnannounced('after');
    expect(fresh.delivered('new', conversationId, [after!])).to.deep.equal(asNew(after!));
  });

  describe('a conversation whose subscribers’ pages are being read', function () {
    /** The first message, then an edit of it committed after a subscriber's page read it (on another node). */
    async function editedAfterThePage() {
      const [first] = await sendUnannounced('first');
      const { fanout } = await startFanout({ nodes: 2 });
      fanout.readingPage(conversationId);
      const [edited] = await commitUnannounced([
        { kind: 'edit', userId: alice, seq: first!.seq, body: 'edited' },
      ]);
      return { fanout, first: first!, edited: edited! };
    }

    it('does not start its marks from a REST read newer than the page', async () => {
      const { fanout, first, edited } = await editedAfterThePage();
      fanout.seen(conversationId, edited.seq, edited.version);
      fanout.seen(conversationId, first.seq, first.version, { id: 'bob', messages: [first] });
      expect(fanout.delivered('updated', conversationId, [edited]), 'the edit, to bob').to.deep.equal(
        asChange(edited),
      );
    });

    it('starts its marks from the oldest of two pages, and leaves the newer page’s reader out', async () => {
      const { fanout, first, edited } = await editedAfterThePage();
      fanout.readingPage(conversationId);
      fanout.seen(conversationId, edited.seq, edited.version, { id: 'carol', messages: [edited] });
      fanout.seen(conversationId, first.seq, first.version, { id: 'bob', messages: [first] });
      expect(fanout.delivered('updated', conversationId, [edited])).to.deep.equal({
        ...asChange(edited),
        except: new Map([[edited, ['carol']]]),
      });
    });

    it('delivers its own commits meanwhile to everyone, and counts them as given once the marks start', async () => {
      const { fanout, first, edited } = await editedAfterThePage();
      const [sent] = await sendUnannounced('sent here meanwhile');
      expect(fanout.delivered('new', conversationId, [sent!]), 'to the room').to.deep.equal(asNew(sent!));
      fanout.seen(conversationId, first.seq, first.version, { id: 'bob', messages: [first] });
      expect(fanout.delivered('updated', conversationId, [edited]), 'the edit, to bob').to.deep.equal(
        asChange(edited),
      );
      expect(fanout.delivered('new', conversationId, [sent!]), 'not twice').to.deep.equal(NONE);
    });

    it('counts a message whose change went out meanwhile as given in that state, so its late first state is passed over', async () => {
      const [given] = await sendUnannounced('given');
      const { fanout } = await startFanout({ nodes: 2 });
      fanout.readingPage(conversationId);
      // Another node sends and deletes; the deletion is heard first, while the page (read before both) is read.
      const [sent] = await sendUnannounced('the secret text');
      const [deleted] = await commitUnannounced([{ kind: 'delete', userId: alice, seq: sent!.seq }]);
      expect(fanout.delivered('updated', conversationId, [deleted!]), 'to the room').to.deep.equal(
        asChange(deleted!),
      );
      fanout.seen(conversationId, given!.seq, given!.version, { id: 'bob', messages: [given!] });
      expect(fanout.delivered('new', conversationId, [sent!]), 'the first state, late').to.deep.equal(NONE);
      const [next] = await sendUnannounced('next');
      expect(fanout.delivered('new', conversationId, [next!])).to.deep.equal(asNew(next!));
    });

    it('passes over a first state heard after a change of it while the page is read (never the deleted text after the deletion)', async () => {
      const [given] = await sendUnannounced('given');
      const { fanout } = await startFanout({ nodes: 2 });
      fanout.readingPage(conversationId);
      const [sent] = await sendUnannounced('the secret text');
      const [deleted] = await commitUnannounced([{ kind: 'delete', userId: alice, seq: sent!.seq }]);
      // Another node's deletion is heard first, then the send's own announcement, both while the page is read.
      expect(fanout.delivered('updated', conversationId, [deleted!])).to.deep.equal(asChange(deleted!));
      expect(fanout.delivered('new', conversationId, [sent!]), 'the first state, late').to.deep.equal(NONE);
      fanout.seen(conversationId, given!.seq, given!.version, { id: 'bob', messages: [given!] });
      expect(fanout.delivered('new', conversationId, [sent!]), 'and after the page').to.deep.equal(NONE);
    });

    it('forgets a page that was not read: the next read starts the marks', async () => {
      const { fanout, edited } = await editedAfterThePage();
      fanout.pageNotRead(conversationId);
      fanout.seen(conversationId, edited.seq, edited.version);
      expect(fanout.delivered('updated', conversationId, [edited])).to.deep.equal(NONE);
    });
  });

  it('keeps at most 256 runs of seqs a subscriber, 100,000 a conversation (the oldest pages go) and 500,000 in all', async () => {
    const [sent] = await sendUnannounced('a message');
    const { fanout } = await startFanout({ nodes: 2 });
    const at = (seq: number): PublicMessage => ({ ...sent!, seq, version: seq });
    // Pages of the even seqs 2-400 of conversations whose marks are at 0: 200 runs of one seq each.
    const messages = Array.from({ length: 200 }, (_, i) => at(2 * (i + 1)));
    const first = messages[0]!;
    const read = (conversation: string, reader: string, page = messages) =>
      fanout.seen(conversation, page.at(-1)!.seq, page.at(-1)!.version, { id: reader, messages: page });
    /** Who a message's delivery leaves out. */
    const passedOver = (conversation: string, message = first) =>
      fanout.delivered('new', conversation, [message]).except?.get(message) ?? [];
    for (let c = 0; c <= 12; c++) fanout.seen(`c-${c}`, 0, 0);

    // One page of 300 runs: its 256 highest are kept.
    const wide = Array.from({ length: 300 }, (_, i) => at(2 * (i + 1)));
    read('c-12', 'wide', wide);
    expect(passedOver('c-12', wide[43]), 'the 44th run').to.deep.equal([]);
    expect(passedOver('c-12', wide[44]), 'the 45th').to.deep.equal(['wide']);
    expect(passedOver('c-12', wide[299]), 'the last').to.deep.equal(['wide']);

    // 500 pages of c-0 hold 100,000 runs. reader-0 reads again (its page is the newest now); the next page is one
    // too many, and the oldest pages go until 90,000 runs are left: reader-1 to reader-51.
    for (let r = 0; r < 500; r++) read('c-0', `reader-${r}`);
    read('c-0', 'reader-0');
    read('c-0', 'reader-500');
    const kept = passedOver('c-0');
    expect(kept).to.have.length(450);
    expect(kept).to.include.members(['reader-0', 'reader-52', 'reader-499', 'reader-500']);
    expect(kept).to.not.include.members(['reader-1']);
    expect(kept).to.not.include.members(['reader-51']);

    // Four more conversations full, and one more page each until none is kept: past 500,000 runs in all.
    for (let c = 1; c <= 5; c++) for (let r = 0; r < 500; r++) read(`c-${c}`, `reader-${r}`);
    read('c-10', 'late');
    expect(passedOver('c-10'), 'not kept').to.deep.equal([]);
    // Once c-1's subscribers have been given everything its pages gave, its pages are forgotten: room again.
    const all = Array.from({ length: 400 }, (_, i) => at(i + 1));
    expect(fanout.delivered('new', 'c-1', all).created).to.have.length(400);
    read('c-11', 'later');
    expect(passedOver('c-11')).to.deep.equal(['later']);
  });

  it('past 100,000 runs in a conversation, forgets the runs its marks passed before any page', async () => {
    const [sent] = await sendUnannounced('a message');
    const { fanout } = await startFanout({ nodes: 2 });
    const at = (seq: number): PublicMessage => ({ ...sent!, seq, version: seq });
    fanout.seen('lagging', 0, 0);
    // 300 sockets read the even seqs 2-400 (200 runs each), then seq 1000 as of version 2000.
    const early = Array.from({ length: 200 }, (_, i) => at(2 * (i + 1)));
    for (let r = 0; r < 300; r++) {
      fanout.seen('lagging', 400, 400, { id: `early-${r}`, messages: early });
      fanout.seen('lagging', 1000, 2000, { id: `early-${r}`, messages: [at(1000)] });
    }
    // The node gives its subscribers seqs 1-400: the marks pass the first pages, not the second.
    fanout.delivered(
      'new',
      'lagging',
      Array.from({ length: 400 }, (_, i) => at(i + 1)),
    );
    // 200 more sockets read 200 runs each: past 100,000, the passed runs go and every socket's page stays.
    const later = Array.from({ length: 200 }, (_, i) => at(402 + 2 * i));
    for (let r = 0; r < 200; r++) fanout.seen('lagging', 800, 800, { id: `later-${r}`, messages: later });
    const late = at(1000);
    const readers = fanout.delivered('new', 'lagging', [late]).except?.get(late) ?? [];
    expect(readers).to.have.length(300);
    expect(readers).to.include.members(['early-0', 'early-299']);
    const another = at(402);
    expect(fanout.delivered('new', 'lagging', [another]).except?.get(another)).to.have.length(200);
  });

  it('covers each seq a subscriber’s pages gave up to the newest of those pages’ versions', async () => {
    const [sent] = await sendUnannounced('a message');
    const { fanout } = await startFanout({ nodes: 2 });
    const state = (seq: number, version: number): PublicMessage => ({ ...sent!, seq, version });
    fanout.seen('runs', 0, 0);
    // Two pages of one socket, the second newer and overlapping the first: seqs 1-10 as of version 20, then 6-15
    // as of version 30.
    const page = (from: number, to: number, version: number) =>
      Array.from({ length: to - from + 1 }, (_, i) => state(from + i, Math.min(version, from + i)));
    fanout.seen('runs', 10, 20, { id: 'socket', messages: page(1, 10, 20) });
    fanout.seen('runs', 15, 30, { id: 'socket', messages: page(6, 15, 30) });
    const passed = (seq: number, version: number) => {
      const m = state(seq, version);
      return (fanout.delivered('updated', 'runs', [m]).except?.get(m) ?? []).length > 0;
    };
    fanout.delivered('new', 'runs', [state(16, 31)]);
    expect(passed(3, 20), 'seq 3 at the first page’s version').to.equal(true);
    expect(passed(4, 21), 'seq 4 changed after the first page').to.equal(false);
    expect(passed(8, 25), 'seq 8 at a version the second page covers').to.equal(true);
    expect(passed(15, 30)).to.equal(true);
    expect(passed(16, 32), 'a seq no page gave').to.equal(false);
  });

  it('gives a message given above a hole in its newer state when the catch-up reads it changed', async () => {
    const [given] = await sendUnannounced('given');
    const { fanout, state, announce } = await startFanout({ nodes: 2, holeSettleMs: 100, beatMs: 25 });
    fanout.seen(conversationId, given!.seq, given!.version);
    // The other node sends two, and edits the second. The first one's announcement never comes; the second's
    // does, and the edit's is late: it comes only after the catch-up has read the edit.
    const [lost] = await sendUnannounced('lost');
    const [above] = await sendUnannounced('above the hole');
    const [edit] = await commitUnannounced([
      { kind: 'edit', userId: alice, seq: above!.seq, body: 'edited' },
    ]);
    announce({ n: 'the-other-node', m: [toWire(above!)] });
    expect(state.delivered).to.deep.equal([above!.seq]);
    await waitFor(() => state.delivered.length === 2, { what: 'the hole to be filled' });
    expect(state.delivered).to.deep.equal([above!.seq, lost!.seq]);
    expect(state.updated, 'the edit, read by the catch-up').to.deep.equal([[above!.seq, edit!.version]]);
    // The late announcements (its first state, the edit) give nothing more.
    announce({ n: 'the-other-node', m: [toWire(above!)] });
    announce({ n: 'the-other-node', u: [[conversationId, above!.seq]] });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(state.delivered).to.deep.equal([above!.seq, lost!.seq]);
    expect(state.updated).to.deep.equal([[above!.seq, edit!.version]]);
  });

  it('counts as given only the versions its catch-up delivered: a message sent and changed during it keeps its change', async () => {
    const [given] = await sendUnannounced('given');
    // The catch-up's read of changed messages waits until the test opens the gate.
    let open: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (open = resolve));
    /** Whether the read of changes was asked for: the catch-up's first read has ended. */
    let atTheGate = false;
    const gated = new Proxy(db.knex, {
      get(target, property, receiver) {
        if (property !== 'raw') return Reflect.get(target, property, receiver) as unknown;
        return (sql: string, bindings: readonly Knex.RawBinding[]) => {
          if (!sql.includes('m.version > ?')) return target.raw(sql, bindings);
          atTheGate = true;
          return gate.then(() => target.raw(sql, bindings));
        };
      },
    });
    const { fanout, state, announce } = await startFanout({ nodes: 2, knex: gated });
    fanout.seen(conversationId, given!.seq, given!.version);
    announce({ n: 'the-other-node', c: 1 });
    // Between the catch-up's two reads, the other node sends a message and edits it, then edits the one given.
    // (After a fixed 100 ms, a slow machine's first read could come after these writes and read them: the test
    // then passed without the case it is about.)
    await waitFor(() => atTheGate, { what: 'the catch-up’s first read to end' });
    const [sent] = await sendUnannounced('sent during the catch-up');
    const [sentEdit] = await commitUnannounced([
      { kind: 'edit', userId: alice, seq: sent!.seq, body: 'sent, edited' },
    ]);
    const [givenEdit] = await commitUnannounced([
      { kind: 'edit', userId: alice, seq: given!.seq, body: 'given, edited' },
    ]);
    open();
    await waitFor(() => state.updated.length > 0, { what: 'the catch-up of changes' });
    // Then the announcements of all three arrive.
    announce({ n: 'the-other-node', m: [toWire(sent!)] });
    announce({ n: 'the-other-node', u: [[conversationId, sent!.seq]] });
    announce({ n: 'the-other-node', u: [[conversationId, given!.seq]] });
    await new Promise((resolve) => setTimeout(resolve, 300));
    // Whichever event brought it, the subscribers were given the newest state of both messages.
    const newest = (seq: number) =>
      Math.max(...[...state.created, ...state.updated].filter(([s]) => s === seq).map(([, v]) => v));
    expect(state.delivered, 'the sent message, once').to.deep.equal([sent!.seq]);
    expect(newest(sent!.seq), 'the sent message, edited').to.equal(sentEdit!.version);
    expect(newest(given!.seq), 'the given one, edited').to.equal(givenEdit!.version);
  });

  it('says hello once it listens, answers another node’s hello, and announces to a node heard from', async () => {
    const { fanout, state, announce } = await startFanout({ nodes: 1 });
    expect(state.notices).to.deep.equal([{ n: fanout.node, h: 1 }]);
    expect(await fanout.announce(), 'alone').to.equal(undefined);

    // A node that has just started says hello: this one answers, and announces to it before the adapter counts it.
    announce({ n: 'a-new-node', h: 1 });
    expect(state.notices.slice(1)).to.deep.equal([{ n: fanout.node, p: 1 }]);
    expect(await fanout.announce()).to.deep.equal({ node: fanout.node, inCommit: false });
    fanout.close();
    // Its own hello coming back is not another node.
    const { fanout: second, state: secondState, announce: toSecond } = await startFanout({ nodes: 1 });
    toSecond({ n: second.node, h: 1 });
    expect(secondState.notices).to.have.length(1);
    expect(await second.announce(), 'its own hello').to.equal(undefined);
    // An answer to its hello is a node running.
    toSecond({ n: 'a-running-node', p: 1 });
    expect(secondState.notices, 'an answer is not answered').to.have.length(1);
    expect(await second.announce()).to.deep.equal({ node: second.node, inCommit: false });
  });

  it('fills a hole that lasts from messages: an announcement that never came', async () => {
    const [before] = await sendUnannounced('before');
    const { fanout, state, announce } = await startFanout({ nodes: 2, holeSettleMs: 100, beatMs: 25 });
    fanout.seen(conversationId, before!.seq, before!.version);
    // The writer of the first died between its commit and its announcement; the second is announced.
    const [lost] = await sendUnannounced('lost');
    const [later] = await sendUnannounced('later');
    announce({ n: 'the-other-node', m: [wire(later!)] });
    expect(state.delivered, 'the announced one at once').to.deep.equal([later!.seq]);
    await waitFor(() => state.delivered.length === 2, { what: 'the hole to be filled' });
    expect(state.delivered).to.deep.equal([later!.seq, lost!.seq]);
    // Settled: no more catch-ups, nothing twice.
    await new Promise((resolve) => setTimeout(resolve, 250));
    expect(state.delivered).to.deep.equal([later!.seq, lost!.seq]);
  });

  it('reads nothing while the holes of crossing announcements keep filling, though one is always open', async () => {
    const [before] = await sendUnannounced('before');
    // A hole may last 1 s; each is filled 300 ms after it opened, and some hole stays open 2.4 s in all, well past
    // the settle: a node that timed the holes from the first one seen would read the missing seqs at 1 s, out of
    // this order. (Each filled 60 ms after it opened against a settle of 100 ms, a loaded machine's stall of this
    // process past 100 ms let a heartbeat find a hole settled: 3 failures in 160 runs.)
    const { fanout, state, announce } = await startFanout({ nodes: 2, holeSettleMs: 1000, beatMs: 20 });
    fanout.seen(conversationId, before!.seq, before!.version);
    const sent = await sendUnannounced(...Array.from({ length: 16 }, (_, i) => `m${i + 1}`));
    const at = (i: number) => wire(sent[i - 1]!);
    // Two nodes' announcements crossing: seq 2 before 1, 4 before 3, ... each hole filled 300 ms after it opened.
    const order = [[2], ...Array.from({ length: 7 }, (_, i) => [2 * i + 1, 2 * i + 4]), [15]];
    for (const seqs of order) {
      announce({ n: 'the-other-node', m: seqs.map(at) });
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    // A catch-up would have read a missing seq from messages before its announcement, out of this order.
    expect(state.delivered).to.deep.equal(order.flat().map((i) => sent[i - 1]!.seq));
  });

  it('catches up when another node falls silent: its last commit, never announced, still arrives', async () => {
    const [before] = await sendUnannounced('before');
    // The other node's last commit must land before it counts as gone (its one catch-up reads what is committed
    // then): 1 s from when it was last heard, where 200 ms left about 130 ms for a commit on a loaded machine.
    const { fanout, state, announce } = await startFanout({ nodes: 1, peerGoneMs: 1000, beatMs: 25 });
    fanout.seen(conversationId, before!.seq, before!.version);
    expect(state.beats, 'alone: no heartbeat').to.equal(0);
    announce({ n: 'the-other-node', b: 1 });
    expect(await fanout.announce(), 'a node heard from runs').to.deep.equal({
      node: fanout.node,
      inCommit: false,
    });
    await waitFor(() => state.beats > 0, { what: 'a heartbeat, now that another node runs' });
    // The other node commits, and dies before announcing.
    const [last] = await sendUnannounced('last words');
    await waitFor(() => state.delivered.length === 1, { what: 'the catch-up after the silence' });
    expect(state.delivered).to.deep.equal([last!.seq]);
    expect(await fanout.announce(), 'alone again').to.equal(undefined);
  });

  it('announces a commit after it (MESSAGE_ANNOUNCE=after), and asks for a catch-up once a lost one can be', async () => {
    let failing = false;
    const { fanout, state } = await startFanout({ nodes: 2, failNotify: () => failing });
    const [sent] = await sendUnannounced('announced after the commit');
    fanout.publish({ created: [sent!], repeated: [], changed: [] });
    expect(state.notices.at(-1)).to.deep.equal({ n: fanout.node, m: [wire(sent!)] });
    const count = state.notices.length;

    failing = true;
    fanout.publish({ created: [sent!], repeated: [], changed: [] });
    await new Promise((resolve) => setImmediate(resolve));
    failing = false;
    fanout.reconnected();
    expect(state.notices.slice(count)).to.deep.equal([{ n: fanout.node, c: 1 }]);
    // Asked once: the next reconnection asks nothing more.
    fanout.reconnected();
    expect(state.notices).to.have.length(count + 1);
  });

  it('asks for a catch-up at the next heartbeat after a lost announcement, and at each one after until it can', async () => {
    let failing = false;
    const { fanout, state } = await startFanout({ nodes: 2, beatMs: 25, failNotify: () => failing });
    const [sent] = await sendUnannounced('its announcement is lost');
    const catchUps = () => state.notices.filter((n) => (n as { c?: number }).c === 1).length;
    failing = true;
    fanout.publish({ created: [sent!], repeated: [], changed: [] });
    // Heartbeats pass while sending still fails: each asks, and each ask fails.
    await new Promise((resolve) => setTimeout(resolve, 120));
    expect(catchUps()).to.equal(0);
    failing = false;
    // The connection never dropped (a pool that was busy, say): the heartbeat asks, without a reconnection.
    await waitFor(() => catchUps() === 1, { what: 'a catch-up request' });
    await new Promise((resolve) => setTimeout(resolve, 120));
    expect(catchUps(), 'asked once').to.equal(1);
  });

  it('logs heartbeats that cannot be sent (PostgreSQL away) once every 10 s, not once each', async () => {
    const logs = captureLogs('info');
    let failed = 0;
    await startFanout({
      nodes: 2,
      beatMs: 10,
      logger: logs.logger,
      failNotify: () => {
        failed += 1;
        return true;
      },
    });
    await waitFor(() => failed >= 20, { what: 'twenty notices that failed' });
    const lines = logs.entries().filter((l) => String(l.msg).endsWith(' failed'));
    const beats = lines.filter((l) => l.msg === 'the heartbeat failed');
    expect(beats).to.have.length(1);
    expect(beats[0]).to.include({ level: 40, suppressed: 0 });
  });

  it('logs the other steps that fail at every beat or count (a catch-up asked for, the node count) once every 10 s', async () => {
    const logs = captureLogs('info');
    let failed = 0;
    let counts = 0;
    const { fanout } = await startFanout({
      nodes: 2,
      beatMs: 10,
      logger: logs.logger,
      failNotify: () => {
        failed += 1;
        return true;
      },
      // The count at the start answers; every later one fails.
      failNodeCount: () => {
        counts += 1;
        return counts > 1;
      },
    });
    // An announcement lost: every heartbeat after it asks the other nodes to catch up, and that fails too.
    const [sent] = await sendUnannounced('its announcement is lost');
    fanout.publish({ created: [sent!], repeated: [], changed: [] });
    await waitFor(() => failed >= 20 && counts >= 11, { what: 'twenty notices and ten counts that failed' });
    const lines = logs.entries();
    for (const msg of ['asking the other nodes to catch up failed', 'counting the nodes failed']) {
      const these = lines.filter((l) => l.msg === msg);
      expect(these, msg).to.have.length(1);
      expect(these[0], msg).to.include({ level: 40, suppressed: 0 });
    }
  });

  it('asks the others to catch up before its goodbye when one of its announcements was lost', async () => {
    let failing = false;
    const { fanout, state, announce } = await startFanout({
      nodes: 1,
      beatMs: 60_000,
      failNotify: () => failing,
    });
    announce({ n: 'the-other-node', p: 1 });
    const [sent] = await sendUnannounced('its announcement is lost');
    failing = true;
    fanout.publish({ created: [sent!], repeated: [], changed: [] });
    failing = false;
    await fanout.goodbye();
    // Forgetting this node at its goodbye, the others would never read that message: they catch up first.
    expect(state.notices.slice(-2)).to.deep.equal([
      { n: fanout.node, c: 1 },
      { n: fanout.node, g: 1 },
    ]);
    fanout.close();
  });

  it('says no goodbye when the catch-up it asks for fails: the others catch up after its silence', async () => {
    // Its announcements and its catch-up request fail; a goodbye would go through.
    const { fanout, state, announce } = await startFanout({
      nodes: 1,
      beatMs: 60_000,
      failNotify: (payload) => (payload as { g?: number }).g !== 1,
    });
    announce({ n: 'the-other-node', p: 1 });
    const [sent] = await sendUnannounced('its announcement is lost');
    fanout.publish({ created: [sent!], repeated: [], changed: [] });
    const before = state.notices.length;
    await fanout.goodbye();
    expect(state.notices).to.have.length(before);
    fanout.close();
  });

  it('forgets a node that says goodbye without catching up, and says goodbye itself only to others', async () => {
    const [before] = await sendUnannounced('before');
    const { fanout, state, announce } = await startFanout({ nodes: 1, peerGoneMs: 200, beatMs: 25 });
    fanout.seen(conversationId, before!.seq, before!.version);
    announce({ n: 'the-other-node', b: 1 });
    // Committed and announced before it leaves (here: committed unannounced, to show no catch-up reads it).
    await sendUnannounced('not read');
    announce({ n: 'the-other-node', g: 1 });
    expect(await fanout.announce(), 'alone again at once').to.equal(undefined);
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(state.delivered, 'no catch-up').to.deep.equal([]);
    // Alone, its own goodbye goes to nobody.
    const sent = state.notices.length;
    await fanout.goodbye();
    expect(state.notices).to.have.length(sent);
    fanout.close();
    const { fanout: second, state: secondState, announce: toSecond } = await startFanout({ nodes: 1 });
    toSecond({ n: 'the-other-node', p: 1 });
    await second.goodbye();
    expect(secondState.notices.at(-1)).to.deep.equal({ n: second.node, g: 1 });
    second.close();
  });
});
