import type { Logger } from '../lib/logger.js';
import { shuttingDown } from './Mailbox.js';

/** What the registry needs of an actor. */
export interface RegistryActor {
  /** Since when the actor has had nothing queued or in flight; undefined while busy. */
  idleSince(): number | undefined;
  /** Stops accepting and finishes every accepted command. */
  drain(): Promise<void>;
}

export interface ConversationRegistryOptions<A extends RegistryActor> {
  /** Creates the actor of a conversation; a rejection (e.g. NOT_FOUND) is passed on and nothing is kept. */
  spawn: (conversationId: string) => Promise<A>;
  /** An actor idle this long is dropped. @default 60000 */
  idleMs?: number;
  /** How often idle actors are looked for. @default idleMs / 2 */
  sweepIntervalMs?: number;
  logger: Logger;
  now?: () => number;
}

interface Entry<A> {
  promise: Promise<A>;
  actor: A | undefined;
  lastUsedAt: number;
}

/**
 * Get-or-spawn for conversation actors: one in-flight spawn per id (concurrent callers share it), idle eviction,
 * and `drain()` for shutdown.
 */
export class ConversationRegistry<A extends RegistryActor> {
  private readonly entries = new Map<string, Entry<A>>();
  private readonly idleMs: number;
  private readonly now: () => number;
  private readonly sweeper: NodeJS.Timeout;
  private draining: Promise<void> | undefined;

  constructor(private readonly options: ConversationRegistryOptions<A>) {
    this.idleMs = options.idleMs ?? 60_000;
    this.now = options.now ?? (() => performance.now());
    this.sweeper = setInterval(
      () => this.evictIdle(),
      options.sweepIntervalMs ?? Math.max(10, this.idleMs / 2),
    );
    // Eviction is housekeeping: it must not keep the process alive.
    this.sweeper.unref();
  }

  /** Actors alive or being spawned. */
  get size(): number {
    return this.entries.size;
  }

  /** The actor of a conversation, spawning it if needed. Rejects with OVERLOADED once draining. */
  get(conversationId: string): Promise<A> {
    if (this.draining) {
      return Promise.reject(shuttingDown());
    }
    const existing = this.entries.get(conversationId);
    if (existing) {
      existing.lastUsedAt = this.now();
      return existing.promise;
    }
    const entry: Entry<A> = {
      // The callbacks use `entry` only once the spawn settles, always after this initializer has run.
      promise: this.options.spawn(conversationId).then(
        (actor) => {
          entry.actor = actor;
          return actor;
        },
        (err: unknown) => {
          if (this.entries.get(conversationId) === entry) this.entries.delete(conversationId);
          throw err;
        },
      ),
      actor: undefined,
      lastUsedAt: this.now(),
    };
    this.entries.set(conversationId, entry);
    return entry.promise;
  }

  /** The live actor of a conversation, without spawning one. */
  find(conversationId: string): A | undefined {
    return this.entries.get(conversationId)?.actor;
  }

  /** Runs `fn` on the conversation's actor if there is one (alive, or once its spawn completes). */
  withActor(conversationId: string, fn: (actor: A) => void): void {
    const entry = this.entries.get(conversationId);
    if (!entry) return;
    if (entry.actor) fn(entry.actor);
    // A spawn in flight may have read state that `fn` invalidates: apply it once the actor exists.
    // A failed spawn needs nothing: its caller already got the error, and no actor exists to update.
    else entry.promise.then(fn, () => undefined);
  }

  /** Runs `fn` on every actor, including those still spawning. */
  forEachActor(fn: (actor: A) => void): void {
    for (const id of this.entries.keys()) this.withActor(id, fn);
  }

  /** Runs `fn` on every live actor now (not those still spawning), synchronously: for gauges. */
  forEachLiveActor(fn: (actor: A) => void): void {
    for (const entry of this.entries.values()) if (entry.actor) fn(entry.actor);
  }

  /** Drops actors idle for `idleMs`; returns how many. */
  evictIdle(): number {
    const now = this.now();
    let evicted = 0;
    for (const [id, entry] of this.entries) {
      const idleSince = entry.actor?.idleSince();
      if (idleSince === undefined) continue;
      if (now - Math.max(idleSince, entry.lastUsedAt) >= this.idleMs) {
        this.entries.delete(id);
        evicted += 1;
      }
    }
    if (evicted > 0) this.options.logger.debug({ evicted, live: this.entries.size }, 'evicted idle actors');
    return evicted;
  }

  /**
   * Shutdown: refuses new work (get() answers OVERLOADED), lets spawns in flight finish, then drains every actor
   * so each command already accepted into a mailbox is written and answered. Idempotent.
   */
  drain(): Promise<void> {
    this.draining ??= this.doDrain();
    return this.draining;
  }

  private async doDrain(): Promise<void> {
    clearInterval(this.sweeper);
    const spawned = await Promise.allSettled([...this.entries.values()].map((entry) => entry.promise));
    await Promise.all(
      spawned.flatMap((result) => (result.status === 'fulfilled' ? [result.value.drain()] : [])),
    );
  }
}
