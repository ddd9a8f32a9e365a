import type { PublicConversation, PublicMessage, PublicUser, XFChatClient } from '../lib/client/index.js';
import { ConversationView } from './conversationView.js';
import { Sidebar } from './sidebar.js';
import { ConversationStore, type ConversationState } from './store.js';

/**
 * A signed-in session: keeps one live subscription per conversation (so unread counts and previews update
 * everywhere), routes the server's pushes to the sidebar and the open conversation.
 */
export class ChatSession {
  private readonly store: ConversationStore;
  private readonly sidebar: Sidebar;
  private readonly view: ConversationView;

  constructor(
    private readonly client: XFChatClient,
    me: PublicUser,
    private readonly report: (error: unknown) => void,
  ) {
    this.store = new ConversationStore(me.id);
    this.view = new ConversationView({
      client,
      store: this.store,
      report,
      changed: () => this.sidebar.renderConversations(),
    });
    this.sidebar = new Sidebar({
      client,
      store: this.store,
      me,
      report,
      open: (id) => void this.open(id),
      startDirect: (userId) => this.startDirect(userId),
    });
  }

  /** Loads friends and conversations, subscribes to every conversation and listens to the server. */
  async start(): Promise<void> {
    const { client } = this;
    const refresh = () => void this.sidebar.refreshSocial().catch(this.report);
    client.on('friend:request', refresh);
    client.on('friend:accepted', refresh);
    client.on('conversation:added', (conversation) => this.add(conversation));
    client.on('conversation:removed', ({ conversationId }) => this.remove(conversationId));
    client.on('typing', (event) => this.view.onTyping(event));
    client.on('state', () => this.view.onConnectionState());
    client.on('conversation:read', (event) => {
      const state = this.store.get(event.conversationId);
      if (!state) return;
      this.store.markRead(state, event.userId, event.seq);
      this.view.onRead(event);
      this.sidebar.renderConversations();
    });

    const [conversations] = await Promise.all([client.conversations.list(), this.sidebar.refreshSocial()]);
    for (const summary of conversations) this.follow(this.store.upsert(summary));
    this.sidebar.renderConversations();
  }

  private async open(conversationId: string): Promise<void> {
    const state = this.store.get(conversationId);
    if (!state) return;
    this.sidebar.setCurrent(conversationId);
    await this.view.open(state);
    this.sidebar.renderConversations();
  }

  private async startDirect(userId: string): Promise<void> {
    const conversation = await this.client.conversations.createDirect(userId);
    this.add(conversation);
    await this.open(conversation.id);
  }

  private add(conversation: PublicConversation): void {
    const known = this.store.get(conversation.id) !== undefined;
    const state = this.store.upsert(conversation);
    if (!known) this.follow(state);
    this.sidebar.renderConversations();
  }

  private remove(conversationId: string): void {
    this.client.subscription(conversationId)?.unsubscribe().catch(this.report);
    this.store.delete(conversationId);
    if (this.view.currentId === conversationId) {
      this.view.close();
      this.sidebar.setCurrent(undefined);
    }
    this.sidebar.renderConversations();
  }

  /** Live messages from the last one known (nothing is delivered twice, gaps are filled by the SDK). */
  private follow(state: ConversationState): void {
    if (this.client.subscription(state.id)) return;
    this.client.subscribe(state.id, (message: PublicMessage) => this.deliver(state, message), {
      afterSeq: state.lastSeq,
      onError: this.report,
    });
  }

  private deliver(state: ConversationState, message: PublicMessage): void {
    const fresh = this.store.addMessages(state, [message]);
    if (fresh.length === 0) return;
    this.view.showMessages(state, fresh);
    this.sidebar.renderConversations();
  }
}
