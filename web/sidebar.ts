import {
  XFChatError,
  type Friend,
  type PublicFriendRequest,
  type PublicUser,
  type XFChatClient,
} from '../lib/client/index.js';
import { button, byId, el, replaceItems } from './dom.js';
import type { ConversationStore } from './store.js';

export interface SidebarDeps {
  client: XFChatClient;
  store: ConversationStore;
  me: PublicUser;
  /** Shows a conversation in the main pane. */
  open: (conversationId: string) => void;
  /** Opens (creating if needed) the direct conversation with a friend. */
  startDirect: (userId: string) => Promise<void>;
  report: (error: unknown) => void;
}

/** Friendly sentences for the errors a user can cause from the sidebar. */
const FRIEND_ERRORS: Partial<Record<string, string>> = {
  USER_NOT_FOUND: 'No user has that username.',
  CANNOT_FRIEND_SELF: 'That is you.',
  ALREADY_FRIENDS: 'You are already friends.',
  REQUEST_EXISTS: 'A friend request is already pending.',
  BLOCKED: 'You cannot send this user a request.',
  VALIDATION_FAILED: 'Usernames are 3-32 letters, digits, _ . or -.',
};

function describe(user: PublicUser): string {
  // A deleted account has no username left: it shows as "Deleted user".
  if (user.username === null || user.displayName === user.username) return user.displayName;
  return `${user.displayName} (@${user.username})`;
}

/** The left column: me, finding people, friend requests, friends and the conversation list. */
export class Sidebar {
  private readonly findResult = byId('find-result', HTMLDivElement);
  private readonly incoming = byId('incoming-requests', HTMLUListElement);
  private readonly outgoing = byId('outgoing-requests', HTMLUListElement);
  private readonly friends = byId('friends', HTMLUListElement);
  private readonly conversations = byId('conversations', HTMLUListElement);
  private current: string | undefined;
  private friendIds = new Set<string>();

  constructor(private readonly deps: SidebarDeps) {
    byId('me-name', HTMLSpanElement).textContent = describe(deps.me);
    const form = byId('find-form', HTMLFormElement);
    const input = byId('find-username', HTMLInputElement);
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      void this.find(input.value.trim());
    });
  }

  /** Reloads friends and pending requests (after any friend event: cheap, and always consistent). */
  async refreshSocial(): Promise<void> {
    const { friends } = this.deps.client;
    const [list, incoming, outgoing] = await Promise.all([
      friends.list(),
      friends.listRequests('incoming'),
      friends.listRequests('outgoing'),
    ]);
    this.friendIds = new Set(list.map((f) => f.user.id));
    replaceItems(
      this.friends,
      list.length ? list.map((f) => this.friendItem(f)) : [this.none('No friends yet.')],
    );
    replaceItems(
      this.incoming,
      incoming.length ? incoming.map((r) => this.incomingItem(r)) : [this.none('No pending requests.')],
    );
    replaceItems(
      this.outgoing,
      outgoing.map((r) => this.outgoingItem(r)),
    );
  }

  /** Marks the open conversation in the list. */
  setCurrent(conversationId: string | undefined): void {
    this.current = conversationId;
    this.renderConversations();
  }

  renderConversations(): void {
    const { store } = this.deps;
    const items = store.sorted().map((state) => {
      const unread = state.id === this.current ? 0 : store.unread(state);
      const title = store.title(state);
      const preview = state.lastMessage
        ? `${store.senderName(state, state.lastMessage.senderId)}: ${state.lastMessage.body}`
        : 'No messages yet';
      const label = unread > 0 ? `${title}, ${unread} unread` : title;
      const open = el(
        'button',
        {
          className: 'open',
          attrs: { type: 'button', 'aria-label': label, 'aria-current': String(state.id === this.current) },
          dataset: { action: 'open' },
          onClick: () => this.deps.open(state.id),
        },
        el(
          'span',
          {},
          el('span', { className: 'title', text: title }),
          el('span', { className: 'preview', text: preview }),
        ),
        unread > 0
          ? el('span', { className: 'unread', text: String(unread), attrs: { 'aria-hidden': 'true' } })
          : null,
      );
      return el('li', { dataset: { key: state.id } }, open);
    });
    replaceItems(this.conversations, items.length ? items : [this.none('No conversations yet.')]);
  }

  private async find(username: string): Promise<void> {
    this.findResult.replaceChildren();
    if (username === '') return;
    try {
      const user = await this.deps.client.users.findByUsername(username);
      const action =
        user.id === this.deps.me.id
          ? el('span', { text: 'That is you.' })
          : this.friendIds.has(user.id)
            ? button('Message', () => void this.deps.startDirect(user.id).catch(this.deps.report), {
                label: `Message ${user.displayName}`,
              })
            : button('Add friend', () => void this.addFriend(user), {
                label: `Add ${user.displayName} as a friend`,
              });
      this.findResult.replaceChildren(
        el('p', { className: 'found' }, el('span', { text: describe(user) }), ' ', action),
      );
    } catch (err) {
      this.showFindError(err);
    }
  }

  private async addFriend(user: PublicUser): Promise<void> {
    // Found by username, so it has one; a deleted account cannot be befriended.
    if (user.username === null) return;
    try {
      const request = await this.deps.client.friends.sendRequest(user.username);
      const text =
        request.status === 'accepted'
          ? `You and ${user.displayName} are now friends.`
          : `Friend request sent to ${user.displayName}.`;
      this.findResult.replaceChildren(el('p', { text }));
      await this.refreshSocial();
    } catch (err) {
      this.showFindError(err);
    }
  }

  private showFindError(err: unknown): void {
    const known = err instanceof XFChatError ? FRIEND_ERRORS[err.code] : undefined;
    if (known === undefined) this.deps.report(err);
    else this.findResult.replaceChildren(el('p', { className: 'error', text: known }));
  }

  private friendItem(friend: Friend): HTMLLIElement {
    const name = friend.user.displayName;
    return el(
      'li',
      { dataset: { key: friend.user.id } },
      el('span', { text: describe(friend.user) }),
      button('Message', () => void this.deps.startDirect(friend.user.id).catch(this.deps.report), {
        label: `Message ${name}`,
      }),
    );
  }

  private incomingItem(request: PublicFriendRequest): HTMLLIElement {
    const name = request.from.displayName;
    const respond = (accept: boolean) => {
      const { friends } = this.deps.client;
      (accept ? friends.accept(request.id) : friends.decline(request.id))
        .then(() => this.refreshSocial())
        .catch(this.deps.report);
    };
    return el(
      'li',
      { dataset: { key: request.id } },
      el('span', { text: `${describe(request.from)} wants to be friends` }),
      el(
        'span',
        { className: 'actions' },
        button('Accept', () => respond(true), { label: `Accept friend request from ${name}` }),
        button('Decline', () => respond(false), {
          label: `Decline friend request from ${name}`,
          secondary: true,
        }),
      ),
    );
  }

  private outgoingItem(request: PublicFriendRequest): HTMLLIElement {
    const cancel = () =>
      void this.deps.client.friends
        .cancel(request.id)
        .then(() => this.refreshSocial())
        .catch(this.deps.report);
    return el(
      'li',
      { dataset: { key: request.id } },
      el('span', { text: `Sent to ${describe(request.to)}` }),
      button('Cancel', cancel, {
        label: `Cancel friend request to ${request.to.displayName}`,
        secondary: true,
      }),
    );
  }

  private none(text: string): HTMLLIElement {
    return el('li', { className: 'none', text });
  }
}
