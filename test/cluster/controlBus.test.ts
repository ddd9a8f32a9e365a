import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { createControlBus, type ControlBus } from '../../lib/cluster/controlBus.js';
import { loadDatabaseConfig } from '../../lib/config.js';
import { createDatabase, type Database } from '../../lib/db.js';
import { createLogger } from '../../lib/logger.js';
import { captureLogs } from '../helpers/logCapture.js';
import { createTestDatabase } from '../helpers/postgres.js';
import { waitFor } from '../helpers/waitFor.js';

const logger = createLogger('silent');

describe('cluster/controlBus: notifications between nodes (PostgreSQL)', () => {
  let db: Database;
  let url: string;
  const buses: ControlBus[] = [];

  before(async () => {
    url = await createTestDatabase();
    db = createDatabase(loadDatabaseConfig({ DATABASE_URL: url }), logger);
  });

  afterEach(async () => {
    await Promise.all(buses.splice(0).map((bus) => bus.close()));
  });

  after(async () => {
    await db.close();
  });

  const open = async () => {
    const bus = await createControlBus(loadDatabaseConfig({ DATABASE_URL: url }), db.connections, logger);
    buses.push(bus);
    return bus;
  };

  /** Two buses on a channel of their own: `from` sends, and `heard` is what the other heard, each read by `read`. */
  const pair = async <T>(read: (payload: unknown) => T) => {
    const [from, to] = [await open(), await open()];
    const channel = `test_${randomUUID().replaceAll('-', '')}`;
    const heard: T[] = [];
    await to.listen(channel, (payload) => heard.push(read(payload)));
    return { from, channel, heard };
  };
  const asIs = (payload: unknown) => payload;
  const index = (payload: unknown) => (payload as { i: number }).i;

  /**
   * The statements the buses send while `run` runs, as the pool connections receive them (the buses send through
   * Knex's pool, as named statements Knex's query events do not see).
   */
  const sentDuring = async (run: () => Promise<void>): Promise<pg.QueryConfig[]> => {
    const pool = db.knex.client as { acquireConnection(): Promise<pg.ClientBase> };
    const acquire = pool.acquireConnection.bind(pool);
    const statements: pg.QueryConfig[] = [];
    const watched = new Set<pg.ClientBase>();
    pool.acquireConnection = async () => {
      const client = await acquire();
      if (!watched.has(client)) {
        // The same object goes back to the pool: its prototype's query is shadowed here, and uncovered afterwards.
        const query = client.query.bind(client) as (config: pg.QueryConfig) => Promise<pg.QueryResult>;
        watched.add(client);
        Object.assign(client, {
          query: (config: pg.QueryConfig) => {
            statements.push(config);
            return query(config);
          },
        });
      }
      return client;
    };
    try {
      await run();
    } finally {
      pool.acquireConnection = acquire;
      for (const client of watched) delete (client as { query?: unknown }).query;
    }
    return statements;
  };

  it('logs a handler that throws, and goes on: neither the LISTEN connection nor the process ends with it', async () => {
    const logs = captureLogs('info');
    const bus = await createControlBus(
      loadDatabaseConfig({ DATABASE_URL: url }),
      db.connections,
      logs.logger,
    );
    buses.push(bus);
    const from = await open();
    const channel = `test_${randomUUID().replaceAll('-', '')}`;
    const heard: number[] = [];
    await bus.listen(channel, (payload) => {
      const i = index(payload);
      heard.push(i);
      if (i === 1) throw new Error('a defect in a handler');
    });
    const events: boolean[] = [];
    bus.subscribe(() => {
      events.push(true);
      throw new Error('a defect in a subscriber');
    });
    await from.notify(channel, { i: 1 });
    await from.publish({ type: 'membership.changed', conversationId: randomUUID(), userId: randomUUID() });
    await from.notify(channel, { i: 2 });
    await waitFor(() => heard.length === 2 && events.length === 1, { what: 'both notices and the event' });
    expect(heard).to.deep.equal([1, 2]);
    const failures = logs
      .entries()
      .filter((l) => l.msg === 'control bus: a handler of a notification failed');
    expect(failures.map((l) => [l.level, (l.err as { message: string }).message])).to.deep.equal([
      [50, 'a defect in a handler'],
      [50, 'a defect in a subscriber'],
    ]);
  });

  it('sends with parameters, never with the payload in the statement text (pg_stat_statements keeps one entry)', async () => {
    const { from, channel, heard } = await pair(asIs);
    const payload = { n: 'node', m: [["it's a 'quoted' body", 1]] };
    const statements = await sentDuring(async () => {
      await from.notify(channel, payload);
      await waitFor(() => heard.length === 1, { what: 'the notification' });
    });
    expect(heard).to.deep.equal([payload]);
    expect(statements).to.have.length(1);
    expect(statements[0]!.text).to.include('pg_notify').and.not.include('quoted');
    expect(statements[0]!.name, 'a named statement, parsed once per connection').to.be.a('string');
    expect(JSON.stringify(statements[0]!.values)).to.include('quoted');
  });

  it('sends what is given in one turn in one statement, in the order given', async () => {
    const { from, channel, heard } = await pair(index);
    const statements = await sentDuring(async () => {
      // A commit's several announcements are given one after the other, in one turn.
      await Promise.all(Array.from({ length: 50 }, (_, i) => from.notify(channel, { i })));
      await waitFor(() => heard.length === 50, { what: '50 notifications' });
    });
    expect(heard).to.deep.equal(Array.from({ length: 50 }, (_, i) => i));
    expect(statements).to.have.length(1);
  });

  it('sends what is given while a statement runs together in the next, in the order given', async () => {
    const { from, channel, heard } = await pair(index);
    const statements = await sentDuring(async () => {
      const first = from.notify(channel, { i: 0 });
      // A turn later the first one's statement is on its way; these wait for it.
      await new Promise((resolve) => setImmediate(resolve));
      const rest = Array.from({ length: 199 }, (_, i) => from.notify(channel, { i: i + 1 }));
      await Promise.all([first, ...rest]);
      await waitFor(() => heard.length === 200, { what: '200 notifications' });
    });
    expect(heard).to.deep.equal(Array.from({ length: 200 }, (_, i) => i));
    expect(statements).to.have.length(2);
  });

  it('rejects the sends of a statement that failed, and sends the next ones', async () => {
    const { from, channel, heard } = await pair(asIs);
    const failure = (sending: Promise<void>) =>
      sending.then(
        () => undefined,
        (err: unknown) => err,
      );
    // The first goes alone; the next two, given a turn later, wait for it and go together. NOTIFY takes payloads
    // under 8000 bytes: PostgreSQL refuses the big one, and the statement with it.
    const first = from.notify(channel, { i: 0 });
    await new Promise((resolve) => setImmediate(resolve));
    const tooBig = failure(from.notify(channel, { big: 'x'.repeat(9000) }));
    const alongside = failure(from.notify(channel, { i: 1 }));
    await first;
    expect(await tooBig).to.be.instanceOf(Error);
    expect(await alongside).to.be.instanceOf(Error);
    await from.notify(channel, { i: 2 });
    await waitFor(() => heard.length === 2, { what: 'the notification after the failure' });
    expect(heard).to.deep.equal([{ i: 0 }, { i: 2 }]);
  });

  it('publishWithin: heard only once its transaction commits, before what committed after it, and fromHere only by its own bus', async () => {
    const [from, to] = [await open(), await open()];
    const heardFrom: Array<[string, boolean]> = [];
    const heardTo: Array<[string, boolean]> = [];
    from.subscribe((event, fromHere) => heardFrom.push([event.userId, fromHere]));
    to.subscribe((event, fromHere) => heardTo.push([event.userId, fromHere]));
    // A channel that `to` also hears on its connection, as message announcements are.
    const channel = `test_${randomUUID().replaceAll('-', '')}`;
    const order: string[] = [];
    to.subscribe((event) => order.push(`control ${event.userId}`));
    await to.listen(channel, (payload) => order.push(`other ${(payload as { i: number }).i}`));
    const event = (userId: string) => ({
      type: 'membership.changed' as const,
      conversationId: randomUUID(),
      userId,
      removed: true,
    });

    await db.knex
      .transaction(async (trx) => {
        await from.publishWithin(trx, event('rolled back'));
        throw new Error('roll back');
      })
      .catch((err: unknown) => expect((err as Error).message).to.equal('roll back'));
    let committed!: () => void;
    const held = new Promise<void>((resolve) => (committed = resolve));
    const transaction = db.knex.transaction(async (trx) => {
      await from.publishWithin(trx, event('committed'));
      await held;
    });
    // Sent while the transaction is open: heard at once, before the transaction's.
    await from.notify(channel, { i: 1 });
    await waitFor(() => order.length === 1, { what: 'the notification sent outside' });
    expect(heardTo).to.deep.equal([]);
    committed();
    await transaction;
    await from.notify(channel, { i: 2 });
    await waitFor(() => order.length === 3, { what: 'the committed event and the notification after it' });
    expect(order).to.deep.equal(['other 1', 'control committed', 'other 2']);
    await waitFor(() => heardFrom.length === 1, { what: 'the event on its own bus' });
    expect(heardFrom).to.deep.equal([['committed', true]]);
    expect(heardTo).to.deep.equal([['committed', false]]);
  });
});
