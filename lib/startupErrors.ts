import { createServer } from 'node:net';
import type { DatabaseConfig } from './config.js';
import { databaseHost, databaseWhere } from './db.js';
import { SQLSTATE } from './errors.js';

/** A startup failure with one line that names the cause and the fix. */
export class StartupError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StartupError';
  }
}

function errorCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string')
    return err.code;
  return undefined;
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Explains why the first connection to PostgreSQL failed, in terms of what to change. */
export function explainConnectError(err: unknown, config: DatabaseConfig): StartupError {
  const url = new URL(config.url);
  const where = databaseWhere(url);
  const user = decodeURIComponent(url.username) || '(default user)';
  const database = decodeURIComponent(url.pathname.slice(1));
  const code = errorCode(err);
  const message = errorMessage(err);
  let line: string;
  if (code === 'ECONNREFUSED') {
    line = `PostgreSQL at ${where} refused the connection: start PostgreSQL there or fix the host/port in DATABASE_URL`;
  } else if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    line = `the PostgreSQL host "${databaseHost(url)}" cannot be resolved: fix the host in DATABASE_URL`;
  } else if (/no pg_hba.conf entry/i.test(message)) {
    // Before the login branch: PostgreSQL reports it as 28000 too.
    line = `PostgreSQL at ${where} has no pg_hba.conf entry for this client: allow it there, or use DB_SSL_MODE=require if only TLS is allowed`;
  } else if (/client password must be a string/i.test(message)) {
    line = `PostgreSQL at ${where} asks user "${user}" for a password and DATABASE_URL has none: add it (postgres://USER:PASSWORD@HOST/DATABASE)`;
  } else if (code === SQLSTATE.invalidPassword || code === SQLSTATE.invalidAuthorizationSpecification) {
    line = `PostgreSQL at ${where} refused the login of user "${user}": fix the user/password in DATABASE_URL or the server's pg_hba.conf`;
  } else if (code === SQLSTATE.invalidCatalogName) {
    line = `the database "${database}" does not exist on ${where}: create it (createdb ${database}) or fix DATABASE_URL`;
  } else if (/timeout/i.test(message)) {
    line = `PostgreSQL at ${where} did not answer within ${config.connectTimeoutMs} ms: check that it runs and is reachable, or raise DB_CONNECT_TIMEOUT_MS`;
  } else if (/does not support SSL/i.test(message)) {
    line = `PostgreSQL at ${where} does not accept TLS but DB_SSL_MODE=${config.sslMode}: enable ssl on the server or set DB_SSL_MODE=disable`;
  } else if (
    /certificate|self[- ]signed|altnames|UNABLE_TO_VERIFY|CERT_/i.test(`${code ?? ''} ${message}`) &&
    config.sslMode !== 'disable'
  ) {
    line = `the TLS certificate of PostgreSQL at ${where} was rejected (${code ?? message}): check DB_SSL_CA_FILE and that the host name in DATABASE_URL matches the certificate`;
  } else {
    line = `cannot connect to PostgreSQL at ${where} (${code ?? 'error'}: ${message}): check DATABASE_URL and the server`;
  }
  return new StartupError(line, { cause: err });
}

/** Explains a failed migration; the server never runs on a half-migrated schema. */
export function explainMigrationError(err: unknown): StartupError {
  return new StartupError(
    `a database migration failed (${errorMessage(err).replace(/\s+/g, ' ').slice(0, 300)}): nothing was started; fix the migration or the database and start again (xfchat migrate status shows what is applied; nothing of the failed batch was)`,
    { cause: err },
  );
}

/**
 * Whether `port` can be bound on `host` now. Only "address in use" means no; any other failure (a HOST that is
 * not an address of this machine, a privileged port) is thrown, for {@link explainListenError} to explain.
 */
export async function isPortFree(port: number, host: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EADDRINUSE') resolve(false);
      else reject(err);
    });
    probe.listen(port, host, () => probe.close(() => resolve(true)));
  });
}

/** The first of the next few ports that is free on `host`, to suggest in a message. */
async function nextFreePort(port: number, host: string): Promise<number | undefined> {
  for (let candidate = port + 1; candidate <= Math.min(port + 20, 65535); candidate++) {
    // A port that cannot even be probed is simply not suggested.
    if (await isPortFree(candidate, host).catch(() => false)) return candidate;
  }
  return undefined;
}

/** "port 3000 is in use: stop the other server or set PORT=3001", naming a port that is free now. */
export async function portInUse(port: number, host: string, cause?: unknown): Promise<StartupError> {
  const free = await nextFreePort(port, host);
  return new StartupError(
    `port ${port} is in use: stop the other server or set PORT=${free ?? '<a free port>'}`,
    {
      cause,
    },
  );
}

/** Explains why the HTTP server could not bind PORT on HOST, with what to change. */
export async function explainListenError(err: unknown, port: number, host: string): Promise<StartupError> {
  const code = errorCode(err);
  if (code === 'EADDRINUSE') return portInUse(port, host, err);
  let line: string;
  if (code === 'EACCES') {
    line = `port ${port} needs privileges this process does not have: set PORT=1024 or higher (and put a proxy on ${port})`;
  } else if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    line = `HOST=${host} is not an address of this machine: set HOST to one of its addresses, or 0.0.0.0 for all`;
  } else {
    line = `cannot listen on ${host}:${port} (${code ?? 'error'}: ${errorMessage(err)}): check PORT and HOST`;
  }
  return new StartupError(line, { cause: err });
}
