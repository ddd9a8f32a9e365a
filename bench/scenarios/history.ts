import type { BenchContext } from '../context.js';
import * as messageIds from '../../migrations/20261202000000_message_ids_time_ordered.js';
import { seedConversations, seedLargeHistory } from '../seed.js';
import { socketPhase } from './load.js';

/**
 * Writes after a checkpoint on a large `messages` table: the phase a production database is in for a while after
 * every checkpoint, which a fresh bench database never is. Its own users get --history-messages messages between
 * them (inserted by SQL, with the ids the schema's default gives), then `VACUUM (ANALYZE)` and `CHECKPOINT`, then
 * XFChat runs a closed loop at the largest --windows. The phase's database figures say what a message costs in WAL
 * and full-page images there. `--history-ids random` takes the migration of time-ordered ids back for the prefill
 * and the phase (random ids, the schema before it), for comparison, and applies it again afterwards.
 */
export async function runHistory(ctx: BenchContext): Promise<void> {
  const { historyMessages: total, historyIds, bodyBytes } = ctx.options;
  const knex = ctx.knex;
  const seeded = await seedConversations(knex, ctx.auth, ctx.options.users, ctx.options.conversationSize);
  if (historyIds === 'random') await messageIds.down(knex);
  try {
    const perConversation = Math.ceil(total / seeded.conversations.length);
    const body = 'x'.repeat(bodyBytes);
    const started = performance.now();
    ctx.progress.note(
      `history: ${perConversation * seeded.conversations.length} messages in ${seeded.conversations.length} conversations (${historyIds} ids, ${ctx.options.clientMsgIds} clientMsgIds)`,
    );
    await seedLargeHistory(knex, seeded, perConversation, body, ctx.options.clientMsgIds);
    await knex.raw('VACUUM (ANALYZE) messages');
    ctx.progress.note(
      `history: inserted and vacuumed in ${Math.round((performance.now() - started) / 1000)} s`,
    );
    const checkpointed = await knex.raw('CHECKPOINT').then(
      () => true,
      (err: unknown) => {
        // An external database's role may not be allowed to (PostgreSQL 15+: pg_checkpoint); the figures then
        // come from wherever the last checkpoint left the pages.
        ctx.results.notes.push(
          `history: CHECKPOINT refused (${err instanceof Error ? err.message : String(err)}); the phase did not start right after one`,
        );
        return false;
      },
    );
    const window = Math.max(...ctx.options.windows);
    const node = await ctx.mainNode();
    await socketPhase(
      ctx,
      `XFChat history w${window}`,
      'history',
      `closed loop at window ${window} on ${ctx.options.users} new users whose conversations hold ${perConversation * seeded.conversations.length} messages, ${historyIds} message ids, ${ctx.options.clientMsgIds} clientMsgIds${checkpointed ? ', started right after a CHECKPOINT' : ''}`,
      { ...ctx.socketJob('xfchat', [node.url], seeded), window },
      [node],
    );
  } finally {
    if (historyIds === 'random') await messageIds.up(knex);
  }
}
