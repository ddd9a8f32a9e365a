import type { Knex } from 'knex';
import { setBounded } from '../boundedMap.js';
import type { ControlBus, ControlEvent } from '../cluster/controlBus.js';
import { loadConversation } from '../conversations/queries.js';
import type { Logger } from '../logger.js';
import type { PublicConversation } from '../protocol/index.js';
import type { AppServer } from './io.js';
import { detailNotices, removeLocally } from './notifier.js';

/** One change of a group's details as the control bus told it, in the order of the conversation's commits. */
type Change =
  | { kind: 'added' | 'removed'; userId: string; removals: number | undefined; fromHere: boolean }
  | { kind: 'created'; fromHere: boolean }
  | { kind: 'renamed'; fromHere: boolean };

/** The changes of one conversation heard here behind the batch being told, and when the chain has drained. */
interface Chain {
  waiting: Change[];
  done: Promise<void>;
}

/** What a batch of changes is told with: the conversation as a reload read it, or nothing (the reload failed). */
type Reloaded = { read: true; conversation: PublicConversation | undefined } | { read: false };

const MAX_TOLD_REMOVED = 10_000;
const removalKey = (userId: string, conversationId: string) => `${userId} ${conversationId}`;

export interface ConversationEvents {
  /**
   * `userId`'s sockets on this node have just been told `conversation:removed`, out of the chain (the node that
   * removed them, or a write that found the removal before this node heard of it: lib/messaging/removals.ts),
   * with the conversation's removals counted then: the conversation's events heard before that removal tell them
   * nothing more, and the removal's own event does not tell them again. False, marking nothing, when they were
   * told of this removal here already (a write of this node found it before the node that made it went on).
   */
  removedHere(userId: string, conversationId: string, removals: number | undefined): boolean;
  /**
   * Whether `userId`'s sockets here were told of a removal from the conversation made after the conversation had
   * counted `removals` (a read that counted `removals` saw them take part, and they have been told since that they
   * do not): what that read found is not told to them.
   */
  toldRemovalAfter(userId: string, conversationId: string, removals: number): boolean;
  /**
   * The count of the latest removal of `userId` from the conversation told here (undefined if none is known): a
   * reader that looked before and after an await sees whether one was told meanwhile.
   */
  lastRemovalTold(userId: string, conversationId: string): number | undefined;
  /**
   * Whether this node heard an addition of `userId` to the conversation made after its `removals`th removal (an
   * addition reads the count of removals before it): a removal told from the database is over then.
   */
  heardAdditionSince(userId: string, conversationId: string, removals: number): boolean;
  /**
   * The conversation as its next events show it (lib/conversations/queries.ts), undefined if it does not exist.
   * Called through this object, so that a test can hold it.
   */
  reload(conversationId: string): Promise<PublicConversation | undefined>;
  /** Stops following the control bus; resolves once the reloads running now have been told. */
  close(): Promise<void>;
}

/**
 * A group's detail events (`conversation:added` to the user added, `conversation:updated` to the others), told by
 * every node to its own sockets, in the order of the conversation's commits. Each change sends its
 * `membership.changed` inside its transaction (`ControlBus.publishWithin()`), so every node, the one that made it
 * included (`fromHere`), hears the conversation's changes in commit order. Per conversation, a node keeps them in a
 * chain: it reloads the conversation (once for every change waiting then) and tells its sockets the reloaded state,
 * then goes on with the changes heard meanwhile. A reload begins after the changes it serves were committed and
 * after the previous reload ended, so what a socket is told never goes back in time, and the last event shows the
 * state after the last change. A chain is dropped once it has drained.
 *
 * A removal is told at once, not in the chain (its sockets leave the room before this node hears of any message
 * committed after it: docs/messaging.md, "A node's own sockets first"): by the node that made it, by a node whose
 * write found it first (`removedHere()`), and by the other nodes as soon as they hear it. The removed user's
 * sockets here then hear nothing of the changes heard before the removal, whose reload may have read the state
 * before it; the removal's own place in the chain ends that, and an addition of the user after it tells them again.
 *
 * Nodes of 0.2.0 do not follow the control bus for these events: the node that made a change also tells its
 * events to the sockets outside `FOLLOWS_REMOVALS_ROOM`, through the adapter. A change made through a 0.2.0 node
 * is heard as a bare `membership.changed`, with nothing to tell: that node tells every node's sockets itself,
 * through the adapter, as 0.2.0 does.
 */
export function createConversationEvents(deps: {
  io: AppServer;
  knex: Knex;
  logger: Logger;
  controlBus: Pick<ControlBus, 'subscribe'>;
}): ConversationEvents {
  const { io, knex, controlBus } = deps;
  const logger = deps.logger.child({ component: 'conversation-events' });
  /**
   * The (user, conversation) pairs whose sockets here were told `conversation:removed` and whose removal's place in
   * the chain has not been reached, with the conversation's removals counted then. At most
   * {@link MAX_TOLD_REMOVED} (a removal never heard, as when the control bus was down, leaves one behind until the
   * user is added again).
   */
  const toldRemoved = new Map<string, number>();
  /**
   * The same pairs' latest removal told here (out of the chain, by `removedHere()` or as this node heard it), kept
   * after its place in the chain is reached: the node that made a removal, going on after a write of its own told it
   * first, does not tell it again, and the socket check does not tell what it read before it
   * (`toldRemovalAfter()`). At most {@link MAX_TOLD_REMOVED}.
   */
  const lastToldRemoval = new Map<string, number>();
  /** The same pairs' latest addition heard here, by the count of removals it read. At most {@link MAX_TOLD_REMOVED}. */
  const lastHeardAddition = new Map<string, number>();
  const chains = new Map<string, Chain>();
  let closed = false;

  function markRemoved(userId: string, conversationId: string, removals: number): void {
    const key = removalKey(userId, conversationId);
    setBounded(toldRemoved, key, Math.max(removals, toldRemoved.get(key) ?? removals), MAX_TOLD_REMOVED);
  }

  function toldLast(userId: string, conversationId: string, removals: number): void {
    const key = removalKey(userId, conversationId);
    setBounded(
      lastToldRemoval,
      key,
      Math.max(removals, lastToldRemoval.get(key) ?? removals),
      MAX_TOLD_REMOVED,
    );
  }

  /** Whether the removal counted `removals`th was told here already (`removedHere()`). */
  const toldAlready = (userId: string, conversationId: string, removals: number | undefined) => {
    const told = toldRemoved.get(removalKey(userId, conversationId));
    return told !== undefined && removals !== undefined && removals <= told;
  };

  function changeOf(event: ControlEvent, fromHere: boolean): Change | undefined {
    if (event.removed === true) {
      return { kind: 'removed', userId: event.userId, removals: event.removals, fromHere };
    }
    if (event.change === 'added') {
      return { kind: 'added', userId: event.userId, removals: event.removals, fromHere };
    }
    if (event.change === 'renamed') return { kind: 'renamed', fromHere };
    if (event.change === 'created') return { kind: 'created', fromHere };
    // A block, or a change made through a node of an earlier release.
    return undefined;
  }

  const unsubscribe = controlBus.subscribe((event, fromHere) => {
    if (event.type !== 'membership.changed') return;
    const change = changeOf(event, fromHere);
    if (change === undefined) return;
    // The node that removed them told them already (`removedHere()`), and so did this one if a write found it first.
    if (
      change.kind === 'removed' &&
      !fromHere &&
      !toldAlready(change.userId, event.conversationId, change.removals)
    ) {
      removeLocally(io, change.userId, event.conversationId);
      if (change.removals !== undefined) {
        markRemoved(change.userId, event.conversationId, change.removals);
        toldLast(change.userId, event.conversationId, change.removals);
      }
    }
    if (change.kind === 'added' && change.removals !== undefined) {
      const key = removalKey(change.userId, event.conversationId);
      const heard = Math.max(change.removals, lastHeardAddition.get(key) ?? change.removals);
      setBounded(lastHeardAddition, key, heard, MAX_TOLD_REMOVED);
    }
    push(event.conversationId, change);
  });

  function push(conversationId: string, change: Change): void {
    if (closed) return;
    const chain = chains.get(conversationId);
    if (chain) {
      chain.waiting.push(change);
      return;
    }
    const started: Chain = { waiting: [change], done: Promise.resolve() };
    chains.set(conversationId, started);
    started.done = drain(conversationId, started);
  }

  async function drain(conversationId: string, chain: Chain): Promise<void> {
    try {
      while (chain.waiting.length > 0 && !closed) {
        const batch = chain.waiting;
        chain.waiting = [];
        let reloaded: Reloaded = { read: true, conversation: undefined };
        // A node with no socket has no one to tell, but the node that made a change tells 0.2.0 nodes' sockets.
        if (io.of('/').sockets.size > 0 || batch.some((c) => c.fromHere)) {
          try {
            reloaded = { read: true, conversation: await events.reload(conversationId) };
          } catch (err) {
            // Told with the next change's reload, which reads the state after this one.
            logger.error(
              { err, conversationId, changes: batch.length },
              "reloading a conversation failed: this node's sockets miss its events until its next change",
            );
            reloaded = { read: false };
          }
        }
        try {
          tell(conversationId, batch, reloaded);
        } catch (err) {
          // A defect: thrown on, it would end the chain with its changes' place kept by no one.
          logger.error({ err, conversationId }, "telling a conversation's events failed");
        }
      }
    } finally {
      chains.delete(conversationId);
    }
  }

  /**
   * The batch's events to this node's sockets, in order: `conversation:added` to each user added (to every
   * participant, for a new conversation, group or direct), if the reload still has them, then one `conversation:updated` to the other
   * participants it has. Not to a user removed in the batch (until added again in it), nor to one told of a
   * removal whose place in the chain is still ahead.
   */
  function tell(conversationId: string, batch: readonly Change[], reloaded: Reloaded): void {
    const conversation = reloaded.read ? reloaded.conversation : undefined;
    const participants = new Set(conversation?.participants.map((p) => p.userId));
    const removedHere = (userId: string) => toldRemoved.has(removalKey(userId, conversationId));
    const added = new Set<string>();
    const gone = new Set<string>();
    for (const change of batch) {
      if (change.kind === 'renamed') continue;
      if (change.kind === 'created') {
        // Every participant the reload lists hears of the new conversation (but one told of a removal still ahead).
        const told = conversation?.participants
          .map((p) => p.userId)
          .filter((userId) => !removedHere(userId) && !gone.has(userId));
        if (conversation && told && told.length > 0) {
          detailNotices.tell(io, 'conversation:added', told, conversation, change.fromHere);
          for (const userId of told) added.add(userId);
        }
        continue;
      }
      const { userId, removals } = change;
      const key = removalKey(userId, conversationId);
      const told = toldRemoved.get(key);
      if (change.kind === 'removed') {
        // Its place in the chain: the changes after it reload the state after it.
        if (told !== undefined && (removals === undefined || removals >= told)) toldRemoved.delete(key);
        added.delete(userId);
        gone.add(userId);
        continue;
      }
      // Added after the removal they were told of: they hear of the conversation again.
      if (told !== undefined && removals !== undefined && removals >= told) toldRemoved.delete(key);
      gone.delete(userId);
      // Told already in this batch, by the group's creation.
      if (conversation && participants.has(userId) && !removedHere(userId) && !added.has(userId)) {
        detailNotices.tell(io, 'conversation:added', [userId], conversation, change.fromHere);
        added.add(userId);
      }
    }
    if (!conversation) return;
    const others = conversation.participants
      .map((p) => p.userId)
      .filter((userId) => !added.has(userId) && !gone.has(userId) && !removedHere(userId));
    if (others.length > 0) {
      detailNotices.tell(
        io,
        'conversation:updated',
        others,
        conversation,
        batch.some((c) => c.fromHere),
      );
    }
  }

  const events: ConversationEvents = {
    removedHere(userId, conversationId, removals) {
      if (removals === undefined) return true;
      const key = removalKey(userId, conversationId);
      const told = lastToldRemoval.get(key);
      if (told !== undefined && removals <= told) return false;
      toldLast(userId, conversationId, removals);
      markRemoved(userId, conversationId, removals);
      return true;
    },
    toldRemovalAfter(userId, conversationId, removals) {
      return (events.lastRemovalTold(userId, conversationId) ?? -1) > removals;
    },
    lastRemovalTold(userId, conversationId) {
      return lastToldRemoval.get(removalKey(userId, conversationId));
    },
    heardAdditionSince(userId, conversationId, removals) {
      return (lastHeardAddition.get(removalKey(userId, conversationId)) ?? -1) >= removals;
    },
    async reload(conversationId) {
      return (await loadConversation(knex, conversationId))?.toPublic();
    },
    async close() {
      closed = true;
      unsubscribe();
      await Promise.all([...chains.values()].map((c) => c.done));
    },
  };
  return events;
}
