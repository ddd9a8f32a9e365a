import { spawnSync } from 'node:child_process';
import { copyFile, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import pg from 'pg';
import { freePort } from '../../lib/dev/embeddedPostgres.js';
import { BUNDLED_MIGRATIONS_DIR } from '../../lib/migrations.js';
import {
  expectOneLineFailure,
  PROJECT_ROOT,
  runCli,
  runMain,
  startMain,
  type RunningChild,
} from '../helpers/childProcess.js';
import { holdMigrationLock } from '../helpers/migrations.js';
import { adminQuery, createEmptyDatabase, createTestDatabase, urlFor } from '../helpers/postgres.js';
import { TEST_JWT_SECRET } from '../helpers/server.js';

/** The environment of a node that would start, but for what a test changes. */
function goodEnv(databaseUrl: string, overrides: Record<string, string> = {}): Record<string, string> {
  return {
    DATABASE_URL: databaseUrl,
    JWT_SECRET: TEST_JWT_SECRET,
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'info',
    ...overrides,
  };
}

function without(env: Record<string, string>, name: string): Record<string, string> {
  const copy = { ...env };
  delete copy[name];
  return copy;
}

/** The bundled migrations and one more that fails, in a new folder (for MIGRATIONS_DIR). */
async function brokenMigrationsDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'xfchat-broken-migrations-'));
  for (const file of await readdir(BUNDLED_MIGRATIONS_DIR)) {
    await copyFile(path.join(BUNDLED_MIGRATIONS_DIR, file), path.join(dir, file));
  }
  await writeFile(
    path.join(dir, '29990101000000_broken.ts'),
    [
      "import type { Knex } from 'knex';",
      'export async function up(knex: Knex): Promise<void> {',
      "  await knex.raw('SELECT no_such_column FROM no_such_table_for_xfchat');",
      '}',
      'export async function down(): Promise<void> {}',
      '',
    ].join('\n'),
  );
  return dir;
}

/**
 * A PostgreSQL that takes the login and then answers no query (a pooler whose server is down, a backend wedged after
 * the login): the client's bytes reach the server until it is ready for queries, then go nowhere.
 */
async function loginOnlyProxy(target: URL): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    sockets.add(client);
    sockets.add(upstream);
    let ready = false;
    let seen = Buffer.alloc(0);
    client.on('data', (chunk) => {
      if (!ready) upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      seen = Buffer.concat([seen, chunk]);
      // ReadyForQuery: 'Z', length 5, then the status.
      if (!ready && seen.includes(Buffer.from([0x5a, 0, 0, 0, 5]))) ready = true;
      client.write(chunk);
    });
    for (const socket of [client, upstream]) socket.on('error', () => socket.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function getJson(url: string): Promise<{ status: number; body: unknown }> {
  const res = await fetch(url);
  return { status: res.status, body: await res.json() };
}

describe('startup (the real entry point as a child process)', function () {
  this.timeout(60_000);

  let databaseUrl: string;
  before(async () => {
    databaseUrl = await createTestDatabase();
  });

  describe('configuration', () => {
    it('exits non-zero with one line naming DATABASE_URL when it is missing', async () => {
      const line = expectOneLineFailure(await runMain(without(goodEnv(databaseUrl), 'DATABASE_URL')));
      expect(line).to.include('DATABASE_URL');
      expect(line).to.match(/^xfchat: cannot start: /);
    });

    it('exits non-zero with one line naming DATABASE_URL when it is malformed', async () => {
      const line = expectOneLineFailure(await runMain(goodEnv('not a url, password hunter2')));
      expect(line).to.include('DATABASE_URL');
      expect(line).to.include('malformed');
      expect(line).not.to.include('hunter2');
    });

    it('exits non-zero naming DATABASE_URL when the protocol is wrong', async () => {
      const line = expectOneLineFailure(await runMain(goodEnv('mysql://u:p@127.0.0.1:3306/db')));
      expect(line).to.include('DATABASE_URL');
    });

    it('refuses a value holding a line break in one line: an echoed value cannot make up a second line', async () => {
      const result = await runMain(goodEnv(databaseUrl, { HOST: 'local\nxfchat: cannot start: forged' }));
      const line = expectOneLineFailure(result);
      expect(line).to.include('HOST must be an IP address');
      expect(line).to.include('local\\nxfchat');
      expect(result.stderr.trim().split('\n')).to.have.length(1);
    });

    it('prints the [STARTUP] warning of a lowered DB_WRITE_CONCURRENCY at LOG_LEVEL=error too, as every [STARTUP] line', async () => {
      const child = await startMain(
        goodEnv(databaseUrl, { LOG_LEVEL: 'error', DB_POOL_SIZE: '2', DB_WRITE_CONCURRENCY: '4' }),
      );
      try {
        const startup = child
          .stdout()
          .split('\n')
          .filter((l) => l.includes('[STARTUP]'));
        expect(startup.some((l) => l.includes('[STARTUP] listening'))).to.equal(true);
        expect(startup.join('\n')).to.include('[STARTUP] DB_WRITE_CONCURRENCY is above DB_POOL_SIZE - 1');
      } finally {
        await child.kill();
      }
    });

    it('exits non-zero naming JWT_SECRET when it is missing', async () => {
      const line = expectOneLineFailure(await runMain(without(goodEnv(databaseUrl), 'JWT_SECRET')));
      expect(line).to.include('JWT_SECRET');
    });

    it('exits non-zero naming JWT_SECRET when it is shorter than 32 characters, without echoing it', async () => {
      const short = 'abcdefghijklmnopqrstuvwxyz01234'; // 31
      const line = expectOneLineFailure(await runMain(goodEnv(databaseUrl, { JWT_SECRET: short })));
      expect(line).to.include('JWT_SECRET');
      expect(line).to.include('32');
      expect(line).not.to.include(short);
    });

    it('runs lib/main through a symlinked directory or a path with a space as it runs it directly', async () => {
      // Releases are often run through a symlink (/srv/xfchat/current); the entry point compared the path as typed
      // with its own (resolved, percent-encoded) URL and did nothing, exit 0.
      const dir = await mkdtemp(path.join(os.tmpdir(), 'xfchat entry '));
      try {
        const link = path.join(dir, 'current');
        await symlink(PROJECT_ROOT, link);
        const result = spawnSync(process.execPath, ['--import', 'tsx', path.join(link, 'lib', 'main.ts')], {
          cwd: PROJECT_ROOT,
          env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' },
          encoding: 'utf8',
          timeout: 30_000,
        });
        expect(result.status, result.stderr).to.equal(1);
        expect(result.stderr).to.match(/^xfchat: cannot start: invalid configuration: .*DATABASE_URL/);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    it('reports every configuration problem in the one line', async () => {
      const line = expectOneLineFailure(
        await runMain(without(goodEnv(databaseUrl, { JWT_SECRET: 'short', PORT: 'http' }), 'DATABASE_URL')),
      );
      expect(line).to.include('DATABASE_URL');
      expect(line).to.include('JWT_SECRET');
      expect(line).to.include('PORT');
    });

    it('reports a HOST that is not an address with the other problems, and one not of this machine before connecting', async () => {
      const malformed = expectOneLineFailure(
        await runMain(goodEnv(databaseUrl, { HOST: 'a b', PORT: 'abc' })),
      );
      expect(malformed).to.include('HOST');
      expect(malformed).to.include('PORT');
      // An address of another machine (TEST-NET-1): refused before the database is connected or migrated.
      const emptyUrl = await createEmptyDatabase();
      const result = await runMain(goodEnv(emptyUrl, { HOST: '192.0.2.1' }));
      expect(expectOneLineFailure(result)).to.include('HOST=192.0.2.1 is not an address of this machine');
      expect(result.stdout).not.to.include('[STARTUP] database');
      const client = new pg.Client({ connectionString: emptyUrl });
      await client.connect();
      try {
        const tables = await client.query("SELECT 1 FROM pg_tables WHERE tablename = 'knex_migrations'");
        expect(tables.rows, 'nothing migrated').to.deep.equal([]);
      } finally {
        await client.end();
      }
    });
  });

  describe('database', () => {
    const silentSockets = new Set<net.Socket>();
    let silent: net.Server | undefined;
    let tempDir: string | undefined;

    afterEach(async () => {
      for (const socket of silentSockets) socket.destroy();
      silentSockets.clear();
      if (silent) {
        const server = silent;
        silent = undefined;
        await new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
      }
      if (tempDir) {
        await rm(tempDir, { recursive: true, force: true });
        tempDir = undefined;
      }
    });

    it('exits non-zero naming the cause when nothing listens on the port', async () => {
      const port = await freePort();
      const result = await runMain(goodEnv(`postgres://xfchat:pw@127.0.0.1:${port}/xfchat`));
      const line = expectOneLineFailure(result);
      expect(line).to.include(`127.0.0.1:${port}`);
      expect(line).to.include('refused the connection');
      expect(line).to.include('DATABASE_URL');
    });

    it('exits non-zero within the connect timeout when the server accepts TCP but never answers', async () => {
      silent = net.createServer((socket) => {
        // Accept and say nothing, as a wedged server or a black-holing middlebox would.
        silentSockets.add(socket);
        socket.on('error', () => socket.destroy());
        socket.once('close', () => silentSockets.delete(socket));
      });
      const server = silent;
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const { port } = server.address() as net.AddressInfo;

      const result = await runMain(
        goodEnv(`postgres://xfchat:pw@127.0.0.1:${port}/xfchat`, { DB_CONNECT_TIMEOUT_MS: '1500' }),
        { timeoutMs: 45_000 },
      );
      const line = expectOneLineFailure(result);
      expect(line).to.include('did not answer within 1500 ms');
      expect(line).to.include('DB_CONNECT_TIMEOUT_MS');
      // The 1.5 s timeout must be what ends it, not a hang: counted from its first line ([STARTUP] configuration,
      // before it connects), not from the spawn (Node and tsx take seconds to start on a loaded machine).
      expect(result.sinceFirstOutputMs).to.be.below(6000);
    });

    it('exits within the connect timeout when the server takes the login but answers no query (a pooler before a PostgreSQL that is down)', async () => {
      const proxy = await loginOnlyProxy(new URL(databaseUrl));
      try {
        const url = new URL(databaseUrl);
        url.host = `127.0.0.1:${proxy.port}`;
        const result = await runMain(
          goodEnv(url.toString(), { DB_CONNECT_TIMEOUT_MS: '1500', DB_STATEMENT_TIMEOUT_MS: '12000' }),
          { timeoutMs: 45_000 },
        );
        const line = expectOneLineFailure(result);
        expect(line).to.include('did not answer within 1500 ms');
        // The statement timeout (12 s here) is not what ends it (counted from its first line, as above).
        expect(result.sinceFirstOutputMs, line).to.be.below(6000);
      } finally {
        await proxy.close();
      }
    });

    it('connects to the database the URL names when its name holds a percent-encoded reserved character', async () => {
      const name = `xfchat_a/b@c_${Date.now().toString(36)}`;
      await adminQuery(`CREATE DATABASE "${name}"`);
      try {
        const url = new URL(urlFor('x'));
        url.pathname = `/${encodeURIComponent(name)}`;
        const result = await runMain(goodEnv(url.toString()), { sigtermWhen: /\[STARTUP\] listening/ });
        expect(result.stderr).to.equal('');
        expect(result.stdout).to.include(`/${name}: connected`);
      } finally {
        await adminQuery(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      }
    });

    it('takes a DATABASE_URL without a port for 5432, whatever PGPORT says', async () => {
      const url = new URL(databaseUrl);
      const testPort = url.port || '5432';
      url.port = '';
      // On 5432 (the PostgreSQL service), PGPORT names a port where nothing listens: the node starts on 5432. On
      // another port (an embedded PostgreSQL), PGPORT names the test server's: the node must not go there, and
      // says what it found on 5432 (a refusal, or no such database on another server).
      const pgport = testPort === '5432' ? String(await freePort()) : testPort;
      const result = await runMain(goodEnv(url.toString(), { PGPORT: pgport }), {
        sigtermWhen: /\[STARTUP\] listening/,
      });
      const told = `${result.stdout}\n${result.stderr}`;
      expect(told).to.include(`${url.hostname}:5432`);
      expect(told).not.to.include(`${url.hostname}:${pgport}`);
      if (testPort === '5432') expect(result.stdout).to.include(`[STARTUP] database ${url.hostname}:5432/`);
    });

    it('exits non-zero with a clear message when the database does not exist (3D000)', async () => {
      const name = `xfchat_missing_${Date.now().toString(36)}`;
      const line = expectOneLineFailure(await runMain(goodEnv(urlFor(name))));
      expect(line).to.include(`the database "${name}" does not exist`);
      expect(line).to.include('createdb');
    });

    it('exits non-zero naming a refused login (28P01/28000) without printing the password', async () => {
      const url = new URL(databaseUrl);
      // A role that does not exist is refused under password and trust authentication alike.
      const user = `xfchat_nobody_${Date.now().toString(36)}`;
      url.username = user;
      url.password = 'definitely-wrong-password';
      const line = expectOneLineFailure(await runMain(goodEnv(url.toString())));
      expect(line).to.include(`refused the login of user "${user}"`);
      expect(line).to.include('DATABASE_URL');
      expect(line).not.to.include('definitely-wrong-password');
    });

    it('exits non-zero naming the failed migration and never listens', async () => {
      tempDir = await brokenMigrationsDir();
      const emptyUrl = await createEmptyDatabase();

      const result = await runMain(goodEnv(emptyUrl, { MIGRATIONS_DIR: tempDir }));
      const line = expectOneLineFailure(result);
      expect(line).to.include('migration failed');
      expect(line).to.include('no_such_table_for_xfchat');
      expect(result.stdout).not.to.include('[STARTUP] migrations');

      const client = new pg.Client({ connectionString: emptyUrl });
      await client.connect();
      try {
        const recorded = await client.query<{ name: string }>(
          "SELECT name FROM knex_migrations WHERE name LIKE '%broken%'",
        );
        expect(recorded.rows).to.deep.equal([]);
      } finally {
        await client.end();
      }
    });

    it('npm run migrate: one line naming the cause and the fix, no stack trace, when it cannot connect or a migration fails', async () => {
      const port = await freePort();
      const refused = await runCli(['migrate', 'status'], {
        DATABASE_URL: `postgres://postgres@127.0.0.1:${port}/x`,
      });
      const line = expectOneLineFailure(refused);
      expect(line).to.match(
        new RegExp(`^xfchat migrate: PostgreSQL at 127\\.0\\.0\\.1:${port} refused the connection`),
      );
      // A setting it cannot use: named by the command that could not run (not "cannot start", as a server would).
      const malformed = await runCli(['migrate', 'status'], { DATABASE_URL: 'postgres://x:y@[bad' });
      expect(expectOneLineFailure(malformed)).to.match(
        /^xfchat migrate: invalid configuration: DATABASE_URL is malformed: expected postgres:\/\//,
      );

      tempDir = await brokenMigrationsDir();
      const emptyUrl = await createEmptyDatabase();
      const failed = await runCli(['migrate', 'latest'], { DATABASE_URL: emptyUrl, MIGRATIONS_DIR: tempDir });
      const failure = expectOneLineFailure(failed);
      expect(failure).to.match(/^xfchat migrate: latest failed \(/);
      expect(failure).to.include('no_such_table_for_xfchat');

      const status = await runCli(['migrate', 'status'], { DATABASE_URL: emptyUrl });
      expect(status.code, status.stderr).to.equal(0);
      expect(status.stdout).to.match(/^applied \(0\): -\npending \(\d+\): /);
    });

    it('xfchat migrate and a node refuse PGOPTIONS, which the driver would send with every connection (one line, naming it, not its value)', async () => {
      const url = await createEmptyDatabase();
      const migrate = await runCli(['migrate', 'latest'], {
        DATABASE_URL: url,
        PGOPTIONS: '-c search_path=no_such_schema_here',
      });
      const line = expectOneLineFailure(migrate);
      expect(line).to.include('PGOPTIONS is set').and.not.to.include('no_such_schema_here');
      const status = await runCli(['migrate', 'status'], { DATABASE_URL: url });
      expect(status.stdout, 'nothing was migrated').to.match(/^applied \(0\): -/);
      const node = await runMain(goodEnv(url, { PGOPTIONS: '-c default_transaction_read_only=on' }));
      expect(expectOneLineFailure(node)).to.include('PGOPTIONS is set');
    });
  });

  describe('xfchat --help', () => {
    it('prints the usage and exits 0, also after a command (serve --help, migrate rollback -h), doing nothing else', async () => {
      for (const args of [['--help'], ['help'], ['-h'], ['serve', '--help'], ['migrate', 'rollback', '-h']]) {
        // No DATABASE_URL or JWT_SECRET: a command that ran would refuse to start (exit 1).
        const result = await runCli(args, {});
        expect(result.code, `${args.join(' ')}: ${result.stderr}`).to.equal(0);
        expect(result.stdout, args.join(' ')).to.match(/^usage: xfchat \[serve\] \| xfchat migrate /);
        expect(result.stderr, args.join(' ')).to.equal('');
      }
    });
  });

  describe('usage errors', () => {
    it('refuses an unknown action or option with exit 2 before reading the configuration or connecting', async () => {
      const cases: Array<[string[], string]> = [
        [['migrate', 'statsu'], 'unknown migrate action "statsu"'],
        [['migrate', 'rollback', '--yse'], 'unknown migrate rollback option "--yse"'],
        // Names of Object.prototype's members are not actions (they were found, and ran or crashed).
        [['migrate', 'constructor'], 'unknown migrate action "constructor"'],
        [['migrate', '__proto__'], 'unknown migrate action "__proto__"'],
        [['migrate', 'toString', '--yes'], 'unknown migrate action "toString"'],
        [['migrate', 'latest', '--yes'], 'unknown migrate latest option "--yes"'],
        [['serve', '--port', '1'], 'unknown serve option "--port"'],
        [['jwt-secret', 'adopt', '--yes', '--forse'], 'unknown jwt-secret adopt option "--forse"'],
        [['dev', '--data-dir='], '--data-dir needs a directory'],
        [['dev', '--data-dir'], '--data-dir needs a directory'],
      ];
      for (const [i, [args, message]] of cases.entries()) {
        // Without DATABASE_URL (and, for the first, with one nothing answers): the usage error either way.
        const envs: Array<Record<string, string>> = [{}];
        if (i === 0) envs.push({ DATABASE_URL: 'postgres://postgres@127.0.0.1:1/nothing' });
        for (const env of envs) {
          const result = await runCli(args, env);
          expect(result.code, `${args.join(' ')}: ${result.stderr}`).to.equal(2);
          expect(result.stderr, args.join(' ')).to.include(message).and.to.include('usage: xfchat');
        }
      }
    });
  });

  describe('xfchat migrate', () => {
    it('status on a database nothing migrated lists every migration as pending and writes nothing', async () => {
      const url = await createEmptyDatabase();
      const result = await runCli(['migrate', 'status'], { DATABASE_URL: url });
      expect(result.code, result.stderr).to.equal(0);
      expect(result.stdout).to.match(/^applied \(0\): -\npending \(\d+\): \d{14}_/);
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        const { rows } = await client.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'");
        expect(rows).to.deep.equal([]);
      } finally {
        await client.end();
      }
    });

    it('clears the Knex lock a stopped migration left set (a rollback interrupted by Ctrl-C), then migrates and starts', async () => {
      const url = await createEmptyDatabase();
      expect((await runCli(['migrate', 'latest'], { DATABASE_URL: url })).code).to.equal(0);
      expect((await runCli(['migrate', 'rollback', '--yes'], { DATABASE_URL: url })).code).to.equal(0);
      // What Knex leaves when the process dies between its first down() and its last: the row it committed first.
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        await client.query('UPDATE knex_migrations_lock SET is_locked = 1');
        const latest = await runCli(['migrate', 'latest'], { DATABASE_URL: url });
        expect(latest.code, latest.stderr).to.equal(0);
        const { rows } = await client.query('SELECT is_locked FROM knex_migrations_lock');
        expect(rows).to.deep.equal([{ is_locked: 0 }]);
        // And a node starts on it, after the same row was left set again.
        await client.query('UPDATE knex_migrations_lock SET is_locked = 1');
        const node = await startMain(goodEnv(url, { LOG_LEVEL: 'warn' }));
        await node.kill();
      } finally {
        await client.end();
      }
    });

    it('the knex CLI with knexfile.ts sees the migrations as xfchat migrate does', async () => {
      const url = await createEmptyDatabase();
      const knexList = () =>
        spawnSync(
          process.execPath,
          ['--import', 'tsx', 'node_modules/knex/bin/cli.js', '--knexfile', 'knexfile.ts', 'migrate:list'],
          {
            cwd: PROJECT_ROOT,
            env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root', DATABASE_URL: url },
            encoding: 'utf8',
            timeout: 60_000,
          },
        );
      // Pending, each by its name (the CLI prints a listed migration's `file`).
      const pending = knexList();
      expect(pending.status, `${pending.stdout}\n${pending.stderr}`.slice(0, 600)).to.equal(0);
      expect(pending.stdout).to.include('20261126000000_initial_schema\n').and.not.include('undefined');

      expect((await runCli(['migrate', 'latest'], { DATABASE_URL: url })).code).to.equal(0);
      const status = await runCli(['migrate', 'status'], { DATABASE_URL: url });
      const applied = Number(/^applied \((\d+)\)/.exec(status.stdout)?.[1]);
      const list = knexList();
      expect(list.status, `${list.stdout}\n${list.stderr}`.slice(0, 600)).to.equal(0);
      expect(list.stdout).to.include(`Found ${applied} Completed Migration`);
      expect(list.stdout).to.include('No Pending Migration');
    });

    it('rollback without --yes names the batch it would undo and changes nothing; with --yes it undoes it', async () => {
      const url = await createEmptyDatabase();
      expect((await runCli(['migrate', 'latest'], { DATABASE_URL: url })).code).to.equal(0);
      const before = await runCli(['migrate', 'status'], { DATABASE_URL: url });
      const refused = await runCli(['migrate', 'rollback'], { DATABASE_URL: url });
      expect(refused.code, refused.stderr).to.equal(2);
      const line = expectOneLineFailure(refused);
      expect(line).to.match(/^xfchat migrate: rollback would undo the last applied batch \(\d{14}_/);
      expect(line).to.include('pg_dump').and.to.include('xfchat migrate rollback --yes');
      expect((await runCli(['migrate', 'status'], { DATABASE_URL: url })).stdout).to.equal(before.stdout);

      const done = await runCli(['migrate', 'rollback', '--yes'], { DATABASE_URL: url });
      expect(done.code, done.stderr).to.equal(0);
      expect(done.stdout).to.match(/^rolled back: /);
      const after = await runCli(['migrate', 'status'], { DATABASE_URL: url });
      expect(after.stdout).to.match(/^applied \(0\): -\npending \(\d+\): /);
    });

    it('rollback of a batch a newer release applied refuses, dry run and --yes alike (exit 1), and changes nothing', async () => {
      const url = await createEmptyDatabase();
      expect((await runCli(['migrate', 'latest'], { DATABASE_URL: url })).code).to.equal(0);
      const future = '29991231000000_of_a_newer_release';
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        await client.query(
          'INSERT INTO knex_migrations (name, batch, migration_time) VALUES ($1, 99, now())',
          [future],
        );
      } finally {
        await client.end();
      }
      const before = await runCli(['migrate', 'status'], { DATABASE_URL: url });
      for (const args of [
        ['migrate', 'rollback'],
        ['migrate', 'rollback', '--yes'],
      ]) {
        const refused = await runCli(args, { DATABASE_URL: url });
        expect(refused.code, `${args.join(' ')}: ${refused.stderr}`).to.equal(1);
        const line = expectOneLineFailure(refused);
        expect(line).to.include(`migrations this release does not have (${future})`);
        expect(line).to.include('roll them back with the release that applied them');
        expect(line).not.to.include('--yes');
      }
      expect((await runCli(['migrate', 'status'], { DATABASE_URL: url })).stdout).to.equal(before.stdout);
    });

    it('waits for the migration lock longer than DB_STATEMENT_TIMEOUT_MS and the driver query timeout', async () => {
      const url = await createEmptyDatabase();
      const lock = await holdMigrationLock(url);
      try {
        const migrating = runCli(['migrate', 'latest'], {
          DATABASE_URL: url,
          DB_STATEMENT_TIMEOUT_MS: '1000',
        });
        // Once it waits for the lock, it waits longer than the statement timeout and the driver's query timeout
        // (a second past it) together.
        await lock.waiterSeen('the migration to wait for the lock');
        await new Promise((resolve) => setTimeout(resolve, 3000));
        await lock.release();
        const result = await migrating;
        expect(result.code, result.stderr).to.equal(0);
        expect(result.stdout).to.match(/^applied: /);
      } finally {
        await lock.end();
      }
    });
  });

  describe('success', () => {
    let child: RunningChild | undefined;
    let freshUrl: string;

    before(async () => {
      freshUrl = await createEmptyDatabase();
      child = await startMain(goodEnv(freshUrl));
    });

    after(async () => {
      await child?.kill('SIGKILL');
    });

    it('prints the [STARTUP] lines in order: configuration, database, migrations, users, JWT_SECRET, listening', () => {
      const messages = child!
        .stdout()
        .split('\n')
        .filter((l) => l.includes('[STARTUP]'))
        .map((l) => JSON.parse(l) as { level: number; msg: string })
        // Warnings (autovacuum off on the test server, as on CI's second PostgreSQL) are not steps of startup.
        .filter((line) => line.level === 30)
        .map((line) => line.msg);
      const tags = ['configuration', 'database', 'migrations', 'users', 'JWT_SECRET', 'listening'];
      expect(messages.map((m) => tags.find((t) => m.startsWith(`[STARTUP] ${t}`)))).to.deep.equal(tags);
      const dbName = new URL(freshUrl).pathname.slice(1);
      expect(messages[1])
        .to.include(dbName)
        .and.to.match(/PostgreSQL \d+/);
      expect(messages[2]).to.match(/migrations: [1-9]\d* applied \([1-9]\d* new\)/);
      expect(messages[3]).to.equal('[STARTUP] users: 0');
      expect(messages[4]).to.equal(
        "[STARTUP] JWT_SECRET: recorded as this database's cluster secret (the first node to start with it)",
      );
      expect(messages[5]).to.equal(`[STARTUP] listening on ${child!.url}`);
      expect(child!.url).to.match(/^http:\/\/127\.0\.0\.1:\d+$/);
    });

    it('never prints the JWT secret or the database password', () => {
      const output = child!.stdout() + child!.stderr();
      expect(output).not.to.include(TEST_JWT_SECRET);
      const password = decodeURIComponent(new URL(freshUrl).password);
      if (password !== '') {
        expect(output).not.to.include(password);
        expect(output).not.to.include(encodeURIComponent(password));
      }
      const configLine = child!
        .stdout()
        .split('\n')
        .find((l) => l.includes('[STARTUP] configuration'));
      expect(configLine).to.be.a('string');
      expect(configLine).to.include('"jwtSecret":"(set)"');
    });

    it('answers /healthz 200 {status: "ok"}', async () => {
      expect(await getJson(`${child!.url}/healthz`)).to.deep.equal({ status: 200, body: { status: 'ok' } });
    });

    it('answers /readyz 200 {status: "ready"}', async () => {
      expect(await getJson(`${child!.url}/readyz`)).to.deep.equal({ status: 200, body: { status: 'ready' } });
    });

    it('restarted at LOG_LEVEL=warn, prints the [STARTUP] lines all the same, counting accounts, not deleted ones', async () => {
      const send = async (method: string, path: string, body: unknown, token?: string) => {
        const res = await fetch(`${child!.url}${path}`, {
          method,
          headers: {
            'content-type': 'application/json',
            ...(token ? { authorization: `Bearer ${token}` } : {}),
          },
          body: JSON.stringify(body),
        });
        return { status: res.status, body: (await res.json().catch(() => ({}))) as { token?: string } };
      };
      const password = 'correct horse battery staple';
      expect((await send('POST', '/auth/signup', { username: 'stays', password })).status).to.equal(201);
      const leaving = await send('POST', '/auth/signup', { username: 'leaves', password });
      expect(leaving.status).to.equal(201);
      expect((await send('DELETE', '/users/me', { password }, leaving.body.token)).status).to.equal(204);
      await child!.kill();
      child = await startMain(goodEnv(freshUrl, { LOG_LEVEL: 'warn' }));
      const messages = child
        .stdout()
        .split('\n')
        .filter((l) => l.includes('[STARTUP]'))
        .map((l) => (JSON.parse(l) as { msg: string }).msg);
      for (const tag of ['configuration', 'database', 'migrations', 'JWT_SECRET', 'listening']) {
        expect(
          messages.some((m) => m.startsWith(`[STARTUP] ${tag}`)),
          tag,
        ).to.equal(true);
      }
      expect(messages).to.include('[STARTUP] users: 1');
      // The level keeps everything else quiet: no request or info line of another kind.
      expect(
        child
          .stdout()
          .split('\n')
          .filter((l) => l !== '' && !l.includes('[STARTUP]')),
      ).to.deep.equal([]);
    });
  });

  describe('SIGTERM', () => {
    let child: RunningChild | undefined;

    afterEach(async () => {
      await child?.kill('SIGKILL');
      child = undefined;
    });

    it('exits 0 and stops listening', async () => {
      child = await startMain(goodEnv(databaseUrl));
      const { url } = child;
      expect((await fetch(`${url}/healthz`)).status).to.equal(200);
      const result = await child.kill('SIGTERM');
      expect(result.code, `stdout:\n${result.stdout}\nstderr:\n${result.stderr}`).to.equal(0);
      expect(result.signal).to.equal(null);
      expect(result.stderr).to.equal('');
      let refused = false;
      try {
        await fetch(`${url}/healthz`);
      } catch {
        refused = true;
      }
      expect(refused, 'the port is closed after exit').to.equal(true);
    });

    it('exits 0 when SIGTERM arrives right after the listening line', async () => {
      child = await startMain(goodEnv(databaseUrl));
      const result = await child.kill('SIGTERM');
      expect(result.code, `stdout:\n${result.stdout}\nstderr:\n${result.stderr}`).to.equal(0);
      expect(result.stdout).to.include('shutdown complete');
    });

    it('a SIGTERM while starting is held: the node finishes starting, then stops gracefully with 0', async () => {
      const result = await runMain(goodEnv(databaseUrl), { sigtermWhen: /\[STARTUP\] configuration/ });
      expect(result.code, `stdout:\n${result.stdout}\nstderr:\n${result.stderr}`).to.equal(0);
      expect(result.stderr).to.equal('');
      const messages = result.stdout
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => (JSON.parse(l) as { msg: string }).msg);
      const listening = messages.findIndex((m) => m.startsWith('[STARTUP] listening'));
      expect(listening).to.be.greaterThan(-1);
      expect(messages.indexOf('signal received, draining')).to.be.greaterThan(listening);
      expect(messages.at(-1)).to.equal('shutdown complete');
    });

    it('a SIGTERM while waiting for another holder’s migration lock stops the node at once, without binding', async () => {
      const url = await createEmptyDatabase();
      const lock = await holdMigrationLock(url);
      try {
        const result = await runMain(goodEnv(url), { sigtermWhen: /waiting for the migration lock/ });
        expect(result.code, result.stderr).to.equal(1);
        expect(result.stdout).not.to.include('[STARTUP] listening');
        expect(expectOneLineFailure(result)).to.equal(
          'xfchat: cannot start: stopped by a signal while waiting for the migration lock (another node or xfchat migrate holds it): nothing was started',
        );
      } finally {
        await lock.end();
      }
    });

    it('a second start on an already migrated database applies nothing new', async () => {
      child = await startMain(goodEnv(databaseUrl));
      const line = child
        .stdout()
        .split('\n')
        .find((l) => l.includes('[STARTUP] migrations'));
      expect(line).to.match(/\(0 new\)/);
      expect((await fetch(`${child.url}/readyz`)).status).to.equal(200);
      const result = await child.kill('SIGTERM');
      expect(result.code).to.equal(0);
    });
  });
});
