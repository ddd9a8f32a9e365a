import type { Knex } from 'knex';

/** One statement as the driver received it: its SQL ($1, $2, ...) and its bindings. */
export interface CapturedQuery {
  sql: string;
  bindings: readonly unknown[];
}

const TRANSACTION_CONTROL = /^\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE)/i;

/**
 * Runs `work` and returns the statements sent through `knex` meanwhile (knex's 'query' events), in their order.
 * Transaction control (BEGIN, COMMIT, savepoints) is left out unless `transactionControl` is set. Anything else
 * the knex instance runs at the same time (a node's background work) is captured too: callers that compare
 * statements allow for it.
 */
export async function captureQueries(
  knex: Knex,
  work: () => Promise<unknown>,
  { transactionControl = false }: { transactionControl?: boolean } = {},
): Promise<CapturedQuery[]> {
  const captured: CapturedQuery[] = [];
  const listener = (query: { sql: string; bindings?: readonly unknown[] }) => {
    if (!transactionControl && TRANSACTION_CONTROL.test(query.sql)) return;
    captured.push({ sql: query.sql, bindings: query.bindings ?? [] });
  };
  knex.on('query', listener);
  try {
    await work();
  } finally {
    knex.off('query', listener);
  }
  return captured;
}
