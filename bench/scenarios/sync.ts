import type { BenchContext } from '../context.js';
import { statementCount } from '../database.js';
import type { PublicMessage } from '../../lib/protocol/index.js';
import type { SyncPass } from '../report.js';
import { seedConversations } from '../seed.js';
import { connect, sendMessage, subscribe, type ClientSocket } from '../socketLoad.js';

const PAGE = 200;
/** Sends kept in flight while growing the conversation: fast, and still one actor's ordinary load. */
const GROW_WINDOW = 20;

async function grow(socket: ClientSocket, conversationId: string, total: number): Promise<void> {
  let started = 0;
  let failed = 0;
  const body = 'history '.repeat(8).trim();
  const one = async (): Promise<void> => {
    while (started < total) {
      const n = ++started;
      const ack = await sendMessage(socket, { conversationId, clientMsgId: `sync-${n}`, body }, 15_000);
      if (!ack.ok && ++failed > 10) throw new Error(`growing the conversation failed: ${ack.error.code}`);
    }
  };
  await Promise.all(Array.from({ length: GROW_WINDOW }, one));
}

function gapFree(messages: readonly PublicMessage[]): boolean {
  return messages.every((m, i) => m.seq === i + 1);
}

async function measured(
  ctx: BenchContext,
  pass: () => Promise<{ pages: number; messages: PublicMessage[] }>,
): Promise<SyncPass> {
  const before = await statementCount(ctx.database);
  const t0 = performance.now();
  const { pages, messages } = await pass();
  const ms = performance.now() - t0;
  const after = await statementCount(ctx.database);
  return {
    ms: Math.round(ms),
    pages,
    messages: messages.length,
    // Minus the counting query itself.
    statements: before === undefined || after === undefined ? null : after - before - 1,
    gapFree: gapFree(messages),
  };
}

const failure = (err: unknown) => ({ error: err instanceof Error ? err.message : String(err) });

/**
 * A conversation grown past 1000 messages through message:send, then read whole by a fresh client, once through
 * REST pages and once through conversation:subscribe pages: time, pages and SQL statements of each.
 */
export async function runSync(ctx: BenchContext): Promise<void> {
  const total = ctx.options.syncMessages;
  const seeded = await seedConversations(ctx.knex, ctx.auth, 2, 2);
  const conversationId = seeded.conversations[0]!.id;
  const [writer, reader] = seeded.users as [{ id: string; token: string }, { id: string; token: string }];
  const node = await ctx.mainNode();
  ctx.progress.begin('sync');
  const t0 = performance.now();
  const writerSocket = await connect(node.url, writer.token, writer.id);
  try {
    await grow(writerSocket, conversationId, total);
  } finally {
    writerSocket.close();
  }
  const growMs = performance.now() - t0;

  const rest = await measured(ctx, async () => {
    const messages: PublicMessage[] = [];
    let pages = 0;
    for (let hasMore = true; hasMore;) {
      const after = messages.at(-1)?.seq ?? 0;
      const response = await fetch(
        `${node.url}/conversations/${conversationId}/messages?after=${after}&limit=${PAGE}`,
        {
          headers: { authorization: `Bearer ${reader.token}` },
        },
      );
      if (response.status !== 200) throw new Error(`GET messages answered ${response.status}`);
      const page = (await response.json()) as { messages: PublicMessage[]; hasMore: boolean };
      pages++;
      messages.push(...page.messages);
      hasMore = page.hasMore && page.messages.length > 0;
    }
    return { pages, messages };
  }).catch(failure);

  const socket = await measured(ctx, async () => {
    const readerSocket = await connect(node.url, reader.token, reader.id);
    try {
      const messages: PublicMessage[] = [];
      let pages = 0;
      for (let hasMore = true; hasMore;) {
        const ack = await subscribe(
          readerSocket,
          { conversationId, afterSeq: messages.at(-1)?.seq ?? 0, limit: PAGE },
          15_000,
        );
        if (!ack.ok) throw new Error(`subscribe answered ${ack.error.code}`);
        pages++;
        messages.push(...ack.messages);
        hasMore = ack.hasMore && ack.messages.length > 0;
      }
      return { pages, messages };
    } finally {
      readerSocket.close();
    }
  }).catch(failure);

  ctx.results.sync = { messages: total, growMs: Math.round(growMs), rest, socket };
  ctx.progress.end(
    'error' in rest
      ? `REST failed: ${rest.error}`
      : `REST ${rest.pages} pages in ${rest.ms} ms, ${rest.statements ?? 'n/a'} statements`,
  );
}
