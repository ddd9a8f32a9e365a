import { XFChatError, type PublicMessage, type XFChatClient } from '../lib/client/index.js';
import { byId, el, enterAddsLine, onEnterChange, sendsOnKey } from './dom.js';
import { REACTION_CHOICES, partOf, setPart, snippet, whoReactedList } from './messageItems.js';
import type { ConversationState, ConversationStore } from './store.js';
import { MAX_MESSAGE_CODE_POINTS, codePointLength } from './text.js';

export interface MessageActionsDeps {
  client: XFChatClient;
  store: ConversationStore;
  /** The message log (`#messages`): its items carry the buttons these actions answer. */
  list: HTMLOListElement;
  report: (error: unknown) => void;
  /** The open conversation. */
  current: () => ConversationState | undefined;
  /** A message's state in the store changed by this app's doing: redraw its item (and what quotes it). */
  redraw: (state: ConversationState, seq: number) => void;
  /** "Reply": the composer answers this message. */
  reply: (state: ConversationState, seq: number) => void;
  /** A reply's quote was activated: show the original. */
  jumpTo: (state: ConversationState, seq: number) => void;
}

/** Why the server refused a change, in words for the person who tried it. */
const CHANGE_ERRORS: Partial<Record<string, string>> = {
  MESSAGE_DELETED: 'the message was deleted.',
  BLOCKED: 'you cannot message this person.',
  FORBIDDEN: 'only its sender may do that (or, to delete it, the group’s owner).',
  NOT_FOUND: 'the message or the conversation is no longer there for you.',
  VALIDATION_FAILED: 'the server refused the text (too long, or with characters it cannot store).',
  RATE_LIMITED: 'too many changes at once; try again in a moment.',
};

function describeChangeError(err: unknown): string {
  if (!(err instanceof XFChatError)) return 'something went wrong.';
  return CHANGE_ERRORS[err.code] ?? err.message;
}

function hasMyReaction(message: PublicMessage, emoji: string, me: string): boolean {
  return message.reactions.some((r) => r.emoji === emoji && r.userIds.includes(me));
}

/** The message with my reaction added or removed (what the server did once it said so). */
function withMyReaction(message: PublicMessage, emoji: string, me: string, add: boolean): PublicMessage {
  if (hasMyReaction(message, emoji, me) === add) return message;
  const reactions = add
    ? message.reactions.some((r) => r.emoji === emoji)
      ? message.reactions.map((r) => (r.emoji === emoji ? { emoji, userIds: [...r.userIds, me] } : r))
      : [...message.reactions, { emoji, userIds: [me] }]
    : message.reactions
        .map((r) => (r.emoji === emoji ? { emoji, userIds: r.userIds.filter((id) => id !== me) } : r))
        .filter((r) => r.userIds.length > 0);
  return { ...message, reactions };
}

interface OpenMenu {
  toggle: HTMLButtonElement;
  menu: HTMLElement;
}

interface Editing {
  state: ConversationState;
  seq: number;
  item: HTMLElement;
  form: HTMLFormElement;
  input: HTMLTextAreaElement;
  error: HTMLParagraphElement;
  /** What Enter does here (`editorHint`), written again when that changes. */
  hint: HTMLElement;
}

/** The editor's line on its keys: on a touch-only device Enter starts a new line (`enterAddsLine`). */
function editorHint(): string {
  return enterAddsLine()
    ? 'Enter starts a new line · Ctrl+Enter saves'
    : 'Enter saves · Shift+Enter new line · Escape cancels';
}

interface Deleting {
  state: ConversationState;
  seq: number;
  item: HTMLElement;
}

/**
 * What can be done with a stored message, for the open conversation: the actions button of each message (react
 * with a few common emoji, reply, edit, delete), the reaction chips (a click, Enter or Space toggles mine), the
 * inline editor (Enter saves, Escape cancels), the delete confirmation, and a reply's quote (jumps to the
 * original). The buttons are drawn by messageItems.ts; this class answers them through one listener on the log.
 *
 * Changes go through the SDK (REST, retried on transient failures) one at a time per message, as the SDK asks;
 * once the server confirms one, its effect is shown at once (with the message's version unchanged, so the state
 * the server then pushes, newer, replaces it). A refused change says why under its message.
 */
export class MessageActions {
  private open: OpenMenu | undefined;
  private editing: Editing | undefined;
  private deleting: Deleting | undefined;
  /** Per message, the change running (and those queued behind it). */
  private readonly chains = new Map<string, Promise<void>>();
  private readonly dialog = byId('delete-message-dialog', HTMLDialogElement);
  private readonly dialogTitle = byId('delete-message-title', HTMLHeadingElement);
  private readonly dialogPreview = byId('delete-message-preview', HTMLQuoteElement);
  private readonly dialogError = byId('delete-message-error', HTMLParagraphElement);
  private readonly dialogConfirm = byId('delete-message-confirm', HTMLButtonElement);
  private readonly dialogCancel = byId('delete-message-cancel', HTMLButtonElement);

  constructor(private readonly deps: MessageActionsDeps) {
    deps.list.addEventListener('click', (event) => this.onClick(event));
    deps.list.addEventListener('keydown', (event) => this.onKeydown(event));
    deps.list.addEventListener('focusout', (event) => {
      const open = this.open;
      if (!open) return;
      const to = event.relatedTarget;
      const tools = open.toggle.parentElement;
      if (to instanceof Node && tools?.contains(to)) return;
      // Focus left the menu (Tab past its end, or a click elsewhere): it closes, leaving focus where it went.
      if (to !== null) this.closeMenu(false);
    });
    // The menu follows its button when the log scrolls (new messages, older ones loading) or the window resizes.
    deps.list.parentElement?.addEventListener('scroll', () => this.placeMenu());
    window.addEventListener('resize', () => this.placeMenu());
    document.addEventListener('pointerdown', (event) => {
      const tools = this.open?.toggle.parentElement;
      if (tools && !(event.target instanceof Node && tools.contains(event.target))) this.closeMenu(false);
    });
    byId('delete-message-form', HTMLFormElement).addEventListener('submit', (event) => {
      event.preventDefault();
      this.confirmDelete();
    });
    this.dialogCancel.addEventListener('click', () => {
      this.dialog.close();
      this.afterDialog();
    });
    this.dialog.addEventListener('close', () => this.afterDialog());
    // A tablet docked or undocked while an editor is open: its line says what Enter now does.
    onEnterChange(() => {
      if (this.editing) this.editing.hint.textContent = editorHint();
    });
  }

  /** The open conversation changes (or its items are drawn again): menus and the editor close. */
  reset(): void {
    this.closeMenu(false);
    this.editing = undefined;
  }

  /**
   * Messages were drawn again: an editor that went with them (its message was deleted meanwhile, and its item now
   * shows the text typed in it, unsaved, with Copy) is no longer open.
   */
  redrawn(): void {
    if (this.editing && !this.editing.form.isConnected) this.editing = undefined;
  }

  /** Puts focus back in the open editor, if there is one; false if there is none. */
  focusEditor(): boolean {
    const editing = this.editing;
    if (!editing?.form.isConnected) return false;
    editing.input.focus();
    return true;
  }

  /** Whether a message's editor is open (its item keeps the editor while the message updates). */
  isEditing(state: ConversationState, seq: number): boolean {
    return this.editing?.state === state && this.editing.seq === seq && this.editing.form.isConnected;
  }

  private onClick(event: MouseEvent): void {
    const target =
      event.target instanceof Element ? event.target.closest<HTMLElement>('[data-action]') : null;
    const item = target?.closest<HTMLLIElement>('li[data-seq]');
    const state = this.deps.current();
    if (!target || !item || !state) return;
    const seq = Number(item.dataset.seq);
    const message = state.messages.get(seq);
    if (!message) return;
    const emoji = target.dataset.emoji;
    switch (target.dataset.action) {
      case 'menu':
        if (this.open?.toggle === target) this.closeMenu(true);
        else if (target instanceof HTMLButtonElement) this.openMenu(state, item, target, message);
        return;
      case 'react':
        this.closeMenu(true);
        if (emoji !== undefined) this.toggleReaction(state, seq, emoji);
        return;
      case 'reaction':
        if (emoji !== undefined) this.toggleReaction(state, seq, emoji);
        return;
      case 'reply':
        this.closeMenu(false);
        this.deps.reply(state, seq);
        return;
      case 'edit':
        this.closeMenu(false);
        this.startEdit(state, item, message);
        return;
      case 'delete':
        this.closeMenu(false);
        this.askDelete(state, item, message);
        return;
      case 'quote':
        if (message.replyToSeq !== null) this.deps.jumpTo(state, message.replyToSeq);
        return;
      default:
        return;
    }
  }

  private onKeydown(event: KeyboardEvent): void {
    // Escape on a reaction chip hides who reacted (shown on focus) until the chip is left.
    const chip = event.target instanceof Element ? event.target.closest('.chip-wrap') : null;
    if (event.key === 'Escape' && chip && !chip.classList.contains('tip-dismissed')) {
      event.preventDefault();
      chip.classList.add('tip-dismissed');
      const undo = () => chip.classList.remove('tip-dismissed');
      chip.addEventListener('focusout', undo, { once: true });
      chip.addEventListener('mouseleave', undo, { once: true });
      return;
    }
    const open = this.open;
    if (!open || !(event.target instanceof HTMLElement) || !open.menu.contains(event.target)) return;
    if (event.key === 'Escape') {
      event.preventDefault();
      event.stopPropagation();
      this.closeMenu(true);
      return;
    }
    // Arrow keys, Home and End move between the menu's buttons; Tab works too.
    const buttons = [...open.menu.querySelectorAll<HTMLButtonElement>('button')];
    const at = buttons.indexOf(event.target as HTMLButtonElement);
    const moves: Partial<Record<string, number>> = {
      ArrowRight: at + 1,
      ArrowDown: at + 1,
      ArrowLeft: at - 1,
      ArrowUp: at - 1,
      Home: 0,
      End: buttons.length - 1,
    };
    const to = moves[event.key];
    if (to === undefined || at < 0) return;
    event.preventDefault();
    buttons[(to + buttons.length) % buttons.length]?.focus();
  }

  private canEdit(message: PublicMessage): boolean {
    return message.deletedAt === null && message.senderId === this.deps.store.meId;
  }

  private canDelete(state: ConversationState, message: PublicMessage): boolean {
    if (message.deletedAt !== null) return false;
    if (message.senderId === this.deps.store.meId) return true;
    return state.type === 'group' && this.deps.store.isOwner(state);
  }

  /** The message's actions, under its button: the reaction picker, Reply, and Edit and Delete where allowed. */
  private openMenu(
    state: ConversationState,
    item: HTMLElement,
    toggle: HTMLButtonElement,
    message: PublicMessage,
  ): void {
    this.closeMenu(false);
    const me = this.deps.store.meId;
    const id = `message-menu-${message.seq}`;
    const action = (text: string, name: string, className = 'secondary') =>
      el('button', { text, className, dataset: { action: name }, attrs: { type: 'button' } });
    const menu = el(
      'div',
      {
        className: 'menu',
        attrs: { id, role: 'group', 'aria-label': toggle.getAttribute('aria-label') ?? '' },
      },
      el(
        'div',
        { className: 'picker', attrs: { role: 'group', 'aria-label': 'React' } },
        ...REACTION_CHOICES.map((emoji) =>
          el('button', {
            text: emoji,
            className: 'secondary',
            dataset: { action: 'react', emoji },
            attrs: {
              type: 'button',
              'aria-label': `React with ${emoji}`,
              'aria-pressed': String(hasMyReaction(message, emoji, me)),
            },
          }),
        ),
      ),
      // A deleted account's direct conversation has no message box to answer in.
      this.deps.store.otherIsDeleted(state) ? null : action('Reply', 'reply'),
      this.canEdit(message) ? action('Edit', 'edit') : null,
      this.canDelete(state, message) ? action('Delete…', 'delete', 'secondary danger') : null,
      // Last: the actions stay at the top of a menu that many reactions make long.
      whoReactedList({ store: this.deps.store, state }, message),
    );
    toggle.after(menu);
    toggle.setAttribute('aria-expanded', 'true');
    toggle.setAttribute('aria-controls', id);
    item.classList.add('menu-open');
    this.open = { toggle, menu };
    this.placeMenu();
    menu.querySelector('button')?.focus();
  }

  /**
   * The open menu sits next to its button, inside the window: below it, or above it near the bottom (so it
   * does not hide behind the message box), and toward the middle of the conversation.
   */
  private placeMenu(): void {
    const open = this.open;
    if (!open) return;
    if (!open.menu.isConnected) {
      // Its message was deleted (or the log drawn again) meanwhile.
      this.open = undefined;
      return;
    }
    const margin = 8;
    const button = open.toggle.getBoundingClientRect();
    const { offsetWidth: width, offsetHeight: height } = open.menu;
    const mine = open.toggle.closest('li')?.classList.contains('mine') ?? false;
    const left = mine ? button.left : button.right - width;
    const below = button.bottom + 4;
    const top = below + height > window.innerHeight - margin ? button.top - height - 4 : below;
    open.menu.style.left = `${Math.max(margin, Math.min(left, window.innerWidth - width - margin))}px`;
    open.menu.style.top = `${Math.max(margin, top)}px`;
  }

  /** Closes the open menu; `refocus` puts keyboard focus back on its button. */
  private closeMenu(refocus: boolean): void {
    const open = this.open;
    if (!open) return;
    this.open = undefined;
    open.menu.remove();
    open.toggle.setAttribute('aria-expanded', 'false');
    open.toggle.removeAttribute('aria-controls');
    open.toggle.closest('li')?.classList.remove('menu-open');
    if (refocus && open.toggle.isConnected) open.toggle.focus();
  }

  /**
   * Runs one change of a message after the ones before it (two in flight could be applied in either order).
   * `work` shows its own failures; anything else it throws is reported.
   */
  private queue(state: ConversationState, seq: number, work: () => Promise<void>): Promise<void> {
    const key = `${state.id}:${seq}`;
    const next = (this.chains.get(key) ?? Promise.resolve()).then(work).catch(this.deps.report);
    this.chains.set(key, next);
    void next.finally(() => {
      if (this.chains.get(key) === next) this.chains.delete(key);
    });
    return next;
  }

  /** Adds my reaction, or removes it if I had reacted so; decided when its turn comes, on the newest state. */
  private toggleReaction(state: ConversationState, seq: number, emoji: string): void {
    const { client, store } = this.deps;
    void this.queue(state, seq, async () => {
      const message = store.message(state, seq);
      if (!message || message.deletedAt !== null) return;
      const add = !hasMyReaction(message, emoji, store.meId);
      try {
        if (add) await client.react(state.id, seq, emoji);
        else await client.unreact(state.id, seq, emoji);
      } catch (err) {
        console.error(err);
        this.showError(
          state,
          seq,
          `${add ? 'Reaction not added' : 'Reaction not removed'}: ${describeChangeError(err)}`,
        );
        return;
      }
      this.showError(state, seq, undefined);
      const now = store.message(state, seq);
      if (now && now.deletedAt === null) store.patch(state, withMyReaction(now, emoji, store.meId, add));
      this.deps.redraw(state, seq);
    });
  }

  /** A line under a message saying why a change of it failed (an alert), or none. */
  private showError(state: ConversationState, seq: number, text: string | undefined): void {
    if (this.deps.current() !== state) return;
    const item = this.deps.list.querySelector<HTMLElement>(`li[data-seq="${seq}"]`);
    if (!item) return;
    setPart(
      item,
      'error',
      text === undefined
        ? null
        : el('p', { className: 'message-error error', text, attrs: { role: 'alert' } }),
    );
  }

  /**
   * The inline editor in place of the text: Enter saves, Shift+Enter adds a line, Escape cancels; on a touch-only
   * device Enter adds a line and Save or Ctrl+Enter saves (`sendsOnKey`).
   */
  private startEdit(state: ConversationState, item: HTMLElement, message: PublicMessage): void {
    this.stopEdit(false);
    const seq = message.seq;
    const errorId = `edit-error-${seq}`;
    const hintId = `edit-hint-${seq}`;
    const input = el('textarea', {
      className: 'edit-input',
      attrs: {
        'aria-label': 'Edit your message',
        // Right-to-left text is typed and shown right to left, as in the message box.
        dir: 'auto',
        'aria-describedby': `${hintId} ${errorId}`,
        rows: String(Math.min(8, Math.max(2, message.body.split('\n').length))),
      },
    });
    input.value = message.body;
    const error = el('p', { className: 'error', attrs: { id: errorId, role: 'alert' } });
    const hint = el('small', { text: editorHint(), attrs: { id: hintId } });
    const form = el(
      'form',
      { className: 'editor' },
      input,
      el(
        'div',
        { className: 'editor-row' },
        hint,
        el('button', { text: 'Save', attrs: { type: 'submit' } }),
        el('button', {
          text: 'Cancel',
          className: 'secondary',
          attrs: { type: 'button' },
          onClick: () => this.stopEdit(true),
        }),
      ),
      error,
    );
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.saveEdit();
    });
    input.addEventListener('keydown', (event) => {
      if (sendsOnKey(event)) {
        event.preventDefault();
        this.saveEdit();
      } else if (event.key === 'Escape') {
        event.preventDefault();
        event.stopPropagation();
        this.stopEdit(true);
      }
    });
    setPart(item, 'error', null);
    setPart(item, 'editor', form);
    item.classList.add('editing');
    this.editing = { state, seq, item, form, input, error, hint };
    input.focus();
    input.setSelectionRange(input.value.length, input.value.length);
  }

  /** Closes the editor; `refocus` puts focus back on the message's actions button. */
  private stopEdit(refocus: boolean): void {
    const editing = this.editing;
    if (!editing) return;
    this.editing = undefined;
    editing.item.classList.remove('editing');
    if (editing.form.isConnected) setPart(editing.item, 'editor', null);
    if (refocus && editing.item.isConnected)
      (partOf(editing.item, 'tools')?.querySelector('button') ?? editing.item).focus();
  }

  private saveEdit(): void {
    const editing = this.editing;
    if (!editing || editing.form.getAttribute('aria-busy') === 'true') return;
    const { state, seq, input, error, form } = editing;
    const message = this.deps.store.message(state, seq);
    const body = input.value;
    if (!message || message.deletedAt !== null) {
      // What was typed stays in the editor, with why it cannot be saved.
      error.textContent = `Not saved: ${CHANGE_ERRORS.MESSAGE_DELETED}`;
      input.setAttribute('aria-invalid', 'true');
      input.focus();
      return;
    }
    if (body.trim() === '') {
      error.textContent = 'Write something, or delete the message instead.';
      input.setAttribute('aria-invalid', 'true');
      input.focus();
      return;
    }
    const length = codePointLength(body);
    if (length > MAX_MESSAGE_CODE_POINTS) {
      error.textContent = `Too long: ${length.toLocaleString('en')} characters, the limit is ${MAX_MESSAGE_CODE_POINTS.toLocaleString('en')}.`;
      input.setAttribute('aria-invalid', 'true');
      input.focus();
      return;
    }
    if (body === message.body) {
      this.stopEdit(true);
      return;
    }
    form.setAttribute('aria-busy', 'true');
    void this.queue(state, seq, async () => {
      try {
        const saved = await this.deps.client.edit(state.id, seq, body);
        this.deps.store.update(state, saved);
        if (this.editing === editing) this.stopEdit(true);
        this.deps.redraw(state, seq);
      } catch (err) {
        console.error(err);
        error.textContent = `Not saved: ${describeChangeError(err)}`;
        input.setAttribute('aria-invalid', 'true');
        if (this.editing === editing) input.focus();
      } finally {
        form.removeAttribute('aria-busy');
      }
    });
  }

  /** The confirmation step before deleting: what goes, for whom, and a Cancel that is focused first. */
  private askDelete(state: ConversationState, item: HTMLElement, message: PublicMessage): void {
    const mine = message.senderId === this.deps.store.meId;
    this.dialogTitle.textContent = mine
      ? 'Delete your message?'
      : `Delete ${this.deps.store.senderLabel(state, message.senderId)}’s message?`;
    this.dialogPreview.textContent = snippet(message.body, 200);
    this.dialogError.textContent = '';
    this.dialogConfirm.disabled = false;
    this.deleting = { state, seq: message.seq, item };
    this.dialog.showModal();
    this.dialogCancel.focus();
  }

  private confirmDelete(): void {
    const deleting = this.deleting;
    if (!deleting || this.dialogConfirm.disabled) return;
    const { state, seq } = deleting;
    const { client, store } = this.deps;
    this.dialogConfirm.disabled = true;
    void this.queue(state, seq, async () => {
      try {
        await client.deleteMessage(state.id, seq);
      } catch (err) {
        console.error(err);
        this.dialogError.textContent = `Not deleted: ${describeChangeError(err)}`;
        this.dialogConfirm.disabled = false;
        return;
      }
      const now = store.message(state, seq);
      if (now && now.deletedAt === null)
        store.patch(state, { ...now, body: '', reactions: [], deletedAt: new Date().toISOString() });
      this.deps.redraw(state, seq);
      if (this.deleting !== deleting) return;
      this.dialog.close();
      this.afterDialog();
    });
  }

  /** The dialog closed (deleted, cancelled or Escape): focus goes back to the message. */
  private afterDialog(): void {
    const deleting = this.deleting;
    this.deleting = undefined;
    if (!deleting?.item.isConnected) return;
    (partOf(deleting.item, 'tools')?.querySelector('button') ?? deleting.item).focus();
  }
}
