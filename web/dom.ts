/** Tiny DOM helpers: typed lookups and element construction. Text always goes in as text, never as HTML. */

import { TOUCH_ONLY } from './touchOnly.js';

/** The element with `id`, checked to be of `type`; a missing element is a bug in index.html. */
export function byId<T extends HTMLElement>(id: string, type: { new (): T; prototype: T }): T {
  const element = document.getElementById(id);
  if (!(element instanceof type)) throw new Error(`#${id} is missing or not a ${type.name}`);
  return element;
}

/** The one query for `TOUCH_ONLY`, shared by every box and its listeners; made at first use. */
let touchOnly: MediaQueryList | undefined;
function touchOnlyQuery(): MediaQueryList {
  return (touchOnly ??= matchMedia(TOUCH_ONLY));
}

/**
 * Whether Enter starts a new line in a message box rather than sending (or saving an edit): on a touch-only device,
 * whose on-screen keyboard has no Shift+Enter, so Enter is the only way to a second line; there the Send (Save)
 * button sends, as does Ctrl+Enter or ⌘+Enter from a hardware keyboard (`sendsOnKey`). Asked at each key press, and
 * `onEnterChange` calls back when the answer changes (a tablet docked to a keyboard and trackpad).
 */
export function enterAddsLine(): boolean {
  return touchOnlyQuery().matches;
}

/**
 * Whether a key press in a message box sends the message (saves the edit): Enter, but not Shift+Enter (a new line)
 * nor an Enter that ends an input method's composition; on a touch-only device only Ctrl+Enter or ⌘+Enter, since
 * there Enter starts a new line (`enterAddsLine`).
 */
export function sendsOnKey(event: KeyboardEvent): boolean {
  if (event.key !== 'Enter' || event.shiftKey || event.isComposing) return false;
  return event.ctrlKey || event.metaKey || !enterAddsLine();
}

/** Calls `changed` whenever `enterAddsLine()` changes its answer. */
export function onEnterChange(changed: () => void): void {
  touchOnlyQuery().addEventListener('change', changed);
}

type Child = Node | string | null | undefined | false;

export interface ElementProps {
  className?: string;
  text?: string;
  attrs?: Record<string, string>;
  dataset?: Record<string, string>;
  onClick?: () => void;
}

/** Creates `<tag>` with props and children (strings become text nodes). */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: ElementProps = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  if (props.className) element.className = props.className;
  if (props.text !== undefined) element.textContent = props.text;
  for (const [name, value] of Object.entries(props.attrs ?? {})) element.setAttribute(name, value);
  for (const [name, value] of Object.entries(props.dataset ?? {})) element.dataset[name] = value;
  if (props.onClick) element.addEventListener('click', props.onClick);
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child);
  }
  return element;
}

/** A button; `label` is its accessible name when the visible text is not enough. */
export function button(
  text: string,
  onClick: () => void,
  options: { label?: string; secondary?: boolean } = {},
): HTMLButtonElement {
  const attrs: Record<string, string> = { type: 'button' };
  if (options.label) attrs['aria-label'] = options.label;
  return el('button', {
    text,
    attrs,
    className: options.secondary ? 'secondary' : '',
    dataset: { action: text },
    onClick: () => onClick(),
  });
}

/**
 * Replaces a list's items, keeping keyboard focus on the same control (a button, or a menu's `<summary>`, told
 * by its `data-action`) of the item with the same `data-key` if focus was inside, so live updates do not throw
 * a keyboard user out of the list. A menu (`<details>`) open around the focus stays open in the new item, or the
 * control in it could not take focus. Where that item or control is gone, focus goes to a neighbour (see below).
 * `active` is what had focus: the caller's, when it hid the list first (a hidden element loses focus at once).
 */
export function replaceItems(
  list: HTMLElement,
  items: HTMLElement[],
  active: Element | null = document.activeElement,
): void {
  const inside = active instanceof HTMLElement && list.contains(active);
  const oldItem = inside ? active.closest<HTMLElement>('[data-key]') : null;
  const key = oldItem?.dataset.key;
  const action = inside ? active.dataset.action : undefined;
  const menu = inside ? active.closest('details') : null;
  const openMenu =
    menu?.open === true && oldItem?.contains(menu)
      ? [...oldItem.querySelectorAll('details')].indexOf(menu)
      : -1;
  const oldIndex = oldItem === null ? -1 : [...list.children].indexOf(oldItem);
  list.replaceChildren(...items);
  if (key === undefined) return;
  const item = items.find((i) => i.dataset.key === key);
  if (item !== undefined) {
    if (openMenu >= 0) {
      const reopened = item.querySelectorAll('details')[openMenu];
      if (reopened !== undefined) reopened.open = true;
    }
    const controls = [...item.querySelectorAll<HTMLElement>('button, summary')];
    const buttons = controls.filter((c) => c instanceof HTMLButtonElement);
    const same = controls.find((c) => c.dataset.action === action) ?? buttons[0];
    if (same !== undefined) {
      same.focus();
      return;
    }
  }
  // The item is gone (a request accepted or declined, a friend removed), or has no control left (a user just
  // asked to be a friend): the next item's first control, else the one before, else near the list (focusNear),
  // rather than the page (a keyboard user would start again from its top, a screen reader lose its place).
  const at = item === undefined ? oldIndex : items.indexOf(item) + 1;
  const after = items.slice(Math.max(0, at));
  const before = items.slice(0, Math.max(0, item === undefined ? oldIndex : at - 1)).reverse();
  // A control that cannot take focus (a disabled button, one in a closed menu) is passed over, as in focusNear.
  for (const candidate of [...after, ...before]) {
    if (candidate === item) continue;
    for (const control of candidate.querySelectorAll<HTMLElement>('button, summary'))
      if (takeFocus(control)) return;
  }
  focusNear(list);
}

/**
 * As replaceItems, but an item with focus inside that is still in `items` is kept (the node itself, and each node on
 * the way down to the focused control) and brought up to date from its new version, the others put around it: focus
 * never moves, where replacing the item and focusing its new control again had a screen reader read that control
 * again at every live update. The kept control keeps its own listeners: they must depend on nothing but the
 * item's key. Where the new version is shaped otherwise on that way down, this falls back to replaceItems.
 */
export function updateItems(
  list: HTMLElement,
  items: HTMLElement[],
  active: Element | null = document.activeElement,
): void {
  const kept = active instanceof HTMLElement && list.contains(active) ? active.closest('[data-key]') : null;
  const key = kept instanceof HTMLElement && kept.parentElement === list ? kept.dataset.key : undefined;
  const fresh = key === undefined ? undefined : items.find((item) => item.dataset.key === key);
  const pairs = kept === null || fresh === undefined || active === null ? null : twins(kept, fresh, active);
  if (kept === null || fresh === undefined || pairs === null) {
    replaceItems(list, items, active);
    return;
  }
  pairs.forEach(([old, next], i) => {
    for (const name of old.getAttributeNames()) if (!next.hasAttribute(name)) old.removeAttribute(name);
    for (const name of next.getAttributeNames()) {
      const value = next.getAttribute(name) ?? '';
      if (old.getAttribute(name) !== value) old.setAttribute(name, value);
    }
    const below = pairs[i + 1];
    if (below === undefined) old.replaceChildren(...next.childNodes);
    else putAround(old, below[0], [...next.childNodes], below[1]);
  });
  putAround(list, kept, items, fresh);
}

/**
 * The pairs (kept node, its new version) from `old` down to `active`, matched by position among element children
 * and by tag; null where the new version has no such node.
 */
function twins(old: Element, fresh: Element, active: Element): Array<[Element, Element]> | null {
  const pairs: Array<[Element, Element]> = [];
  let [a, b]: [Element, Element | undefined] = [old, fresh];
  for (;;) {
    if (b === undefined || a.tagName !== b.tagName) return null;
    pairs.push([a, b]);
    if (a === active) return pairs;
    const child = [...a.children].find((c) => c.contains(active));
    if (child === undefined) return null;
    b = b.children[[...a.children].indexOf(child)];
    a = child;
  }
}

/**
 * Makes `parent`'s children `nodes` (among them `twin`), with `kept` in place of `twin`: `kept` is never taken out
 * (that would take focus away), the others are put before and after it.
 */
function putAround(parent: Element, kept: Element, nodes: Node[], twin: Node): void {
  const at = nodes.indexOf(twin);
  for (const node of [...parent.childNodes]) if (node !== kept) node.remove();
  kept.before(...nodes.slice(0, at));
  kept.after(...nodes.slice(at + 1));
}

/** Focuses `target` (a list or heading made focusable for it); false if it cannot take focus. */
function takeFocus(target: HTMLElement): boolean {
  if (
    !target.matches('button, summary, input, textarea, select, a[href]') &&
    !target.hasAttribute('tabindex')
  )
    target.tabIndex = -1;
  target.focus();
  return document.activeElement === target;
}

/** Whether an element is rendered (not hidden, nor inside something hidden). */
function rendered(element: HTMLElement): boolean {
  return element.getClientRects().length > 0;
}

/**
 * Focus for a list left with no control to take it: the list if it still shows items, else its section's heading,
 * else, in the nearest ancestor still shown (a section hidden once empty: the blocked users), the last control shown
 * before the list (the first after it, if none), so that the next Tab goes on from about where the user was.
 */
function focusNear(list: HTMLElement): void {
  if (list.children.length > 0 && rendered(list) && takeFocus(list)) return;
  const heading = list.closest('section')?.querySelector<HTMLElement>('h2, h3');
  if (heading && rendered(heading) && takeFocus(heading)) return;
  for (let around = list.parentElement; around !== null; around = around.parentElement) {
    if (!rendered(around)) continue;
    const shown = [
      ...around.querySelectorAll<HTMLElement>('input, button, summary, textarea, select, a[href]'),
    ].filter((candidate) => rendered(candidate) && !list.contains(candidate));
    const before = shown.filter(
      (candidate) => (list.compareDocumentPosition(candidate) & Node.DOCUMENT_POSITION_PRECEDING) !== 0,
    );
    const after = shown.filter((candidate) => !before.includes(candidate));
    // A control in a closed menu (<details>) counts as shown but cannot take focus: the next one is tried.
    for (const candidate of [...before.reverse(), ...after]) if (takeFocus(candidate)) return;
  }
}

/**
 * Marks a control busy, or no longer: `aria-busy` on a form (as the message editor's), `aria-disabled` on a button.
 * Not `disabled`: a disabled button loses keyboard focus in some browsers, and a screen reader its place.
 */
function setBusy(control: HTMLElement, busy: boolean): void {
  const attribute = control instanceof HTMLFormElement ? 'aria-busy' : 'aria-disabled';
  if (busy) control.setAttribute(attribute, 'true');
  else control.removeAttribute(attribute);
}

/**
 * Actions that send a request, each one at a time: while an action's request is on its way (and what it changed is
 * read again), activating it again does nothing. A double click, or Enter pressed twice, must not send it twice: the
 * server would make a second group, or refuse the second answer to a friend request ("already answered") or the
 * second password change (the current password is the new one by then) and the page say so. An action is named by a
 * key (what it is about: "request:<id>" for accepting, declining or cancelling one), so that a control drawn again
 * meanwhile for the same action (the lists are redrawn at every friend event), or another control for it, does
 * nothing either: `mark` controls as they are drawn, so that they say they are busy too.
 */
export class OneAtATime {
  /** The actions on their way, each with the controls marked busy for it. */
  private readonly running = new Map<string, Set<HTMLElement>>();

  /** Runs `work`, the action `key` activated from `control`, unless that action is on its way already. */
  async run(key: string, control: HTMLElement, work: () => Promise<void>): Promise<void> {
    if (this.running.has(key)) return;
    this.running.set(key, new Set());
    this.mark(key, control);
    try {
      await work();
    } finally {
      for (const marked of this.running.get(key) ?? []) setBusy(marked, false);
      this.running.delete(key);
    }
  }

  /**
   * A control shared by the actions of several things (a group's forms, for whichever group is shown), now for the
   * action `key`: marked busy if that action is on its way, and no longer for another's.
   */
  reflect(key: string, control: HTMLElement): void {
    for (const marked of this.running.values()) marked.delete(control);
    setBusy(control, false);
    this.mark(key, control);
  }

  /** A control for the action `key` (just drawn): marked busy while that action is on its way. Returns it. */
  mark<T extends HTMLElement>(key: string, control: T): T {
    const marked = this.running.get(key);
    if (marked !== undefined) {
      marked.add(control);
      setBusy(control, true);
    }
    return control;
  }
}
