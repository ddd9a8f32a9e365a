import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadDatabaseConfig, loadDevConfig, redactUrl } from './config.js';
import { createDatabase } from './db.js';
import { createMigrator } from './migrations.js';
import { createLogger } from './logger.js';
import { failStartup, handleSignals, listenForSignals, main } from './main.js';
import { startServer } from './server.js';

const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function out(line: string): void {
  process.stdout.write(`${line}\n`);
}

/** The development secret is generated once and kept beside the dev database, never committed. */
async function devSecret(dataRoot: string): Promise<string> {
  const file = path.join(dataRoot, 'dev-jwt-secret');
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch {
    const secret = randomBytes(32).toString('hex');
    await writeFile(file, secret, { mode: 0o600 });
    return secret;
  }
}

/** `npm run dev`: the same server on an embedded PostgreSQL kept in .data/ (git-ignored). */
async function dev(): Promise<void> {
  const { startEmbeddedPostgres } = await import('./dev/embeddedPostgres.js');
  const dataRoot = path.join(projectRoot, '.data');
  await mkdir(dataRoot, { recursive: true });
  out('[dev] starting embedded PostgreSQL in .data/postgres ...');
  const pg = await startEmbeddedPostgres({
    dataDir: path.join(dataRoot, 'postgres'),
    persistent: true,
    port: 54329,
  });
  const signals = listenForSignals();
  let server;
  try {
    const config = await loadDevConfig(pg.adminUrl, () => devSecret(dataRoot));
    server = await startServer(config, { logger: createLogger(config.logLevel) });
  } catch (err) {
    await pg.stop();
    failStartup(err);
  }
  out(`[dev] XFChat is running at ${server.url}  (database ${redactUrl(pg.adminUrl)})`);
  handleSignals(server, () => pg.stop(), signals);
}

/** `npm run migrate -- latest|rollback|status` against DATABASE_URL. */
async function migrate(action: string | undefined): Promise<void> {
  let database;
  try {
    database = loadDatabaseConfig();
  } catch (err) {
    failStartup(err);
  }
  const logger = createLogger('warn');
  const db = createDatabase(database, logger);
  const migrations = createMigrator(db.knex, database, logger);
  try {
    switch (action ?? 'status') {
      case 'latest': {
        const { newlyApplied } = await migrations.latest();
        out(newlyApplied.length ? `applied: ${newlyApplied.join(', ')}` : 'already up to date');
        break;
      }
      case 'rollback': {
        const rolledBack = await migrations.rollback();
        out(rolledBack.length ? `rolled back: ${rolledBack.join(', ')}` : 'nothing to roll back');
        break;
      }
      case 'status': {
        const status = await migrations.status();
        out(`applied (${status.applied.length}): ${status.applied.join(', ') || '-'}`);
        out(`pending (${status.pending.length}): ${status.pending.join(', ') || '-'}`);
        break;
      }
      default:
        process.stderr.write(`xfchat: unknown migrate action "${action}": use latest, rollback or status\n`);
        process.exitCode = 2;
    }
  } finally {
    await db.close();
  }
}

const [command, ...rest] = process.argv.slice(2);
switch (command ?? 'serve') {
  case 'serve':
    await main();
    break;
  case 'dev':
    await dev();
    break;
  case 'migrate':
    await migrate(rest[0]);
    break;
  default:
    process.stderr.write(`xfchat: unknown command "${command}": use serve, dev or migrate\n`);
    process.exit(2);
}
