import { AppError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { PublicMessage } from '../lib/models/Message.js';
import type { GroupCommitWriter, SendRequest } from './GroupCommitWriter.js';
import { Mailbox } from './Mailbox.js';

export type { SendRequest };

/** The answer to a send once it is committed: the message, and whether it had been stored before. */
export interface SendResult {
  message: PublicMessage;
  duplicate: boolean;
}

export interface ConversationActorDeps {
  conversationId: string;
  writer: Pick<GroupCommitWriter, 'write'>;
  /** The conversation's participants, read from PostgreSQL. */
  loadMembers: (conversationId: string) => Promise<ReadonlySet<string>>;
  /** Broadcasts a committed message (`message:new` to the conversation's room, on every node). */
  publish: (message: PublicMessage) => void;
  logger: Logger;
  /** Sends that may wait before OVERLOADED. */
  mailboxCapacity: number;
  /** Sends handed to the writer at once. @default 500 */
  maxBatch?: number;
  /** Called when a send is answered, with the `performance.now()` of its acceptance (for ack latency metrics). */
  onAck?: (acceptedAt: number, ok: boolean) => void;
  now?: () => number;
}

interface QueuedSend {
  request: SendRequest;
  acceptedAt: number;
  resolve: (result: SendResult) => void;
  reject: (error: AppError) => void;
}

/**
 * The sole writer of one conversation on this node. Sends wait in a bounded mailbox; while one batch is being
 * written, newcomers queue up and go together as the next batch, so each conversation has at most one batch in
 * flight and its order is kept. Acks and `message:new` go out only after the commit, in seq order.
 *
 * The actor also caches the conversation's participant set. The cache is dropped by `invalidateMembership()`
 * (membership.changed on the control bus, from any node) and reloaded from PostgreSQL on the next check.
 */
export class ConversationActor {
  readonly id: string;
  private readonly mailbox: Mailbox<QueuedSend>;
  private readonly now: () => number;
  private members: ReadonlySet<string> | undefined;
  private membersLoading: Promise<ReadonlySet<string>> | undefined;
  /** Bumped by every invalidation, so a load that started before it is not cached after it. */
  private membershipGeneration = 0;
  private callsInFlight = 0;
  private lastActivityAt: number;

  constructor(private readonly deps: ConversationActorDeps) {
    this.id = deps.conversationId;
    this.now = deps.now ?? Date.now;
    this.lastActivityAt = this.now();
    this.mailbox = new Mailbox<QueuedSend>({
      capacity: deps.mailboxCapacity,
      maxBatch: deps.maxBatch ?? 500,
      process: (items) => this.writeBatch(items),
      onError: (err) =>
        deps.logger.error({ err, conversationId: this.id }, 'conversation actor batch failed'),
    });
  }

  /**
   * Creates the actor with its participants loaded. A conversation without participants (missing, or everyone
   * left) gets no actor: NOT_FOUND, so probing random ids leaves nothing behind.
   */
  static async spawn(deps: ConversationActorDeps): Promise<ConversationActor> {
    const actor = new ConversationActor(deps);
    const members = await actor.memberSet();
    if (members.size === 0) throw new AppError('NOT_FOUND');
    return actor;
  }

  /** Sends waiting in the mailbox (not counting the batch being written). */
  get queued(): number {
    return this.mailbox.queued;
  }

  /** Since when nothing has been queued, written or checked; undefined while busy. */
  idleSince(): number | undefined {
    return this.callsInFlight === 0 && this.mailbox.idle ? this.lastActivityAt : undefined;
  }

  async isMember(userId: string): Promise<boolean> {
    return (await this.memberSet()).has(userId);
  }

  /** NOT_FOUND for a non-participant: the conversation's existence is not revealed. */
  async assertMember(userId: string): Promise<void> {
    if (!(await this.isMember(userId))) throw new AppError('NOT_FOUND');
  }

  /** Drops the cached participants; the next check reads PostgreSQL. */
  invalidateMembership(): void {
    this.membershipGeneration += 1;
    this.members = undefined;
    this.membersLoading = undefined;
  }

  /**
   * Queues a send and resolves once it is committed (or rejects with an AppError: NOT_FOUND for a
   * non-participant, OVERLOADED at once when the mailbox is full, the writer's error code otherwise).
   */
  async send(request: SendRequest): Promise<SendResult> {
    this.callsInFlight += 1;
    this.lastActivityAt = this.now();
    try {
      await this.assertMember(request.senderId);
      return await new Promise<SendResult>((resolve, reject) => {
        // post() throws OVERLOADED synchronously, which rejects this promise.
        this.mailbox.post({ request, acceptedAt: performance.now(), resolve, reject });
      });
    } finally {
      this.callsInFlight -= 1;
      this.lastActivityAt = this.now();
    }
  }

  /** Stops accepting sends and resolves once every accepted one is answered. Idempotent. */
  drain(): Promise<void> {
    return this.mailbox.close();
  }

  private memberSet(): Promise<ReadonlySet<string>> {
    if (this.members) return Promise.resolve(this.members);
    if (this.membersLoading) return this.membersLoading;
    const generation = this.membershipGeneration;
    const loading = this.deps.loadMembers(this.id).then((members) => {
      if (generation === this.membershipGeneration) this.members = members;
      return members;
    });
    this.membersLoading = loading;
    const forget = () => {
      if (this.membersLoading === loading) this.membersLoading = undefined;
    };
    // A failed load (database down) is not cached: the next check tries again.
    loading.then(forget, forget);
    return loading;
  }

  private async writeBatch(items: QueuedSend[]): Promise<void> {
    const outcomes = await this.deps.writer.write({
      conversationId: this.id,
      sends: items.map((item) => item.request),
    });
    const committed: PublicMessage[] = [];
    items.forEach((item, i) => {
      const outcome = outcomes[i] ?? { ok: false, error: new AppError('INTERNAL') };
      this.deps.onAck?.(item.acceptedAt, outcome.ok);
      if (!outcome.ok) {
        item.reject(outcome.error);
        return;
      }
      item.resolve({ message: outcome.message, duplicate: outcome.duplicate });
      if (!outcome.duplicate) committed.push(outcome.message);
    });
    committed.sort((a, b) => a.seq - b.seq);
    for (const message of committed) {
      try {
        this.deps.publish(message);
      } catch (err) {
        // The message is committed and acked; a client missing the broadcast catches up with afterSeq.
        this.deps.logger.error({ err, conversationId: this.id, seq: message.seq }, 'broadcast failed');
      }
    }
    this.lastActivityAt = this.now();
  }
}
