import { byId } from './dom.js';

/**
 * The notice under the connection banner: a sentence that stays until dismissed (not an error), optionally with
 * text the user wrote and would otherwise lose (shown whole, with "Copy"). `focus` moves keyboard focus to it
 * (when what the user was looking at just went away).
 */
export function showNotice(text: string, options: { unsent?: string; focus?: boolean } = {}): void {
  const notice = byId('app-notice', HTMLDivElement);
  const unsent = byId('app-notice-unsent', HTMLPreElement);
  const copy = byId('app-notice-copy', HTMLButtonElement);
  byId('app-notice-text', HTMLParagraphElement).textContent = text;
  const kept = options.unsent ?? '';
  unsent.textContent = kept;
  unsent.hidden = kept === '';
  copy.hidden = kept === '';
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
  notice.hidden = false;
  byId('app-notice-close', HTMLButtonElement).onclick = () => (notice.hidden = true);
  if (options.focus) notice.focus();
}
