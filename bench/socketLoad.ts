import { io, type Socket } from 'socket.io-client';
import type {
  Ack,
  ClientToServerEvents,
  PublicMessage,
  SendRequest,
  SendResult,
  ServerToClientEvents,
  SubscribeRequest,
  SubscribeResult,
} from '../lib/protocol/index.js';
import { clientMsgIdSource } from '../lib/client/retry.js';
import type { ChildMessage, ClientMsgIdKind, SocketJob, SocketResult } from './loadProtocol.js';
import { startPhaseClock } from './phaseClock.js';
import { summarize } from './stats.js';

export type ClientSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

/** Makes each send's clientMsgId, new in every phase: a reused one is (rightly) answered as a duplicate. */
function clientMsgIdsOf(kind: ClientMsgIdKind, users: number): (user: number) => string {
  if (kind === 'uuid4') return () => crypto.randomUUID();
  if (kind === 'uuid7') {
    const sources = Array.from({ length: users }, () => clientMsgIdSource());
    return (user) => sources[user]!();
  }
  const runTag = Math.random().toString(36).slice(2, 10);
  let counter = 0;
  return (user) => `${runTag}-${user}-${++counter}`;
}

/** In-flight send, keyed by its clientMsgId (unique within a run: see ClientMsgIdKind). */
interface InFlight {
  sentAt: number;
  sender: number;
  measured: boolean;
  acked: boolean;
  /** Other participants: each gets one `message:new`. */
  expectedDeliveries: number;
  remainingDeliveries: number;
}

/** Connections opened at once: a burst of 1000 handshakes would measure the accept queue, not the server. */
const CONNECT_CONCURRENCY = 50;
const PROGRESS_INTERVAL_MS = 250;
/** Open-loop scheduler tick: fine enough that sends are not bunched into visible bursts. */
const OPEN_LOOP_TICK_MS = 2;

/** `conversation:subscribe` with its ack; rejects when no ack comes within `timeoutMs`. */
export async function subscribe(
  socket: ClientSocket,
  request: SubscribeRequest,
  timeoutMs: number,
): Promise<Ack<SubscribeResult>> {
  // socket.io-client types emitWithAck's result loosely once timeout() decorates the socket.
  return (await socket
    .timeout(timeoutMs)
    .emitWithAck('conversation:subscribe', request)) as Ack<SubscribeResult>;
}

/** `message:send` with its ack; rejects when no ack comes within `timeoutMs`. */
export async function sendMessage(
  socket: ClientSocket,
  request: SendRequest,
  timeoutMs: number,
): Promise<Ack<SendResult>> {
  return (await socket.timeout(timeoutMs).emitWithAck('message:send', request)) as Ack<SendResult>;
}

/** A websocket-only socket.io-client, connected; rejects with the connect_error. */
export function connect(url: string, token: string, userId: string): Promise<ClientSocket> {
  const socket: ClientSocket = io(url, {
    // userId is for the echo server E0, which has no database to look the token up in; XFChat ignores it.
    auth: { token, userId },
    transports: ['websocket'],
    reconnection: false,
    forceNew: true,
  });
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', (err) => {
      socket.close();
      reject(new Error(`connect to ${url} failed: ${err.message}`));
    });
  });
}

async function connectAll(job: SocketJob): Promise<ClientSocket[]> {
  const sockets: ClientSocket[] = new Array<ClientSocket>(job.users.length);
  for (let i = 0; i < job.users.length; i += CONNECT_CONCURRENCY) {
    await Promise.all(
      job.users.slice(i, i + CONNECT_CONCURRENCY).map(async (user, k) => {
        const url = job.nodeUrls[user.node];
        if (url === undefined) throw new Error(`user ${i + k} is on node ${user.node}, which does not exist`);
        sockets[i + k] = await connect(url, user.token, user.id);
      }),
    );
  }
  return sockets;
}

async function subscribeAll(job: SocketJob, sockets: ClientSocket[]): Promise<void> {
  await Promise.all(
    job.conversations.flatMap((conversation) =>
      conversation.members.map(async (member) => {
        const ack = await subscribe(
          sockets[member]!,
          { conversationId: conversation.id, limit: 1 },
          job.ackTimeoutMs,
        );
        if (!ack.ok) throw new Error(`subscribe failed: ${ack.error.code} ${ack.error.message}`);
      }),
    ),
  );
}

/** True when every conversation's acked seqs are distinct and consecutive. */
function gapFree(seqsByConversation: Map<string, number[]>): boolean {
  for (const seqs of seqsByConversation.values()) {
    seqs.sort((a, b) => a - b);
    for (let i = 1; i < seqs.length; i++) if (seqs[i] !== seqs[i - 1]! + 1) return false;
  }
  return true;
}

/**
 * Runs one Socket.IO load phase: connect every user, subscribe them, then send for warm-up + duration in a
 * closed loop (each user keeps `window` sends unacknowledged) or an open loop (a fixed total rate, latency from
 * the intended send time so a stalled server cannot hide its queueing), then drain and report.
 */
export async function runSocketJob(
  job: SocketJob,
  post: (message: ChildMessage) => void,
): Promise<SocketResult> {
  const connectStarted = performance.now();
  const sockets = await connectAll(job);
  try {
    await subscribeAll(job, sockets);
    const connectMs = performance.now() - connectStarted;
    const membersOf = new Map(job.conversations.map((c) => [c.id, c.members]));
    const conversationsOf: string[][] = job.users.map(() => []);
    for (const c of job.conversations) for (const m of c.members) conversationsOf[m]!.push(c.id);
    const nextConversation = new Array<number>(job.users.length).fill(0);
    const body = 'x'.repeat(job.bodyBytes);

    const inFlight = new Map<string, InFlight>();
    const ackLatencies: number[] = [];
    const openLoop = job.openLoopRate !== undefined;
    const sendLags: number[] = [];
    const acksFromSend: number[] = [];
    const deliveries: number[] = [];
    const sameNode: number[] = [];
    const crossNode: number[] = [];
    const errors: Record<string, number> = {};
    const seqs = new Map<string, number[]>();
    const newClientMsgId = clientMsgIdsOf(job.clientMsgIds, job.users.length);
    let sent = 0;
    let acked = 0;
    let measuredAcked = 0;
    let timeouts = 0;
    let duplicateAcks = 0;
    let deliveriesExpected = 0;

    const start = performance.now();
    const measureStart = start + job.warmupMs;
    const measureEnd = measureStart + job.durationMs;
    let sending = true;

    const settle = (id: string, entry: InFlight) => {
      if (entry.acked && entry.remainingDeliveries <= 0) inFlight.delete(id);
    };

    sockets.forEach((socket, receiver) => {
      socket.on('message:new', (message: PublicMessage) => {
        if (message.senderId === job.users[receiver]!.id) return;
        const entry = inFlight.get(message.clientMsgId);
        if (!entry) return;
        entry.remainingDeliveries--;
        if (entry.measured) {
          const latency = performance.now() - entry.sentAt;
          deliveries.push(latency);
          (job.users[entry.sender]!.node === job.users[receiver]!.node ? sameNode : crossNode).push(latency);
        }
        settle(message.clientMsgId, entry);
      });
    });

    const send = (user: number, intendedAt: number) => {
      const conversations = conversationsOf[user]!;
      const conversationId = conversations[nextConversation[user]! % conversations.length]!;
      nextConversation[user]!++;
      const clientMsgId = newClientMsgId(user);
      const measured = intendedAt >= measureStart && intendedAt < measureEnd;
      const others = (membersOf.get(conversationId)?.length ?? 1) - 1;
      const entry: InFlight = {
        sentAt: intendedAt,
        sender: user,
        measured,
        acked: false,
        expectedDeliveries: others,
        remainingDeliveries: others,
      };
      inFlight.set(clientMsgId, entry);
      sent++;
      const emittedAt = performance.now();
      if (measured && openLoop) sendLags.push(emittedAt - intendedAt);
      sockets[user]!.timeout(job.ackTimeoutMs).emit(
        'message:send',
        { conversationId, clientMsgId, body },
        (err, ack) => {
          if (err) {
            timeouts++;
            inFlight.delete(clientMsgId);
          } else if (!ack.ok) {
            errors[ack.error.code] = (errors[ack.error.code] ?? 0) + 1;
            inFlight.delete(clientMsgId);
          } else {
            acked++;
            entry.acked = true;
            if (ack.duplicate) duplicateAcks++;
            const list = seqs.get(conversationId) ?? [];
            list.push(ack.message.seq);
            seqs.set(conversationId, list);
            if (measured) {
              measuredAcked++;
              const now = performance.now();
              ackLatencies.push(now - intendedAt);
              if (openLoop) acksFromSend.push(now - emittedAt);
              deliveriesExpected += entry.expectedDeliveries;
            }
            settle(clientMsgId, entry);
          }
          if (!openLoop && sending) send(user, performance.now());
        },
      );
    };

    const progress = setInterval(() => {
      post({
        type: 'progress',
        done: acked,
        elapsedMs: performance.now() - start,
        totalMs: measureEnd - start,
      });
    }, PROGRESS_INTERVAL_MS);
    const clock = startPhaseClock(post, job.warmupMs, job.durationMs);

    let ticker: NodeJS.Timeout | undefined;
    if (job.openLoopRate === undefined) {
      for (let w = 0; w < job.window; w++)
        for (let u = 0; u < job.users.length; u++) send(u, performance.now());
    } else {
      const rate = job.openLoopRate;
      let scheduled = 0;
      let nextUser = 0;
      ticker = setInterval(() => {
        // Send k is due at start + k / rate: sends 0..due-1 are due now.
        const due = Math.floor(((performance.now() - start) * rate) / 1000) + 1;
        for (; scheduled < due; scheduled++) {
          send(nextUser, start + (scheduled * 1000) / rate);
          nextUser = (nextUser + 1) % job.users.length;
        }
      }, OPEN_LOOP_TICK_MS);
    }

    await clock.ended;
    sending = false;
    clearInterval(ticker);
    // Drain: every send gets its ack (or times out) and every delivery arrives, or the deadline passes.
    const drainDeadline = performance.now() + job.ackTimeoutMs + 1000;
    while (inFlight.size > 0 && performance.now() < drainDeadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    clearInterval(progress);

    let deliveriesMissing = 0;
    for (const entry of inFlight.values())
      if (entry.measured && entry.acked) deliveriesMissing += entry.remainingDeliveries;
    return {
      kind: 'sockets',
      connectMs: Math.round(connectMs),
      measuredMs: job.durationMs,
      sent,
      acked,
      measuredAcked,
      ackRate: Math.round((measuredAcked * 1000) / job.durationMs),
      errors,
      timeouts,
      ackLatency: summarize(ackLatencies),
      delivery: summarize(deliveries),
      deliverySameNode: summarize(sameNode),
      deliveryCrossNode: summarize(crossNode),
      deliveriesExpected,
      deliveriesMissing,
      seqGapFree: gapFree(seqs),
      duplicateAcks,
      ...(openLoop
        ? { openLoop: { sendLag: summarize(sendLags), ackFromSend: summarize(acksFromSend) } }
        : {}),
    };
  } finally {
    for (const socket of sockets) socket?.close();
  }
}
