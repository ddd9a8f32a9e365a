/**
 * The one catalog of error codes, as data: the server throws these (lib/errors.ts), the SDK maps them, and the
 * documentation is checked against them (test/fast/docs.test.ts). Importing this file pulls in no code.
 */
export const ERROR_CATALOG = {
  VALIDATION_FAILED: { status: 400, message: 'The request is invalid.' },
  CANNOT_FRIEND_SELF: { status: 400, message: 'You cannot send a friend request to yourself.' },
  UNAUTHORIZED: { status: 401, message: 'Authentication is required.' },
  INVALID_CREDENTIALS: { status: 401, message: 'Invalid username or password.' },
  FORBIDDEN: { status: 403, message: 'You are not allowed to do this.' },
  NOT_FRIENDS: { status: 403, message: 'This needs an accepted friendship.' },
  BLOCKED: { status: 403, message: 'One of you has blocked the other.' },
  NOT_FOUND: { status: 404, message: 'Not found.' },
  USER_NOT_FOUND: { status: 404, message: 'No such user.' },
  USERNAME_TAKEN: { status: 409, message: 'That username is taken.' },
  ALREADY_FRIENDS: { status: 409, message: 'You are already friends.' },
  REQUEST_EXISTS: { status: 409, message: 'A pending friend request already exists.' },
  REQUEST_NOT_PENDING: { status: 409, message: 'The friend request is no longer pending.' },
  ALREADY_PARTICIPANT: { status: 409, message: 'The user is already a participant.' },
  IDEMPOTENCY_CONFLICT: {
    status: 409,
    message: 'A different message was already sent with this clientMsgId.',
  },
  MESSAGE_DELETED: { status: 409, message: 'The message was deleted.' },
  REQUEST_TIMEOUT: { status: 408, message: 'The request did not arrive whole in time.' },
  PAYLOAD_TOO_LARGE: { status: 413, message: 'The request body is too large.' },
  UNSUPPORTED_MEDIA_TYPE: {
    status: 415,
    message: 'The request body is in an unsupported encoding or character set.',
  },
  RATE_LIMITED: { status: 429, message: 'Too many requests; retry later.' },
  INTERNAL: { status: 500, message: 'Internal error.' },
  DB_UNAVAILABLE: { status: 503, message: 'The database is unavailable; retry later.' },
  OVERLOADED: { status: 503, message: 'The conversation is overloaded; retry later.' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof ERROR_CATALOG;

/** The `error` of every failed REST response and Socket.IO ack. */
export interface ErrorBody {
  code: ErrorCode;
  message: string;
  details?: unknown;
}
