import { createHmac, hkdfSync, randomBytes } from 'node:crypto';

/** 32 random bytes: 256 bits, beyond any guessing, so a fast keyed hash is the right way to store them. */
const REFRESH_TOKEN_BYTES = 32;
/** base64url of 32 bytes, no padding. */
const REFRESH_TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/;

/** A new opaque refresh token (never a JWT): 32 random bytes, base64url. */
export function newRefreshToken(): string {
  return randomBytes(REFRESH_TOKEN_BYTES).toString('base64url');
}

/** True for a string shaped like a refresh token; anything else is refused without a database look-up. */
export function isRefreshTokenShaped(value: unknown): value is string {
  return typeof value === 'string' && REFRESH_TOKEN_PATTERN.test(value);
}

/** What the database stores of a refresh token: its HMAC-SHA256 (32 bytes). */
export type RefreshTokenHasher = (token: string) => Buffer;

/**
 * HMAC-SHA256 under a key derived from JWT_SECRET with HKDF (its own `info`, so the key is used for nothing
 * else). A stolen copy of the table gives neither usable tokens nor a way to test guesses without the secret.
 * argon2 would add nothing here: it slows down guessing of low-entropy passwords, and these tokens are random.
 * Changing JWT_SECRET therefore ends every session, as it already invalidates every access token.
 */
export function createRefreshTokenHasher(jwtSecret: string): RefreshTokenHasher {
  const key = Buffer.from(hkdfSync('sha256', jwtSecret, 'xfchat', 'xfchat refresh token hash v1', 32));
  return (token) => createHmac('sha256', key).update(token, 'utf8').digest();
}
