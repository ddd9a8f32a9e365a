/**
 * Pure text rules of the app (no DOM): what a message may hold, how invisible direction characters are shown,
 * how long a wait is said, which field a refusal names, and when a display name could pass as someone else's.
 */

/** The server's limit for a message body, in Unicode code points (the contract's count). */
export const MAX_MESSAGE_CODE_POINTS = 4000;

/** Length in Unicode code points (an emoji outside the BMP is one, not two UTF-16 units). */
export function codePointLength(text: string): number {
  let n = 0;
  for (const _ of text) n += 1;
  return n;
}

/** Grapheme clusters, where the browser can tell them (Firefox before 125 cannot: code points there). */
const GRAPHEMES =
  typeof Intl.Segmenter === 'function'
    ? new Intl.Segmenter(undefined, { granularity: 'grapheme' })
    : undefined;

/**
 * The start of `text` of at most `max` characters as a reader counts them (grapheme clusters): a cut never splits a
 * flag, an emoji sequence or a letter and its accent typed as two code points, which would show what was not sent.
 * And of at most twice `max` code points: one grapheme may hold any number of combining marks (a whole message of
 * them), and what is cut must stay short.
 */
export function startOf(text: string, max: number): string {
  const parts = GRAPHEMES ? Array.from(GRAPHEMES.segment(text), (s) => s.segment) : [...text];
  let kept = '';
  let codePoints = 0;
  for (const [i, part] of parts.entries()) {
    codePoints += codePointLength(part);
    // A first character longer than that alone is cut in its marks: a quote never shows nothing of it.
    if (i >= max || codePoints > 2 * max) return kept !== '' ? kept : [...part].slice(0, 2 * max).join('');
    kept += part;
  }
  return text;
}

/**
 * The invisible direction characters: the explicit embeddings, overrides and isolates (U+202A-202E,
 * U+2066-2069), which reorder the text around them, so "account \u202E0987654321" reads as another number
 * and "https://evil.example/\u202Etxt.exe" as ".../exe.txt"; and the marks LRM, RLM and ALM (U+200E, U+200F,
 * U+061C), invisible letters of a direction that turn the groups of a number around them ("account
 * \u200F1111 2222" reads as "account 2222 1111"). The app shows each as a visible marker instead.
 */
export const DIRECTION_CONTROLS = /[\u200E\u200F\u061C\u202A-\u202E\u2066-\u2069]/g;

const CONTROL_NAMES: Record<string, string> = {
  '\u200E': 'LRM',
  '\u200F': 'RLM',
  '\u061C': 'ALM',
  '\u202A': 'LRE',
  '\u202B': 'RLE',
  '\u202C': 'PDF',
  '\u202D': 'LRO',
  '\u202E': 'RLO',
  '\u2066': 'LRI',
  '\u2067': 'RLI',
  '\u2068': 'FSI',
  '\u2069': 'PDI',
};

/** The visible stand-in for a direction control: "⟨RLO⟩". */
export function controlMarker(char: string): string {
  return `⟨${CONTROL_NAMES[char] ?? 'U+' + (char.codePointAt(0) ?? 0).toString(16).toUpperCase()}⟩`;
}

/** `text` with every direction control replaced by its visible marker (for plain-text places: previews, quotes). */
export function showControls(text: string): string {
  return text.replace(DIRECTION_CONTROLS, controlMarker);
}

/** One run of a message's text: plain text, or a direction control shown as a marker. */
export type TextRun = { kind: 'text'; text: string } | { kind: 'control'; char: string; marker: string };

/** `text` cut into plain runs and direction controls, in order. */
export function textRuns(text: string): TextRun[] {
  const runs: TextRun[] = [];
  let done = 0;
  for (const match of text.matchAll(DIRECTION_CONTROLS)) {
    if (match.index > done) runs.push({ kind: 'text', text: text.slice(done, match.index) });
    runs.push({ kind: 'control', char: match[0], marker: controlMarker(match[0]) });
    done = match.index + match[0].length;
  }
  if (done < text.length) runs.push({ kind: 'text', text: text.slice(done) });
  return runs;
}

/** "45 seconds", "55 minutes", "2 hours", "1 hour 5 minutes": how long `seconds` is, rounded up to what matters. */
export function waitWords(seconds: number): string {
  const s = Math.max(1, Math.ceil(seconds));
  const plural = (n: number, unit: string) => `${n} ${unit}${n === 1 ? '' : 's'}`;
  if (s < 60) return plural(s, 'second');
  const minutes = Math.ceil(s / 60);
  if (minutes < 60) return plural(minutes, 'minute');
  const hours = Math.floor(minutes / 60);
  const rest = minutes % 60;
  return rest === 0 ? plural(hours, 'hour') : `${plural(hours, 'hour')} ${plural(rest, 'minute')}`;
}

/**
 * The sentences for a VALIDATION_FAILED whose `details` name the fields (`{field: problem}`), with the fields
 * called as the form calls them; fields the form does not know are left out. Empty if `details` names none.
 */
export function fieldProblems(details: unknown, labels: Readonly<Record<string, string>>): string[] {
  if (typeof details !== 'object' || details === null) return [];
  const sentences: string[] = [];
  for (const [field, problem] of Object.entries(details as Record<string, unknown>)) {
    const label = Object.hasOwn(labels, field) ? labels[field] : undefined;
    if (label === undefined || typeof problem !== 'string') continue;
    sentences.push(`${label} ${problem.replace(/\.$/, '')}.`);
  }
  return sentences;
}

/** The fields of `details` (a VALIDATION_FAILED's) that `labels` knows, in order. */
export function problemFields(details: unknown, labels: Readonly<Record<string, string>>): string[] {
  if (typeof details !== 'object' || details === null) return [];
  return Object.keys(details).filter((field) => Object.hasOwn(labels, field));
}

/**
 * Letters of other scripts drawn like a Latin letter, as the reader sees them ("Воb" in Cyrillic is "Bob"), each to
 * the Latin letter of the same case: a small part of Unicode's confusables (UTS #39), for the scripts a look-alike
 * name is most often made from. A name it folds too eagerly only gets its @username shown beside it.
 */
const LOOKALIKES: ReadonlyMap<string, string> = lookalikes([
  // Cyrillic
  ['АВЕКМНОРСТУХЅІЈԚԜҮӀаеорсухѕіјһԁԛԝүӏ', 'ABEKMHOPCTYXSIJQWYlaeopcyxsijhdqwyl'],
  // Greek
  ['ΑΒΕΖΗΙΚΜΝΟΡΤΥΧαικνορυχ', 'ABEZHIKMNOPTYXaikvopux'],
  // Latin: a dotless i is an i
  ['ı', 'i'],
]);

/** The map of each character of a pair's first string to the same place of its second. */
function lookalikes(pairs: ReadonlyArray<readonly [string, string]>): Map<string, string> {
  const map = new Map<string, string>();
  for (const [from, to] of pairs) {
    const targets = [...to];
    [...from].forEach((char, i) => map.set(char, targets[i] ?? char));
  }
  return map;
}

/**
 * A name without what tells nothing apart: compatibility-folded, without what shows nothing (zero-width spaces,
 * joiners, soft hyphens, direction marks, variation selectors, the other default-ignorable code points and
 * noncharacters: those the server counts as invisible), spaces (the blank Braille pattern too) collapsed.
 */
function plainName(name: string): string {
  return name
    .normalize('NFKC')
    .replace(/[\p{Cc}\p{Cf}\p{Default_Ignorable_Code_Point}\p{Noncharacter_Code_Point}]/gu, '')
    .replace(/[\s\u2800]+/gu, ' ')
    .trim();
}

/** A name as a reader compares names by their letters: {@link plainName}, case ignored. "Carol\u200B" is "carol". */
export function nameKey(name: string): string {
  return plainName(name).toLowerCase();
}

/**
 * A name as a reader compares names by their look: {@link plainName} with look-alike letters as the Latin ones
 * ({@link LOOKALIKES}), a capital I, a one and a bar as an l, a zero as an o, "rn" as "m" and "vv" as "w", and case
 * kept but for the capitals shaped like their small letters (C O S U V W X Z): a Cyrillic "в" looks like no "b",
 * its capital like a "B". "Воb", "AIice" and "B0b" look like "Bob" and "Alice".
 */
function lookKey(name: string): string {
  let key = '';
  for (const char of plainName(name)) key += LOOKALIKES.get(char) ?? char;
  return key
    .replace(/[Il1|ǀ]/g, 'l')
    .replace(/0/g, 'o')
    .replace(/[COSUVWXZ]/g, (capital) => capital.toLowerCase())
    .replace(/rn/g, 'm')
    .replace(/vv/g, 'w');
}

/** Whether a reader could take one name for the other: the same letters whatever their case, or the same look. */
function sameName(a: string, b: string): boolean {
  return nameKey(a) === nameKey(b) || lookKey(a) === lookKey(b);
}

/** What a group's line of the others' names says when nobody else is in it. */
export const ONLY_YOU = 'Only you';

/** Words the app itself puts where a name goes: a display name that reads as one of them must not pass for it. */
const APP_LABELS = [
  'You',
  'Yourself',
  'Deleted user',
  'Someone',
  'Earlier message',
  'Group',
  'Conversation',
  ONLY_YOU,
];

/** Whether a display name reads like one of the app's own labels ("You", "Deleted user", "Someone"). */
export function looksLikeAppLabel(displayName: string): boolean {
  return nameKey(displayName) === '' || APP_LABELS.some((label) => sameName(displayName, label));
}

/** How a person is named where only words fit: their display name, quoted if it reads like an app label. */
export function personName(displayName: string): string {
  return looksLikeAppLabel(displayName) ? `“${displayName}”` : displayName;
}

/**
 * Whether a display name needs its @username beside it to tell who it is: it reads like an app label, it holds an
 * "@" (it could spell the app's own "Name (@username)", naming someone else), or the same name (as a reader
 * compares them) belongs to someone else of `others`.
 */
export function nameNeedsHandle(displayName: string, others: readonly string[]): boolean {
  if (looksLikeAppLabel(displayName)) return true;
  if (nameKey(displayName).includes('@')) return true;
  return others.some((other) => sameName(displayName, other));
}
