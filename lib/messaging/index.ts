import { ConversationActor } from '../../actors/ConversationActor.js';
import { ConversationRegistry } from '../../actors/ConversationRegistry.js';
import type { NextBatch } from '../../actors/Mailbox.js';
import { writeConcurrency, type Config } from '../config.js';
import type { Database } from '../db.js';
import { AppError } from '../errors.js';
import type { Logger } from '../logger.js';
import { failureOutcome, type Metrics } from '../metrics.js';
import type { Notifier } from '../notifier.js';
import type { PublicMessage } from '../protocol/index.js';
import type { ControlBus } from '../cluster/controlBus.js';
import type { CommitNews } from './announcements.js';
import { createFanout } from './fanout.js';
import { createMembership, type Membership } from './membership.js';
import { PAGE_MAX_BYTES } from './reads.js';
import { createRemovals } from './removals.js';
import { createMessageService, type MessageService } from './service.js';
import {
  messageBatchRule,
  type MessageActor,
  type MessageCommand,
  type Outcome,
  type Stored,
} from './types.js';
import { createGroupCommitWriter, type GroupCommitWriter, type Written } from './writer.js';

export interface MessagingDeps {
  config: Readonly<Config>;
  db: Database;
  notify: Notifier;
  logger: Logger;
  controlBus: ControlBus;
  metrics: Pick<Metrics, 'observeBatch' | 'observeHeldUpStart' | 'observeAck' | 'observeRejected' | 'sample'>;
  /** Nodes in the cluster, this one included: committed messages are announced only when there are others. */
  nodeCount: () => Promise<number>;
  /** An actor idle this long is dropped. @default 60000 */
  actorIdleMs?: number;
}

/**
 * The messaging core of one node: the actors (one per active conversation), the group-commit writer they share,
 * the membership cache, and the service the interfaces call. docs/architecture.md walks a send through it.
 */
export interface Messaging {
  readonly service: MessageService;
  readonly membership: Membership;
  readonly registry: ConversationRegistry<MessageActor>;
  readonly writer: GroupCommitWriter;
  /**
   * After the control bus reconnected (events and announcements may have been missed): drops every cached
   * membership and gives this node's subscribers what they missed.
   */
  resync(): void;
  /**
   * The control bus lost its connection (it reconnects): the removals committed until it listens again are not
   * heard, so deliveries to a conversation's room check its removals first until its check after the reconnect.
   */
  listenLost(): void;
  /**
   * Shutdown, first step: refuse new commands, finish every accepted one. Resolves true when drained, false when
   * `timeoutMs` passed first (the rest is abandoned: those clients get no ack and retry). Idempotent.
   */
  drain(timeoutMs: number): Promise<boolean>;
  /** Drains, then stops the writer and leaves the control bus. Idempotent. */
  close(): Promise<void>;
}

/** What a transaction committed, for the other nodes. */
function newsOf(written: readonly Written[]): CommitNews {
  const created: PublicMessage[] = [];
  const repeated: PublicMessage[] = [];
  const changed: PublicMessage[] = [];
  for (const { batch, outcomes } of written) {
    // A batch holds sends only or changes only (messageBatchRule).
    const sends = batch.commands[0]?.kind === 'send';
    for (const outcome of outcomes) {
      if (!outcome.ok) continue;
      const { message, duplicate } = outcome.value;
      if (!sends) {
        if (!duplicate) changed.push(message);
      } else if (!duplicate) created.push(message);
      // A clientMsgId twice in one batch is answered twice with the message it created.
      else if (!created.some((m) => m.id === message.id)) repeated.push(message);
    }
  }
  return { created, repeated, changed };
}

export async function createMessaging(deps: MessagingDeps): Promise<Messaging> {
  const { config, db, metrics, notify } = deps;
  const logger = deps.logger.child({ component: 'messaging' });
  const membership = createMembership(db.knex, { missesPerSecond: config.limits.readsPerSecond });
  const removals = createRemovals(db.knex, notify, {
    membersChanged: (conversationId) => membership.invalidate(conversationId),
  });
  const fanout = await createFanout({
    bus: deps.controlBus,
    knex: db.knex,
    notify,
    nodeCount: deps.nodeCount,
    logger,
    mode: config.limits.announce,
    removalsChecked: (conversationId) => removals.beforeCatchUp(conversationId),
  });
  const writer = createGroupCommitWriter({
    connections: db.connections,
    logger,
    maxConcurrency: writeConcurrency(config),
    // The second lock wait only with a connection left for reads, membership checks and auth beside all of them.
    maxLockWaits: config.database.poolMax - writeConcurrency(config) >= 3 ? 2 : 1,
    announce: () => fanout.announce(),
    onCommitted: (written, announce) => {
      if (announce !== undefined && !announce.inCommit) fanout.publish(newsOf(written));
    },
    onOutcomeUnknown: (conversationIds) => fanout.outcomeUnknown(conversationIds),
    onTransaction: (report) => {
      if (report.committed) metrics.observeBatch(report.sends, report.persisted, report.busy);
      if (report.heldUp) metrics.observeHeldUpStart();
    },
  });

  /**
   * Commits a batch, then delivers what it wrote to this node's subscribers in order (new messages by seq,
   * changed ones by version), before anyone is acked; the other nodes hear of it from the writer's announcement
   * (`onCommitted` above), or from the commit itself with MESSAGE_ANNOUNCE=commit.
   */
  async function write(conversationId: string, next: NextBatch<MessageCommand>): Promise<Outcome<Stored>[]> {
    let commands: readonly MessageCommand[] = [];
    // The writer takes the batch when its transaction starts: the commands queued until then go with it.
    const outcomes = await writer.write({
      conversationId,
      next: { size: () => next.size(), take: () => (commands = next.take()) },
    });
    const written: PublicMessage[] = [];
    let removalsRead = 0;
    for (const outcome of outcomes) {
      if (!outcome.ok || outcome.value.duplicate) continue;
      written.push(outcome.value.message);
      removalsRead = Math.max(removalsRead, outcome.value.removals ?? 0);
    }
    if (written.length > 0) {
      let deliverHere = true;
      const catchingUp = removals.beforeDelivering(conversationId, removalsRead);
      if (catchingUp !== undefined) {
        try {
          await catchingUp;
        } catch (err) {
          // Committed and about to be acked, but a participant removed before it may still be subscribed here:
          // noted as given, and not delivered on this node; its subscribers catch up with afterSeq / since.
          deliverHere = false;
          logger.error({ err, conversationId }, 'removals not checked: a commit not delivered on this node');
        }
      }
      try {
        // A batch holds sends only or changes only (messageBatchRule).
        const fresh =
          commands[0]?.kind === 'send'
            ? fanout.delivered(
                'new',
                conversationId,
                written.sort((a, b) => a.seq - b.seq),
              )
            : fanout.delivered(
                'updated',
                conversationId,
                written.sort((a, b) => a.version - b.version),
              );
        if (deliverHere && fresh.created.length > 0) notify.messagesCommitted(fresh.created, fresh.except);
        if (deliverHere && fresh.changed.length > 0) notify.messagesUpdated(fresh.changed, fresh.except);
      } catch (err) {
        // Committed and about to be acked; a client missing the broadcast catches up with afterSeq / since.
        logger.error({ err, conversationId }, 'broadcast failed');
      }
    }
    return outcomes;
  }

  const registry = new ConversationRegistry<MessageActor>({
    logger,
    idleMs: deps.actorIdleMs,
    spawn: (conversationId) =>
      Promise.resolve(
        new ConversationActor<MessageCommand, Stored>({
          conversationId,
          write,
          batchRule: messageBatchRule,
          logger: logger.child({ conversationId }),
          mailboxCapacity: config.limits.mailboxCapacity,
          // The commands queued behind a batch the database was unreachable for have waited for it already:
          // answered at once, within the acquire timeout they were promised, not after another wait.
          failsWaiting: (error) => error instanceof AppError && error.code === 'DB_UNAVAILABLE',
          onAnswered: (acceptedAt, ok, error) =>
            metrics.observeAck(acceptedAt, ok ? 'ok' : failureOutcome(error)),
          onRefused: (error) => metrics.observeRejected(error),
        }),
      ),
  });
  metrics.sample('liveActors', () => registry.size);
  metrics.sample('writeConcurrency', () => writer.concurrency);
  metrics.sample('mailboxDepth', () => {
    let depth = 0;
    registry.forEachLiveActor((actor) => {
      depth += actor.queued;
    });
    return depth;
  });

  const service = createMessageService({
    knex: db.knex,
    notify,
    membership,
    removals,
    registry,
    messagesPerSecond: config.limits.messagesPerSecond,
    readsPerSecond: config.limits.readsPerSecond,
    // Half a socket's cap at most: a page and the packets queued beside it stay under it.
    pageMaxBytes:
      config.limits.socketMaxBufferedBytes > 0
        ? Math.min(PAGE_MAX_BYTES, Math.floor(config.limits.socketMaxBufferedBytes / 2))
        : PAGE_MAX_BYTES,
    onRejected: (err) => metrics.observeRejected(err),
    onReadNotTold: (err, conversationId) =>
      logger.error({ err, conversationId }, 'a held read marker event not told'),
    onNotChecked: (err, conversationId) =>
      logger.error(
        { err, conversationId },
        'removals not checked: a read marker told to the room as it stands',
      ),
    onPageRead: (conversationId, page, reader) =>
      fanout.seen(
        conversationId,
        page.lastSeq,
        page.version,
        reader === undefined ? undefined : { id: reader, messages: page.messages },
      ),
    onPageReading: (conversationId) => fanout.readingPage(conversationId),
    onPageNotRead: (conversationId) => fanout.pageNotRead(conversationId),
  });

  /**
   * Actors answer by resolving promises; the ack or HTTP response is written by each caller's continuation, a
   * chain of microtasks. One macrotask turn later every one of them has run; the realtime layer's close writes out
   * what its sockets still hold for their turn (`coalesce.ts`) before it closes them, so no ack is cut.
   */
  const afterContinuations = () => new Promise<true>((resolve) => setImmediate(() => resolve(true)));

  const unsubscribe = deps.controlBus.subscribe((event) => {
    if (event.type !== 'membership.changed') return;
    membership.invalidate(event.conversationId);
    service.forgetTypings(event.conversationId);
    if (event.removals !== undefined) removals.heard(event.conversationId, event.removals);
  });

  let gaveUp = false;
  async function drainWithin(timeoutMs: number): Promise<boolean> {
    if (gaveUp) return false;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    try {
      const drained = await Promise.race([registry.drain().then(afterContinuations), timedOut]);
      if (!drained) {
        gaveUp = true;
        logger.warn({ timeoutMs }, 'mailboxes not drained in time; closing anyway');
        // The commands still waiting are answered OVERLOADED (nothing of them is stored), and the transactions
        // running in PostgreSQL are waited for (their calls end within the statement timeout), then the actors,
        // so that a message they commit is acked while its sender's socket is still open (the server bounds this
        // wait by its deadline).
        await writer.abandon();
        await registry.drain();
        await afterContinuations();
      }
      return drained;
    } finally {
      clearTimeout(timer);
    }
  }

  let closing: Promise<void> | undefined;
  async function doClose(): Promise<void> {
    service.stop();
    const drained = await drainWithin(config.shutdownTimeoutMs);
    unsubscribe();
    // Drained: everything accepted is committed and announced (the goodbye goes out behind the announcements, on
    // the same connection). Not drained: the others catch up after this node's silence instead.
    if (drained) await fanout.goodbye();
    fanout.close();
    // After a drain timeout the writer was abandoned (drainWithin): what it ran is over.
    if (drained) await writer.close();
  }

  return {
    service,
    membership,
    registry,
    writer,
    resync() {
      membership.invalidateAll();
      fanout.reconnected();
    },
    listenLost() {
      fanout.lost();
    },
    drain: drainWithin,
    close() {
      closing ??= doClose();
      return closing;
    },
  };
}
