import { byId, el } from './dom.js';

/** Copies the unsent text shown in `unsent` (or, without a clipboard, selects it for Ctrl+C), saying so on `copy`. */
export function offerCopy(copy: HTMLButtonElement, unsent: HTMLPreElement, kept: string): void {
  copy.textContent = 'Copy';
  copy.onclick = () => {
    navigator.clipboard.writeText(kept).then(
      () => (copy.textContent = 'Copied'),
      () => {
        // No clipboard here (plain HTTP, or refused): the text is selected for Ctrl+C instead.
        const range = document.createRange();
        range.selectNodeContents(unsent);
        getSelection()?.removeAllRanges();
        getSelection()?.addRange(range);
        copy.textContent = 'Selected: press Ctrl+C';
      },
    );
  };
}

/** Counts the notices added under the first one, for their ids. */
let added = 0;

/**
 * The notice under the connection banner: a sentence that stays until dismissed (not an error), optionally with
 * text the user wrote and would otherwise lose (shown whole, with "Copy"). `focus` moves keyboard focus to it
 * (when what the user was looking at just went away). A notice that comes while another is shown goes under it
 * (removed from two groups: each group's unsent text stays, with its own "Copy"); "Dismiss" closes them all.
 */
export function showNotice(text: string, options: { unsent?: string; focus?: boolean } = {}): void {
  const notice = byId('app-notice', HTMLDivElement);
  const close = byId('app-notice-close', HTMLButtonElement);
  const kept = options.unsent ?? '';
  if (notice.hidden) {
    for (const extra of notice.querySelectorAll('.notice-more')) extra.remove();
    const unsent = byId('app-notice-unsent', HTMLPreElement);
    const copy = byId('app-notice-copy', HTMLButtonElement);
    byId('app-notice-text', HTMLParagraphElement).textContent = text;
    unsent.textContent = kept;
    unsent.hidden = kept === '';
    copy.hidden = kept === '';
    offerCopy(copy, unsent, kept);
  } else {
    const id = `app-notice-more-${++added}`;
    const unsent = el('pre', {
      className: 'unsent',
      text: kept,
      attrs: { 'aria-label': 'Your unsent text', dir: 'auto' },
    });
    // Its "Copy" is told apart from the others by the sentence naming the conversation.
    const copy = el('button', {
      className: 'secondary',
      attrs: { type: 'button', 'aria-label': 'Copy your unsent text', 'aria-describedby': id },
    });
    offerCopy(copy, unsent, kept);
    const more = el(
      'div',
      { className: 'notice-more' },
      el('p', { text, attrs: { id } }),
      kept === '' ? null : unsent,
      kept === '' ? null : copy,
    );
    notice.insertBefore(more, close);
  }
  notice.hidden = false;
  close.onclick = () => {
    const hadFocus = notice.contains(document.activeElement);
    notice.hidden = true;
    if (hadFocus) focusAfterNotice();
  };
  if (options.focus) notice.focus();
}

/**
 * Where focus goes when the notice that had it is dismissed (hidden, it takes focus away, to the page): where the
 * user writes in the open conversation (or, when nobody can write there, why, else its title), else the first
 * conversation in the list (as after leaving one), else "New group", else the page's heading.
 */
function focusAfterNotice(): void {
  const candidates = [
    document.getElementById('composer-input'),
    document.getElementById('composer-locked'),
    document.getElementById('conversation-title'),
    document.querySelector('#conversations li[data-key] button'),
    document.getElementById('new-group-button'),
    document.querySelector('main:not([hidden]) h1'),
  ];
  for (const target of candidates) {
    if (!(target instanceof HTMLElement) || target.getClientRects().length === 0) continue;
    if (target instanceof HTMLHeadingElement && !target.hasAttribute('tabindex')) target.tabIndex = -1;
    target.focus();
    if (document.activeElement === target) return;
  }
}
