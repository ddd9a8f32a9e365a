#!/usr/bin/env node
/**
 * The `xfchat` command (the package's bin, and `npm start` / `npm run dev` / `npm run migrate`):
 *   xfchat                         serve (DATABASE_URL and JWT_SECRET from the environment)
 *   xfchat migrate [status|latest|rollback]
 *   xfchat dev [--data-dir DIR]    a development server on an embedded PostgreSQL (needs the dev dependencies)
 *   xfchat jwt-secret adopt [--yes] make JWT_SECRET the cluster's after changing it on purpose (ends every session)
 */
import path from 'node:path';
import { adoptJwtSecret, jwtSecretState, runningNodes } from './auth/secretFingerprint.js';
import { CONTROL_APPLICATION_NAME } from './cluster/controlBus.js';
import { loadConfig, loadDatabaseConfig, type DatabaseConfig } from './config.js';
import { createDatabase, type Database } from './db.js';
import { createMigrator } from './migrations.js';
import { createLogger } from './logger.js';
import { failStartup, main, oneLine } from './main.js';
import { explainConnectError, StartupError } from './startupErrors.js';
import type { runDev } from './dev/devServer.js';

const USAGE = `usage: xfchat [serve] | xfchat migrate [status|latest|rollback [--yes]] | xfchat dev [--data-dir DIR] | xfchat jwt-secret adopt [--yes [--force]]`;

function out(line: string): void {
  process.stdout.write(`${line}\n`);
}

/**
 * Refuses, before any configuration is read or connection made, arguments the command does not take: a typo such as
 * `rollback --yse` must not fall back to something else (the dry run), nor `serve --port 1` run on another port.
 */
function refuseUnknownOptions(command: string, options: readonly string[], known: readonly string[]): void {
  const unknown = options.find((option) => !known.includes(option));
  if (unknown === undefined) return;
  process.stderr.write(`xfchat: unknown ${command} option "${unknown}"\n${USAGE}\n`);
  process.exit(2);
}

const MIGRATE_ACTIONS: Readonly<Record<string, readonly string[]>> = {
  status: [],
  latest: [],
  rollback: ['--yes'],
};

/**
 * `npm run dev`: see lib/dev/devServer.ts. Its data lives in `.data/` of the current directory (npm runs scripts
 * in the checkout's root) unless --data-dir says otherwise.
 */
async function dev(args: readonly string[]): Promise<void> {
  let dataRoot = path.resolve('.data');
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] ?? '';
    let dir: string;
    if (arg === '--data-dir') {
      dir = args[i + 1] ?? '';
      i += 1;
    } else if (arg.startsWith('--data-dir=')) dir = arg.slice('--data-dir='.length);
    else {
      process.stderr.write(`xfchat: unknown dev option "${arg}"\n${USAGE}\n`);
      process.exit(2);
    }
    // An empty one would resolve to the current directory, and put PostgreSQL's files among the project's.
    if (dir.trim() === '') {
      process.stderr.write(`xfchat: --data-dir needs a directory\n${USAGE}\n`);
      process.exit(2);
    }
    dataRoot = path.resolve(dir);
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

/** Checks the database answers, as a node does at startup: a failure is the same one line (StartupError). */
async function verify(db: Database, database: DatabaseConfig): Promise<void> {
  try {
    await db.verify();
  } catch (err) {
    throw explainConnectError(err, database);
  }
}

/**
 * `xfchat migrate latest|rollback|status` against DATABASE_URL. A rollback runs the last batch's `down()`, which
 * drops what those migrations made, data included: without `--yes` it only says what it would undo.
 */
async function migrate(action: string | undefined, options: readonly string[]): Promise<void> {
  // Its own keys only: `constructor` or `toString` are not actions.
  const known = Object.hasOwn(MIGRATE_ACTIONS, action ?? 'status')
    ? MIGRATE_ACTIONS[action ?? 'status']
    : undefined;
  if (known === undefined) {
    process.stderr.write(
      `xfchat: unknown migrate action "${action ?? ''}": use latest, rollback or status\n${USAGE}\n`,
    );
    process.exit(2);
  }
  refuseUnknownOptions(`migrate ${action ?? 'status'}`, options, known);
  let database;
  try {
    database = loadDatabaseConfig();
  } catch (err) {
    failStartup(err, 'xfchat migrate');
  }
  const logger = createLogger('warn');
  const db = createDatabase(database, logger);
  // Said on stderr (the logger shows warnings only): a wait for another node's migrations is not a hang.
  const migrations = createMigrator(db.knex, database, logger, () => {
    process.stderr.write(
      'xfchat migrate: waiting for the migration lock (another node or xfchat migrate holds it)\n',
    );
  });
  try {
    await verify(db, database);
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
          // What `--yes` would refuse, the dry run refuses the same way (exit 1), instead of advising `--yes`.
          const refusal = await migrations.rollbackRefusal();
          if (refusal !== undefined) throw new Error(refusal);
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
    }
  } catch (err) {
    // One line, as at startup: the cause, then what to do.
    const line =
      err instanceof StartupError
        ? err.message
        : `${action ?? 'status'} failed (${(err instanceof Error ? err.message : String(err)).replace(/\s+/g, ' ').slice(0, 300)}): fix the database or the migration, then run it again (status shows what is applied)`;
    process.stderr.write(`xfchat migrate: ${oneLine(line)}\n`);
    process.exitCode = 1;
  } finally {
    await db.close();
  }
}

/**
 * `xfchat jwt-secret adopt [--yes]`: makes the current JWT_SECRET (with DATABASE_URL, read as the server reads them)
 * the one the database's cluster uses, after changing it on purpose with every node stopped
 * (lib/auth/secretFingerprint.ts). Nodes with any other secret then refuse to start. Replacing another secret ends
 * every session: without `--yes` it only says what it would do.
 */
async function jwtSecret(action: string | undefined, options: readonly string[]): Promise<void> {
  if (action !== 'adopt') {
    process.stderr.write(`xfchat: unknown jwt-secret action "${action ?? ''}": use adopt\n${USAGE}\n`);
    process.exit(2);
  }
  refuseUnknownOptions('jwt-secret adopt', options, ['--yes', '--force']);
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    failStartup(err, 'xfchat jwt-secret');
  }
  const logger = createLogger('warn');
  const db = createDatabase(config.database, logger);
  try {
    await verify(db, config.database);
    if (!(await db.knex.schema.hasTable('cluster_settings'))) {
      throw new StartupError(
        'the database is not migrated to this release (no cluster_settings table): run xfchat migrate latest, then adopt again',
      );
    }
    const { jwtSecret: secret } = config.auth;
    if (!options.includes('--yes')) {
      const state = await jwtSecretState(db.knex, secret);
      if (state === 'matches') {
        out("JWT_SECRET is already this database's cluster secret: nothing to adopt");
        return;
      }
      const [{ count }] = (await db.knex('sessions').count({ count: '*' })) as [{ count: string | number }];
      const consequence =
        state === 'differs'
          ? `it replaces the cluster's other secret and ends every session (${Number(count)} now): every access and refresh token signed with the old JWT_SECRET no longer works, users log in again, and nodes with the old JWT_SECRET refuse to start`
          : `no secret is recorded yet: it records this one and leaves the ${Number(count)} sessions as they are (those signed with another JWT_SECRET no longer work), and nodes with another JWT_SECRET refuse to start`;
      process.stderr.write(
        `xfchat jwt-secret: adopt would make the current JWT_SECRET the cluster's: ${consequence}. Stop every node first, then run: xfchat jwt-secret adopt --yes\n`,
      );
      process.exitCode = 2;
      return;
    }
    const nodes = options.includes('--force') ? 0 : await runningNodes(db.knex);
    if (nodes > 0) {
      process.stderr.write(
        `xfchat jwt-secret: ${nodes} ${nodes === 1 ? 'node still runs' : 'nodes still run'} on this database (a connection named ${CONTROL_APPLICATION_NAME} each): stop every node first, or it keeps answering with the old JWT_SECRET and refuses every new token; nothing was changed (if no node runs, run it again with --force)\n`,
      );
      process.exitCode = 2;
      return;
    }
    const { outcome, endedSessions } = await adoptJwtSecret(db.knex, secret);
    switch (outcome) {
      case 'unchanged':
        out("JWT_SECRET is already this database's cluster secret: nothing changed");
        break;
      case 'stored':
        out(
          "adopted: JWT_SECRET is now this database's cluster secret (none was recorded; sessions were left as they are, and those signed with another JWT_SECRET no longer work); start every node with it",
        );
        break;
      case 'replaced':
        out(
          `adopted: JWT_SECRET is now this database's cluster secret, and the ${endedSessions} sessions signed with the old one were ended: every access and refresh token of the old JWT_SECRET no longer works, users log in again; start every node with the new JWT_SECRET (nodes with the old one refuse to start)`,
        );
        break;
    }
  } catch (err) {
    const line =
      err instanceof StartupError
        ? err.message
        : `adopt failed (${(err instanceof Error ? err.message : String(err)).replace(/\s+/g, ' ').slice(0, 300)}): nothing was changed; fix the database, then run it again`;
    process.stderr.write(`xfchat jwt-secret: ${oneLine(line)}\n`);
    process.exitCode = 1;
  } finally {
    await db.close();
  }
}

// A reader of the output that went away (`xfchat migrate status | true`, `2>&1 | true`): what is left to print has
// no one to read it, and the command goes on to its end and its exit code, instead of dying on the write with a
// stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
  });
}

const [command, ...rest] = process.argv.slice(2);
// `xfchat serve --help`, `xfchat migrate --help`...: the usage, not the command.
const helpAsked = rest.includes('--help') || rest.includes('-h');
switch (helpAsked ? 'help' : (command ?? 'serve')) {
  case 'serve':
    refuseUnknownOptions('serve', rest, []);
    await main();
    break;
  case 'dev':
    await dev(rest);
    break;
  case 'migrate':
    await migrate(rest[0], rest.slice(1));
    break;
  case 'jwt-secret':
    await jwtSecret(rest[0], rest.slice(1));
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
