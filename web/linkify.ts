/**
 * Message text with its web addresses as links, built with DOM nodes (user text is never parsed as HTML). Only
 * http and https become links; they open in a new tab with `rel="noopener noreferrer"`.
 */

const URL_IN_TEXT = /\bhttps?:\/\/[^\s<>"'`]+/gi;
/** Characters that end a sentence rather than the address ("see https://example.com."). */
const TRAILING = /[.,;:!?]+$/;

/** Drops sentence punctuation and closing brackets that the address did not open, from the end of a match. */
function trimAddress(candidate: string): string {
  let text = candidate;
  for (;;) {
    const trimmed = text.replace(TRAILING, '');
    const last = trimmed.at(-1);
    const pairs: Record<string, string> = { ')': '(', ']': '[', '}': '{' };
    const opening = last === undefined ? undefined : pairs[last];
    if (opening !== undefined && count(trimmed, last!) > count(trimmed, opening)) {
      text = trimmed.slice(0, -1);
      continue;
    }
    return trimmed;
  }
}

function count(text: string, char: string): number {
  return text.split(char).length - 1;
}

/** The address as a safe link target: an absolute http(s) URL, or undefined for anything else. */
export function safeHref(candidate: string): string | undefined {
  let url: URL;
  try {
    url = new URL(candidate);
  } catch {
    return undefined; // not an address after all: it stays text
  }
  return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : undefined;
}

/** Text and link nodes for `text`. */
export function linkify(text: string): Node[] {
  const nodes: Node[] = [];
  let done = 0;
  for (const match of text.matchAll(URL_IN_TEXT)) {
    const address = trimAddress(match[0]);
    const href = safeHref(address);
    if (href === undefined || address === '') continue;
    if (match.index > done) nodes.push(document.createTextNode(text.slice(done, match.index)));
    const link = document.createElement('a');
    link.href = href;
    link.textContent = address;
    link.target = '_blank';
    link.rel = 'noopener noreferrer';
    nodes.push(link);
    done = match.index + address.length;
  }
  if (done < text.length) nodes.push(document.createTextNode(text.slice(done)));
  return nodes;
}
