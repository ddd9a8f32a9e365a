/**
 * What the server and its clients share: the error catalog (data), the JSON shapes, the Socket.IO events and the
 * request types derived from the input schemas. The SDK imports this module's types and the catalog only.
 */
export { ERROR_CATALOG, type ErrorBody, type ErrorCode } from './errors.js';
export type * from './shapes.js';
export type * from './events.js';
export type { ClientEventInput, ClientEventName, ClientEventRequest, RestInput } from './schemas.js';
