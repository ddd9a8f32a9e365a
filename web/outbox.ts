/**
 * Messages typed here that the server has not acknowledged yet, kept in localStorage (one key each, named by the
 * user and the message's clientMsgId) so that closing or reloading the tab does not lose them: the next load
 * sends them again under the SAME clientMsgId, and the server stores each clientMsgId once, so a message whose
 * first send did get through is not stored twice. A message the server refuses for good (a block, a conversation
 * I am no longer in, its text) is removed: the page says it was not sent, and no later load may send it all the
 * same. Logging out removes them, like drafts.
 */
import { removeKeysStartingWith } from './drafts.js';

const PREFIX = 'xfchat.outbox.';

/** What is kept of an unsent message. */
export interface OutboxEntry {
  conversationId: string;
  clientMsgId: string;
  body: string;
  replyToSeq: number | null;
  /** When it was typed (ms since the epoch). */
  typedAt: number;
  /**
   * Its place among this user's kept messages (one more than the highest kept when it was kept): messages are sent
   * again in this order, the order typed, whatever the clock did meanwhile (stepped back between two messages, the
   * later one has the earlier time). Set by {@link Outbox.keep}; absent from messages kept by earlier versions,
   * which go first, by `typedAt`.
   */
  order?: number;
  /**
   * The conversation's title then, and whether it is a group: if I am no longer in it at the next load, the notice
   * that shows the text names it. Absent from messages kept by earlier versions.
   */
  title?: string;
  group?: boolean;
}

function isEntry(value: unknown): value is OutboxEntry {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return (
    typeof v.conversationId === 'string' &&
    typeof v.clientMsgId === 'string' &&
    typeof v.body === 'string' &&
    (v.replyToSeq === null || typeof v.replyToSeq === 'number') &&
    typeof v.typedAt === 'number' &&
    (v.order === undefined || typeof v.order === 'number') &&
    (v.title === undefined || typeof v.title === 'string') &&
    (v.group === undefined || typeof v.group === 'boolean')
  );
}

export class Outbox {
  constructor(private readonly userId: string) {}

  private key(clientMsgId: string): string {
    return `${PREFIX}${this.userId}.${clientMsgId}`;
  }

  /**
   * Keeps a message until {@link remove}, after the others kept (one kept already keeps its place); false if storage
   * refused it (it then lives only in this page).
   */
  keep(entry: OutboxEntry): boolean {
    // Read from storage at each keep, not a highest number held in the page: another tab of the same user may have
    // kept a message a moment ago, and its `storage` event would reach this page only later (usually none or a few
    // are kept, each removed once stored).
    const kept = this.entries();
    const order =
      kept.find((other) => other.clientMsgId === entry.clientMsgId)?.order ??
      Math.max(0, ...kept.map((other) => other.order ?? 0)) + 1;
    try {
      localStorage.setItem(this.key(entry.clientMsgId), JSON.stringify({ ...entry, order }));
      return true;
    } catch (err) {
      console.error('could not keep the unsent message', err);
      return false;
    }
  }

  /**
   * The key another tab of this browser hears change (a `storage` event) when a tab goes away with messages of this
   * user not sent ({@link handOver}): they are that tab's to send now.
   */
  handOverKey(): string {
    return `xfchat.outbox-handover.${this.userId}`;
  }

  /** Tells the other tabs that this one goes away with kept messages not sent (closed, or left for another page). */
  handOver(): void {
    try {
      localStorage.setItem(this.handOverKey(), String(Date.now()));
    } catch (err) {
      console.error('could not hand the unsent messages over to the other tabs', err);
    }
  }

  /** The server stored it or refused it for good, or the user discarded it. */
  remove(clientMsgId: string): void {
    localStorage.removeItem(this.key(clientMsgId));
  }

  /** Every kept message of this user, in the order kept. */
  entries(): OutboxEntry[] {
    const mine = `${PREFIX}${this.userId}.`;
    const found: OutboxEntry[] = [];
    for (let i = 0; i < localStorage.length; i++) {
      const key = localStorage.key(i);
      if (!key?.startsWith(mine)) continue;
      try {
        const value: unknown = JSON.parse(localStorage.getItem(key) ?? 'null');
        if (isEntry(value)) found.push(value);
      } catch {
        // Not ours to read (written by another version): left alone.
        continue;
      }
    }
    return found.sort(
      (a, b) =>
        (a.order ?? 0) - (b.order ?? 0) ||
        a.typedAt - b.typedAt ||
        (a.clientMsgId < b.clientMsgId ? -1 : a.clientMsgId > b.clientMsgId ? 1 : 0),
    );
  }

  /** Removes every kept message of `userId` (at logout: the next person at this computer must not send them). */
  static forget(userId: string): void {
    removeKeysStartingWith(`${PREFIX}${userId}.`);
    localStorage.removeItem(new Outbox(userId).handOverKey());
  }
}
