/**
 * What the user typed but did not send, per conversation, kept in localStorage so it survives reloads (and is
 * there in every tab of this browser profile). Keys name the user, so two accounts never see each other's
 * drafts; logging out removes the user's drafts.
 */
const PREFIX = 'xfchat.draft.';

/** Removes every localStorage key that starts with `prefix` (a user's drafts, or unsent messages, at logout). */
export function removeKeysStartingWith(prefix: string): void {
  const keys: string[] = [];
  for (let i = 0; i < localStorage.length; i++) {
    const key = localStorage.key(i);
    if (key?.startsWith(prefix)) keys.push(key);
  }
  for (const key of keys) localStorage.removeItem(key);
}

export class Drafts {
  constructor(private readonly userId: string) {}

  /** The localStorage key of a conversation's draft (a `storage` event names it when another tab changes it). */
  key(conversationId: string): string {
    return `${PREFIX}${this.userId}.${conversationId}`;
  }

  /** Whether a localStorage key (a `storage` event's) is one of this user's drafts. */
  isKey(key: string | null): boolean {
    return key !== null && key.startsWith(`${PREFIX}${this.userId}.`);
  }

  /** The conversations this user has a draft for. */
  conversationIds(): string[] {
    const mine = `${PREFIX}${this.userId}.`;
    const ids: string[] = [];
    for (let i = 0; i < localStorage.length; i++) {
      const key = localStorage.key(i);
      if (key?.startsWith(mine)) ids.push(key.slice(mine.length));
    }
    return ids;
  }

  get(conversationId: string): string {
    return localStorage.getItem(this.key(conversationId)) ?? '';
  }

  has(conversationId: string): boolean {
    return localStorage.getItem(this.key(conversationId)) !== null;
  }

  /** Keeps `text` as the draft (an empty text removes it). */
  set(conversationId: string, text: string): void {
    if (text === '') {
      this.delete(conversationId);
      return;
    }
    try {
      localStorage.setItem(this.key(conversationId), text);
    } catch (err) {
      // Storage full or refused (some private modes): the text stays in the box, it just won't survive a reload.
      console.error('could not keep the draft', err);
    }
  }

  delete(conversationId: string): void {
    localStorage.removeItem(this.key(conversationId));
  }

  /** Removes every draft of `userId` (at logout: the next person at this computer must not read them). */
  static forget(userId: string): void {
    removeKeysStartingWith(`${PREFIX}${userId}.`);
  }
}
