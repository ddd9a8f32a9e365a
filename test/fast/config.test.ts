import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import {
  ConfigError,
  describeConfig,
  loadConfig,
  loadDatabaseConfig,
  loadDevConfig,
  redactUrl,
  writeConcurrency,
  type Config,
} from '../../lib/config.js';

const SECRET = 'jwt-secret-0123456789-abcdefghijklmnop';
const PASSWORD = 's3cr3t-Pa55word';
const URL_WITH_PASSWORD = `postgres://chat:${PASSWORD}@db.internal:5432/xfchat`;

function env(overrides: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return { DATABASE_URL: URL_WITH_PASSWORD, JWT_SECRET: SECRET, ...overrides };
}

/** Runs `fn`, expects a ConfigError, and returns its problems. */
function problemsOf(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(ConfigError);
    const problems = (err as ConfigError).problems;
    expect((err as ConfigError).message).to.equal(problems.join('; '));
    return problems;
  }
  expect.fail('expected a ConfigError');
}

describe('config', () => {
  it('writeConcurrency(): DB_WRITE_CONCURRENCY, at most DB_POOL_SIZE - 1 and at least 1', () => {
    const of = (pool: string, writes?: string) =>
      writeConcurrency(loadConfig(env({ DB_POOL_SIZE: pool, DB_WRITE_CONCURRENCY: writes })));
    expect(of('25')).to.equal(4);
    expect(of('25', '16')).to.equal(16);
    expect(of('5', '10')).to.equal(4);
    expect(of('5', '4')).to.equal(4);
    expect(of('2')).to.equal(1);
    expect(of('1')).to.equal(1);
  });

  it('refuses a SOCKET_MAX_BYTES below the largest valid client event (a 4000-character body, 24 KB in JSON)', () => {
    const problems = problemsOf(() => loadConfig(env({ SOCKET_MAX_BYTES: '24000' })));
    expect(problems).to.have.length(1);
    expect(problems[0]).to.include('SOCKET_MAX_BYTES');
    expect(loadConfig(env({ SOCKET_MAX_BYTES: String(32 * 1024) })).limits.socketMaxBytes).to.equal(
      32 * 1024,
    );
  });

  it('refuses an access token lifetime longer than a session lasts unused (REFRESH_TTL_DAYS), and takes one as long', () => {
    expect(
      problemsOf(() =>
        loadConfig(env({ JWT_TTL_SECONDS: String(2 * 24 * 3600 + 1), REFRESH_TTL_DAYS: '2' })),
      ),
    ).to.deep.equal([
      'JWT_TTL_SECONDS (172801) must not be longer than REFRESH_TTL_DAYS (2 days): an access token would outlive its session',
    ]);
    const config = loadConfig(env({ JWT_TTL_SECONDS: String(2 * 24 * 3600), REFRESH_TTL_DAYS: '2' }));
    expect(config.auth.tokenTtlSeconds).to.equal(172_800);
  });

  describe('loadConfig defaults', () => {
    it('fills every optional setting with its documented default', () => {
      const config = loadConfig(env());
      expect(config.port).to.equal(3000);
      expect(config.host).to.equal('0.0.0.0');
      expect(config.logLevel).to.equal('info');
      expect(config.trustProxy).to.equal(0);
      expect(config.database.url).to.equal(URL_WITH_PASSWORD);
      expect(config.database.poolMax).to.equal(25);
      expect(config.database.acquireTimeoutMs).to.equal(5000);
      expect(config.database.statementTimeoutMs).to.equal(30_000);
      expect(config.database.connectTimeoutMs).to.equal(10_000);
      expect(config.database.sslMode).to.equal('disable');
      expect(config.database.sslCa).to.equal(undefined);
      expect(config.database.migrationsDir).to.equal(undefined);
      expect(config.auth.jwtSecret).to.equal(SECRET);
      expect(config.auth.tokenTtlSeconds).to.equal(900);
      expect(config.auth.refreshTtlDays).to.equal(30);
      expect(config.limits.authPerMinute).to.equal(20);
      expect(config.limits.messagesPerSecond).to.equal(20);
      expect(config.corsOrigins).to.deep.equal([]);
    });

    it('reads explicit values', () => {
      const config = loadConfig(
        env({
          PORT: '8080',
          HOST: '127.0.0.1',
          LOG_LEVEL: 'debug',
          DB_POOL_SIZE: '7',
          DB_ACQUIRE_TIMEOUT_MS: '1234',
          DB_STATEMENT_TIMEOUT_MS: '4567',
          DB_CONNECT_TIMEOUT_MS: '890',
          RATE_LIMIT_AUTH_PER_MIN: '0',
          RATE_LIMIT_MESSAGES_PER_SEC: '0',
        }),
      );
      expect(config.port).to.equal(8080);
      expect(config.host).to.equal('127.0.0.1');
      expect(config.logLevel).to.equal('debug');
      expect(config.database.poolMax).to.equal(7);
      expect(config.database.acquireTimeoutMs).to.equal(1234);
      expect(config.database.statementTimeoutMs).to.equal(4567);
      expect(config.database.connectTimeoutMs).to.equal(890);
      expect(config.limits.authPerMinute).to.equal(0);
      expect(config.limits.messagesPerSecond).to.equal(0);
    });

    it('treats empty and blank values as unset', () => {
      const config = loadConfig(env({ PORT: '', DB_POOL_SIZE: '   ', CORS_ORIGINS: '' }));
      expect(config.port).to.equal(3000);
      expect(config.database.poolMax).to.equal(25);
      expect(config.corsOrigins).to.deep.equal([]);
    });

    it('accepts postgresql:// as well as postgres://', () => {
      const url = 'postgresql://chat@localhost/xfchat';
      expect(loadConfig(env({ DATABASE_URL: url })).database.url).to.equal(url);
    });
  });

  describe('secrets', () => {
    it('reports a missing DATABASE_URL and a short JWT_SECRET together in one ConfigError', () => {
      const problems = problemsOf(() => loadConfig({ JWT_SECRET: 'short' }));
      expect(problems).to.have.length(2);
      expect(problems.some((p) => p.includes('DATABASE_URL'))).to.equal(true);
      expect(problems.some((p) => p.includes('JWT_SECRET') && p.includes('32'))).to.equal(true);
    });

    it('reports every problem at once, not only the first', () => {
      const problems = problemsOf(() =>
        loadConfig({
          DATABASE_URL: 'mysql://u:p@h/db',
          PORT: 'eighty',
          DB_POOL_SIZE: '0',
          DB_SSL_MODE: 'prefer',
          LOG_LEVEL: 'loud',
          CORS_ORIGINS: 'https://ok.example.com,ftp://bad.example.com',
        }),
      );
      for (const name of ['JWT_SECRET', 'DATABASE_URL', 'PORT', 'DB_POOL_SIZE', 'DB_SSL_MODE', 'LOG_LEVEL']) {
        expect(
          problems.some((p) => p.includes(name)),
          name,
        ).to.equal(true);
      }
      expect(problems.some((p) => p.includes('ftp://bad.example.com'))).to.equal(true);
      expect(problems).to.have.length(7);
    });

    it('has no default JWT secret: missing is an error', () => {
      const problems = problemsOf(() => loadConfig({ DATABASE_URL: URL_WITH_PASSWORD }));
      expect(problems).to.have.length(1);
      expect(problems[0]).to.match(/^JWT_SECRET is not set/);
    });

    it('rejects a JWT secret of 31 characters and accepts one of 32', () => {
      const problems = problemsOf(() => loadConfig(env({ JWT_SECRET: 'x'.repeat(31) })));
      expect(problems).to.have.length(1);
      expect(problems[0]).to.include('JWT_SECRET is too short (31 characters)');
      expect(loadConfig(env({ JWT_SECRET: 'x'.repeat(32) })).auth.jwtSecret).to.equal('x'.repeat(32));
    });

    it('counts a JWT secret’s characters, not UTF-16 units: 16 emoji are 16 characters', () => {
      const problems = problemsOf(() => loadConfig(env({ JWT_SECRET: '\u{1F510}'.repeat(16) })));
      expect(problems).to.have.length(1);
      expect(problems[0]).to.include('JWT_SECRET is too short (16 characters)');
      const mixed = 'x'.repeat(15) + '\u{1F510}'.repeat(8); // 23 characters, 31 units
      expect(problemsOf(() => loadConfig(env({ JWT_SECRET: mixed })))[0]).to.include('(23 characters)');
    });

    it('does not echo the short JWT secret in the problem', () => {
      const problems = problemsOf(() => loadConfig(env({ JWT_SECRET: 'tiny-secret-value' })));
      expect(problems.join(' ')).not.to.include('tiny-secret-value');
    });
  });

  describe('DATABASE_URL', () => {
    it('is required', () => {
      const problems = problemsOf(() => loadConfig({ JWT_SECRET: SECRET }));
      expect(problems).to.have.length(1);
      expect(problems[0]).to.match(/^DATABASE_URL is not set/);
    });

    it('rejects a malformed URL without echoing it', () => {
      const problems = problemsOf(() => loadConfig(env({ DATABASE_URL: 'not a url:secretpw' })));
      expect(problems).to.have.length(1);
      expect(problems[0]).to.match(/^DATABASE_URL is malformed/);
      expect(problems[0]).not.to.include('secretpw');
    });

    // A password with a reserved character not percent-encoded ends the host part early: the rest of it would be
    // read as a host, a database or parameters, and shown as such; after an `@` of the password too (its tail was
    // logged as the database name, and said in the startup error: OPS hunt).
    for (const password of [
      `/${PASSWORD}`,
      `2024/${PASSWORD}`,
      `?${PASSWORD}`,
      `#${PASSWORD}`,
      `k9@Vq/${PASSWORD}`,
      `k9@Vq?${PASSWORD}`,
      `k9@Vq#${PASSWORD}`,
    ]) {
      it(`rejects a password with an unescaped reserved character (${password.slice(0, 5)}...) without showing any of it`, () => {
        const problems = problemsOf(() =>
          loadConfig(env({ DATABASE_URL: `postgres://chat:${password}@db.internal:5432/xfchat` })),
        );
        expect(problems).to.deep.equal([
          'DATABASE_URL is malformed: percent-encode the reserved characters of its user, password and database name (/ as %2F, ? as %3F, # as %23, @ as %40)',
        ]);
      });
    }

    // After an `@` of the password, its tail is read as the host and the database: an `@` there cannot be told from
    // one of a database name, which is written `%40` (review: a URL of no port was taken).
    for (const tail of [`${PASSWORD}@db.internal:5432`, `${PASSWORD}@db.internal`]) {
      it(`rejects a password with an @ then a / before "${tail.slice(PASSWORD.length)}", without showing any of it`, () => {
        const problems = problemsOf(() => loadConfig(env({ DATABASE_URL: `postgres://chat:k9@Vq/${tail}` })));
        expect(problems).to.have.length(1);
        expect(problems[0]).to.match(/^DATABASE_URL is malformed: percent-encode/);
        expect(problems[0]).not.to.include(PASSWORD);
      });
    }

    it('takes an @ in the database name written %40, and refuses it bare (it could be a password’s tail)', () => {
      const config = loadConfig(
        env({ DATABASE_URL: 'postgres://chat:plainpass@db.internal:5432/team%40prod' }),
      );
      expect(config.database.url).to.equal('postgres://chat:plainpass@db.internal:5432/team%40prod');
      const problems = problemsOf(() =>
        loadConfig(env({ DATABASE_URL: 'postgres://chat:plainpass@db.internal:5432/team@prod' })),
      );
      expect(problems[0]).to.match(/^DATABASE_URL is malformed: percent-encode/);
    });

    it('rejects a wrong protocol', () => {
      const problems = problemsOf(() => loadConfig(env({ DATABASE_URL: 'mysql://u:pw@localhost:3306/db' })));
      expect(problems).to.have.length(1);
      expect(problems[0]).to.include('postgres://');
      expect(problems[0]).to.include('"mysql://"');
    });

    it('refuses an sslmode in DATABASE_URL other than DB_SSL_MODE (it would be ignored), and takes one that agrees', () => {
      const problems = problemsOf(() =>
        loadConfig(env({ DATABASE_URL: 'postgres://u@h:5432/db?sslmode=require' })),
      );
      expect(problems).to.have.length(1);
      expect(problems[0]).to.include('sslmode=require').and.to.include('DB_SSL_MODE=disable');
      const agreeing = loadConfig(
        env({ DATABASE_URL: 'postgres://u@h:5432/db?sslmode=require', DB_SSL_MODE: 'require' }),
      );
      expect(agreeing.database.sslMode).to.equal('require');
      expect(
        loadConfig(env({ DATABASE_URL: 'postgres://u@h:5432/db?sslmode=disable' })).database.sslMode,
      ).to.equal('disable');
    });

    it('refuses every query parameter, naming it and what to set instead, never its value', () => {
      // node-postgres lets a URL parameter override the node's own connection settings: `ssl=0` turned
      // DB_SSL_MODE=require into plaintext, `statement_timeout=0` undid DB_STATEMENT_TIMEOUT_MS.
      const cases: Array<[query: string, name: string, instead: string]> = [
        ['ssl=0', 'ssl', 'DB_SSL_MODE'],
        ['ssl=false', 'ssl', 'DB_SSL_MODE'],
        ['ssl=true', 'ssl', 'DB_SSL_MODE'],
        ['sslcert=/tmp/x.pem', 'sslcert', 'not supported'],
        ['sslkey=/tmp/x.key', 'sslkey', 'not supported'],
        ['sslrootcert=/tmp/ca.pem', 'sslrootcert', 'DB_SSL_CA_FILE'],
        ['statement_timeout=0', 'statement_timeout', 'DB_STATEMENT_TIMEOUT_MS'],
        ['connect_timeout=999', 'connect_timeout', 'DB_CONNECT_TIMEOUT_MS'],
        ['application_name=myapp', 'application_name', 'not supported'],
        ['options=-c%20statement_timeout%3D0', 'options', 'not supported'],
        ['host=elsewhere.example', 'host', 'postgres://USER:PASSWORD@HOST:5432/DATABASE'],
        [`password=${PASSWORD}`, 'password', 'postgres://USER:PASSWORD@HOST:5432/DATABASE'],
      ];
      for (const mode of ['disable', 'require']) {
        for (const [query, name, instead] of cases) {
          const problems = problemsOf(() =>
            loadConfig(env({ DATABASE_URL: `${URL_WITH_PASSWORD}?${query}`, DB_SSL_MODE: mode })),
          );
          expect(problems, query).to.have.length(1);
          expect(problems[0], query).to.match(new RegExp(`^DATABASE_URL parameter "${name}" is not read`));
          expect(problems[0], query).to.include(instead);
          expect(problems[0], query).not.to.include(PASSWORD);
          expect(problems[0], query).not.to.include(query.split('=')[1]);
        }
      }
    });

    it('refuses a parameter under verify-full and in loadDatabaseConfig (xfchat migrate) too', async () => {
      const dir = await mkdtemp(path.join(os.tmpdir(), 'xfchat-config-test-'));
      try {
        const ca = path.join(dir, 'ca.pem');
        await writeFile(ca, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
        const problems = problemsOf(() =>
          loadConfig(
            env({
              DATABASE_URL: `${URL_WITH_PASSWORD}?ssl=0`,
              DB_SSL_MODE: 'verify-full',
              DB_SSL_CA_FILE: ca,
            }),
          ),
        );
        expect(problems).to.deep.equal([
          'DATABASE_URL parameter "ssl" is not read: remove it from the URL and set DB_SSL_MODE instead',
        ]);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
      const migrate = problemsOf(() =>
        loadDatabaseConfig({ DATABASE_URL: `${URL_WITH_PASSWORD}?application_name=x&statement_timeout=0` }),
      );
      expect(migrate).to.have.length(2);
      expect(migrate[0]).to.include('"application_name"');
      expect(migrate[1]).to.include('"statement_timeout"').and.to.include('DB_STATEMENT_TIMEOUT_MS');
    });

    it("refuses the driver's own variables that would override the node's settings, naming each, not its value", () => {
      const problems = problemsOf(() =>
        loadDatabaseConfig({
          DATABASE_URL: URL_WITH_PASSWORD,
          PGOPTIONS: '-c search_path=elsewhere',
          // Spaces are a value to the driver, which sends them (and PostgreSQL refuses the connection).
          PGREPLICATION: ' ',
          PGSSLNEGOTIATION: 'direct',
          // Read by the driver and never sent, or set by the node itself: not refused.
          PGCLIENT_ENCODING: 'UTF8',
          PGBINARY: 'true',
          PGAPPNAME: 'the node names its connections',
        }),
      );
      expect(problems.map((p) => p.split(' ')[0])).to.deep.equal([
        'PGOPTIONS',
        'PGREPLICATION',
        'PGSSLNEGOTIATION',
      ]);
      for (const problem of problems) expect(problem).not.to.match(/elsewhere|direct/);
      // An empty one is unset, to the driver as to the node.
      expect(() => loadDatabaseConfig({ DATABASE_URL: URL_WITH_PASSWORD, PGOPTIONS: '' })).not.to.throw();
    });

    it('names each parameter once, beside a disagreeing sslmode, and takes an agreeing sslmode alone', () => {
      const problems = problemsOf(() =>
        loadConfig(env({ DATABASE_URL: `${URL_WITH_PASSWORD}?sslmode=disable&sslmode=require&ssl=1&ssl=0` })),
      );
      expect(problems).to.have.length(2);
      expect(problems[0]).to.include('sslmode=require').and.to.include('DB_SSL_MODE=disable');
      expect(problems[1]).to.include('"ssl"');
      const agreeing = loadConfig(
        env({ DATABASE_URL: `${URL_WITH_PASSWORD}?sslmode=require`, DB_SSL_MODE: 'require' }),
      );
      expect(agreeing.database.sslMode).to.equal('require');
    });

    it('rejects a bad percent-escape in the host, user, password or database name, without echoing it', () => {
      for (const url of [
        'postgres://u@local%ZZhost:5432/db',
        'postgres://a%ZZ@localhost:5432/db',
        'postgres://u:secret%zzpw@localhost:5432/db',
        'postgres://u@localhost:5432/x%ZZ',
      ]) {
        const problems = problemsOf(() => loadConfig(env({ DATABASE_URL: url })));
        expect(problems, url).to.have.length(1);
        expect(problems[0]).to.include('bad percent-escape');
        expect(problems[0]).to.include('%25');
        expect(problems[0]).not.to.include('secret');
      }
      expect(loadConfig(env({ DATABASE_URL: 'postgres://u:100%25sure@h/db' })).database.url).to.include(
        '%25',
      );
    });

    it('rejects a URL without a database name', () => {
      const problems = problemsOf(() => loadConfig(env({ DATABASE_URL: 'postgres://u:pw@localhost:5432/' })));
      expect(problems).to.have.length(1);
      expect(problems[0]).to.include('must name a host and a database');
    });
  });

  describe('integers', () => {
    const cases: Array<[string, string]> = [
      ['PORT', '-1'],
      ['PORT', '65536'],
      ['PORT', '80.5'],
      ['PORT', '3e3'],
      ['PORT', 'abc'],
      ['DB_POOL_SIZE', '0'],
      ['DB_POOL_SIZE', '1001'],
      ['DB_ACQUIRE_TIMEOUT_MS', '99'],
      ['DB_STATEMENT_TIMEOUT_MS', 'forever'],
      ['DB_CONNECT_TIMEOUT_MS', '0x10'],
    ];
    for (const [name, value] of cases) {
      it(`rejects ${name}=${value}`, () => {
        const problems = problemsOf(() => loadConfig(env({ [name]: value })));
        expect(problems).to.have.length(1);
        expect(problems[0]).to.include(name);
        expect(problems[0]).to.include(`"${value}"`);
        expect(problems[0]).to.include('whole number');
      });
    }

    it('accepts the bounds', () => {
      expect(loadConfig(env({ PORT: '0' })).port).to.equal(0);
      expect(loadConfig(env({ PORT: '65535' })).port).to.equal(65535);
      expect(loadConfig(env({ DB_POOL_SIZE: '1' })).database.poolMax).to.equal(1);
    });
  });

  describe('HOST', () => {
    for (const host of [
      'a b',
      '999.1.1.1',
      'http://x',
      '[::1]',
      'a..b',
      '-x.example',
      `${'a'.repeat(64)}.example`,
    ]) {
      it(`rejects HOST=${host.length > 20 ? `${host.slice(0, 12)}…` : host}`, () => {
        const problems = problemsOf(() => loadConfig(env({ HOST: host })));
        expect(problems).to.have.length(1);
        expect(problems[0]).to.include('HOST');
        expect(problems[0]).to.include(`"${host}"`);
      });
    }

    it('accepts addresses and host names', () => {
      for (const host of [
        '0.0.0.0',
        '127.0.0.1',
        '::',
        '::1',
        'fe80::1',
        'localhost',
        'chat-1.internal.example',
        'chat_db',
        'localhost.',
      ]) {
        expect(loadConfig(env({ HOST: host })).host).to.equal(host);
      }
    });
  });

  describe('DB_SSL_MODE', () => {
    let dir: string;
    before(async () => {
      dir = await mkdtemp(path.join(os.tmpdir(), 'xfchat-config-test-'));
    });
    after(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('accepts disable and require', () => {
      expect(loadConfig(env({ DB_SSL_MODE: 'disable' })).database.sslMode).to.equal('disable');
      expect(loadConfig(env({ DB_SSL_MODE: 'require' })).database.sslMode).to.equal('require');
    });

    it('rejects an unknown mode and lists the allowed ones', () => {
      const problems = problemsOf(() => loadConfig(env({ DB_SSL_MODE: 'prefer' })));
      expect(problems).to.have.length(1);
      expect(problems[0]).to.include('DB_SSL_MODE');
      expect(problems[0]).to.include('disable, require, verify-full');
    });

    it('verify-full needs DB_SSL_CA_FILE', () => {
      const problems = problemsOf(() => loadConfig(env({ DB_SSL_MODE: 'verify-full' })));
      expect(problems).to.have.length(1);
      expect(problems[0]).to.include('DB_SSL_CA_FILE');
    });

    it('verify-full with an unreadable CA file is reported', () => {
      const missing = path.join(dir, 'missing.pem');
      const problems = problemsOf(() =>
        loadConfig(env({ DB_SSL_MODE: 'verify-full', DB_SSL_CA_FILE: missing })),
      );
      expect(problems).to.have.length(1);
      expect(problems[0]).to.include(missing);
      expect(problems[0]).to.include('ENOENT');
    });

    it('verify-full reads the CA file', async () => {
      const file = path.join(dir, 'ca.pem');
      const pem = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
      await writeFile(file, pem);
      const config = loadConfig(env({ DB_SSL_MODE: 'verify-full', DB_SSL_CA_FILE: file }));
      expect(config.database.sslMode).to.equal('verify-full');
      expect(config.database.sslCa).to.equal(pem);
      expect(describeConfig(config)).to.have.nested.property('database.sslCa', '(set)');
    });

    it('verify-full refuses a CA file without a PEM certificate (Node would trust its public CAs instead)', async () => {
      const key = '-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n';
      for (const [name, text] of [
        ['empty.pem', ''],
        ['blank.pem', '\n  \n'],
        ['key.pem', key],
        ['truncated.pem', '-----BEGIN CERTIFICATE-----\nMIIB\n'],
      ] as const) {
        const file = path.join(dir, name);
        await writeFile(file, text);
        const problems = problemsOf(() =>
          loadConfig(env({ DB_SSL_MODE: 'verify-full', DB_SSL_CA_FILE: file })),
        );
        expect(problems, name).to.deep.equal([
          `DB_SSL_CA_FILE "${file}" holds no PEM certificate (-----BEGIN CERTIFICATE-----): give the CA's certificate in PEM`,
        ]);
      }
      const bundle = path.join(dir, 'bundle.pem');
      const cert = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
      await writeFile(bundle, `${cert}${cert}`);
      expect(loadConfig(env({ DB_SSL_MODE: 'verify-full', DB_SSL_CA_FILE: bundle })).database.sslCa).to.equal(
        `${cert}${cert}`,
      );
    });

    it('a CA file without verify-full is a mistake', () => {
      const problems = problemsOf(() => loadConfig(env({ DB_SSL_CA_FILE: path.join(dir, 'ca.pem') })));
      expect(problems).to.have.length(1);
      expect(problems[0]).to.include('DB_SSL_CA_FILE');
    });
  });

  describe('CORS_ORIGINS', () => {
    it('parses a comma-separated list, trimming blanks', () => {
      const config = loadConfig(
        env({ CORS_ORIGINS: ' https://chat.example.com , http://localhost:5173,, ' }),
      );
      expect(config.corsOrigins).to.deep.equal(['https://chat.example.com', 'http://localhost:5173']);
    });

    it('keeps each entry as browsers send it in Origin: host in lower case, no default port, no trailing slash', () => {
      const config = loadConfig(
        env({
          CORS_ORIGINS:
            'https://Chat.Example.COM,https://chat.example.com:443,HTTP://LocalHost:80,https://a.example.com/,https://b.example.com:8443,http://[::1]:3000',
        }),
      );
      expect(config.corsOrigins).to.deep.equal([
        'https://chat.example.com',
        'http://localhost',
        'https://a.example.com',
        'https://b.example.com:8443',
        'http://[::1]:3000',
      ]);
    });

    for (const [bad, why] of [
      ['chat.example.com', 'is not an http(s) origin'],
      ['https://x.com/app', 'has a path'],
      ['https://x.com/.', 'has a path'],
      ['https://x.com?x=1', 'has a query'],
      ['https://x.com/?', 'has a query'],
      ['https://x.com#top', 'has a fragment'],
      ['https://x.com:99999', 'has a port above 65535'],
      ['https://x.com:65536', 'has a port above 65535'],
      ['https://x .com', 'is malformed'],
      ['ws://x.com', 'is not an http(s) origin'],
      ['*', 'is not an http(s) origin'],
      ['https://*.example.com', 'has a wildcard (not supported: list each origin)'],
      ['https://chat.example.com:0', 'has port 0'],
    ]) {
      it(`rejects "${bad}" (${why})`, () => {
        const problems = problemsOf(() => loadConfig(env({ CORS_ORIGINS: `https://ok.example.com,${bad}` })));
        expect(problems).to.deep.equal([
          `CORS_ORIGINS entry "${bad}" ${why}: it must look like https://chat.example.com`,
        ]);
      });
    }

    it('rejects an entry with credentials without echoing them', () => {
      const problems = problemsOf(() => loadConfig(env({ CORS_ORIGINS: `https://admin:${PASSWORD}@x.com` })));
      expect(problems).to.deep.equal([
        'CORS_ORIGINS entry "https://***@x.com" has credentials: it must look like https://chat.example.com',
      ]);
    });
  });

  describe('MIGRATIONS_DIR', () => {
    let dir: string;
    before(async () => {
      dir = await mkdtemp(path.join(os.tmpdir(), 'xfchat-migrations-test-'));
    });
    after(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('refuses a folder that does not exist, naming MIGRATIONS_DIR', () => {
      const missing = path.join(dir, 'missing');
      for (const load of [
        () => loadConfig(env({ MIGRATIONS_DIR: missing })),
        () => loadDatabaseConfig(env({ MIGRATIONS_DIR: missing })),
      ]) {
        expect(problemsOf(load)).to.deep.equal([`MIGRATIONS_DIR "${missing}" cannot be read (ENOENT)`]);
      }
    });

    it('refuses a file', async () => {
      const file = path.join(dir, '20260101000000_one.ts');
      await writeFile(file, 'export {};\n');
      expect(problemsOf(() => loadConfig(env({ MIGRATIONS_DIR: file })))).to.deep.equal([
        `MIGRATIONS_DIR "${file}" is not a directory`,
      ]);
    });

    it('refuses a folder without migration files (.ts or .js)', async () => {
      const empty = await mkdtemp(path.join(dir, 'empty-'));
      const other = await mkdtemp(path.join(dir, 'other-'));
      await writeFile(path.join(other, 'README.md'), 'notes\n');
      await writeFile(path.join(other, 'types.d.ts'), 'export {};\n');
      for (const folder of [empty, other]) {
        expect(problemsOf(() => loadConfig(env({ MIGRATIONS_DIR: folder })))).to.deep.equal([
          `MIGRATIONS_DIR "${folder}" holds no migration files (.ts or .js)`,
        ]);
      }
    });

    it('takes a folder with TypeScript or JavaScript migrations', async () => {
      for (const ext of ['ts', 'js']) {
        const folder = await mkdtemp(path.join(dir, `${ext}-`));
        await writeFile(path.join(folder, `20260101000000_one.${ext}`), 'export {};\n');
        expect(loadConfig(env({ MIGRATIONS_DIR: folder })).database.migrationsDir).to.equal(folder);
      }
    });
  });

  describe('frozen', () => {
    it('the config and its nested objects cannot be changed', () => {
      const config = loadConfig(env({ CORS_ORIGINS: 'https://a.example.com' }));
      expect(Object.isFrozen(config)).to.equal(true);
      expect(Object.isFrozen(config.database)).to.equal(true);
      expect(Object.isFrozen(config.auth)).to.equal(true);
      expect(Object.isFrozen(config.limits)).to.equal(true);
      expect(Object.isFrozen(config.corsOrigins)).to.equal(true);
      const mutable = config as Config;
      expect(() => {
        mutable.port = 1;
      }).to.throw(TypeError);
      expect(() => {
        mutable.database.url = 'postgres://evil/db';
      }).to.throw(TypeError);
      expect(() => {
        (mutable.corsOrigins as string[]).push('https://evil.example.com');
      }).to.throw(TypeError);
    });

    it('loadDatabaseConfig returns a frozen object too', () => {
      const database = loadDatabaseConfig({ DATABASE_URL: URL_WITH_PASSWORD });
      expect(Object.isFrozen(database)).to.equal(true);
    });
  });

  describe('loadDevConfig', () => {
    const devSecret = () => Promise.resolve('dev-secret-0123456789-abcdefghijklmn');

    it('binds the loopback address unless HOST says otherwise', async () => {
      const dev = await loadDevConfig(URL_WITH_PASSWORD, devSecret, {});
      expect(dev.host).to.equal('127.0.0.1');
      expect(loadConfig(env()).host, 'production keeps its default').to.equal('0.0.0.0');
      const open = await loadDevConfig(URL_WITH_PASSWORD, devSecret, { HOST: '0.0.0.0' });
      expect(open.host).to.equal('0.0.0.0');
    });

    it('binds the loopback address when HOST is empty or blank (not set), not every interface', async () => {
      for (const HOST of ['', '   ']) {
        expect(
          (await loadDevConfig(URL_WITH_PASSWORD, devSecret, { HOST })).host,
          JSON.stringify(HOST),
        ).to.equal('127.0.0.1');
      }
    });

    it('uses the generated secret when JWT_SECRET is empty or blank (not set), instead of refusing', async () => {
      for (const JWT_SECRET of ['', ' ']) {
        const dev = await loadDevConfig(URL_WITH_PASSWORD, devSecret, { JWT_SECRET });
        expect(dev.auth.jwtSecret, JSON.stringify(JWT_SECRET)).to.match(/^dev-secret/);
      }
    });

    it('uses the generated secret unless JWT_SECRET is set', async () => {
      expect((await loadDevConfig(URL_WITH_PASSWORD, devSecret, {})).auth.jwtSecret).to.match(/^dev-secret/);
      expect(
        (await loadDevConfig(URL_WITH_PASSWORD, devSecret, { JWT_SECRET: SECRET })).auth.jwtSecret,
      ).to.equal(SECRET);
    });
  });

  describe('loadDatabaseConfig', () => {
    it('needs no JWT secret and has the same defaults', () => {
      const database = loadDatabaseConfig({ DATABASE_URL: URL_WITH_PASSWORD });
      expect(database.url).to.equal(URL_WITH_PASSWORD);
      expect(database.poolMax).to.equal(25);
      expect(database.acquireTimeoutMs).to.equal(5000);
      expect(database.statementTimeoutMs).to.equal(30_000);
      expect(database.connectTimeoutMs).to.equal(10_000);
      expect(database.sslMode).to.equal('disable');
    });

    it('reports database problems together', () => {
      const problems = problemsOf(() =>
        loadDatabaseConfig({ DATABASE_URL: 'http://x/y', DB_POOL_SIZE: 'many', DB_SSL_MODE: 'on' }),
      );
      expect(problems).to.have.length(3);
      expect(problems.some((p) => p.includes('JWT_SECRET'))).to.equal(false);
    });

    it('requires DATABASE_URL', () => {
      const problems = problemsOf(() => loadDatabaseConfig({}));
      expect(problems).to.have.length(1);
      expect(problems[0]).to.include('DATABASE_URL');
    });
  });

  describe('describeConfig and redactUrl', () => {
    it('redactUrl hides the password and keeps the rest', () => {
      const redacted = redactUrl(URL_WITH_PASSWORD);
      expect(redacted).not.to.include(PASSWORD);
      expect(redacted).to.include('chat:***@db.internal:5432/xfchat');
    });

    it('redactUrl hides a percent-encoded password', () => {
      const raw = 'p@ss:w/rd!';
      const redacted = redactUrl(`postgres://chat:${encodeURIComponent(raw)}@h/db`);
      expect(redacted).not.to.include(encodeURIComponent(raw));
      expect(redacted).not.to.include(raw);
      expect(redacted).to.include('***');
    });

    it('redactUrl hides a password given in the query, as pg takes it', () => {
      const redacted = redactUrl(
        `postgres://chat@h:5432/db?sslmode=require&password=${PASSWORD}&sslpassword=k3y`,
      );
      expect(redacted).not.to.include(PASSWORD);
      expect(redacted).not.to.include('k3y');
      expect(redacted).to.include('sslmode=require');
      expect(redacted).to.include('password=***');
    });

    it('redactUrl leaves a URL without a password alone and never echoes garbage', () => {
      expect(redactUrl('postgres://chat@h:5432/db')).to.equal('postgres://chat@h:5432/db');
      expect(redactUrl('not a url with secret')).to.equal('(unparseable)');
    });

    it('describeConfig contains neither the DB password nor the JWT secret', () => {
      const config = loadConfig(env());
      const described = JSON.stringify(describeConfig(config));
      expect(described).not.to.include(PASSWORD);
      expect(described).not.to.include(SECRET);
      expect(described).to.include('db.internal');
      expect(described).to.include('(set)');
    });
  });
});
