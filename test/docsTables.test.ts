import { readFile } from 'node:fs/promises';
import { expect } from 'chai';
import { useNode } from './helpers/nodes.js';

/**
 * docs/api.md, "Process contract", lists the tables of the schema (its `Tables:` line): a migration that adds one
 * adds it to that line too.
 */
describe('docs/api.md: the tables it lists are the ones a node creates', function () {
  this.timeout(30_000);
  const { server } = useNode();

  it('names every table of the migrated schema (Knex’s own aside)', async () => {
    const doc = await readFile(new URL('../docs/api.md', import.meta.url), 'utf8');
    const line = /Tables: ([^.]*(?:\([^)]*\)[^.]*)*)\./s.exec(doc)?.[1] ?? '';
    const listed = [...line.replace(/\([^)]*\)/g, '').matchAll(/`([a-z_]+)`/g)].map((m) => m[1]!).sort();
    const rows = await server.services.db.knex.raw<{ rows: Array<{ tablename: string }> }>(
      `SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename NOT LIKE 'knex_%'`,
    );
    const actual = rows.rows.map((r) => r.tablename).sort();
    expect(listed, 'docs/api.md "Tables:"').to.deep.equal(actual);
  });
});
