import { AppError } from '../errors.js';

/**
 * Field checks that collect every problem, then throw one VALIDATION_FAILED whose `details` names each field.
 * Used by REST routes and Socket.IO handlers alike (payloads of any shape arrive here as `unknown`).
 */
export interface StringRule {
  min: number;
  max: number;
  pattern?: RegExp;
  patternHint?: string;
  /** Refuse a value that is only whitespace. */
  notBlank?: boolean;
  optional?: boolean;
}

export class Validator {
  private readonly problems: Record<string, string> = {};
  private readonly source: Record<string, unknown>;

  constructor(input: unknown) {
    this.source =
      typeof input === 'object' && input !== null && !Array.isArray(input)
        ? (input as Record<string, unknown>)
        : {};
    if (this.source !== input) this.problems.body = 'must be a JSON object';
  }

  private fail(field: string, problem: string): undefined {
    this.problems[field] ??= problem;
    return undefined;
  }

  /** A string of `min`..`max` characters (Unicode code points), optionally matching `pattern`. */
  string(field: string, rule: StringRule): string | undefined {
    const value = this.source[field];
    if (value === undefined && rule.optional) return undefined;
    if (typeof value !== 'string') return this.fail(field, 'must be a string');
    // Every string ends up in a PostgreSQL text column, which cannot hold NUL: refuse it for every field here
    // rather than as a 500 from the driver (a displayName with NUL did exactly that).
    if (!STORABLE_TEXT.test(value)) return this.fail(field, STORABLE_HINT);
    const length = [...value].length;
    if (length < rule.min || length > rule.max)
      return this.fail(field, `must be ${rule.min}-${rule.max} characters`);
    if (rule.pattern && !rule.pattern.test(value))
      return this.fail(field, rule.patternHint ?? 'has invalid characters');
    if (rule.notBlank && value.trim() === '') return this.fail(field, 'must not be only whitespace');
    return value;
  }

  /** A whole number in `min`..`max`; with `clampMax`, larger values are clamped instead of refused. */
  int(
    field: string,
    rule: { min: number; max: number; optional?: boolean; clampMax?: boolean },
  ): number | undefined {
    const raw = this.source[field];
    if (raw === undefined && rule.optional) return undefined;
    const value = typeof raw === 'string' && /^-?\d{1,16}$/.test(raw) ? Number(raw) : raw;
    if (typeof value !== 'number' || !Number.isSafeInteger(value))
      return this.fail(field, 'must be a whole number');
    if (value < rule.min) return this.fail(field, `must be at least ${rule.min}`);
    if (value > rule.max) return rule.clampMax ? rule.max : this.fail(field, `must be at most ${rule.max}`);
    return value;
  }

  /** An array of UUIDs (lower-cased, duplicates kept) of at most `max` items. */
  uuidList(field: string, rule: { max: number }): string[] | undefined {
    const value = this.source[field];
    if (!Array.isArray(value)) return this.fail(field, 'must be an array of UUIDs');
    if (value.length > rule.max) return this.fail(field, `must have at most ${rule.max} items`);
    if (!value.every(isUuid)) return this.fail(field, 'must be an array of UUIDs');
    return value.map((id: string) => id.toLowerCase());
  }

  uuid(field: string): string | undefined {
    const value = this.source[field];
    if (typeof value !== 'string' || !isUuid(value)) return this.fail(field, 'must be a UUID');
    return value.toLowerCase();
  }

  /** One of `allowed` (exact match); `fallback` when the field is absent, if one is given. */
  oneOf<T extends string>(field: string, allowed: readonly T[], fallback?: T): T | undefined {
    const value = this.source[field];
    if (value === undefined && fallback !== undefined) return fallback;
    if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value))
      return this.fail(field, `must be one of: ${allowed.join(', ')}`);
    return value as T;
  }

  /** Throws VALIDATION_FAILED if any check failed. */
  done(): void {
    if (Object.keys(this.problems).length > 0)
      throw new AppError('VALIDATION_FAILED', { details: this.problems });
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(value: unknown): value is string {
  return typeof value === 'string' && UUID.test(value);
}

/** A path id that is not a UUID names nothing: 404, the same as an id that does not exist. */
export function pathId(value: unknown): string {
  if (!isUuid(value)) throw new AppError('NOT_FOUND');
  return value.toLowerCase();
}

export const USERNAME = {
  min: 3,
  max: 32,
  pattern: /^[A-Za-z0-9_.-]+$/,
  patternHint: 'may contain only A-Z a-z 0-9 _ . -',
};
export const CLIENT_MSG_ID = {
  min: 1,
  max: 64,
  pattern: /^[A-Za-z0-9_-]+$/,
  patternHint: 'may contain only A-Z a-z 0-9 _ -',
};
/** PostgreSQL text cannot hold NUL, and an unpaired surrogate would not come back as sent: refuse both up front. */
// eslint-disable-next-line no-control-regex -- NUL is exactly the character being refused.
const STORABLE_TEXT = /^[^\u0000\p{Cs}]*$/u;
const STORABLE_HINT = 'must not contain NUL or unpaired surrogate characters';
export const MESSAGE_BODY = {
  min: 1,
  max: 4000,
  notBlank: true,
  pattern: STORABLE_TEXT,
  patternHint: STORABLE_HINT,
};
export const GROUP_TITLE = {
  min: 1,
  max: 100,
  notBlank: true,
  pattern: STORABLE_TEXT,
  patternHint: STORABLE_HINT,
};
