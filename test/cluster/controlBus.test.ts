import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import { createControlBus, type ControlBus } from '../../lib/cluster/controlBus.js';
import { loadDatabaseConfig } from '../../lib/config.js';
import { createDatabase, type Database } from '../../lib/db.js';
import { createLogger } from '../../lib/logger.js';
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
    const bus = await createControlBus(loadDatabaseConfig({ DATABASE_URL: url }), db.knex, logger);
    buses.push(bus);
    return bus;
  };

  it('sends with parameters, never with the payload in the statement text (pg_stat_statements keeps one entry)', async () => {
    const [from, to] = [await open(), await open()];
    const channel = `test_${randomUUID().replaceAll('-', '')}`;
    const heard: unknown[] = [];
    await to.listen(channel, (payload) => heard.push(payload));
    const statements: Array<{ sql: string; bindings: unknown }> = [];
    const onQuery = (query: { sql: string; bindings?: unknown }) =>
      statements.push({ sql: query.sql, bindings: query.bindings });
    db.knex.on('query', onQuery);
    try {
      const payload = { n: 'node', m: [["it's a 'quoted' body", 1]] };
      await from.notify(channel, payload);
      await waitFor(() => heard.length === 1, { what: 'the notification' });
      expect(heard).to.deep.equal([payload]);
    } finally {
      db.knex.off('query', onQuery);
    }
    expect(statements).to.have.length(1);
    expect(statements[0]!.sql).to.include('pg_notify').and.not.include('quoted');
    expect(JSON.stringify(statements[0]!.bindings)).to.include('quoted');
  });

  it('sends what is given in one turn in one statement, in the order given', async () => {
    const [from, to] = [await open(), await open()];
    const channel = `test_${randomUUID().replaceAll('-', '')}`;
    const heard: number[] = [];
    await to.listen(channel, (payload) => heard.push((payload as { i: number }).i));
    let statements = 0;
    const onQuery = () => (statements += 1);
    db.knex.on('query', onQuery);
    try {
      // A commit's several announcements are given one after the other, in one turn.
      await Promise.all(Array.from({ length: 50 }, (_, i) => from.notify(channel, { i })));
      await waitFor(() => heard.length === 50, { what: '50 notifications' });
    } finally {
      db.knex.off('query', onQuery);
    }
    expect(heard).to.deep.equal(Array.from({ length: 50 }, (_, i) => i));
    expect(statements).to.equal(1);
  });

  it('sends what is given while a statement runs together in the next, in the order given', async () => {
    const [from, to] = [await open(), await open()];
    const channel = `test_${randomUUID().replaceAll('-', '')}`;
    const heard: number[] = [];
    await to.listen(channel, (payload) => heard.push((payload as { i: number }).i));
    let statements = 0;
    const onQuery = () => (statements += 1);
    db.knex.on('query', onQuery);
    try {
      const first = from.notify(channel, { i: 0 });
      // A turn later the first one's statement is on its way; these wait for it.
      await new Promise((resolve) => setImmediate(resolve));
      const rest = Array.from({ length: 199 }, (_, i) => from.notify(channel, { i: i + 1 }));
      await Promise.all([first, ...rest]);
      await waitFor(() => heard.length === 200, { what: '200 notifications' });
    } finally {
      db.knex.off('query', onQuery);
    }
    expect(heard).to.deep.equal(Array.from({ length: 200 }, (_, i) => i));
    expect(statements).to.equal(2);
  });

  it('rejects the sends of a statement that failed, and sends the next ones', async () => {
    const [from, to] = [await open(), await open()];
    const channel = `test_${randomUUID().replaceAll('-', '')}`;
    const heard: unknown[] = [];
    await to.listen(channel, (payload) => heard.push(payload));
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
});
