/**
 * The IPC between the bench (parent) and its load-generator process. Plain types only: both sides import this.
 */
import type { LatencySummary } from './stats.js';

/** Socket.IO load against XFChat nodes or the echo server E0. */
export interface SocketJob {
  kind: 'sockets';
  /**
   * 'xfchat' is lib/main.ts, 'echo' bench/echoServer.ts (E0), 'naive' bench/naiveServer.ts (N): the same events
   * and acks, so the generator treats them alike; the bench reads XFChat's /metrics and statement counts.
   */
  target: 'xfchat' | 'echo' | 'naive';
  nodeUrls: string[];
  users: Array<{ id: string; token: string; node: number }>;
  conversations: Array<{ id: string; members: number[] }>;
  /** Closed loop: unacknowledged sends per user. Ignored in open loop. */
  window: number;
  /** Open loop at this many sends per second in total, spread over the users; closed loop when absent. */
  openLoopRate?: number;
  warmupMs: number;
  durationMs: number;
  bodyBytes: number;
  /** An ack slower than this counts as a timeout. */
  ackTimeoutMs: number;
  /** How each send's clientMsgId is made (ClientMsgIdKind). */
  clientMsgIds: ClientMsgIdKind;
}

/**
 * `counter`: "<run>-<user>-<n>", each sender's ids in order within a run; `uuid4`: random UUIDs
 * (`crypto.randomUUID()`); `uuid7`: time-ordered UUIDs from the SDK's own generator (`clientMsgIdSource`), one
 * source per user as each client has its own.
 */
export type ClientMsgIdKind = 'counter' | 'uuid4' | 'uuid7';

/** B1 (one row per statement, autocommit) or B2 (batches of rows per statement) into the messages table. */
export interface StorageJob {
  kind: 'storage';
  databaseUrl: string;
  mode: 'single' | 'batch';
  concurrency: number;
  batchSize: number;
  /** One conversation per worker, so workers never contend on (conversation_id, seq). */
  conversationIds: string[];
  senderId: string;
  warmupMs: number;
  durationMs: number;
  bodyBytes: number;
  /** Statements per second per connection, each started on schedule (open loop); absent: closed loop. */
  openLoopRate?: number;
}

export type Job = SocketJob | StorageJob;

export interface SocketResult {
  kind: 'sockets';
  connectMs: number;
  measuredMs: number;
  sent: number;
  acked: number;
  /** Acks of sends made in the measured window: the numerator of ackRate (which is rounded). */
  measuredAcked: number;
  ackRate: number;
  errors: Record<string, number>;
  timeouts: number;
  ackLatency: LatencySummary;
  /** Send to `message:new` at each other participant. */
  delivery: LatencySummary;
  deliverySameNode: LatencySummary;
  deliveryCrossNode: LatencySummary;
  /** Deliveries expected (other participants of acked messages sent in the window) and those not seen. */
  deliveriesExpected: number;
  deliveriesMissing: number;
  /** Acked seqs per conversation were unique and consecutive. */
  seqGapFree: boolean;
  duplicateAcks: number;
  /**
   * Open loop only: how late the generator itself sent (from each send's intended time to its emit), and each ack
   * from the emit instead of the intended time. Their difference from `ackLatency` is the generator's part.
   */
  openLoop?: { sendLag: LatencySummary; ackFromSend: LatencySummary };
}

export interface StorageResult {
  kind: 'storage';
  measuredMs: number;
  statements: number;
  rows: number;
  rowRate: number;
  /** Per statement (one commit each). */
  commitLatency: LatencySummary;
}

export type JobResult = SocketResult | StorageResult;

export type ParentMessage = { type: 'run'; job: Job };

export type ChildMessage =
  | { type: 'ready' }
  | { type: 'measure-start' }
  | { type: 'measure-end' }
  | { type: 'progress'; done: number; elapsedMs: number; totalMs: number }
  | { type: 'result'; result: JobResult }
  | { type: 'failed'; message: string };
