import {
  XFChatError,
  type Friend,
  type PublicConversation,
  type PublicParticipant,
  type XFChatClient,
} from '../lib/client/index.js';
import { button, byId, el, OneAtATime, replaceItems } from './dom.js';
import type { ConversationState, ConversationStore } from './store.js';
import { fieldProblems, personName, problemFields, waitWords } from './text.js';

export interface GroupDeps {
  client: XFChatClient;
  store: ConversationStore;
  report: (error: unknown) => void;
  /** My friends, as the sidebar last loaded them. */
  friends: () => readonly Friend[];
  /** The server answered with a conversation's new details: keep them and redraw. */
  update: (conversation: PublicConversation) => void;
  /** Reads a conversation's details from the server again. */
  refresh: (conversationId: string) => Promise<void>;
  /**
   * I am about to leave a group here (`true`: its removal, if announced before the answer, is my own doing), or
   * that failed (`false`).
   */
  leaving: (conversationId: string, yes: boolean) => void;
  /** I left a group: forget it. */
  left: (conversationId: string) => void;
  /** A group was created: show it. */
  created: (conversation: PublicConversation) => void;
}

/** Friendly sentences for the errors a user can cause while managing a group. */
const GROUP_ERRORS: Partial<Record<string, string>> = {
  FORBIDDEN: 'Only the group owner can do this.',
  NOT_FRIENDS: 'You can add only your friends to a group.',
  ALREADY_PARTICIPANT: 'That person is already in the group.',
  NOT_FOUND: 'This group is gone, or you are no longer in it.',
  VALIDATION_FAILED: 'Group names are 1-100 characters, and not only spaces.',
};

/** The fields of a group's forms, as the server names them in a VALIDATION_FAILED's details. */
const GROUP_FIELDS = { title: 'The group name', participantIds: 'The chosen members', userId: 'That person' };

function explain(err: unknown): string | undefined {
  if (!(err instanceof XFChatError)) return undefined;
  // Renames, adds and removals share a budget per minute (RATE_LIMIT_CONVERSATIONS_PER_MIN).
  if (err.code === 'RATE_LIMITED') {
    const wait = err.retryAfter === undefined ? 'a minute' : waitWords(err.retryAfter);
    return `Too many group changes at once. Try again in ${wait}.`;
  }
  if (err.code === 'VALIDATION_FAILED') {
    // The server says which field is wrong and how: "The group name must not contain control or ... characters."
    const problems = fieldProblems(err.details, GROUP_FIELDS);
    if (problems.length > 0) return problems.join(' ');
  }
  return GROUP_ERRORS[err.code];
}

/**
 * Whether a refusal is about the group name (its field is then marked, as the account forms mark theirs): the
 * details name it, or name no field at all (then GROUP_ERRORS' sentence is about the name).
 */
function refusesTitle(err: unknown): boolean {
  if (!(err instanceof XFChatError && err.code === 'VALIDATION_FAILED')) return false;
  const fields = problemFields(err.details, GROUP_FIELDS);
  return fields.length === 0 || fields.includes('title');
}

/**
 * Marks a refused field: `aria-invalid`, the reason in `alert` (a `role=alert` element, which also describes the
 * field), and focus on it.
 */
function markInvalid(input: HTMLInputElement, alert: HTMLElement, reason: string): void {
  alert.textContent = reason;
  input.setAttribute('aria-invalid', 'true');
  input.setAttribute('aria-describedby', alert.id);
  input.focus();
}

/** Undoes `markInvalid`, before the next try. */
function clearInvalid(input: HTMLInputElement, alert: HTMLElement): void {
  alert.textContent = '';
  input.removeAttribute('aria-invalid');
  input.removeAttribute('aria-describedby');
}

/** What "Add a friend" offers when there is nobody to add. */
const ALL_FRIENDS_IN = 'All your friends are in this group';

/** What the new-group dialog says when there is nobody to tick. */
const NO_FRIENDS_YET = 'Add some friends first: a group is made of friends.';

function friendLabel(friend: Friend): string {
  const { displayName, username } = friend.user;
  return username === null || displayName === username ? displayName : `${displayName} (@${username})`;
}

/**
 * The open conversation's details under its header: the members with the owner's badge and, in a group, rename,
 * add and remove (for its owner) and leave (for everyone). Opened and closed by the "Members" button.
 */
export class DetailsPanel {
  private readonly toggle = byId('details-toggle', HTMLButtonElement);
  private readonly panel = byId('details-panel', HTMLElement);
  private readonly members = byId('member-list', HTMLUListElement);
  private readonly ownerTools = byId('owner-tools', HTMLDivElement);
  private readonly renameForm = byId('rename-form', HTMLFormElement);
  private readonly renameInput = byId('rename-input', HTMLInputElement);
  private readonly addForm = byId('add-member-form', HTMLFormElement);
  private readonly addSelect = byId('add-member-select', HTMLSelectElement);
  private readonly addButton = byId('add-member-button', HTMLButtonElement);
  private readonly leaveButton = byId('leave-button', HTMLButtonElement);
  private readonly status = byId('details-status', HTMLParagraphElement);
  /** Why a new name was refused: an alert right after the rename form, describing its field while it applies. */
  private readonly renameError = el('p', {
    className: 'error',
    attrs: { id: 'rename-error', role: 'alert' },
  });
  private state: ConversationState | undefined;
  private expanded = false;
  /** Rename, add, remove and leave, each once at a time: a double click sends one request. */
  private readonly once = new OneAtATime();

  constructor(private readonly deps: GroupDeps) {
    this.renameForm.after(this.renameError);
    this.toggle.addEventListener('click', () => {
      this.expanded = !this.expanded;
      this.render();
      if (this.expanded) this.panel.focus();
    });
    this.renameForm.addEventListener('submit', (event) => {
      event.preventDefault();
      void this.once.run(this.key('rename'), this.renameForm, () => this.rename());
    });
    this.addForm.addEventListener('submit', (event) => {
      event.preventDefault();
      void this.once.run(this.key('add'), this.addForm, () => this.add());
    });
    this.leaveButton.addEventListener(
      'click',
      () => void this.once.run(this.key('leave'), this.leaveButton, () => this.leave()),
    );
  }

  /**
   * The action `what` on the group shown: each group's own (REV3: a rename of one group on its way must not hold a
   * rename of another back), though the forms and the button are shared by every group shown.
   */
  private key(what: 'rename' | 'add' | 'leave'): string {
    return `${what}:${this.state?.id ?? ''}`;
  }

  /** Shows the details of `state` (or nothing); called again whenever they change. */
  show(state: ConversationState | undefined): void {
    if (state !== this.state) {
      this.status.textContent = '';
      this.renameInput.value = '';
      clearInvalid(this.renameInput, this.renameError);
    }
    this.state = state;
    // The shared controls say whether this group's action is on its way, not another's.
    this.once.reflect(this.key('rename'), this.renameForm);
    this.once.reflect(this.key('add'), this.addForm);
    this.once.reflect(this.key('leave'), this.leaveButton);
    this.render();
  }

  /** Friends were read again or one was renamed: the open group's "Add a friend" offers those of now. */
  friendsChanged(): void {
    const state = this.state;
    if (state?.type === 'group' && this.expanded) this.renderAddSelect(state);
  }

  private render(): void {
    const state = this.state;
    const group = state?.type === 'group';
    this.toggle.hidden = !group;
    this.panel.hidden = !group || !this.expanded;
    if (!state || !group) return;
    const { store } = this.deps;
    const members = store.members(state);
    this.toggle.textContent = `Members (${members.length})`;
    this.toggle.setAttribute('aria-expanded', String(this.expanded));
    if (!this.expanded) return;
    const owner = store.isOwner(state);
    replaceItems(
      this.members,
      members.map((p) => this.memberItem(state, p, owner)),
    );
    this.ownerTools.hidden = !owner;
    if (document.activeElement !== this.renameInput && this.renameInput.value === '')
      this.renameInput.placeholder = store.title(state);
    this.renderAddSelect(state);
  }

  /**
   * "Add a friend": my friends not in the group, the one chosen kept. Options that would come out the same are left
   * as they are (a list open on the screen stays open).
   */
  private renderAddSelect(state: ConversationState): void {
    const inGroup = new Set(state.participants.map((p) => p.userId));
    const candidates = this.deps.friends().filter((f) => !inGroup.has(f.user.id));
    const offered = (options: Array<{ value: string; text: string }>) =>
      JSON.stringify(options.map(({ value, text }) => [value, text]));
    const wanted = candidates.map((f) => ({ value: f.user.id, text: friendLabel(f) }));
    if (candidates.length > 0 && offered(wanted) !== offered([...this.addSelect.options])) {
      const chosen = this.addSelect.value;
      this.addSelect.replaceChildren(
        ...wanted.map(({ value, text }) => el('option', { text, attrs: { value } })),
      );
      if (candidates.some((f) => f.user.id === chosen)) this.addSelect.value = chosen;
    }
    // Turned off (the last friend not in the group just added), the select and "Add" lose focus: it goes to the
    // "Members" button, as after a removal, rather than to the page (the next Tab from its top).
    const lost =
      candidates.length === 0 &&
      (document.activeElement === this.addSelect || document.activeElement === this.addButton);
    this.addSelect.disabled = candidates.length === 0;
    this.addButton.disabled = candidates.length === 0;
    if (candidates.length === 0 && this.addSelect.options[0]?.text !== ALL_FRIENDS_IN)
      this.addSelect.replaceChildren(el('option', { text: ALL_FRIENDS_IN }));
    if (lost) this.toggle.focus();
  }

  private memberItem(state: ConversationState, member: PublicParticipant, iOwnIt: boolean): HTMLLIElement {
    const me = member.userId === this.deps.store.meId;
    const name = me ? 'You' : member.username === null ? member.displayName : personName(member.displayName);
    return el(
      'li',
      { dataset: { key: member.userId } },
      el(
        'span',
        { className: 'member' },
        el('span', { text: name }),
        // A deleted account has no username left: its name, "Deleted user", says it all.
        member.username === null ? null : el('span', { className: 'username', text: ` @${member.username}` }),
        member.role === 'owner' ? el('span', { className: 'badge', text: 'Owner' }) : null,
      ),
      iOwnIt && !me ? this.removeButton(state, member) : null,
    );
  }

  /** A member's "Remove": drawn again at each change of the group, it stays busy while the removal is on its way. */
  private removeButton(state: ConversationState, member: PublicParticipant): HTMLButtonElement {
    const key = `remove:${state.id}:${member.userId}`;
    const remove: HTMLButtonElement = button(
      'Remove',
      () => void this.once.run(key, remove, () => this.remove(state, member)),
      { label: `Remove ${member.displayName} from the group`, secondary: true },
    );
    return this.once.mark(key, remove);
  }

  private async rename(): Promise<void> {
    const state = this.state;
    const title = this.renameInput.value.trim();
    if (!state || title === '') return;
    clearInvalid(this.renameInput, this.renameError);
    await this.act(async () => {
      try {
        this.deps.update(await this.deps.client.conversations.rename(state.id, title));
      } catch (err) {
        const reason = explain(err);
        if (reason === undefined || !refusesTitle(err)) throw err;
        markInvalid(this.renameInput, this.renameError, reason);
        return;
      }
      this.renameInput.value = '';
      this.say(`Renamed to “${title}”.`);
    });
  }

  private async add(): Promise<void> {
    const state = this.state;
    const userId = this.addSelect.value;
    const friend = this.deps.friends().find((f) => f.user.id === userId);
    if (!state || !friend) return;
    await this.act(async () => {
      await this.deps.client.conversations.addParticipant(state.id, userId);
      await this.deps.refresh(state.id);
      this.say(`${friend.user.displayName} was added.`);
    });
  }

  private async remove(state: ConversationState, member: PublicParticipant): Promise<void> {
    const title = this.deps.store.title(state);
    if (!confirm(`Remove ${member.displayName} from “${title}”?`)) return;
    await this.act(async () => {
      await this.deps.client.conversations.removeParticipant(state.id, member.userId);
      await this.deps.refresh(state.id);
      this.say(`${member.displayName} was removed.`);
      this.toggle.focus();
    });
  }

  private async leave(): Promise<void> {
    const state = this.state;
    if (!state) return;
    const title = this.deps.store.title(state);
    if (!confirm(`Leave “${title}”? You will no longer get its messages.`)) return;
    await this.act(async () => {
      this.deps.leaving(state.id, true);
      try {
        await this.deps.client.conversations.leave(state.id);
      } catch (err) {
        this.deps.leaving(state.id, false);
        throw err;
      }
      this.deps.left(state.id);
    });
  }

  /** Runs a change, telling the user in words what went wrong if it was refused. */
  private async act(change: () => Promise<void>): Promise<void> {
    this.status.textContent = '';
    try {
      await change();
    } catch (err) {
      const known = explain(err);
      if (known === undefined) this.deps.report(err);
      else this.say(known);
    }
  }

  private say(text: string): void {
    this.status.textContent = text;
  }
}

/** The "New group" dialog: a name and some friends. */
export class NewGroupDialog {
  private readonly dialog = byId('new-group-dialog', HTMLDialogElement);
  private readonly form = byId('new-group-form', HTMLFormElement);
  private readonly name = byId('new-group-name', HTMLInputElement);
  private readonly choices = byId('new-group-friends', HTMLUListElement);
  private readonly status = byId('new-group-status', HTMLParagraphElement);
  /** One group at a time: a double click on "Create group" (or Enter pressed twice) makes one group. */
  private readonly once = new OneAtATime();

  constructor(private readonly deps: GroupDeps) {
    byId('new-group-button', HTMLButtonElement).addEventListener('click', () => this.open());
    byId('new-group-cancel', HTMLButtonElement).addEventListener('click', () => this.dialog.close());
    this.form.addEventListener('submit', (event) => {
      event.preventDefault();
      void this.once.run('create', this.form, () => this.create());
    });
  }

  open(): void {
    this.name.value = '';
    clearInvalid(this.name, this.status);
    this.choices.replaceChildren();
    this.renderChoices();
    this.dialog.showModal();
    this.name.focus();
  }

  /**
   * Friends were read again (a request accepted, a friendship ended) or one was renamed: an open dialog offers
   * who is a friend now, rather than those of when it opened (whom creating the group would refuse).
   */
  friendsChanged(): void {
    if (this.dialog.open) this.renderChoices();
  }

  /**
   * One checkbox per friend, in the friends' order. The box of a friend already offered stays (ticked or not, its
   * focus kept, its label renamed); the focus of a box that goes moves to the one now in its place, or to the name.
   */
  private renderChoices(): void {
    const friends = this.deps.friends();
    // Said once (the status is an alert: written again, it would be read out again), and never over another message
    // (why the name was refused).
    if (friends.length === 0 && this.status.textContent === '') this.status.textContent = NO_FRIENDS_YET;
    else if (friends.length > 0 && this.status.textContent === NO_FRIENDS_YET) this.status.textContent = '';
    const offered = new Map(
      [...this.choices.querySelectorAll<HTMLLIElement>('li[data-key]')].map((li) => [li.dataset.key, li]),
    );
    const focused = document.activeElement;
    const focusedAt =
      focused instanceof HTMLElement && this.choices.contains(focused)
        ? [...this.choices.children].findIndex((li) => li.contains(focused))
        : -1;
    const items = friends.map((friend) => {
      const label = friendLabel(friend);
      const kept = offered.get(friend.user.id);
      if (kept === undefined) return this.choice(friend.user.id, label);
      const text = kept.querySelector('label');
      if (text !== null) text.textContent = label;
      return kept;
    });
    this.choices.replaceChildren(...items);
    if (focusedAt < 0 || !(focused instanceof HTMLElement)) return;
    // Taken out and put back, a focused box lost its focus.
    if (focused.isConnected) focused.focus();
    else (items[Math.min(focusedAt, items.length - 1)]?.querySelector('input') ?? this.name).focus();
  }

  private choice(userId: string, label: string): HTMLLIElement {
    const id = `new-group-friend-${userId}`;
    return el(
      'li',
      { dataset: { key: userId } },
      el('input', { attrs: { type: 'checkbox', id, value: userId } }),
      el('label', { text: label, attrs: { for: id } }),
    );
  }

  private async create(): Promise<void> {
    const title = this.name.value.trim();
    const ids = [...this.choices.querySelectorAll<HTMLInputElement>('input:checked')].map((i) => i.value);
    clearInvalid(this.name, this.status);
    if (title === '') {
      markInvalid(this.name, this.status, 'Give the group a name.');
      return;
    }
    try {
      const conversation = await this.deps.client.conversations.createGroup(title, ids);
      this.dialog.close();
      this.deps.created(conversation);
    } catch (err) {
      const known = explain(err);
      if (known === undefined) this.deps.report(err);
      else if (refusesTitle(err)) markInvalid(this.name, this.status, known);
      else this.status.textContent = known;
    }
  }
}
