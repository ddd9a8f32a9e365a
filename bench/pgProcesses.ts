import { CONTROL_APPLICATION_NAME } from '../lib/cluster/controlBus.js';
import { POOL_APPLICATION_NAME } from '../lib/db.js';
import { ADAPTER_APPLICATION_NAME } from '../lib/realtime/adapterPool.js';
import type { BenchDatabase } from './database.js';
import { tcpSockets } from './nodes.js';
import type { TreeProcessReading } from './procStats.js';

/**
 * What each of PostgreSQL's processes did for the XFChat nodes in a measured window: the report splits
 * PostgreSQL's wake-ups and CPU by the connection's owner and purpose, so that (for one) two nodes' excess can be
 * told apart between their write connections and their LISTEN connections (docs/performance.md).
 */
export const PG_PROCESS_KINDS = ['pool', 'control', 'adapter', 'background', 'other'] as const;
export type PgProcessKind = (typeof PG_PROCESS_KINDS)[number];

/** What the report calls each kind. */
export const PG_PROCESS_KIND_TITLES: Record<PgProcessKind, string> = {
  pool: "nodes' pools",
  control: 'control bus',
  adapter: 'adapter',
  background: 'background',
  other: 'other',
};

/** Wake-ups and CPU of one kind of process over a window. */
export interface PgKindCost {
  runs: number;
  cpuMs: number;
}

/** A row of pg_stat_activity, as far as the split needs it. */
export interface PgActivityRow {
  pid: number;
  backendType: string | null;
  applicationName: string | null;
  clientPort: number | null;
}

/**
 * A process's kind: a connection of an XFChat node (its client port is one of the nodes' sockets) by its
 * `application_name` (the Knex pool, with the write calls, the announcements and the reads; the control bus's
 * LISTEN connection; the Socket.IO adapter's pool), PostgreSQL's own processes (the postmaster, the WAL writer,
 * the checkpointer, ...) as background, and everything else (the bench's and the baselines' connections, and
 * processes gone before pg_stat_activity was read) as other.
 */
export function pgProcessKind(
  row: PgActivityRow | undefined,
  isPostmaster: boolean,
  nodePorts: ReadonlySet<number>,
): PgProcessKind {
  if (isPostmaster) return 'background';
  if (!row) return 'other';
  if (row.backendType !== 'client backend') return 'background';
  if (row.clientPort === null || !nodePorts.has(row.clientPort)) return 'other';
  switch (row.applicationName) {
    case POOL_APPLICATION_NAME:
      return 'pool';
    case CONTROL_APPLICATION_NAME:
      return 'control';
    case ADAPTER_APPLICATION_NAME:
      return 'adapter';
    default:
      return 'other';
  }
}

/** Each kind's wake-ups and CPU over the window: every process of the tree, by its kind. */
export function costByKind(
  processes: readonly TreeProcessReading[],
  activity: ReadonlyMap<number, PgActivityRow>,
  postmasterPid: number,
  nodePorts: ReadonlySet<number>,
): Record<PgProcessKind, PgKindCost> {
  const costs = Object.fromEntries(PG_PROCESS_KINDS.map((kind) => [kind, { runs: 0, cpuMs: 0 }])) as Record<
    PgProcessKind,
    PgKindCost
  >;
  for (const p of processes) {
    const cost = costs[pgProcessKind(activity.get(p.pid), p.pid === postmasterPid, nodePorts)];
    cost.runs += p.runs;
    cost.cpuMs += p.cpuMs;
  }
  return costs;
}

/** Every process pg_stat_activity lists, by pid. */
export async function readPgActivity(database: BenchDatabase): Promise<Map<number, PgActivityRow>> {
  const rows = await database.query<{
    pid: number;
    backend_type: string | null;
    application_name: string | null;
    client_port: number | null;
  }>('SELECT pid, backend_type, application_name, client_port FROM pg_stat_activity');
  return new Map(
    rows.map((r) => [
      r.pid,
      {
        pid: r.pid,
        backendType: r.backend_type,
        applicationName: r.application_name,
        clientPort: r.client_port,
      },
    ]),
  );
}

/**
 * The local ports of the TCP connections that `pids` hold (Linux /proc): for a connection to PostgreSQL, its
 * `client_port` in pg_stat_activity. A process that has exited holds none.
 */
export async function connectionPorts(pids: readonly number[]): Promise<Set<number>> {
  const sockets = await Promise.all(
    pids.map((pid) =>
      tcpSockets(pid).catch((err: unknown) => {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
        throw err;
      }),
    ),
  );
  return new Set(sockets.flat().flatMap((socket) => (socket.state === '01' ? [socket.localPort] : [])));
}
