import { ConversationActor } from '../../actors/ConversationActor.js';
import { ConversationRegistry } from '../../actors/ConversationRegistry.js';
import type { Config } from '../config.js';
import type { Database } from '../db.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { Notifier } from '../notifier.js';
import type { PublicMessage } from '../protocol/index.js';
import type { ControlBus } from '../realtime/controlBus.js';
import { createMembership, type Membership } from './membership.js';
import { createMessageService, type MessageService } from './service.js';
import type { MessageActor, MessageCommand, Outcome, Stored } from './types.js';
import { createGroupCommitWriter, type GroupCommitWriter } from './writer.js';

export interface MessagingDeps {
  config: Readonly<Config>;
  db: Database;
  notify: Notifier;
  logger: Logger;
  controlBus: ControlBus;
  metrics: Pick<Metrics, 'observeBatch' | 'observeAck' | 'sample'>;
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
   * Shutdown, first step: refuse new commands, finish every accepted one. Resolves true when drained, false when
   * `timeoutMs` passed first (the rest is abandoned: those clients get no ack and retry). Idempotent.
   */
  drain(timeoutMs: number): Promise<boolean>;
  /** Drains, then stops the writer and leaves the control bus. Idempotent. */
  close(): Promise<void>;
}

export function createMessaging(deps: MessagingDeps): Messaging {
  const { config, db, metrics, notify } = deps;
  const logger = deps.logger.child({ component: 'messaging' });
  const writer = createGroupCommitWriter({
    knex: db.knex,
    logger,
    // Leave pool connections for reads, membership checks and auth while writes are busy.
    concurrency: Math.max(1, Math.min(config.limits.writeConcurrency, config.database.poolMax - 1)),
    onTransaction: (report) => {
      if (report.committed) metrics.observeBatch(report.sends, report.persisted);
    },
  });
  const membership = createMembership(db.knex);

  /** Commits a batch, then tells the subscribers about the new messages, in seq order, before anyone is acked. */
  async function write(
    conversationId: string,
    commands: readonly MessageCommand[],
  ): Promise<Outcome<Stored>[]> {
    const outcomes = await writer.write({ conversationId, commands });
    const committed: PublicMessage[] = [];
    for (const outcome of outcomes) {
      if (outcome.ok && !outcome.value.duplicate) committed.push(outcome.value.message);
    }
    if (committed.length > 0) {
      committed.sort((a, b) => a.seq - b.seq);
      try {
        notify.messagesCommitted(committed);
      } catch (err) {
        // Committed and about to be acked; a client missing the broadcast catches up with afterSeq.
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
          logger,
          mailboxCapacity: config.limits.mailboxCapacity,
          onAnswered: (acceptedAt, ok) => metrics.observeAck(acceptedAt, ok ? 'ok' : 'error'),
        }),
      ),
  });
  metrics.sample('liveActors', () => registry.size);
  metrics.sample('mailboxDepth', () => {
    let depth = 0;
    registry.forEachLiveActor((actor) => {
      depth += actor.queued;
    });
    return depth;
  });

  const unsubscribe = deps.controlBus.subscribe((event) => {
    if (event.type === 'membership.changed') membership.invalidate(event.conversationId);
  });

  const service = createMessageService({
    knex: db.knex,
    notify,
    membership,
    registry,
    messagesPerSecond: config.limits.messagesPerSecond,
    readsPerSecond: config.limits.readsPerSecond,
  });

  /**
   * Actors answer by resolving promises; the ack or HTTP response is written by each caller's continuation, a
   * chain of microtasks. One macrotask turn later every one of them has run, so closing sockets cannot cut an ack.
   */
  const afterContinuations = () => new Promise<true>((resolve) => setImmediate(() => resolve(true)));

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
      }
      return drained;
    } finally {
      clearTimeout(timer);
    }
  }

  let closing: Promise<void> | undefined;
  async function doClose(): Promise<void> {
    const drained = await drainWithin(config.shutdownTimeoutMs);
    unsubscribe();
    // After a drain timeout the writer's remaining work is abandoned: closing the pool fails it.
    if (drained) await writer.close();
  }

  return {
    service,
    membership,
    registry,
    writer,
    drain: drainWithin,
    close() {
      closing ??= doClose();
      return closing;
    },
  };
}
