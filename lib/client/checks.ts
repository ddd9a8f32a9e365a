import * as v from 'valibot';
import { ERROR_CATALOG } from '../protocol/errors.js';
import { clientEventSchemas, isUuid, type ClientEventName } from '../protocol/schemas.js';
import { XFChatError } from './errors.js';

/**
 * A conversation id as the SDK keys its state by it (subscriptions, send queues) and sends it: a UUID in lower case,
 * as the server stores it and names it in every event and answer (it takes a UUID in any case). Anything else is left
 * as it is, for the checks below (or the server) to refuse.
 */
export function conversationKey(conversationId: string): string {
  return isUuid(conversationId) ? conversationId.toLowerCase() : conversationId;
}

/** The VALIDATION_FAILED of input the SDK refuses itself, before sending anything: status 0 (there was no answer). */
export function localInvalid(details: Record<string, string>): XFChatError {
  return new XFChatError('VALIDATION_FAILED', ERROR_CATALOG.VALIDATION_FAILED.message, {
    status: 0,
    details,
  });
}

/**
 * What the server would answer a client event's payload that its schema (lib/protocol/schemas.ts) refuses: a body of
 * 1-4000 code points with something visible, a conversation id that is a UUID, a seq, an emoji... The
 * VALIDATION_FAILED (`details` naming each failing field with its first problem) with status 0, for nothing was sent;
 * undefined for a payload the server takes.
 *
 * Why check before sending, when the server checks it all the same: a payload past SOCKET_MAX_BYTES (a body of
 * 70,000 characters, a conversation id of 70 KB) is not answered but closes the connection, which the SDK would take
 * for a drop, reconnect, and send again, for ever. What passes these checks fits: the server's SOCKET_MAX_BYTES is at
 * least 32 KiB, and the largest valid event (a send of 4000 control characters) is 24 KB of JSON.
 */
export function payloadProblem(event: ClientEventName, payload: unknown): XFChatError | undefined {
  const result = v.safeParse(clientEventSchemas[event], payload, { abortPipeEarly: true });
  if (result.success) return undefined;
  const details: Record<string, string> = {};
  for (const issue of result.issues) {
    const key = issue.path?.[0]?.key;
    const missing = issue.type === 'object' && issue.input === undefined && issue.path?.length === 1;
    details[typeof key === 'string' ? key : 'payload'] ??= missing ? 'is required' : issue.message;
  }
  return localInvalid(details);
}

/** Throws the {@link payloadProblem} of a payload the server would refuse. */
export function checkPayload(event: ClientEventName, payload: unknown): void {
  const problem = payloadProblem(event, payload);
  if (problem !== undefined) throw problem;
}
