import type {
  ConversationSummary,
  PublicConversation,
  PublicMessage,
  PublicParticipant,
} from '../lib/client/index.js';

/** What the app knows about one conversation. */
export interface ConversationState {
  id: string;
  type: 'direct' | 'group';
  title: string | null;
  participants: PublicParticipant[];
  lastSeq: number;
  lastMessage: PublicMessage | null;
  lastActivity: string;
  myLastReadSeq: number;
  /** Loaded messages by seq: history pages and live ones. */
  messages: Map<number, PublicMessage>;
  historyLoaded: boolean;
  hasOlder: boolean;
}

/** The conversations of the signed-in user, kept current from REST answers and live events. */
export class ConversationStore {
  private readonly items = new Map<string, ConversationState>();

  constructor(readonly meId: string) {}

  /**
   * Adds a conversation, or replaces the details of a known one (title, participants) with the server's newer
   * answer; keeps loaded messages, and never moves seqs or read markers backwards.
   */
  upsert(conversation: PublicConversation | ConversationSummary): ConversationState {
    const mine = conversation.participants.find((p) => p.userId === this.meId);
    const lastMessage = 'lastMessage' in conversation ? conversation.lastMessage : null;
    const existing = this.items.get(conversation.id);
    if (existing) {
      const seen = new Map(existing.participants.map((p) => [p.userId, p.lastReadSeq]));
      existing.title = conversation.title;
      existing.participants = conversation.participants.map((p) => ({
        ...p,
        lastReadSeq: Math.max(p.lastReadSeq, seen.get(p.userId) ?? 0),
      }));
      existing.lastSeq = Math.max(existing.lastSeq, conversation.lastSeq);
      existing.myLastReadSeq = Math.max(existing.myLastReadSeq, mine?.lastReadSeq ?? 0);
      if (lastMessage && (existing.lastMessage?.seq ?? 0) < lastMessage.seq)
        existing.lastMessage = lastMessage;
      return existing;
    }
    const state: ConversationState = {
      id: conversation.id,
      type: conversation.type,
      title: conversation.title,
      participants: conversation.participants,
      lastSeq: conversation.lastSeq,
      lastMessage,
      lastActivity: lastMessage?.createdAt ?? conversation.createdAt,
      myLastReadSeq: mine?.lastReadSeq ?? 0,
      messages: new Map(),
      historyLoaded: false,
      hasOlder: false,
    };
    this.items.set(conversation.id, state);
    return state;
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

  /** Records messages; returns the ones not seen before. A message of mine also moves my read marker. */
  addMessages(state: ConversationState, messages: readonly PublicMessage[]): PublicMessage[] {
    const fresh = messages.filter((m) => !state.messages.has(m.seq));
    for (const message of fresh) {
      state.messages.set(message.seq, message);
      if (message.seq > state.lastSeq) state.lastSeq = message.seq;
      if (!state.lastMessage || message.seq > state.lastMessage.seq) {
        state.lastMessage = message;
        state.lastActivity = message.createdAt;
      }
      if (message.senderId === this.meId && message.seq > state.myLastReadSeq)
        state.myLastReadSeq = message.seq;
    }
    return fresh;
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
    const others = this.members(state).filter((p) => p.userId !== this.meId);
    return others.length === 0 ? 'Only you' : others.map((p) => p.displayName).join(', ');
  }

  isOwner(state: ConversationState): boolean {
    return state.participants.some((p) => p.userId === this.meId && p.role === 'owner');
  }

  /** A group's title, or the other person's name in a direct conversation. */
  title(state: ConversationState): string {
    if (state.type === 'group') return state.title ?? 'Group';
    const other = state.participants.find((p) => p.userId !== this.meId);
    return other?.displayName ?? 'Conversation';
  }

  senderName(state: ConversationState, senderId: string | null): string {
    if (senderId === null) return 'Deleted user';
    if (senderId === this.meId) return 'You';
    return state.participants.find((p) => p.userId === senderId)?.displayName ?? 'Someone';
  }

  /** Records another participant's (or my own, from another tab) read marker. */
  markRead(state: ConversationState, userId: string, seq: number): void {
    if (userId === this.meId) state.myLastReadSeq = Math.max(state.myLastReadSeq, seq);
    const participant = state.participants.find((p) => p.userId === userId);
    if (participant && seq > participant.lastReadSeq) participant.lastReadSeq = seq;
  }
}
