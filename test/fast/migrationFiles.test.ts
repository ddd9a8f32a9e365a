import { expect } from 'chai';
import {
  LOADABLE_MIGRATION_EXTENSIONS,
  migrationFilesProblem,
  migrationName,
} from '../../lib/migrationFiles.js';

describe('the files of a MIGRATIONS_DIR', () => {
  const BUILT = ['.js'];
  const FROM_TYPESCRIPT = ['.ts', '.js'];

  it('loads .js migrations in every process, and .ts ones where it runs from TypeScript (as the tests do)', () => {
    expect(LOADABLE_MIGRATION_EXTENSIONS).to.deep.equal(FROM_TYPESCRIPT);
    expect(migrationName('20200101_a.js', BUILT)).to.deep.equal({ name: '20200101_a', extension: '.js' });
    expect(migrationName('20200101_a.ts', BUILT)).to.equal(undefined);
    expect(migrationName('20200101_a.ts', FROM_TYPESCRIPT)).to.deep.equal({
      name: '20200101_a',
      extension: '.ts',
    });
    expect(migrationName('20200101_a.d.ts', FROM_TYPESCRIPT)).to.equal(undefined);
    expect(migrationName('README.md', FROM_TYPESCRIPT)).to.equal(undefined);
  });

  it('refuses, where only JavaScript loads, a TypeScript migration without its compiled copy', () => {
    expect(migrationFilesProblem(['a.ts', 'b.js'], BUILT)).to.equal(
      'holds TypeScript migrations that the built server cannot load (a.ts): compile them to .js',
    );
    expect(migrationFilesProblem(['a.ts', 'a.js', 'a.d.ts'], BUILT)).to.equal(undefined);
    expect(migrationFilesProblem(['a.ts', 'b.js'], FROM_TYPESCRIPT)).to.equal(undefined);
  });

  it('refuses a folder without a migration', () => {
    expect(migrationFilesProblem(['README.md', 'types.d.ts'], FROM_TYPESCRIPT)).to.equal(
      'holds no migration files (.ts or .js)',
    );
    expect(migrationFilesProblem([], BUILT)).to.equal('holds no migration files (.ts or .js)');
  });
});
