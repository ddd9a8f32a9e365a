import type { Knex } from 'knex';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { sqlState, toAppError, type ErrorCode } from './errors.js';

/** The app pool's connections, read from knex's tarn pool at scrape time. */
export interface PoolStats {
  /** Connections checked out by a query or transaction. */
  used: number;
  /** Open connections waiting in the pool. */
  free: number;
  /** Callers waiting for a connection: anything above 0 for long means the pool is too small or the DB slow. */
  pending: number;
}

/** Values a gauge reads when Prometheus scrapes, instead of being set on every change. */
export type GaugeSource = () => number;

export type SampledGauge =
  'mailboxDepth' | 'liveActors' | 'connectedSockets' | 'writeConcurrency' | 'clockOffset' | 'dbStalled';

/**
 * How a send or change was answered: `ok`; `refused`, the client's own mistake or a rule (a 4xx code of the
 * catalog: VALIDATION_FAILED, FORBIDDEN, BLOCKED, NOT_FOUND, IDEMPOTENCY_CONFLICT, MESSAGE_DELETED,
 * RATE_LIMITED...); `error`, the server could not do it (a 5xx code: INTERNAL, DB_UNAVAILABLE, OVERLOADED).
 */
export type AckOutcome = 'ok' | 'refused' | 'error';

/**
 * The catalog code a client gets for this failure, as the handlers make it (`toAppError()`): its own for an
 * AppError, `DB_UNAVAILABLE` for a database that does not answer, `INTERNAL` for anything else.
 */
export function failureCode(err: unknown): ErrorCode {
  return toAppError(err).code;
}

/** Whose failure it is: `refused` for the catalog's 4xx codes, `error` for its 5xx codes. */
export function failureOutcome(err: unknown): Exclude<AckOutcome, 'ok'> {
  return toAppError(err).status < 500 ? 'refused' : 'error';
}

/**
 * Every instrument of one server node, in a registry of its own: two nodes in one process (tests) never share
 * or clash. Recording points are plain prom-client calls, e.g. `metrics.messagesPersisted.inc(n)`.
 */
export interface Metrics {
  readonly registry: Registry;
  /**
   * New messages committed to PostgreSQL: sends that created a message. Neither a repeated clientMsgId nor a
   * change (an edit, a delete, a reaction added or removed) counts.
   */
  readonly messagesPersisted: Counter;
  /**
   * Seconds from a send or change being accepted into a mailbox to its answer, by {@link AckOutcome}. Those
   * refused before a mailbox are in `sendsRejected` instead.
   */
  readonly ackLatency: Histogram<'outcome'>;
  /**
   * Commands (sends and changes) per group commit that committed, each one it answered: duplicates and
   * refusals (FORBIDDEN, MESSAGE_DELETED...) included.
   */
  readonly batchSize: Histogram;
  /**
   * Sends and changes refused before they entered a mailbox (the user's rate limit, not a participant, a full
   * or draining mailbox, the database away for the membership check), by the code the client got and its
   * outcome.
   */
  readonly sendsRejected: Counter<'code' | 'outcome'>;
  /** Commands queued across this node's mailboxes. */
  readonly mailboxDepth: Gauge;
  /** Conversation actors alive on this node. */
  readonly liveActors: Gauge;
  /** Socket.IO connections on this node. */
  readonly connectedSockets: Gauge;
  /** Group commits the writer allows at once right now (it adapts to PostgreSQL's load). */
  readonly writeConcurrency: Gauge;
  /** PostgreSQL's clock minus this node's, in seconds, as last measured. */
  readonly clockOffset: Gauge;
  /** 1 while PostgreSQL is taken as not answering (lib/dbStall.ts), else 0. */
  readonly dbStalled: Gauge;
  /** Failed queries and connection attempts, by SQLSTATE or socket error code. */
  readonly dbErrors: Counter<'code'>;
  /** Queries slower than SLOW_QUERY_MS. */
  readonly slowQueries: Counter;
  readonly httpRequests: Counter<'method' | 'route' | 'status'>;
  readonly httpDuration: Histogram<'method' | 'route' | 'status'>;
  /**
   * Records one group commit that committed: the commands it answered, `persisted` new messages (sends that
   * created one), `busy` batches it skipped.
   */
  observeBatch(size: number, persisted?: number, busy?: number): void;
  /** Counts a group commit started beside running ones that were all held up (see xfchat_write_held_up_total). */
  observeHeldUpStart(): void;
  /** Records one answer; `startedAt`: the `performance.now()` when the send or change entered a mailbox. */
  observeAck(startedAt: number, outcome?: AckOutcome): void;
  /** Counts a send or change refused before it entered a mailbox, under the code its client got. */
  observeRejected(err: unknown): void;
  /** Counts a database error under its code. */
  recordDbError(err: unknown): void;
  /** Makes a gauge read `source` at every scrape (e.g. the registry's live actor count). */
  sample(gauge: SampledGauge, source: GaugeSource): void;
  /** Reads the app pool's gauges from this knex at every scrape; also counts its connect and acquire failures. */
  observePool(knex: Knex): void;
  /** The Prometheus text exposition. */
  render(): Promise<{ contentType: string; body: string }>;
  /** Drops every instrument; idempotent. */
  close(): void;
}

/** Seconds: an ack is normally a few milliseconds; the tail shows pool waits and slow commits. */
const ACK_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const BATCH_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500];
const HTTP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Labels stay bounded: a SQLSTATE (5 chars) or an errno name; anything else is "other". */
function errorCodeLabel(err: unknown): string {
  if (typeof err === 'object' && err !== null && (err as { name?: unknown }).name === 'KnexTimeoutError')
    return 'POOL_TIMEOUT';
  const state = sqlState(err);
  if (state !== undefined) return state;
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  if (typeof code === 'string' && /^E[A-Z_]{2,30}$/.test(code)) return code;
  return 'other';
}

interface TarnPool {
  numUsed(): number;
  numFree(): number;
  numPendingAcquires(): number;
  on(event: 'createFail' | 'acquireFail', listener: (eventId: number, err: unknown) => void): void;
}

/** knex keeps its tarn pool on `client.pool`; it is undefined after destroy(). */
function tarnPool(knex: Knex): TarnPool | undefined {
  return (knex.client as { pool?: TarnPool }).pool;
}

/** Builds a node's registry and instruments, with the default process metrics (CPU, memory, GC, event loop). */
export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'xfchat_' });
  const sources = new Map<SampledGauge, GaugeSource>();
  let pool: (() => PoolStats | undefined) | undefined;

  const sampled = (key: SampledGauge, name: string, help: string): Gauge =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        const source = sources.get(key);
        if (source) this.set(source());
      },
    });

  const poolGauge = (name: string, help: string, read: (s: PoolStats) => number): Gauge =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        const stats = pool?.();
        if (stats) this.set(read(stats));
      },
    });

  const messagesPersisted = new Counter({
    name: 'xfchat_messages_persisted_total',
    help: 'New messages committed to PostgreSQL: sends that created a message (not repeats of a clientMsgId, not edits, deletes or reactions).',
    registers: [registry],
  });
  const ackLatency = new Histogram({
    name: 'xfchat_ack_latency_seconds',
    help: "From a send or change accepted into a mailbox to its answer; outcome: ok, refused (a 4xx code: the client's mistake or a rule), error (a 5xx code: the server could not do it).",
    labelNames: ['outcome'] as const,
    buckets: ACK_BUCKETS,
    registers: [registry],
  });
  const batchSize = new Histogram({
    name: 'xfchat_batch_size',
    help: 'Commands (sends and changes) answered by one group commit that committed, duplicates and refused ones included.',
    buckets: BATCH_BUCKETS,
    registers: [registry],
  });
  const sendsRejected = new Counter({
    name: 'xfchat_sends_rejected_total',
    help: 'Sends and changes refused before they entered a mailbox (rate limit, not a participant, mailbox full or draining, database away), by error code; outcome: refused (4xx) or error (5xx).',
    labelNames: ['code', 'outcome'] as const,
    registers: [registry],
  });
  const busyBatches = new Counter({
    name: 'xfchat_write_busy_total',
    help: 'Conversation batches a group commit skipped because another transaction held the conversation (another node, a membership change); each is written again by a transaction that waits.',
    registers: [registry],
  });
  const heldUpStarts = new Counter({
    name: 'xfchat_write_held_up_total',
    help: 'Group commits started beside running ones that had all taken three times a usual commit (a stalled WAL flush, a database host short of CPU), instead of after them.',
    registers: [registry],
  });
  const dbErrors = new Counter({
    name: 'xfchat_db_errors_total',
    help: 'Failed queries and connection attempts, by SQLSTATE or socket error code.',
    labelNames: ['code'] as const,
    registers: [registry],
  });

  const metrics: Metrics = {
    registry,
    messagesPersisted,
    ackLatency,
    batchSize,
    sendsRejected,
    mailboxDepth: sampled(
      'mailboxDepth',
      'xfchat_mailbox_depth',
      'Commands queued in mailboxes on this node.',
    ),
    liveActors: sampled('liveActors', 'xfchat_live_actors', 'Conversation actors alive on this node.'),
    connectedSockets: sampled(
      'connectedSockets',
      'xfchat_connected_sockets',
      'Socket.IO connections on this node.',
    ),
    writeConcurrency: sampled(
      'writeConcurrency',
      'xfchat_write_concurrency',
      'Group commits the writer allows at once (adapted to the load, at most DB_WRITE_CONCURRENCY).',
    ),
    clockOffset: sampled(
      'clockOffset',
      'xfchat_clock_offset_seconds',
      "PostgreSQL's clock minus this node's, as last measured (the node uses PostgreSQL's for tokens and limits).",
    ),
    dbStalled: sampled(
      'dbStalled',
      'xfchat_db_stalled',
      'Whether PostgreSQL is taken as not answering: 1 while the node answers DB_UNAVAILABLE at once, else 0.',
    ),
    dbErrors,
    slowQueries: new Counter({
      name: 'xfchat_db_slow_queries_total',
      help: 'Queries slower than SLOW_QUERY_MS.',
      registers: [registry],
    }),
    httpRequests: new Counter({
      name: 'xfchat_http_requests_total',
      help: 'HTTP requests by matched route pattern and status.',
      labelNames: ['method', 'route', 'status'] as const,
      registers: [registry],
    }),
    httpDuration: new Histogram({
      name: 'xfchat_http_request_duration_seconds',
      help: 'HTTP request duration by matched route pattern and status.',
      labelNames: ['method', 'route', 'status'] as const,
      buckets: HTTP_BUCKETS,
      registers: [registry],
    }),
    observeBatch(size, persisted = size, busy = 0) {
      if (size > 0) batchSize.observe(size);
      if (persisted > 0) messagesPersisted.inc(persisted);
      if (busy > 0) busyBatches.inc(busy);
    },
    observeHeldUpStart() {
      heldUpStarts.inc();
    },
    observeAck(startedAt, outcome = 'ok') {
      ackLatency.observe({ outcome }, (performance.now() - startedAt) / 1000);
    },
    observeRejected(err) {
      sendsRejected.inc({ code: failureCode(err), outcome: failureOutcome(err) });
    },
    recordDbError(err) {
      dbErrors.inc({ code: errorCodeLabel(err) });
    },
    sample(gauge, source) {
      sources.set(gauge, source);
    },
    observePool(knex) {
      pool = () => {
        const p = tarnPool(knex);
        return p ? { used: p.numUsed(), free: p.numFree(), pending: p.numPendingAcquires() } : undefined;
      };
      const p = tarnPool(knex);
      // Connection failures never reach knex's query-error event: count them where the pool sees them.
      p?.on('createFail', (_id, err) => metrics.recordDbError(err));
      // An acquire also fails with the create error, already counted above: only count its timeouts.
      p?.on('acquireFail', (_id, err) => {
        if (err instanceof Error && err.constructor.name === 'TimeoutError')
          dbErrors.inc({ code: 'POOL_TIMEOUT' });
      });
    },
    async render() {
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
    close() {
      sources.clear();
      pool = undefined;
      registry.clear();
    },
  };

  poolGauge('xfchat_db_pool_total', 'Open connections of the app pool.', (s) => s.used + s.free);
  poolGauge('xfchat_db_pool_idle', 'Idle connections of the app pool.', (s) => s.free);
  poolGauge('xfchat_db_pool_used', 'Connections of the app pool in use.', (s) => s.used);
  poolGauge('xfchat_db_pool_waiting', 'Callers waiting for an app pool connection.', (s) => s.pending);
  return metrics;
}
