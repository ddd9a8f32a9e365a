import { createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * A refresh token: 32 bytes, base64url (43 characters). The first 24 are random (192 bits, beyond any guessing);
 * the last 8 are this cluster's mark on them, an HMAC under a key only JWT_SECRET gives. A token with the mark was
 * issued here; one without it is made up, or was issued by a release before the mark (its 32 bytes all random: such
 * tokens end with their sessions, REFRESH_TTL_DAYS after their last use). The mark lets `POST /auth/refresh` refuse
 * made-up tokens without a query, and so never refuse a client's real token for what others sent from its address.
 */
const REFRESH_TOKEN_BYTES = 32;
const RANDOM_BYTES = 24;
/**
 * base64url of 32 bytes, no padding, as Node writes it: the last character carries 4 bits and 2 unused ones, which
 * are 0. The 3 other spellings of the same bytes are refused as malformed, so that each token has one spelling: one
 * key in the limit on refused refreshes of a token (lib/http/routes/auth.ts), not four.
 */
const REFRESH_TOKEN_PATTERN = /^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/;

/** True for a string shaped like a refresh token; anything else is refused without a database look-up. */
export function isRefreshTokenShaped(value: unknown): value is string {
  return typeof value === 'string' && REFRESH_TOKEN_PATTERN.test(value);
}

/**
 * What a presented refresh token is: `marked` (issued by this cluster: it carries the mark), `unmarked` (shaped
 * like one: made up, or issued before the mark) or `malformed` (refused as it is).
 */
export type RefreshTokenKind = 'marked' | 'unmarked' | 'malformed';

export interface RefreshTokens {
  /** A new token, with the mark. */
  issue(): string;
  /** What the database stores of a token: its HMAC-SHA256 (32 bytes). */
  hash(token: string): Buffer;
  kind(token: string): RefreshTokenKind;
}

/**
 * The tokens of a cluster, keyed by JWT_SECRET through HKDF (an `info` of their own for the stored hash and for the
 * mark, so neither key serves anything else). A stolen copy of the table gives neither usable tokens nor a way to
 * test guesses without the secret; argon2 would add nothing here: it slows down guessing of low-entropy passwords,
 * and these tokens are random. Changing JWT_SECRET therefore ends every session, as it already invalidates every
 * access token.
 */
export function createRefreshTokens(jwtSecret: string): RefreshTokens {
  const key = (info: string) => Buffer.from(hkdfSync('sha256', jwtSecret, 'xfchat', info, 32));
  const hashKey = key('xfchat refresh token hash v1');
  const markKey = key('xfchat refresh token mark v1');
  const mark = (random: Buffer): Buffer =>
    createHmac('sha256', markKey)
      .update(random)
      .digest()
      .subarray(0, REFRESH_TOKEN_BYTES - RANDOM_BYTES);
  return {
    issue() {
      const random = randomBytes(RANDOM_BYTES);
      return Buffer.concat([random, mark(random)]).toString('base64url');
    },
    hash(token) {
      return createHmac('sha256', hashKey).update(token, 'utf8').digest();
    },
    kind(token) {
      if (!isRefreshTokenShaped(token)) return 'malformed';
      const bytes = Buffer.from(token, 'base64url');
      return timingSafeEqual(bytes.subarray(RANDOM_BYTES), mark(bytes.subarray(0, RANDOM_BYTES)))
        ? 'marked'
        : 'unmarked';
    },
  };
}
