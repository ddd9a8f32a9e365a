import { readFileSync } from 'node:fs';

/** How the server talks TLS to PostgreSQL. */
export type DbSslMode = 'disable' | 'require' | 'verify-full';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface DatabaseConfig {
  /** Connection string; it may hold a password, so it is never logged whole (see {@link redactUrl}). */
  url: string;
  /** @default 25 */
  poolMax: number;
  /** How long a query waits for a free pool connection before DB_UNAVAILABLE. @default 5000 */
  acquireTimeoutMs: number;
  /** PostgreSQL statement_timeout and the client's query timeout. @default 30000 */
  statementTimeoutMs: number;
  /** How long opening a connection may take. @default 10000 */
  connectTimeoutMs: number;
  sslMode: DbSslMode;
  /** PEM text of the CA that signed the server's certificate (verify-full only). */
  sslCa: string | undefined;
  /** Queries slower than this are logged as warnings (statement only, never values). @default 500 */
  slowQueryMs: number;
  /** Folder of Knex migrations; the bundled one unless set. */
  migrationsDir: string | undefined;
}

export interface Config {
  port: number;
  host: string;
  /** Proxy hops in front of the server whose X-Forwarded-For is trusted (for per-IP limits). @default 0 */
  trustProxy: number;
  logLevel: LogLevel;
  database: DatabaseConfig;
  auth: {
    jwtSecret: string;
    /** Lifetime of an access token. @default 3600 */
    tokenTtlSeconds: number;
    issuer: string;
    audience: string;
  };
  limits: {
    /** Login/signup attempts per IP per minute, and login attempts per username per minute; 0 = off. @default 20 */
    authPerMinute: number;
    /** Sends per user per second (bursts of twice that); 0 = off. @default 20 */
    messagesPerSecond: number;
    /** Queued commands per conversation before OVERLOADED. @default 1000 */
    mailboxCapacity: number;
    /** Message-writing transactions running at once per node (capped below DB_POOL_SIZE). @default 4 */
    writeConcurrency: number;
    /** Largest Socket.IO message in bytes. @default 65536 */
    socketMaxBytes: number;
    /** Open sockets per client IP; 0 = off. @default 50 */
    connectionsPerIp: number;
    /** Events per socket per second, any event (bursts of twice that); 0 = off. @default 50 */
    socketEventsPerSecond: number;
  };
  /** Allowed browser origins for CORS and the Socket.IO handshake; empty means same-origin and non-browser only. */
  corsOrigins: readonly string[];
  /** How long SIGTERM waits for mailboxes to drain. @default 10000 */
  shutdownTimeoutMs: number;
}

export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(problems.join('; '));
    this.name = 'ConfigError';
  }
}

type Env = Readonly<Record<string, string | undefined>>;

const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
const SSL_MODES: readonly DbSslMode[] = ['disable', 'require', 'verify-full'];

/** Collects every problem instead of stopping at the first, so one start reports all of them. */
class EnvReader {
  readonly problems: string[] = [];
  constructor(private readonly env: Env) {}

  raw(name: string): string | undefined {
    const value = this.env[name];
    return value === undefined || value.trim() === '' ? undefined : value.trim();
  }

  int(name: string, fallback: number, min: number, max: number): number {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) {
      this.problems.push(`${name} must be a whole number from ${min} to ${max} (got "${value}")`);
      return fallback;
    }
    return Number(value);
  }

  oneOf<T extends string>(name: string, allowed: readonly T[], fallback: T): T {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    if (!(allowed as readonly string[]).includes(value)) {
      this.problems.push(`${name} must be one of ${allowed.join(', ')} (got "${value}")`);
      return fallback;
    }
    return value as T;
  }
}

function readDatabaseUrl(reader: EnvReader): string {
  const url = reader.raw('DATABASE_URL');
  if (url === undefined) {
    reader.problems.push(
      'DATABASE_URL is not set: set it to postgres://USER:PASSWORD@HOST:5432/DATABASE (PostgreSQL is required)',
    );
    return '';
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    reader.problems.push('DATABASE_URL is malformed: expected postgres://USER:PASSWORD@HOST:5432/DATABASE');
    return '';
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    reader.problems.push(
      `DATABASE_URL must start with postgres:// or postgresql:// (got "${parsed.protocol}//")`,
    );
  } else if (parsed.hostname === '' || parsed.pathname.length <= 1) {
    reader.problems.push(
      'DATABASE_URL must name a host and a database: postgres://USER:PASSWORD@HOST:5432/DATABASE',
    );
  }
  return url;
}

function readSslCa(reader: EnvReader, mode: DbSslMode): string | undefined {
  const file = reader.raw('DB_SSL_CA_FILE');
  if (mode !== 'verify-full') {
    if (file !== undefined) reader.problems.push('DB_SSL_CA_FILE is only used with DB_SSL_MODE=verify-full');
    return undefined;
  }
  if (file === undefined) {
    reader.problems.push(
      'DB_SSL_MODE=verify-full needs DB_SSL_CA_FILE, the PEM file of the CA of the server',
    );
    return undefined;
  }
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    reader.problems.push(
      `DB_SSL_CA_FILE "${file}" cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    );
    return undefined;
  }
}

/**
 * Parses and validates the environment once. Throws {@link ConfigError} listing every problem together.
 * Secrets have no defaults.
 */
export function loadConfig(env: Env = process.env): Readonly<Config> {
  const reader = new EnvReader(env);

  const jwtSecret = reader.raw('JWT_SECRET');
  if (jwtSecret === undefined) {
    reader.problems.push('JWT_SECRET is not set: set it to a random string of at least 32 characters');
  } else if (jwtSecret.length < 32) {
    reader.problems.push(
      `JWT_SECRET is too short (${jwtSecret.length} characters): use at least 32, e.g. openssl rand -hex 32`,
    );
  }

  const corsOrigins = (reader.raw('CORS_ORIGINS') ?? '')
    .split(',')
    .map((o) => o.trim())
    .filter((o) => o !== '');
  for (const origin of corsOrigins) {
    if (!/^https?:\/\/[^/\s]+$/.test(origin)) {
      reader.problems.push(
        `CORS_ORIGINS entry "${origin}" must look like https://chat.example.com (no path)`,
      );
    }
  }

  const config: Config = {
    port: reader.int('PORT', 3000, 0, 65535),
    host: reader.raw('HOST') ?? '0.0.0.0',
    trustProxy: reader.int('TRUST_PROXY_HOPS', 0, 0, 10),
    logLevel: reader.oneOf('LOG_LEVEL', LOG_LEVELS, 'info'),
    database: readDatabaseConfig(reader),
    auth: {
      jwtSecret: jwtSecret ?? '',
      tokenTtlSeconds: reader.int('JWT_TTL_SECONDS', 3600, 10, 30 * 24 * 3600),
      issuer: 'xfchat',
      audience: 'xfchat',
    },
    limits: {
      authPerMinute: reader.int('RATE_LIMIT_AUTH_PER_MIN', 20, 0, 1_000_000),
      messagesPerSecond: reader.int('RATE_LIMIT_MESSAGES_PER_SEC', 20, 0, 1_000_000),
      mailboxCapacity: reader.int('MAILBOX_CAPACITY', 1000, 1, 1_000_000),
      writeConcurrency: reader.int('DB_WRITE_CONCURRENCY', 4, 1, 1000),
      socketMaxBytes: reader.int('SOCKET_MAX_BYTES', 65_536, 1024, 16 * 1024 * 1024),
      connectionsPerIp: reader.int('MAX_CONNECTIONS_PER_IP', 50, 0, 1_000_000),
      socketEventsPerSecond: reader.int('SOCKET_EVENTS_PER_SEC', 50, 0, 1_000_000),
    },
    corsOrigins,
    shutdownTimeoutMs: reader.int('SHUTDOWN_TIMEOUT_MS', 10_000, 0, 600_000),
  };

  if (reader.problems.length > 0) throw new ConfigError(reader.problems);
  return deepFreeze(config);
}

function readDatabaseConfig(reader: EnvReader): DatabaseConfig {
  const url = readDatabaseUrl(reader);
  const sslMode = reader.oneOf('DB_SSL_MODE', SSL_MODES, 'disable');
  return {
    url,
    poolMax: reader.int('DB_POOL_SIZE', 25, 1, 1000),
    acquireTimeoutMs: reader.int('DB_ACQUIRE_TIMEOUT_MS', 5000, 100, 600_000),
    statementTimeoutMs: reader.int('DB_STATEMENT_TIMEOUT_MS', 30_000, 100, 3_600_000),
    connectTimeoutMs: reader.int('DB_CONNECT_TIMEOUT_MS', 10_000, 100, 600_000),
    sslMode,
    sslCa: readSslCa(reader, sslMode),
    slowQueryMs: reader.int('SLOW_QUERY_MS', 500, 0, 3_600_000),
    migrationsDir: reader.raw('MIGRATIONS_DIR'),
  };
}

/**
 * `npm run dev`: the environment's settings, with the embedded database's URL and, unless JWT_SECRET is set, the
 * generated development secret.
 */
export async function loadDevConfig(
  databaseUrl: string,
  devSecret: () => Promise<string>,
  env: Env = process.env,
): Promise<Readonly<Config>> {
  return loadConfig({ ...env, DATABASE_URL: databaseUrl, JWT_SECRET: env.JWT_SECRET ?? (await devSecret()) });
}

/** Only the database settings, for `migrate`, which needs no JWT secret. */
export function loadDatabaseConfig(env: Env = process.env): Readonly<DatabaseConfig> {
  const reader = new EnvReader(env);
  const database = readDatabaseConfig(reader);
  if (reader.problems.length > 0) throw new ConfigError(reader.problems);
  return deepFreeze(database);
}

/** The URL with its password replaced, for logs. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(unparseable)';
  }
}

/** The configuration as it may be logged: no secrets. */
export function describeConfig(config: Config): Record<string, unknown> {
  return {
    port: config.port,
    host: config.host,
    trustProxy: config.trustProxy,
    logLevel: config.logLevel,
    database: {
      ...config.database,
      url: redactUrl(config.database.url),
      sslCa: config.database.sslCa === undefined ? undefined : '(set)',
    },
    auth: { tokenTtlSeconds: config.auth.tokenTtlSeconds, jwtSecret: '(set)' },
    limits: config.limits,
    corsOrigins: config.corsOrigins,
    shutdownTimeoutMs: config.shutdownTimeoutMs,
  };
}

function deepFreeze<T extends object>(value: T): Readonly<T> {
  for (const key of Object.keys(value)) {
    const child = (value as Record<string, unknown>)[key];
    if (child !== null && typeof child === 'object') deepFreeze(child);
  }
  return Object.freeze(value);
}
