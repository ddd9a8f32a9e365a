/**
 * Message text with its web addresses as links, built with DOM nodes (user text is never parsed as HTML). Only
 * http and https become links; they open in a new tab with `rel="noopener noreferrer"`.
 *
 * A link never says one place and goes to another: its text shows the host it opens (a host typed in another
 * script, like the Cyrillic "а" of "exаmple.com", shows as its punycode "xn--exmple-4nf.com"), its target is
 * its title, and an address with a user part ("https://bank.example@evil.example/") is not a link at all.
 * Invisible direction characters (U+202A-202E, U+2066-2069, and the marks U+200E, U+200F, U+061C) end an
 * address and show as markers ("⟨RLO⟩", "⟨RLM⟩"), so they cannot turn ".../\u202Etxt.exe" into ".../exe.txt".
 */
import { textRuns } from './text.js';

/**
 * An address runs up to whitespace, quotes, angle brackets, an invisible format character (direction controls and
 * marks, zero-width characters, the byte order mark), which never belongs in one, or the punctuation of Chinese and
 * Japanese (the ideographic comma, their brackets, full-width commas, colons, brackets, "！" and "？"): text in those
 * scripts has no space after an address ("（https://example.com）を見て"). Their full stops are {@link endAtStop}'s.
 */
const URL_IN_TEXT =
  /\bhttps?:\/\/[^\s<>"'`\u061C\u200B-\u200F\u202A-\u202E\u2060-\u2069\uFEFF\u3001\u3008-\u3011\u3014-\u301F\uFF01\uFF08\uFF09\uFF0C\uFF1A\uFF1B\uFF1F\uFF3B\uFF3D\uFF5B\uFF5D\uFF62-\uFF64]+/gi;
/** The full stops of Chinese and Japanese ("。", "．", "｡"). */
const IDEOGRAPHIC_STOPS = /[\u3002\uFF0E\uFF61]/g;

/**
 * The address up to its first ideographic full stop that ends a sentence ("见 https://example.com。然后",
 * ".../docs。次に", "https://example.com。2点见面"). One between two ASCII labels of the host is a dot as a Chinese
 * or Japanese keyboard types it ("https://example。com/docs", which the browser opens as example.com, and the link
 * says so): it stays.
 */
function endAtStop(candidate: string): string {
  const hostStart = candidate.indexOf('//') + 2;
  const hostLength = candidate.slice(hostStart).search(/[:/?#]/);
  const hostEnd = hostLength < 0 ? candidate.length : hostStart + hostLength;
  for (const stop of candidate.matchAll(IDEOGRAPHIC_STOPS)) {
    const inHost = stop.index > hostStart && stop.index < hostEnd;
    const between =
      /[A-Za-z0-9-]$/.test(candidate.slice(0, stop.index)) &&
      /^[A-Za-z0-9-]+(?:$|[.:/?#\u3002\uFF0E\uFF61])/.test(candidate.slice(stop.index + 1));
    if (inHost && between) continue;
    return candidate.slice(0, stop.index);
  }
  return candidate;
}
/** Characters that end a sentence rather than the address ("see https://example.com.", Arabic's "،", "؛", "؟"). */
const TRAILING = /[.,;:!?\u060C\u061B\u061F]+$/;

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

/** Where a link goes and what it says. */
export interface LinkTarget {
  href: string;
  /** The address as typed, but with the host the browser will open (punycode for a non-ASCII one). */
  text: string;
}

/**
 * The link for an address found in text, or undefined if it must stay text: not http(s), not parseable, or
 * with a user part before "@" (which makes "https://bank.example@evil.example" open evil.example). Its text
 * names the host the browser opens, not the one typed, whenever they differ.
 */
export function linkTarget(address: string): LinkTarget | undefined {
  const parts = /^(https?:\/\/)([^/?#]*)(.*)$/is.exec(address);
  if (!parts) return undefined;
  const [, scheme = '', authority = '', rest = ''] = parts;
  // "@" (or a backslash, which browsers read as "/") in what looks like the host: the text would lie.
  if (authority.includes('@') || authority.includes('\\')) return undefined;
  let url: URL;
  try {
    url = new URL(address);
  } catch {
    return undefined;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return undefined;
  if (url.username !== '' || url.password !== '') return undefined;
  const typedHost = authority.toLowerCase();
  const text = typedHost === url.host ? address : `${scheme}${url.host}${rest}`;
  return { href: url.href, text };
}

/** A piece of message text: plain text, a link, or an invisible direction character shown as a marker. */
export type TextPart =
  | { kind: 'text'; text: string }
  | { kind: 'link'; href: string; text: string }
  | { kind: 'control'; char: string; marker: string };

/** `text` cut into plain text, links and direction-control markers, in order. */
export function textParts(text: string): TextPart[] {
  const parts: TextPart[] = [];
  const plain = (from: number, to: number) => {
    if (to > from) parts.push(...textRuns(text.slice(from, to)));
  };
  let done = 0;
  for (const match of text.matchAll(URL_IN_TEXT)) {
    const address = trimAddress(endAtStop(match[0]));
    if (address === '') continue;
    const target = linkTarget(address);
    if (target === undefined) continue;
    plain(done, match.index);
    parts.push({ kind: 'link', ...target });
    done = match.index + address.length;
  }
  plain(done, text.length);
  return parts;
}

/**
 * The characters of the right-to-left scripts (Hebrew, Arabic, Syriac, Thaana, N'Ko and their neighbours). A text
 * that holds one has its numbers laid out as left-to-right isolates: next to one, the bidi algorithm draws the groups
 * of a number split by spaces in reverse ("account \u05F31111 2222", a visible Hebrew mark drawn like an apostrophe,
 * reads "account 2222 1111'"); isolated, a number reads in the order typed whatever the direction of the text around
 * it (the order a right-to-left reader reads numbers too).
 */
const RIGHT_TO_LEFT = /[\u0590-\u08FF\uFB1D-\uFDFF\uFE70-\uFEFE\u{10800}-\u{10FFF}\u{1E800}-\u{1EFFF}]/u;
/**
 * A number: digits of any script (the Arabic-Indic "١١١١ ٢٢٢٢" an Arabic keyboard types too, with Arabic's own
 * decimal and thousands separators: "١٢٫٥٠", "١٬٢٣٤"), in groups joined by one space or sign ("1111 2222 3333", "12.50", "2026-12-06", "050-1234567");
 * "1, 2, 3" or "10 - 20" are numbers of their own.
 */
const NUMBER = /\p{Nd}+(?:[ .,:/\u066B\u066C-]\p{Nd}+)*/gu;

/**
 * A number in a left-to-right isolate (`<span class="ltr">`). Digits other than 0-9 (the Arabic-Indic "١١١١ ٢٢٢٢")
 * are Arabic numbers to the bidi algorithm, which lays out their groups right to left even in a left-to-right
 * isolate (the space between two of them takes their direction): each group is an isolate of its own there, and the
 * groups, neutral to what is around them, follow the isolate's direction.
 */
function ltrIsolate(number: string): HTMLElement {
  const span = document.createElement('span');
  span.className = 'ltr';
  if (/^[0-9 .,:/-]*$/.test(number)) span.textContent = number;
  else
    for (const part of number.split(/(\p{Nd}+)/u)) {
      if (part === '') continue;
      if (!/^\p{Nd}/u.test(part)) span.append(part);
      else
        span.append(Object.assign(document.createElement('span'), { className: 'ltr', textContent: part }));
    }
  return span;
}

/** Text nodes for plain text, with each number in a left-to-right isolate (`<span class="ltr">`). */
function numbersIsolated(text: string): Node[] {
  const nodes: Node[] = [];
  let done = 0;
  for (const match of text.matchAll(NUMBER)) {
    if (match.index > done) nodes.push(document.createTextNode(text.slice(done, match.index)));
    nodes.push(ltrIsolate(match[0]));
    done = match.index + match[0].length;
  }
  if (done < text.length) nodes.push(document.createTextNode(text.slice(done)));
  return nodes;
}

/**
 * Plain text (a quote, a preview: no links) as nodes, with its numbers laid out as the message's body lays them out
 * ({@link linkify}): in left-to-right isolates when the text holds right-to-left letters.
 */
export function plainText(text: string): Node[] {
  return RIGHT_TO_LEFT.test(text) ? numbersIsolated(text) : [document.createTextNode(text)];
}

/**
 * Text, link and marker nodes for `text`. A link is a left-to-right isolate: in a right-to-left message the letters
 * of its address would otherwise be laid out by the text around it, its path's end first and the host it opens last.
 */
export function linkify(text: string): Node[] {
  const isolate = RIGHT_TO_LEFT.test(text);
  return textParts(text).flatMap((part): Node[] => {
    if (part.kind === 'text')
      return isolate ? numbersIsolated(part.text) : [document.createTextNode(part.text)];
    if (part.kind === 'control') {
      const mark = document.createElement('span');
      mark.className = 'control-mark';
      mark.textContent = part.marker;
      mark.title = `An invisible text-direction character (U+${(part.char.codePointAt(0) ?? 0).toString(16).toUpperCase()}) is here`;
      return [mark];
    }
    const link = document.createElement('a');
    // An isolate by its class, not a `dir` attribute: the body's `dir="auto"` still reads the link's letters.
    link.className = 'ltr';
    link.href = part.href;
    link.textContent = part.text;
    link.title = part.href;
    link.target = '_blank';
    link.rel = 'noopener noreferrer';
    return [link];
  });
}
