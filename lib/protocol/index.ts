/**
 * What the server and its clients share: the error catalog (data), the JSON shapes, the Socket.IO events and the
 * request types derived from the input schemas. The SDK imports this module's types and the catalog, and checks
 * what it sends on the socket with the socket events' schemas themselves (lib/client/checks.ts imports schemas.ts):
 * a payload the server would refuse is refused before it is sent, by the very same rules.
 */
export { ERROR_CATALOG, type ErrorBody, type ErrorCode } from './errors.js';
export type * from './shapes.js';
export type * from './events.js';
export type { ClientEventInput, ClientEventName, ClientEventRequest, RestInput } from './schemas.js';
