import * as v from 'valibot';
import { AppError } from './errors.js';
import { isUuid } from './protocol/schemas.js';

/**
 * The refusal of a body or payload that is JSON but not an object (`null`, an array, a string, a number), from the
 * JSON parser (lib/http/errorMiddleware.ts) or from `parse()`: one answer whichever finds it. `cause`, for the log.
 */
export function notAJsonObject(cause?: unknown): AppError {
  return new AppError('VALIDATION_FAILED', {
    message: 'The request body must be a JSON object.',
    details: { body: 'must be a JSON object' },
    cause,
  });
}

/**
 * Parses client input (a REST body or query, a Socket.IO payload) with its schema. Anything that is not a JSON
 * object is refused as a whole (`details: {body}` alone); otherwise every field is checked and one VALIDATION_FAILED names each failing
 * field with its first problem (`details: {field: problem}`).
 */
export function parse<S extends v.GenericSchema>(schema: S, input: unknown): v.InferOutput<S> {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    // As the JSON parser refuses `null`, a string or a number (lib/http/errorMiddleware.ts); an array passes it.
    throw notAJsonObject();
  }
  const result = v.safeParse(schema, input, { abortPipeEarly: true });
  if (result.success) return result.output;
  const details: Record<string, string> = {};
  for (const issue of result.issues ?? []) {
    const key = issue.path?.[0]?.key;
    // A key the object lacks: valibot says "Invalid key: Expected ... but received undefined" (an object's key),
    // or gives the variant's own message (its discriminator, as `type` of POST /conversations).
    const missing =
      (issue.type === 'object' || issue.type === 'variant') &&
      issue.input === undefined &&
      issue.path?.length === 1;
    details[typeof key === 'string' ? key : 'body'] ??= missing ? 'is required' : issue.message;
  }
  throw new AppError('VALIDATION_FAILED', { details });
}

/** A path id that is not a UUID names nothing: 404, the same as an id that does not exist. */
export function pathId(value: unknown): string {
  if (!isUuid(value)) throw new AppError('NOT_FOUND');
  return value.toLowerCase();
}
