#!/usr/bin/env node
/**
 * The `xfchat` command (the package's bin, and `npm start` / `npm run dev` / `npm run migrate`):
 *   xfchat                         serve (DATABASE_URL and JWT_SECRET from the environment)
 *   xfchat migrate [status|latest|rollback]
 *   xfchat dev [--data-dir DIR]    a development server on an embedded PostgreSQL (needs the dev dependencies)
 */
import path from 'node:path';
import { loadDatabaseConfig } from './config.js';
import { createDatabase } from './db.js';
import { createMigrator } from './migrations.js';
import { createLogger } from './logger.js';
import { failStartup, main } from './main.js';
import { explainConnectError, StartupError } from './startupErrors.js';
import type { runDev } from './dev/devServer.js';

const USAGE = `usage: xfchat [serve] | xfchat migrate [status|latest|rollback [--yes]] | xfchat dev [--data-dir DIR]`;

function out(line: string): void {
  process.stdout.write(`${line}\n`);
}

/**
 * `npm run dev`: see lib/dev/devServer.ts. Its data lives in `.data/` of the current directory (npm runs scripts
 * in the checkout's root) unless --data-dir says otherwise.
 */
async function dev(args: readonly string[]): Promise<void> {
  let dataRoot = path.resolve('.data');
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const next = args[i + 1];
    if (arg === '--data-dir' && next !== undefined) {
      dataRoot = path.resolve(next);
      i += 1;
    } else if (arg?.startsWith('--data-dir=')) dataRoot = path.resolve(arg.slice('--data-dir='.length));
    else {
      process.stderr.write(`xfchat: unknown dev option "${arg}"\n${USAGE}\n`);
      process.exit(2);
    }
  }
  let devServer: { runDev: typeof runDev };
  try {
    devServer = await import('./dev/devServer.js');
  } catch (err) {
    failStartup(
      new StartupError(
        'xfchat dev needs the development dependencies (embedded PostgreSQL, pino-pretty): run npm install in a clone of the repository, or run a released server with DATABASE_URL and JWT_SECRET set (xfchat)',
        { cause: err },
      ),
    );
  }
  await devServer.runDev({ dataRoot });
}

/**
 * `xfchat migrate latest|rollback|status` against DATABASE_URL. A rollback runs the last batch's `down()`, which
 * drops what those migrations made, data included: without `--yes` it only says what it would undo.
 */
async function migrate(action: string | undefined, options: readonly string[]): Promise<void> {
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
    try {
      await db.verify();
    } catch (err) {
      throw explainConnectError(err, database);
    }
    switch (action ?? 'status') {
      case 'latest': {
        const { newlyApplied } = await migrations.latest();
        out(newlyApplied.length ? `applied: ${newlyApplied.join(', ')}` : 'already up to date');
        break;
      }
      case 'rollback': {
        if (!options.includes('--yes')) {
          const batch = await migrations.lastBatch();
          if (batch.length === 0) {
            out('nothing to roll back');
            break;
          }
          process.stderr.write(
            `xfchat migrate: rollback would undo the last applied batch (${batch.join(', ')}): their down() drops the tables and columns they made, with their data. Take a pg_dump first, then run: xfchat migrate rollback --yes\n`,
          );
          process.exitCode = 2;
          break;
        }
        const rolledBack = await migrations.rollback();
        out(rolledBack.length ? `rolled back: ${rolledBack.join(', ')}` : 'nothing to roll back');
        break;
      }
      case 'status': {
        const status = await migrations.status();
        out(`applied (${status.applied.length}): ${status.applied.join(', ') || '-'}`);
        out(`pending (${status.pending.length}): ${status.pending.join(', ') || '-'}`);
        if (status.newer.length > 0) {
          out(`of a newer release (${status.newer.length}): ${status.newer.join(', ')}`);
        }
        break;
      }
      default:
        process.stderr.write(`xfchat: unknown migrate action "${action}": use latest, rollback or status\n`);
        process.exitCode = 2;
    }
  } catch (err) {
    // One line, as at startup: the cause, then what to do.
    const line =
      err instanceof StartupError
        ? err.message
        : `${action ?? 'status'} failed (${(err instanceof Error ? err.message : String(err)).replace(/\s+/g, ' ').slice(0, 300)}): fix the database or the migration, then run it again (status shows what is applied)`;
    process.stderr.write(`xfchat migrate: ${line}\n`);
    process.exitCode = 1;
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
    await dev(rest);
    break;
  case 'migrate':
    await migrate(rest[0], rest.slice(1));
    break;
  case 'help':
  case '--help':
  case '-h':
    out(USAGE);
    break;
  default:
    process.stderr.write(`xfchat: unknown command "${command}"\n${USAGE}\n`);
    process.exit(2);
}
