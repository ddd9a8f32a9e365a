/**
 * Every client input of the contract as a valibot schema: the Socket.IO events' payloads and the REST bodies and
 * queries. The server parses with them (lib/validation.ts); their output types are the request types of the
 * handlers, of `ClientToServerEvents` and of the SDK. One rule per field, written once.
 *
 * valibot, not zod or TypeBox: it is modular (the SDK, which checks its realtime requests with these schemas at run
 * time, bundles only the parts it uses), and a parse of a send payload is a few microseconds on the hot path.
 */
import * as v from 'valibot';

/** PostgreSQL text cannot hold NUL, and an unpaired surrogate would not come back as sent. */
// eslint-disable-next-line no-control-regex -- NUL is exactly the character being refused.
const STORABLE_TEXT = /^[^\u0000\p{Cs}]*$/u;
const STORABLE_HINT = 'must not contain NUL or unpaired surrogate characters';
/**
 * Control characters (C0, DEL, C1), Unicode's bidirectional controls (the embeddings, overrides and isolates
 * U+202A-202E and U+2066-2069, and the marks LRM U+200E, RLM U+200F and ALM U+061C, which turn the text around them)
 * and the line and paragraph separators U+2028-2029: a name that can hide, reorder or break what others read is
 * refused. Message bodies may hold all of these but NUL: text in right-to-left scripts needs the marks.
 */
export const CONTROL_OR_BIDI = /[\p{Cc}\p{Bidi_Control}\u2028\u2029]/u;
/** What a field that must be plain text says of a character {@link CONTROL_OR_BIDI} finds. */
const PLAIN_HINT = 'must not contain control, bidirectional-control or line-separator characters';
/**
 * A code point that shows nothing by itself: controls, format characters (ZWSP, ZWJ, LRM, ...), marks (combining
 * accents, variation selectors), separators, the other default-ignorable code points (the Hangul fillers U+115F,
 * U+1160, U+3164, U+FFA0), the blank Braille pattern U+2800 and the noncharacters (U+FFFF, U+FDD0, ...: never to be
 * assigned). Unassigned code points count as visible: an emoji newer than this runtime's Unicode tables is one. A
 * name, a title, a message body or an emoji needs one: made only of the others it shows as nothing (a blank sender,
 * an empty bubble).
 */
const VISIBLE = /[^\p{Cc}\p{Cf}\p{M}\p{Z}\p{Default_Ignorable_Code_Point}\p{Noncharacter_Code_Point}\u2800]/u;
const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** True for a UUID string of any case. */
export function isUuid(value: unknown): value is string {
  return typeof value === 'string' && UUID_PATTERN.test(value);
}

export interface TextRule {
  /** Length in Unicode code points, as the contract counts it. */
  min: number;
  max: number;
  pattern?: RegExp;
  patternHint?: string;
  /** Refuse a value that is only whitespace, or that has nothing visible (only ZWSP, marks, fillers, ...). */
  notBlank?: boolean;
  /** Refuse control, bidirectional-control and line-separator characters (names, titles, emoji). */
  plain?: boolean;
  /**
   * Count the characters of the value as sent or of its composed form (NFC), whichever has fewer: a password is
   * hashed in NFC, and "é" typed as "e" and a combining accent is one character, as it is typed composed; a few
   * characters grow in NFC (U+095B, a Devanagari letter a Hindi keyboard types, is two code points in NFC), and
   * 128 of those, taken before passwords were counted so, are 128 still.
   */
  countComposed?: boolean;
}

function codePoints(value: string): number {
  let n = 0;
  for (const _ of value) n += 1;
  return n;
}

/** What is wrong with a string under `rule`, or undefined. */
function textProblem(value: string, rule: TextRule): string | undefined {
  if (!STORABLE_TEXT.test(value)) return STORABLE_HINT;
  const length = rule.countComposed
    ? Math.min(codePoints(value), codePoints(value.normalize('NFC')))
    : codePoints(value);
  if (length < rule.min || length > rule.max) return `must be ${rule.min}-${rule.max} characters`;
  if (rule.pattern && !rule.pattern.test(value)) return rule.patternHint ?? 'has invalid characters';
  if (rule.notBlank && value.trim() === '') return 'must not be only whitespace';
  if (rule.notBlank && !VISIBLE.test(value)) return 'must contain a visible character';
  if (rule.plain && CONTROL_OR_BIDI.test(value)) return PLAIN_HINT;
  return undefined;
}

/** A string field under `rule`. */
export function text(rule: TextRule) {
  return v.pipe(
    v.string('must be a string'),
    v.rawCheck<string>(({ dataset, addIssue }) => {
      if (!dataset.typed) return;
      const problem = textProblem(dataset.value, rule);
      if (problem !== undefined) addIssue({ message: problem });
    }),
  );
}

/** A UUID, lower-cased. */
export function uuid() {
  return v.pipe(
    v.string('must be a UUID'),
    v.regex(UUID_PATTERN, 'must be a UUID'),
    v.transform((id) => id.toLowerCase()),
  );
}

export interface IntRule {
  min: number;
  max: number;
  /** Larger values become `max` instead of failing (page sizes). */
  clampMax?: boolean;
}

/** A whole number in a JSON body or an event's payload: a JSON number, never a string of digits. */
export function int(rule: IntRule) {
  return v.pipe(
    v.number('must be a whole number'),
    v.rawTransform<number, number>(({ dataset, addIssue, NEVER }) =>
      inRange(dataset.value, rule, addIssue, NEVER),
    ),
  );
}

/** A whole number in a path or a query string, where everything is text: a decimal string (or a number). */
export function paramInt(rule: IntRule) {
  return v.pipe(
    v.union([v.number(), v.string()], 'must be a whole number'),
    v.rawTransform<number | string, number>(({ dataset, addIssue, NEVER }) => {
      const raw = dataset.value;
      if (typeof raw === 'number') return inRange(raw, rule, addIssue, NEVER);
      if (!/^-?\d+$/.test(raw)) {
        addIssue({ message: 'must be a whole number' });
        return NEVER;
      }
      // More digits than a safe integer holds read as a larger number: only a page size (clamped) takes it.
      return inRange(Number(raw), rule, addIssue, NEVER);
    }),
  );
}

/** `value` checked against `rule`; a page size above its maximum becomes the maximum, however large. */
function inRange<N>(
  value: number,
  rule: IntRule,
  addIssue: (issue: { message: string }) => void,
  never: N,
): number | N {
  // A page size too large for a double (`1e400` in JSON, 400 digits in a query) reads as Infinity.
  if (value === Number.POSITIVE_INFINITY && rule.clampMax) return rule.max;
  if (!Number.isInteger(value)) {
    addIssue({ message: 'must be a whole number' });
    return never;
  }
  if (value < rule.min) {
    addIssue({ message: `must be at least ${rule.min}` });
    return never;
  }
  // Every rule's bounds are safe integers, so what passes both is one.
  if (value > rule.max) {
    if (rule.clampMax) return rule.max;
    addIssue({ message: `must be at most ${rule.max}` });
    return never;
  }
  return value;
}

/** One of `values`, exactly. */
export function oneOf<const T extends readonly [string, ...string[]]>(values: T) {
  return v.picklist(values, `must be one of: ${values.join(', ')}`);
}

// ---- The contract's field rules -------------------------------------------------------------------------------

export const USERNAME = text({
  min: 3,
  max: 32,
  pattern: /^[A-Za-z0-9_.-]+$/,
  patternHint: 'may contain only A-Z a-z 0-9 _ . -',
});
/** The start of a username, for search. */
export const USERNAME_PREFIX = text({
  min: 1,
  max: 32,
  pattern: /^[A-Za-z0-9_.-]+$/,
  patternHint: 'may contain only A-Z a-z 0-9 _ . -',
});
/** Most users one search answers. */
export const USER_SEARCH_MAX = 20;
/**
 * Signup's rule: 8-128 characters (code points as sent or of its NFC form, which is hashed whole, whichever has
 * fewer), never trimmed or truncated.
 */
export const NEW_PASSWORD = text({ min: 8, max: 128, countComposed: true });
/**
 * Any password up to the signup maximum is tried at login (a wrong short one is INVALID_CREDENTIALS), in whatever
 * form it is typed: 128 characters taken at signup in one form may be up to four times as many code points in
 * another (decomposed; U+095B is one code point as typed, two in NFC and decomposed), and each is the same password.
 */
export const PASSWORD = text({ min: 1, max: 4 * 128, countComposed: true });
export const DISPLAY_NAME = text({ min: 1, max: 64, notBlank: true, plain: true });
export const GROUP_TITLE = text({ min: 1, max: 100, notBlank: true, plain: true });
export const MESSAGE_BODY = text({ min: 1, max: 4000, notBlank: true });
export const CLIENT_MSG_ID = text({
  min: 1,
  max: 64,
  pattern: /^[A-Za-z0-9_-]+$/,
  patternHint: 'may contain only A-Z a-z 0-9 _ -',
});
/** Most code points of a reaction's emoji, counted once it is in NFC. */
export const MAX_EMOJI_CODE_POINTS = 16;
/** Most different emoji on one message (any number of users may share each); enforced under the write lock. */
export const MAX_REACTIONS_PER_MESSAGE = 20;
const EMOJI_RULE: TextRule = {
  min: 1,
  max: MAX_EMOJI_CODE_POINTS,
  pattern: /^\S+$/u,
  patternHint: 'must not contain whitespace',
  plain: true,
};
/**
 * A removal's rule: `plain` but for the bidirectional marks (LRM, RLM, ALM), which the rules of earlier releases
 * (0.2.0, or an older node in a rolling upgrade) let in: what they stored must be removable. Checked below with
 * {@link CONTROL_OR_BIDI_BUT_MARKS}.
 */
const EMOJI_REMOVAL_RULE: TextRule = { ...EMOJI_RULE, plain: false };
/** {@link CONTROL_OR_BIDI} without the three bidirectional marks U+061C, U+200E and U+200F. */
const CONTROL_OR_BIDI_BUT_MARKS = /[\p{Cc}\u202A-\u202E\u2066-\u2069\u2028\u2029]/u;
/** Only dots: "." and ".." are path segments that URL parsing resolves (`.../reactions/..` is the message). */
const ONLY_DOTS = /^\.+$/;

/** What is wrong with an emoji already in NFC, to add (`adding`) or to remove, or undefined. */
function emojiProblem(value: string, adding: boolean): string | undefined {
  const problem = textProblem(value, adding ? EMOJI_RULE : EMOJI_REMOVAL_RULE);
  if (problem !== undefined) return problem;
  if (!adding && CONTROL_OR_BIDI_BUT_MARKS.test(value)) return PLAIN_HINT;
  if (ONLY_DOTS.test(value)) return 'must not be only dots';
  if (adding && !VISIBLE.test(value)) return 'must contain a visible character';
  return undefined;
}

function emojiSchema(adding: boolean) {
  return v.pipe(
    v.string('must be a string'),
    v.rawTransform<string, string>(({ dataset, addIssue, NEVER }) => {
      // An unpaired surrogate stays one through normalization, and textProblem() refuses it.
      const value = dataset.value.normalize('NFC');
      const problem = emojiProblem(value, adding);
      if (problem === undefined) return value;
      addIssue({ message: problem });
      return NEVER;
    }),
  );
}

/**
 * A reaction: normalized to NFC (so a precomposed and a decomposed "é" are one reaction), then 1-16 code points,
 * no whitespace, control or bidirectional-control characters, not only dots, and at least one visible character.
 */
export const EMOJI = emojiSchema(true);
/**
 * A reaction to remove: the same, but for the visible character and the bidirectional marks, which the rules of
 * earlier releases (or an older node in a rolling upgrade) did not all refuse. A reaction stored under them can
 * always be taken back.
 */
export const EMOJI_TO_REMOVE = emojiSchema(false);
const MAX_SEQ = Number.MAX_SAFE_INTEGER;
/** A seq that names a message. */
export const SEQ = int({ min: 1, max: MAX_SEQ });
/** A seq cursor or read marker: 0 means "before the first message". */
export const SEQ_CURSOR = int({ min: 0, max: MAX_SEQ });
/** The same in a path or a query string. */
const SEQ_PARAM = paramInt({ min: 1, max: MAX_SEQ });
const SEQ_CURSOR_PARAM = paramInt({ min: 0, max: MAX_SEQ });

/** History and list pages: 1..200, larger values clamped; absent means 50. */
export const PAGE_LIMIT = { default: 50, max: 200 } as const;
const LIMIT = int({ min: 1, max: PAGE_LIMIT.max, clampMax: true });
const LIMIT_PARAM = paramInt({ min: 1, max: PAGE_LIMIT.max, clampMax: true });
/** Largest group at creation, creator included. */
export const MAX_GROUP_PARTICIPANTS = 1000;
/** The longest `participantIds` a new group's request may list: duplicates and the creator's own id included. */
const MAX_PARTICIPANT_IDS = 2 * MAX_GROUP_PARTICIPANTS;

/**
 * An access token as a client sends it: any string. What it proves is checked by the server, not by the schema: an
 * empty, over-long or bad one is UNAUTHORIZED (verifyToken refuses the first two before any parsing), as at the
 * handshake.
 */
export const ACCESS_TOKEN = v.string('must be a string');
/**
 * A refresh token as a client sends it: any string (an unknown one, too long included, is UNAUTHORIZED, not a
 * validation failure; anything not shaped like one is refused before any query).
 */
const REFRESH_TOKEN = v.string('must be a string');

// ---- Socket.IO client events ----------------------------------------------------------------------------------

const conversationRef = v.object({ conversationId: uuid() });

/** The payload schema of every client event; the event allowlist is this object's keys. */
export const clientEventSchemas = {
  'conversation:subscribe': v.object({
    conversationId: uuid(),
    afterSeq: v.optional(SEQ_CURSOR),
    limit: v.optional(LIMIT),
  }),
  'conversation:unsubscribe': conversationRef,
  'message:send': v.object({
    conversationId: uuid(),
    clientMsgId: CLIENT_MSG_ID,
    body: MESSAGE_BODY,
    replyToSeq: v.optional(v.nullable(SEQ)),
  }),
  'message:edit': v.object({ conversationId: uuid(), seq: SEQ, body: MESSAGE_BODY }),
  'message:delete': v.object({ conversationId: uuid(), seq: SEQ }),
  'reaction:add': v.object({ conversationId: uuid(), seq: SEQ, emoji: EMOJI }),
  'reaction:remove': v.object({ conversationId: uuid(), seq: SEQ, emoji: EMOJI_TO_REMOVE }),
  'conversation:read': v.object({ conversationId: uuid(), seq: SEQ_CURSOR }),
  typing: conversationRef,
  /** A fresh access token of the same user and session: the socket lives on until it expires. */
  'auth:refresh': v.object({ token: ACCESS_TOKEN }),
} as const;

export type ClientEventName = keyof typeof clientEventSchemas;
/** What a client emits with an event. */
export type ClientEventRequest<E extends ClientEventName> = v.InferInput<(typeof clientEventSchemas)[E]>;
/** What the server's handler receives once the payload is parsed. */
export type ClientEventInput<E extends ClientEventName> = v.InferOutput<(typeof clientEventSchemas)[E]>;

// ---- REST bodies and queries ----------------------------------------------------------------------------------

export const restSchemas = {
  signup: v.object({ username: USERNAME, password: NEW_PASSWORD, displayName: v.optional(DISPLAY_NAME) }),
  login: v.object({ username: USERNAME, password: PASSWORD }),
  refresh: v.object({ refreshToken: REFRESH_TOKEN }),
  changePassword: v.object({ currentPassword: PASSWORD, newPassword: NEW_PASSWORD }),
  updateProfile: v.object({ displayName: DISPLAY_NAME }),
  deleteAccount: v.object({ password: PASSWORD }),
  userLookup: v.object({ username: USERNAME }),
  userSearch: v.object({
    q: USERNAME_PREFIX,
    limit: v.optional(paramInt({ min: 1, max: USER_SEARCH_MAX, clampMax: true })),
  }),
  friendRequest: v.object({ username: USERNAME }),
  friendRequestList: v.object({ direction: v.optional(oneOf(['incoming', 'outgoing']), 'incoming') }),
  block: v.object({ userId: uuid() }),
  createConversation: v.variant(
    'type',
    [
      v.object({ type: v.literal('direct'), userId: uuid() }),
      v.object({
        type: v.literal('group'),
        title: GROUP_TITLE,
        // The group's size is checked once duplicates and the creator's own id are dropped (at most
        // MAX_GROUP_PARTICIPANTS - 1 others); the list itself is only bounded.
        participantIds: v.pipe(
          v.array(uuid(), 'must be an array of UUIDs'),
          v.maxLength(MAX_PARTICIPANT_IDS, `must have at most ${MAX_PARTICIPANT_IDS} items`),
        ),
      }),
    ],
    'must be one of: direct, group',
  ),
  conversationList: v.object({
    limit: v.optional(LIMIT_PARAM),
    cursor: v.optional(text({ min: 1, max: 200 })),
  }),
  renameConversation: v.object({ title: GROUP_TITLE }),
  addParticipant: v.object({ userId: uuid() }),
  sendPath: v.object({ clientMsgId: CLIENT_MSG_ID }),
  sendBody: v.object({ body: MESSAGE_BODY, replyToSeq: v.optional(v.nullable(SEQ)) }),
  messagePath: v.object({ seq: SEQ_PARAM }),
  reactionPath: v.object({ seq: SEQ_PARAM, emoji: EMOJI }),
  reactionRemovalPath: v.object({ seq: SEQ_PARAM, emoji: EMOJI_TO_REMOVE }),
  editBody: v.object({ body: MESSAGE_BODY }),
  changes: v.object({ since: SEQ_CURSOR_PARAM, limit: v.optional(LIMIT_PARAM) }),
  history: v.pipe(
    v.object({
      after: v.optional(SEQ_CURSOR_PARAM),
      before: v.optional(SEQ_PARAM),
      limit: v.optional(LIMIT_PARAM),
    }),
    v.forward(
      v.check((q) => q.after === undefined || q.before === undefined, 'cannot be combined with after'),
      ['before'],
    ),
  ),
  read: v.object({ seq: SEQ_CURSOR }),
} as const;

export type RestInput<K extends keyof typeof restSchemas> = v.InferOutput<(typeof restSchemas)[K]>;
