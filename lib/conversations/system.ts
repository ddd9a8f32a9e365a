import { ConversationActor } from '../../actors/ConversationActor.js';
import { ConversationRegistry } from '../../actors/ConversationRegistry.js';
import { createGroupCommitWriter, type GroupCommitWriter } from '../../actors/GroupCommitWriter.js';
import type { Config } from '../config.js';
import type { Database } from '../db.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { ControlBus } from '../realtime/controlBus.js';
import type { AppServer } from '../realtime/io.js';
import { createMessageFanout } from '../realtime/messageFanout.js';
import { createConversationService, type ConversationService } from './conversationService.js';
import { createMessageService, type MessageService } from './messageService.js';
import { loadMemberIds } from './queries.js';

export interface ConversationSystemDeps {
  config: Readonly<Config>;
  db: Database;
  io: AppServer;
  logger: Logger;
  controlBus: ControlBus;
  metrics: Pick<Metrics, 'observeBatch' | 'observeAck' | 'sample'>;
  /** An actor idle this long is dropped. @default 60000 */
  actorIdleMs?: number;
}

/** Conversations and messages of one node: the shared writer, the actors, and the two services over them. */
export interface ConversationSystem {
  readonly registry: ConversationRegistry<ConversationActor>;
  readonly writer: GroupCommitWriter;
  readonly conversations: ConversationService;
  readonly messages: MessageService;
  /** Drops every cached participant set: after a control bus reconnect, events may have been missed. */
  invalidateAllMembership(): void;
  /**
   * Shutdown, first step: refuse new sends, finish every accepted one. Resolves true when drained, false when
   * `timeoutMs` passed first (the rest is abandoned: those clients get no ack and retry). Idempotent.
   */
  drain(timeoutMs: number): Promise<boolean>;
  /** Drains, then stops the writer and leaves the control bus. Idempotent. */
  close(): Promise<void>;
}

/** Builds the writer, the registry of actors and the services, and subscribes to membership changes. */
export function createConversationSystem(deps: ConversationSystemDeps): ConversationSystem {
  const { config, db, io, metrics } = deps;
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
  const fanout = createMessageFanout(io, logger);
  const registry = new ConversationRegistry<ConversationActor>({
    logger,
    idleMs: deps.actorIdleMs,
    spawn: (conversationId) =>
      ConversationActor.spawn({
        conversationId,
        writer,
        logger,
        mailboxCapacity: config.limits.mailboxCapacity,
        loadMembers: (id) => loadMemberIds(db.knex, id),
        publish: (message) => fanout.publish(message),
        onAck: (acceptedAt, ok) => metrics.observeAck(acceptedAt, ok ? 'ok' : 'error'),
      }),
  });
  metrics.sample('liveActors', () => registry.size);
  metrics.sample('mailboxDepth', () => {
    let depth = 0;
    registry.forEachLiveActor((actor) => {
      depth += actor.queued;
    });
    return depth;
  });

  const invalidate = (conversationId: string) =>
    registry.withActor(conversationId, (actor) => actor.invalidateMembership());
  const unsubscribe = deps.controlBus.subscribe((event) => {
    if (event.type === 'membership.changed') invalidate(event.conversationId);
  });

  const conversations = createConversationService({
    knex: db.knex,
    io,
    logger,
    controlBus: deps.controlBus,
    invalidateLocal: invalidate,
  });
  const messages = createMessageService({
    knex: db.knex,
    io,
    logger,
    registry,
    messagesPerSecond: config.limits.messagesPerSecond,
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
    registry,
    writer,
    conversations,
    messages,
    invalidateAllMembership() {
      registry.forEachActor((actor) => actor.invalidateMembership());
    },
    drain: drainWithin,
    close() {
      closing ??= doClose();
      return closing;
    },
  };
}
