import type {
  ConversationSummary,
  PublicConversation,
  PublicMessage,
  PublicParticipant,
  PublicUser,
} from '../lib/client/index.js';
import { nameNeedsHandle, ONLY_YOU, personName } from './text.js';

/** What the app knows about one conversation. */
export interface ConversationState {
  id: string;
  type: 'direct' | 'group';
  title: string | null;
  participants: PublicParticipant[];
  lastSeq: number;
  /**
   * The conversation's version in the answer that made this state: the messages' changes after it (an edit or a
   * delete of the preview's message before the page subscribed) are caught up from it.
   */
  version: number;
  lastMessage: PublicMessage | null;
  lastActivity: string;
  myLastReadSeq: number;
  /** Loaded messages by seq: history pages and live ones, each in the newest state known. */
  messages: Map<number, PublicMessage>;
  /**
   * The newest state known of messages that are not loaded: changes that came in for them, and originals read
   * for the quote of a reply. A history page that loads one of them keeps whichever state is newer.
   */
  outside: Map<number, PublicMessage>;
  historyLoaded: boolean;
  hasOlder: boolean;
}

/** The conversations of the signed-in user, kept current from REST answers and live events. */
export class ConversationStore {
  private readonly items = new Map<string, ConversationState>();
  /** Senders who are no longer participants (they left, or deleted their account), as looked up by id. */
  private readonly people = new Map<string, PublicUser>();
  /** Asked (once per id) for the name of a sender who is no participant: look them up, then {@link learn}. */
  onUnknownSender: ((userId: string) => void) | undefined;
  private readonly asked = new Set<string>();

  constructor(readonly meId: string) {}

  /** A user's current name (from `user:updated`, or a lookup): every participant entry of theirs follows. */
  learn(user: PublicUser): void {
    if (this.people.has(user.id) || this.asked.has(user.id)) this.people.set(user.id, user);
    this.forgetOthersNamed(user.id, user.username);
    for (const state of this.items.values()) {
      for (const p of state.participants) {
        if (p.userId !== user.id) continue;
        p.username = user.username;
        p.displayName = user.displayName;
      }
    }
  }

  /**
   * Adds a conversation, or replaces the details of a known one (title, participants) with the server's newer
   * answer; keeps loaded messages, and never moves seqs or read markers backwards.
   */
  upsert(conversation: PublicConversation | ConversationSummary): ConversationState {
    const mine = conversation.participants.find((p) => p.userId === this.meId);
    const lastMessage = 'lastMessage' in conversation ? conversation.lastMessage : null;
    for (const p of conversation.participants) this.forgetOthersNamed(p.userId, p.username);
    const existing = this.items.get(conversation.id);
    if (existing) {
      // A marker never goes back within one membership; a member removed and added again (a new joinedAt, perhaps
      // while this page was offline) starts over from the server's, as the server does.
      const before = new Map(existing.participants.map((p) => [p.userId, p]));
      const sameMembership = (p: PublicParticipant) => before.get(p.userId)?.joinedAt === p.joinedAt;
      existing.title = conversation.title;
      existing.participants = conversation.participants.map((p) => ({
        ...p,
        lastReadSeq: sameMembership(p)
          ? Math.max(p.lastReadSeq, before.get(p.userId)!.lastReadSeq)
          : p.lastReadSeq,
      }));
      existing.lastSeq = Math.max(existing.lastSeq, conversation.lastSeq);
      existing.myLastReadSeq =
        mine === undefined || sameMembership(mine)
          ? Math.max(existing.myLastReadSeq, mine?.lastReadSeq ?? 0)
          : mine.lastReadSeq;
      // A newer last message (the list read again after a drop) brings its time: the list's order follows it.
      if (lastMessage && (existing.lastMessage?.seq ?? 0) < lastMessage.seq) {
        existing.lastMessage = lastMessage;
        existing.lastActivity = lastMessage.createdAt;
      }
      return existing;
    }
    const state: ConversationState = {
      id: conversation.id,
      type: conversation.type,
      title: conversation.title,
      participants: conversation.participants,
      lastSeq: conversation.lastSeq,
      version: conversation.version,
      lastMessage,
      lastActivity: lastMessage?.createdAt ?? conversation.createdAt,
      myLastReadSeq: mine?.lastReadSeq ?? 0,
      messages: new Map(),
      outside: new Map(),
      historyLoaded: false,
      hasOlder: false,
    };
    this.items.set(conversation.id, state);
    return state;
  }

  /**
   * The newest message of a conversation that arrived without it (I was added to a group that has messages),
   * read for the list: it becomes the preview and the latest activity unless a newer one is known meanwhile. It
   * is not a loaded message: opening the conversation loads its history as usual.
   */
  setPreview(state: ConversationState, message: PublicMessage): void {
    const known = this.message(state, message.seq);
    const newest = known && known.version > message.version ? known : message;
    // Unread counts stay with lastSeq (the conversation's, and the live messages'): this message is not shown yet.
    if (!state.lastMessage || newest.seq > state.lastMessage.seq) {
      state.lastMessage = newest;
      state.lastActivity = newest.createdAt;
    } else if (newest.seq === state.lastMessage.seq && newest.version > state.lastMessage.version) {
      state.lastMessage = newest;
    }
  }

  get(id: string): ConversationState | undefined {
    return this.items.get(id);
  }

  delete(id: string): void {
    this.items.delete(id);
  }

  /** Most recent activity first, as the server lists them. */
  sorted(): ConversationState[] {
    return [...this.items.values()].sort((a, b) => b.lastActivity.localeCompare(a.lastActivity));
  }

  /**
   * Records messages (a history page, live ones); returns the ones not seen before. A message already held is
   * replaced by a newer state of it; a state held outside the loaded ones (see `outside`) wins when newer. A
   * message also moves its sender's read marker to it (mine, or another participant's): the send moved it on the
   * server, which tells that by the message alone, with no `conversation:read` (docs/messaging.md).
   */
  addMessages(state: ConversationState, messages: readonly PublicMessage[]): PublicMessage[] {
    const fresh: PublicMessage[] = [];
    for (const incoming of messages) {
      const held = state.messages.get(incoming.seq);
      if (held) {
        if (incoming.version > held.version) this.replace(state, incoming);
        continue;
      }
      const outside = state.outside.get(incoming.seq);
      state.outside.delete(incoming.seq);
      const message = outside && outside.version > incoming.version ? outside : incoming;
      fresh.push(message);
      state.messages.set(message.seq, message);
      if (message.seq > state.lastSeq) state.lastSeq = message.seq;
      if (!state.lastMessage || message.seq > state.lastMessage.seq) {
        state.lastMessage = message;
        state.lastActivity = message.createdAt;
      } else if (message.seq === state.lastMessage.seq && message.version > state.lastMessage.version) {
        state.lastMessage = message;
      }
      if (message.senderId !== null) this.markRead(state, message.senderId, message.seq);
    }
    return fresh;
  }

  /**
   * A message's new state from the server (an edit, a delete, a reaction change): kept if it is newer (by
   * version) than the one held, loaded or not. Returns whether a loaded message changed (it needs redrawing).
   */
  update(state: ConversationState, message: PublicMessage): boolean {
    const held = state.messages.get(message.seq);
    if (held) {
      if (message.version <= held.version) return false;
      this.replace(state, message);
      return true;
    }
    const outside = state.outside.get(message.seq);
    if (!outside || outside.version < message.version) state.outside.set(message.seq, message);
    if (state.lastMessage?.seq === message.seq && state.lastMessage.version < message.version)
      state.lastMessage = message;
    return false;
  }

  /**
   * What this app knows a change of mine did, once the server confirmed it, before (or after) its new state
   * arrives: the message with the same version, so that state, newer, still replaces it.
   */
  patch(state: ConversationState, message: PublicMessage): void {
    if (state.messages.has(message.seq)) this.replace(state, message);
    else state.outside.set(message.seq, message);
  }

  /** The newest state known of a message, loaded or not. */
  message(state: ConversationState, seq: number): PublicMessage | undefined {
    return state.messages.get(seq) ?? state.outside.get(seq);
  }

  private replace(state: ConversationState, message: PublicMessage): void {
    state.messages.set(message.seq, message);
    if (state.lastMessage?.seq === message.seq) state.lastMessage = message;
  }

  unread(state: ConversationState): number {
    return Math.max(0, state.lastSeq - state.myLastReadSeq);
  }

  /** Unread messages of every conversation together (the tab title's count). */
  totalUnread(): number {
    let total = 0;
    for (const state of this.items.values()) total += this.unread(state);
    return total;
  }

  /** The participants: me first, then the owner, then by name. */
  members(state: ConversationState): PublicParticipant[] {
    const rank = (p: PublicParticipant) => (p.userId === this.meId ? 0 : p.role === 'owner' ? 1 : 2);
    return [...state.participants].sort(
      (a, b) => rank(a) - rank(b) || a.displayName.localeCompare(b.displayName),
    );
  }

  /** The others' names ("Bob, Carol"): what tells two groups of the same title apart. */
  otherNames(state: ConversationState): string {
    const names = this.otherNameList(state);
    return names.length === 0 ? ONLY_YOU : names.join(', ');
  }

  /** The others' names, one by one, in the order `otherNames` gives them. */
  otherNameList(state: ConversationState): string[] {
    return this.members(state)
      .filter((p) => p.userId !== this.meId)
      .map((p) => this.senderLabel(state, p.userId));
  }

  isOwner(state: ConversationState): boolean {
    return state.participants.some((p) => p.userId === this.meId && p.role === 'owner');
  }

  /** A group's title, or the other person's name in a direct conversation. */
  title(state: ConversationState): string {
    if (state.type === 'group') return state.title ?? 'Group';
    const other = state.participants.find((p) => p.userId !== this.meId);
    if (!other) return 'Conversation';
    return other.username === null ? other.displayName : personName(other.displayName);
  }

  /**
   * `username` is `id`'s now: a sender looked up earlier under that name (case aside) is someone else, whose account
   * is gone (a name is free again only when its account is deleted), and is asked about again rather than shown with
   * the name of its new holder.
   */
  private forgetOthersNamed(id: string, username: string | null): void {
    if (username === null || this.people.size === 0) return;
    const name = username.toLowerCase();
    for (const [known, user] of this.people) {
      if (known === id || user.username?.toLowerCase() !== name) continue;
      this.people.delete(known);
      this.onUnknownSender?.(known);
    }
  }

  /** A lookup of a sender that failed (not for a missing account): the next drawing that needs them asks again. */
  forgetAsked(userId: string): void {
    this.asked.delete(userId);
  }

  /** A participant, or a sender who is no longer one (looked up by id); undefined until known. */
  private person(state: ConversationState, userId: string): PublicUser | PublicParticipant | undefined {
    const participant = state.participants.find((p) => p.userId === userId);
    if (participant) return participant;
    const known = this.people.get(userId);
    if (known) return known;
    if (!this.asked.has(userId)) {
      this.asked.add(userId);
      this.onUnknownSender?.(userId);
    }
    return undefined;
  }

  /**
   * Who wrote a message, in words: "You" for me (never anyone else: a display name that reads like "You",
   * "Deleted user" or "Someone" is shown in quotes), "Deleted user" for an account that is gone.
   */
  senderName(state: ConversationState, senderId: string | null): string {
    if (senderId === null) return 'Deleted user';
    if (senderId === this.meId) return 'You';
    const person = this.person(state, senderId);
    if (!person) return 'Someone';
    return person.username === null ? 'Deleted user' : personName(person.displayName);
  }

  /** A sender's "@username" (what no one else can have), or undefined for me, a deleted account, or unknown. */
  handle(state: ConversationState, senderId: string | null): string | undefined {
    if (senderId === null || senderId === this.meId) return undefined;
    const username = this.person(state, senderId)?.username;
    return username === null || username === undefined ? undefined : `@${username}`;
  }

  /**
   * A sender's name where only words fit (previews, quotes, the typing line, who reacted): their name, with
   * their @username beside it whenever the name alone could be someone else's: the same name as another
   * participant's or mine (as a reader compares names), or one that reads like an app label.
   */
  senderLabel(state: ConversationState, senderId: string | null): string {
    const name = this.senderName(state, senderId);
    const handle = this.handle(state, senderId);
    if (handle === undefined || senderId === null) return name;
    const displayName = this.person(state, senderId)?.displayName ?? name;
    const others = state.participants.filter((p) => p.userId !== senderId).map((p) => p.displayName);
    return nameNeedsHandle(displayName, others) ? `${name} (${handle})` : name;
  }

  /** A direct conversation whose other person deleted their account (nobody will read new messages). */
  otherIsDeleted(state: ConversationState): boolean {
    if (state.type !== 'direct') return false;
    const other = state.participants.find((p) => p.userId !== this.meId);
    return other !== undefined && other.username === null;
  }

  /** Records another participant's (or my own, from another tab) read marker: from `conversation:read`, or a send. */
  markRead(state: ConversationState, userId: string, seq: number): void {
    if (userId === this.meId) state.myLastReadSeq = Math.max(state.myLastReadSeq, seq);
    const participant = state.participants.find((p) => p.userId === userId);
    if (participant && seq > participant.lastReadSeq) participant.lastReadSeq = seq;
  }
}
