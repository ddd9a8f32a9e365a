import { readdirSync, readFileSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import { migrationFilesProblem } from './migrationFiles.js';

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
  /**
   * How long the pool's statements may wait with no answer at all from PostgreSQL before a probe decides whether it
   * has stopped answering (lib/dbStall.ts); 0 = off. @default 5000
   */
  stallTimeoutMs: number;
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
  /** Proxy hops in front of the server whose X-Forwarded-For is trusted (for per-IP limits). */
  trustProxy: number;
  logLevel: LogLevel;
  database: DatabaseConfig;
  auth: {
    jwtSecret: string;
    /** Lifetime of an access token. @default 900 */
    tokenTtlSeconds: number;
    /** How long a session's refresh token stays valid after the session was last used. @default 30 */
    refreshTtlDays: number;
    issuer: string;
    audience: string;
  };
  limits: {
    /**
     * N of the signup and login limits (docs/api-auth-friends.md): N failed logins per username and IP per
     * minute (then growing lockouts), 10N per username and 10N per IP per hour, N signups per IP per minute;
     * 0 = off.
     */
    authPerMinute: number;
    /** Sends per user per second (bursts of twice that); 0 = off. */
    messagesPerSecond: number;
    /** History reads per user per second, REST and Socket.IO together (bursts of twice that); 0 = off. */
    readsPerSecond: number;
    /** Username lookups (`GET /users`) per user per minute; 0 = off. */
    lookupsPerMinute: number;
    /** Conversations created and participants added per user per minute, cluster-wide; 0 = off. */
    conversationsPerMinute: number;
    /** Queued commands per conversation before OVERLOADED. */
    mailboxCapacity: number;
    /** Message-writing transactions running at once per node (capped below DB_POOL_SIZE). */
    writeConcurrency: number;
    /**
     * When committed messages are announced to the other nodes: `after` the commit (the default; a writer that
     * dies between its commit and its announcement leaves them to the other nodes' catch-up, within seconds) or
     * inside it (`commit`: delivered even then at once, but PostgreSQL commits notifying transactions one at a
     * time). docs/messaging.md.
     */
    announce: MessageAnnounce;
    /** Largest Socket.IO message in bytes. */
    socketMaxBytes: number;
    /** Bytes waiting for one socket before it is disconnected; 0 = off. */
    socketMaxBufferedBytes: number;
    /** An HTTP connection silent both ways this long is closed (WebSockets excepted). */
    httpIdleTimeoutMs: number;
    /** Open sockets per client IP on this node; 0 = off. */
    connectionsPerIp: number;
    /** Open sockets per user on this node; 0 = off. */
    socketsPerUser: number;
    /** Events per socket per second, any event (bursts of twice that); 0 = off. */
    socketEventsPerSecond: number;
  };
  /** Allowed browser origins for CORS and the Socket.IO handshake; empty means same-origin and non-browser only. */
  corsOrigins: readonly string[];
  /** How long SIGTERM waits for mailboxes to drain. */
  shutdownTimeoutMs: number;
}

export type MessageAnnounce = 'after' | 'commit';
const ANNOUNCE_MODES: readonly MessageAnnounce[] = ['after', 'commit'];

const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
const SSL_MODES: readonly DbSslMode[] = ['disable', 'require', 'verify-full'];

type SettingGroup = 'server' | 'database' | 'auth' | 'limits';

interface BaseSetting {
  group: SettingGroup;
  /** One line for the operator: what it does (the README's "meaning" column). */
  doc: string;
}
interface IntSetting extends BaseSetting {
  kind: 'int';
  default: number;
  min: number;
  max: number;
}
interface ChoiceSetting extends BaseSetting {
  kind: 'choice';
  choices: readonly string[];
  default: string;
}
interface TextSetting extends BaseSetting {
  kind: 'text';
  /** How the default reads in the docs: "(required)", "(none)", or a value. */
  shownDefault: string;
  default?: string;
}
type Setting = IntSetting | ChoiceSetting | TextSetting;

/**
 * Every environment variable the server reads, with its default, bounds and meaning: the one source of these
 * facts. loadConfig() reads from it, the README's settings table is generated from it (`npm run docs`), and
 * test/fast/docs.test.ts fails when the two disagree.
 */
export const SETTINGS = {
  DATABASE_URL: {
    kind: 'text',
    group: 'database',
    shownDefault: '(required)',
    doc: '`postgres://USER:PASSWORD@HOST:5432/DATABASE`, without query parameters (the settings below replace them; an `sslmode` that agrees with `DB_SSL_MODE` is tolerated). Each part percent-decoded whole (`/`, `?`, `#` and `@` in the user, password or database name written `%2F`, `%3F`, `%23`, `%40`); no port means 5432 (`PGPORT` is not read); a host of `%2Fvar%2Frun%2Fpostgresql` is a Unix socket folder',
  },
  JWT_SECRET: {
    kind: 'text',
    group: 'auth',
    shownDefault: '(required)',
    doc: 'HMAC key of access tokens, at least 32 characters, the same on every node',
  },
  PORT: {
    kind: 'int',
    group: 'server',
    default: 3000,
    min: 0,
    max: 65535,
    doc: 'HTTP and Socket.IO port (`0` picks a free one)',
  },
  HOST: {
    kind: 'text',
    group: 'server',
    default: '0.0.0.0',
    shownDefault: '`0.0.0.0`',
    doc: 'address to bind: an IP address or a host name of this machine, checked before anything is connected (`npm run dev`: `127.0.0.1` unless set)',
  },
  LOG_LEVEL: {
    kind: 'choice',
    group: 'server',
    choices: LOG_LEVELS,
    default: 'info',
    doc: '`fatal`, `error`, `warn`, `info`, `debug` (logs every SQL statement, never values), `trace`, `silent`; the `[STARTUP]` lines are printed at every level but `silent`',
  },
  DB_POOL_SIZE: {
    kind: 'int',
    group: 'database',
    default: 25,
    min: 1,
    max: 1000,
    doc: 'connections in the app pool; 25-50 per node (see docs/performance.md)',
  },
  DB_ACQUIRE_TIMEOUT_MS: {
    kind: 'int',
    group: 'database',
    default: 5000,
    min: 100,
    max: 600_000,
    doc: 'how long a request waits for a pool connection before `DB_UNAVAILABLE`',
  },
  DB_STATEMENT_TIMEOUT_MS: {
    kind: 'int',
    group: 'database',
    default: 30_000,
    min: 100,
    max: 3_600_000,
    doc: 'PostgreSQL `statement_timeout` and the client query timeout',
  },
  DB_CONNECT_TIMEOUT_MS: {
    kind: 'int',
    group: 'database',
    default: 10_000,
    min: 100,
    max: 600_000,
    doc: 'how long opening a connection may take (also at startup)',
  },
  DB_STALL_TIMEOUT_MS: {
    kind: 'int',
    group: 'database',
    default: 5000,
    min: 0,
    max: 600_000,
    doc: "how long statements may wait with no answer at all from PostgreSQL before the node checks it on a connection of its own; if that gets none within 2 s either, the node drops the pool's connections (their statements answer `DB_UNAVAILABLE`) and answers `DB_UNAVAILABLE` at once until PostgreSQL answers again, instead of at each statement's query timeout, `DB_STATEMENT_TIMEOUT_MS` + 1 s (`0` = off; see docs/operations.md)",
  },
  DB_SSL_MODE: {
    kind: 'choice',
    group: 'database',
    choices: SSL_MODES,
    default: 'disable',
    doc: '`disable`, `require` (encrypted, certificate not checked), `verify-full` (needs the CA)',
  },
  DB_SSL_CA_FILE: {
    kind: 'text',
    group: 'database',
    shownDefault: '(none)',
    doc: "PEM file of the CA that signed PostgreSQL's certificate (`verify-full` only; it must hold a certificate)",
  },
  SLOW_QUERY_MS: {
    kind: 'int',
    group: 'database',
    default: 500,
    min: 0,
    max: 3_600_000,
    doc: 'statements slower than this are logged as warnings (`0` = off)',
  },
  MIGRATIONS_DIR: {
    kind: 'text',
    group: 'database',
    shownDefault: 'bundled',
    doc: 'folder of migrations, for testing or extending the schema: `.js` files, and `.ts` ones where XFChat runs from its TypeScript (`npm run dev`, `npm run migrate`); the built server refuses a `.ts` one without its compiled `.js`',
  },
  JWT_TTL_SECONDS: {
    kind: 'int',
    group: 'auth',
    default: 900,
    // As low as 2 s so tests can watch clients refresh many times; in production keep minutes.
    min: 2,
    max: 30 * 24 * 3600,
    doc: 'access token lifetime in seconds, at most `REFRESH_TTL_DAYS`; clients refresh before it ends (2 s is for tests only)',
  },
  REFRESH_TTL_DAYS: {
    kind: 'int',
    group: 'auth',
    default: 30,
    min: 1,
    max: 365,
    doc: "days a session's refresh token stays valid after the session was last used",
  },
  RATE_LIMIT_AUTH_PER_MIN: {
    kind: 'int',
    group: 'limits',
    default: 20,
    min: 0,
    max: 1_000_000,
    doc: "N: failed logins per username and IP per minute (then growing lockouts) and 5N per hour, N per IP per minute, 10N per username and per IP per hour (an address where a username signed up or in before is not held to its caps for that username), N signups per IP per minute, N logins with the right password per username and IP per minute, N refused refreshes of made-up tokens per IP, N of each real token, and N successful refreshes per session (bursts of 3N; four per access token's life if more, for a short `JWT_TTL_SECONDS`), per minute and node (`0` = off)",
  },
  RATE_LIMIT_MESSAGES_PER_SEC: {
    kind: 'int',
    group: 'limits',
    default: 20,
    min: 0,
    max: 1_000_000,
    doc: 'sends, edits, deletes and reaction changes per user per second on each node, REST and Socket.IO together, bursts of twice that (`0` = off, for benchmarks)',
  },
  RATE_LIMIT_READS_PER_SEC: {
    kind: 'int',
    group: 'limits',
    default: 20,
    min: 0,
    max: 1_000_000,
    doc: 'history reads, conversation pages and the friend, request and block lists (one more per 200 items listed) per user per second on each node, REST and Socket.IO together, bursts of twice that; as many lookups of conversations the user is not in (`0` = off)',
  },
  RATE_LIMIT_LOOKUPS_PER_MIN: {
    kind: 'int',
    group: 'limits',
    default: 60,
    min: 0,
    max: 1_000_000,
    doc: 'user searches and lookups by name (`GET /users`), friend requests (they name a username), blocks and display-name changes per user per minute on each node (`0` = off)',
  },
  RATE_LIMIT_CONVERSATIONS_PER_MIN: {
    kind: 'int',
    group: 'limits',
    default: 30,
    min: 0,
    max: 1_000_000,
    doc: 'conversations created, participants added or removed (not leaving) and groups renamed per user per minute, counted cluster-wide: that many at once, then one every 60/N s (`0` = off)',
  },
  MAILBOX_CAPACITY: {
    kind: 'int',
    group: 'limits',
    default: 1000,
    min: 1,
    max: 1_000_000,
    doc: 'queued commands per conversation before `OVERLOADED`',
  },
  DB_WRITE_CONCURRENCY: {
    kind: 'int',
    group: 'database',
    default: 4,
    min: 1,
    max: 1000,
    doc: 'most message-writing (group-commit) transactions at once per node, at most `DB_POOL_SIZE - 1` (a larger value is lowered to it, with a warning at startup) and at least 1 (with `DB_POOL_SIZE=1` writes and reads take turns on the one connection); beside a running one another starts only for a backlog, or when the running ones are held up (a stalled WAL flush); one more, outside this number, waits for the conversations other transactions hold (a membership change), and a second beside it once it has waited a second (a holder stuck) if `DB_POOL_SIZE` is at least this + 3',
  },
  MESSAGE_ANNOUNCE: {
    kind: 'choice',
    group: 'database',
    choices: ANNOUNCE_MODES,
    default: 'after',
    doc: "how other nodes hear of committed messages: `after` (a NOTIFY right after each commit; a writer that dies in between leaves its last messages to the other nodes' catch-up, 3.5-4.5 s later) or `commit` (a NOTIFY inside the write transaction: delivered even then, but PostgreSQL then commits the nodes' write transactions one at a time); see docs/messaging.md",
  },
  SOCKET_EVENTS_PER_SEC: {
    kind: 'int',
    group: 'limits',
    default: 50,
    min: 0,
    max: 1_000_000,
    doc: 'events of any kind per socket per second, bursts of twice that (`0` = off)',
  },
  SOCKET_MAX_BYTES: {
    kind: 'int',
    group: 'limits',
    default: 65_536,
    // The largest valid client event: a message of 4000 code points, each control character six bytes in JSON.
    min: 32 * 1024,
    max: 16 * 1024 * 1024,
    doc: 'largest Socket.IO message (at least 32 KiB: a send of 4000 control characters is 24 KB in JSON)',
  },
  SOCKET_MAX_BUFFERED_BYTES: {
    kind: 'int',
    group: 'limits',
    default: 4 * 1024 * 1024,
    min: 0,
    max: 1024 * 1024 * 1024,
    doc: 'bytes waiting for one socket (it stopped reading) before it is disconnected (`0` = off)',
  },
  HTTP_IDLE_TIMEOUT_MS: {
    kind: 'int',
    group: 'limits',
    default: 65_000,
    min: 1000,
    max: 600_000,
    doc: "an HTTP connection that sends and receives nothing this long is closed, between requests too (keep it above the load balancer's upstream idle timeout, 60 s for nginx and AWS), also one that never sent a byte (WebSockets keep their own heartbeat); a request (head and body, also a WebSocket upgrade) must arrive whole within it (then `408`; a connection silent that long in the middle of a head is closed without an answer); an answer written whole of which the client takes nothing this long has its connection closed; Socket.IO pings every 25 s or every half of it if that is sooner, so a waiting long-poll is never idle",
  },
  MAX_CONNECTIONS_PER_IP: {
    kind: 'int',
    group: 'limits',
    default: 1000,
    min: 0,
    max: 1_000_000,
    doc: 'open sockets per client IP and node, high for users behind one NAT address, and as many new connections waiting for their Socket.IO handshake (one more ends the oldest of them) (`0` = off)',
  },
  MAX_SOCKETS_PER_USER: {
    kind: 'int',
    group: 'limits',
    default: 20,
    min: 0,
    max: 1_000_000,
    doc: 'open sockets per user and node (`0` = off)',
  },
  CORS_ORIGINS: {
    kind: 'text',
    group: 'server',
    shownDefault: '(none)',
    doc: 'comma-separated browser origins (`https://host[:port]`, no path, no wildcard) allowed for CORS and the Socket.IO handshake',
  },
  TRUST_PROXY_HOPS: {
    kind: 'int',
    group: 'server',
    default: 0,
    min: 0,
    max: 10,
    doc: 'proxies in front whose `X-Forwarded-For` is trusted (for per-IP limits)',
  },
  SHUTDOWN_TIMEOUT_MS: {
    kind: 'int',
    group: 'server',
    default: 10_000,
    min: 0,
    max: 600_000,
    doc: 'how long shutdown waits for mailboxes to drain',
  },
} as const satisfies Record<string, Setting>;

export type SettingName = keyof typeof SETTINGS;
type IntName = { [K in SettingName]: (typeof SETTINGS)[K]['kind'] extends 'int' ? K : never }[SettingName];

export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(problems.join('; '));
    this.name = 'ConfigError';
  }
}

type Env = Readonly<Record<string, string | undefined>>;

/** Whether an environment value counts as set: an empty or blank one does not (the README's rule for every variable). */
function isSet(value: string | undefined): value is string {
  return value !== undefined && value.trim() !== '';
}

/** Collects every problem instead of stopping at the first, so one start reports all of them. */
class EnvReader {
  readonly problems: string[] = [];
  constructor(private readonly env: Env) {}

  raw(name: SettingName): string | undefined {
    const value = this.env[name];
    return isSet(value) ? value.trim() : undefined;
  }

  /**
   * Whether a variable outside the table is set as node-postgres reads its own: any value but an empty one (spaces
   * included, which it would send).
   */
  driverHas(name: string): boolean {
    const value = this.env[name];
    return value !== undefined && value !== '';
  }

  /** An integer setting of the table, within its bounds. */
  int(name: IntName): number {
    const { default: fallback, min, max } = SETTINGS[name];
    const value = this.raw(name);
    if (value === undefined) return fallback;
    if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) {
      this.problems.push(`${name} must be a whole number from ${min} to ${max} (got "${value}")`);
      return fallback;
    }
    return Number(value);
  }

  oneOf<T extends string>(name: SettingName, allowed: readonly T[], fallback: T): T {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    if (!(allowed as readonly string[]).includes(value)) {
      this.problems.push(`${name} must be one of ${allowed.join(', ')} (got "${value}")`);
      return fallback;
    }
    return value as T;
  }
}

/** Whether a part of a URL decodes (a `%` not followed by two hex digits does not). */
function decodes(part: string): boolean {
  try {
    decodeURIComponent(part);
    return true;
  } catch {
    return false;
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
  // A `/`, `?` or `#` in the user or password ends the host part early (the parser ends it at the first of them and
  // takes the user and password up to the last `@` before it): the rest would be read as a host, a database name or
  // parameters, and shown as such, the password with it. One before the first `@` is plain; after an `@` of the
  // password, the tail shows as an `@` after the host part (`postgres://chat:k9@Vq/staple@db:5432/xfchat`), which
  // cannot be told from an `@` of a database name: that one is written `%40`.
  const authority = url.slice(url.indexOf('//') + 2);
  const userinfoEnd = authority.indexOf('@');
  const hostEnd = authority.search(/[/?#]/);
  if (
    (userinfoEnd >= 0 && /[/?#]/.test(authority.slice(0, userinfoEnd))) ||
    (hostEnd >= 0 && authority.slice(hostEnd).includes('@'))
  ) {
    reader.problems.push(
      'DATABASE_URL is malformed: percent-encode the reserved characters of its user, password and database name (/ as %2F, ? as %3F, # as %23, @ as %40)',
    );
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
  } else if (![parsed.hostname, parsed.username, parsed.password, parsed.pathname].every(decodes)) {
    reader.problems.push(
      'DATABASE_URL has a bad percent-escape in its host, user, password or database name: write a literal % as %25',
    );
  }
  return url;
}

/**
 * TLS is DB_SSL_MODE's (lib/db.ts drops `sslmode` from the URL, which would override it in node-postgres). A URL
 * asking for another mode would be silently ignored, and a connection believed encrypted might not be: refused.
 */
function refuseOtherUrlSslMode(reader: EnvReader, url: string, mode: DbSslMode): void {
  let asked: string | undefined;
  try {
    // node-postgres takes the last of several; any that disagrees is refused.
    asked = new URL(url).searchParams.getAll('sslmode').find((value) => value !== mode);
  } catch {
    return; // Reported by readDatabaseUrl.
  }
  if (asked !== undefined) {
    reader.problems.push(
      `DATABASE_URL asks for sslmode=${asked.slice(0, 20)}, which is not read (DB_SSL_MODE=${mode} decides): remove it from the URL and set DB_SSL_MODE to disable, require or verify-full`,
    );
  }
}

/**
 * What to do instead of a DATABASE_URL query parameter that node-postgres reads (and lets override the node's own
 * connection settings), after "remove it from the URL"; any parameter not listed is not supported.
 */
const IN_THE_URL = ' and write it in its place: postgres://USER:PASSWORD@HOST:5432/DATABASE';
const NO_CLIENT_CERTIFICATES = " (client certificates are not supported: TLS is DB_SSL_MODE's)";
const OWN_NAMES = ' (not supported: the node names its connections itself)';
const URL_PARAMETER_INSTEAD: Readonly<Record<string, string>> = {
  ssl: ' and set DB_SSL_MODE instead',
  sslrootcert: ' and set DB_SSL_CA_FILE (with DB_SSL_MODE=verify-full) instead',
  sslcert: NO_CLIENT_CERTIFICATES,
  sslkey: NO_CLIENT_CERTIFICATES,
  sslpassword: NO_CLIENT_CERTIFICATES,
  statement_timeout: ' and set DB_STATEMENT_TIMEOUT_MS instead',
  query_timeout: ' and set DB_STATEMENT_TIMEOUT_MS instead',
  connect_timeout: ' and set DB_CONNECT_TIMEOUT_MS instead',
  host: IN_THE_URL,
  port: IN_THE_URL,
  user: IN_THE_URL,
  password: IN_THE_URL,
  database: IN_THE_URL,
  dbname: IN_THE_URL,
  application_name: OWN_NAMES,
  fallback_application_name: OWN_NAMES,
};

/** A query parameter's name as it may be shown: printable, and short. */
function shownParameter(name: string): string {
  const printable = name.replace(/[^\x20-\x7e]/g, '?');
  return printable.length > 40 ? `${printable.slice(0, 40)}...` : printable;
}

/**
 * node-postgres lets every query parameter of the connection string override the node's explicit connection
 * settings (`ssl=0` turns TLS off under DB_SSL_MODE=require; `statement_timeout`, `application_name`, `options`
 * likewise), so lib/db.ts connects without them and DATABASE_URL may carry none: one problem per parameter, naming
 * it (never its value) and what to set instead. An `sslmode` is refuseOtherUrlSslMode's: one that agrees with
 * DB_SSL_MODE is allowed.
 */
function refuseUrlParameters(reader: EnvReader, url: string): void {
  let names: string[];
  try {
    names = [...new URL(url).searchParams.keys()];
  } catch {
    return; // Reported by readDatabaseUrl.
  }
  for (const name of new Set(names)) {
    if (name === 'sslmode') continue;
    const instead = Object.hasOwn(URL_PARAMETER_INSTEAD, name)
      ? URL_PARAMETER_INSTEAD[name]
      : ' (not supported)';
    reader.problems.push(
      `DATABASE_URL parameter "${shownParameter(name)}" is not read: remove it from the URL${instead}`,
    );
  }
}

/**
 * libpq's variables that node-postgres reads by itself for a setting the node leaves to it, and sends with every
 * connection, over the node's own settings: `PGOPTIONS='-c search_path=...'` sends the migrations elsewhere and
 * `-c default_transaction_read_only=on` fails every write; `PGREPLICATION` opens replication connections, on which
 * the queries fail; `PGSSLNEGOTIATION` changes how TLS starts. Refused at startup, naming the variable (never its
 * value). (It also reads PGCLIENT_ENCODING and PGBINARY, and sends neither.)
 */
const DRIVER_VARIABLES = ['PGOPTIONS', 'PGREPLICATION', 'PGSSLNEGOTIATION'];

function refuseDriverVariables(reader: EnvReader): void {
  for (const name of DRIVER_VARIABLES) {
    if (reader.driverHas(name)) {
      reader.problems.push(
        `${name} is set: the PostgreSQL driver would apply it to every connection, over the node's own settings; unset it (the node's database settings are DATABASE_URL and the DB_* variables)`,
      );
    }
  }
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
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (err) {
    reader.problems.push(
      `DB_SSL_CA_FILE "${file}" cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    );
    return undefined;
  }
  // With no certificate at all (an empty file, a key, a truncated copy), Node's TLS would trust its default public
  // CAs instead: verify-full would accept any publicly signed certificate for the host.
  if (!/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/.test(pem)) {
    reader.problems.push(
      `DB_SSL_CA_FILE "${file}" holds no PEM certificate (-----BEGIN CERTIFICATE-----): give the CA's certificate in PEM`,
    );
    return undefined;
  }
  return pem;
}

/** MIGRATIONS_DIR: a folder with migrations, checked now rather than found wrong after connecting. */
function readMigrationsDir(reader: EnvReader): string | undefined {
  const dir = reader.raw('MIGRATIONS_DIR');
  if (dir === undefined) return undefined;
  let files: string[];
  try {
    if (!statSync(dir).isDirectory()) {
      reader.problems.push(`MIGRATIONS_DIR "${dir}" is not a directory`);
      return dir;
    }
    files = readdirSync(dir);
  } catch (err) {
    reader.problems.push(
      `MIGRATIONS_DIR "${dir}" cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    );
    return dir;
  }
  const problem = migrationFilesProblem(files);
  if (problem !== undefined) reader.problems.push(`MIGRATIONS_DIR "${dir}" ${problem}`);
  return dir;
}

/**
 * A host name as RFC 1123 spells one (dot-separated labels of letters, digits and inner hyphens), with the
 * underscores that container networks' names may have, and the trailing dot of a fully qualified one.
 */
const HOST_NAME =
  /^(?=.{1,254}$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*\.?$/i;

/**
 * HOST, as an IP address or a host name (not one made of digits and dots only, which no resolver would take for a
 * name). Whether it is an address of this machine is checked at startup, before anything is connected.
 */
function readHost(reader: EnvReader): string {
  const host = reader.raw('HOST') ?? SETTINGS.HOST.default;
  if (isIP(host) === 0 && (!HOST_NAME.test(host) || /^[\d.]+$/.test(host))) {
    reader.problems.push(
      `HOST must be an IP address (IPv6 without brackets) or a host name, such as 0.0.0.0 or :: for all addresses (got "${host}")`,
    );
  }
  return host;
}

/**
 * A CORS_ORIGINS entry as browsers send it in `Origin` (scheme and host in lower case, no default port), which is
 * what requests are compared with exactly (lib/requestOrigin.ts, Socket.IO's `cors`); undefined, with a problem
 * naming the entry (credentials hidden), when it is no origin or could never match one.
 */
function readCorsOrigin(reader: EnvReader, entry: string): string | undefined {
  const authority = /^https?:\/\/([^/?#\\]*)/i.exec(entry)?.[1];
  const shown = authority?.includes('@') === true ? entry.replace(/\/\/[^/?#\\]*@/, '//***@') : entry;
  const refuse = (why: string): undefined => {
    reader.problems.push(`CORS_ORIGINS entry "${shown}" ${why}: it must look like https://chat.example.com`);
    return undefined;
  };
  if (authority === undefined || authority === '') return refuse('is not an http(s) origin');
  if (authority.includes('@')) return refuse('has credentials');
  const port = /:(\d+)$/.exec(authority)?.[1];
  if (port !== undefined && Number(port) > 65535) return refuse('has a port above 65535');
  let url: URL;
  try {
    url = new URL(entry);
  } catch {
    return refuse('is malformed');
  }
  if (url.pathname !== '/' || /^https?:\/\/[^/?#\\]*[/\\][^?#]/i.test(entry)) return refuse('has a path');
  // The URL parser takes both, and no browser's Origin ever matches them: the entry would refuse every request.
  if (url.hostname.includes('*')) return refuse('has a wildcard (not supported: list each origin)');
  if (url.port === '0') return refuse('has port 0');
  if (entry.includes('?')) return refuse('has a query');
  if (entry.includes('#')) return refuse('has a fragment');
  return url.origin;
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
  } else if ([...jwtSecret].length < 32) {
    // Characters as people count them (code points), not UTF-16 units: 16 emoji are 16 characters, not 32.
    reader.problems.push(
      `JWT_SECRET is too short (${[...jwtSecret].length} characters): use at least 32, e.g. openssl rand -hex 32`,
    );
  }

  const corsOrigins = [
    ...new Set(
      (reader.raw('CORS_ORIGINS') ?? '')
        .split(',')
        .map((o) => o.trim())
        .filter((o) => o !== '')
        .map((o) => readCorsOrigin(reader, o))
        .filter((o) => o !== undefined),
    ),
  ];

  const config: Config = {
    port: reader.int('PORT'),
    host: readHost(reader),
    trustProxy: reader.int('TRUST_PROXY_HOPS'),
    logLevel: reader.oneOf('LOG_LEVEL', LOG_LEVELS, SETTINGS.LOG_LEVEL.default),
    database: readDatabaseConfig(reader),
    auth: {
      jwtSecret: jwtSecret ?? '',
      tokenTtlSeconds: reader.int('JWT_TTL_SECONDS'),
      refreshTtlDays: reader.int('REFRESH_TTL_DAYS'),
      issuer: 'xfchat',
      audience: 'xfchat',
    },
    limits: {
      authPerMinute: reader.int('RATE_LIMIT_AUTH_PER_MIN'),
      messagesPerSecond: reader.int('RATE_LIMIT_MESSAGES_PER_SEC'),
      readsPerSecond: reader.int('RATE_LIMIT_READS_PER_SEC'),
      lookupsPerMinute: reader.int('RATE_LIMIT_LOOKUPS_PER_MIN'),
      conversationsPerMinute: reader.int('RATE_LIMIT_CONVERSATIONS_PER_MIN'),
      mailboxCapacity: reader.int('MAILBOX_CAPACITY'),
      writeConcurrency: reader.int('DB_WRITE_CONCURRENCY'),
      announce: reader.oneOf('MESSAGE_ANNOUNCE', ANNOUNCE_MODES, SETTINGS.MESSAGE_ANNOUNCE.default),
      socketMaxBytes: reader.int('SOCKET_MAX_BYTES'),
      socketMaxBufferedBytes: reader.int('SOCKET_MAX_BUFFERED_BYTES'),
      httpIdleTimeoutMs: reader.int('HTTP_IDLE_TIMEOUT_MS'),
      connectionsPerIp: reader.int('MAX_CONNECTIONS_PER_IP'),
      socketsPerUser: reader.int('MAX_SOCKETS_PER_USER'),
      socketEventsPerSecond: reader.int('SOCKET_EVENTS_PER_SEC'),
    },
    corsOrigins,
    shutdownTimeoutMs: reader.int('SHUTDOWN_TIMEOUT_MS'),
  };
  // An access token outliving its session's expiry would keep a session working that the session list no longer
  // shows (it lists sessions used within REFRESH_TTL_DAYS).
  if (config.auth.tokenTtlSeconds > config.auth.refreshTtlDays * 24 * 3600) {
    reader.problems.push(
      `JWT_TTL_SECONDS (${config.auth.tokenTtlSeconds}) must not be longer than REFRESH_TTL_DAYS (${config.auth.refreshTtlDays} days): an access token would outlive its session`,
    );
  }

  if (reader.problems.length > 0) throw new ConfigError(reader.problems);
  return deepFreeze(config);
}

function readDatabaseConfig(reader: EnvReader): DatabaseConfig {
  const url = readDatabaseUrl(reader);
  const sslMode = reader.oneOf('DB_SSL_MODE', SSL_MODES, SETTINGS.DB_SSL_MODE.default);
  refuseOtherUrlSslMode(reader, url, sslMode);
  refuseUrlParameters(reader, url);
  refuseDriverVariables(reader);
  return {
    url,
    poolMax: reader.int('DB_POOL_SIZE'),
    acquireTimeoutMs: reader.int('DB_ACQUIRE_TIMEOUT_MS'),
    statementTimeoutMs: reader.int('DB_STATEMENT_TIMEOUT_MS'),
    connectTimeoutMs: reader.int('DB_CONNECT_TIMEOUT_MS'),
    stallTimeoutMs: reader.int('DB_STALL_TIMEOUT_MS'),
    sslMode,
    sslCa: readSslCa(reader, sslMode),
    slowQueryMs: reader.int('SLOW_QUERY_MS'),
    migrationsDir: readMigrationsDir(reader),
  };
}

/** Where `npm run dev` listens unless HOST says otherwise: a development server is not for the network. */
export const DEV_HOST = '127.0.0.1';

/**
 * `npm run dev`: the environment's settings, with the embedded database's URL, the loopback address unless HOST
 * is set, and, unless JWT_SECRET is set, the generated development secret.
 */
export async function loadDevConfig(
  databaseUrl: string,
  devSecret: () => Promise<string>,
  env: Env = process.env,
): Promise<Readonly<Config>> {
  // Empty or blank counts as not set, as everywhere else (`??` would keep '', which loadConfig then reads as unset
  // and gives the production defaults: every interface, and no secret).
  return loadConfig({
    ...env,
    HOST: isSet(env.HOST) ? env.HOST : DEV_HOST,
    DATABASE_URL: databaseUrl,
    JWT_SECRET: isSet(env.JWT_SECRET) ? env.JWT_SECRET : await devSecret(),
  });
}

/** Only the database settings, for `migrate`, which needs no JWT secret. */
export function loadDatabaseConfig(env: Env = process.env): Readonly<DatabaseConfig> {
  const reader = new EnvReader(env);
  const database = readDatabaseConfig(reader);
  if (reader.problems.length > 0) throw new ConfigError(reader.problems);
  return deepFreeze(database);
}

/** The URL with its password replaced (in the user part, and in the query, where pg takes one too), for logs. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    for (const name of [...parsed.searchParams.keys()]) {
      if (/password/i.test(name)) parsed.searchParams.set(name, '***');
    }
    return parsed.toString();
  } catch {
    return '(unparseable)';
  }
}

/**
 * How many message-writing transactions a node runs at once: DB_WRITE_CONCURRENCY, but at most DB_POOL_SIZE - 1
 * (and at least 1), so that reads, membership checks and auth always have a pool connection while writes are busy.
 */
export function writeConcurrency(config: Pick<Config, 'database' | 'limits'>): number {
  return Math.max(1, Math.min(config.limits.writeConcurrency, config.database.poolMax - 1));
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
    auth: {
      tokenTtlSeconds: config.auth.tokenTtlSeconds,
      refreshTtlDays: config.auth.refreshTtlDays,
      jwtSecret: '(set)',
    },
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
