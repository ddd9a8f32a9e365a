import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import pg from 'pg';
import { JWT_SECRET_MISMATCH, jwtSecretFingerprint } from '../../lib/auth/secretFingerprint.js';
import { freePort } from '../../lib/dev/embeddedPostgres.js';
import {
  expectOneLineFailure,
  runCli,
  runMain,
  startMain,
  type RunningChild,
} from '../helpers/childProcess.js';
import { request } from '../helpers/http.js';
import { createEmptyDatabase, createTestDatabase } from '../helpers/postgres.js';
import { uniqueUsername } from '../helpers/users.js';

/**
 * Every node on one database must use one JWT_SECRET: a node with another one refuses to start (one line, non-zero,
 * nothing bound) instead of answering /readyz and refusing every other node's tokens; `xfchat jwt-secret adopt`
 * changes the cluster's secret on purpose.
 */

const OLD_SECRET = randomBytes(32).toString('hex');
const NEW_SECRET = randomBytes(32).toString('hex');

function nodeEnv(databaseUrl: string, jwtSecret: string, port = '0'): Record<string, string> {
  return {
    DATABASE_URL: databaseUrl,
    JWT_SECRET: jwtSecret,
    PORT: port,
    HOST: '127.0.0.1',
    LOG_LEVEL: 'info',
  };
}

/** Neither secret nor either fingerprint appears in what a process printed. */
function expectNoSecrets(result: { stdout: string; stderr: string }): void {
  const output = result.stdout + result.stderr;
  for (const secret of [OLD_SECRET, NEW_SECRET]) {
    expect(output).not.to.include(secret);
    expect(output).not.to.include(jwtSecretFingerprint(secret));
  }
}

/** The [STARTUP] JWT_SECRET line of a node's output. */
function secretLine(stdout: string): string | undefined {
  return stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => (JSON.parse(l) as { msg: string }).msg)
    .find((m) => m.startsWith('[STARTUP] JWT_SECRET'));
}

async function sessionCount(databaseUrl: string): Promise<number> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    return (await client.query<{ n: number }>('SELECT count(*)::int AS n FROM sessions')).rows[0]!.n;
  } finally {
    await client.end();
  }
}

describe("JWT_SECRET: every node of a cluster uses the database's (child processes)", function () {
  this.timeout(90_000);

  let databaseUrl: string;
  const running: RunningChild[] = [];
  before(async () => {
    databaseUrl = await createTestDatabase();
  });
  afterEach(async () => {
    await Promise.all(running.splice(0).map((child) => child.kill('SIGKILL')));
  });

  it('the first node records its secret; a second with another one exits non-zero with one line and binds no port; one with the same starts', async () => {
    const first = await startMain(nodeEnv(databaseUrl, OLD_SECRET));
    running.push(first);
    expect(secretLine(first.stdout())).to.equal(
      "[STARTUP] JWT_SECRET: recorded as this database's cluster secret (the first node to start with it)",
    );

    const port = await freePort();
    const refused = await runMain(nodeEnv(databaseUrl, NEW_SECRET, String(port)));
    expect(refused.code).to.equal(1);
    expect(expectOneLineFailure(refused)).to.equal(`xfchat: cannot start: ${JWT_SECRET_MISMATCH}`);
    expect(JWT_SECRET_MISMATCH).to.include('xfchat jwt-secret adopt');
    expectNoSecrets(refused);
    // It refused after migrating and before binding: nothing answers on its port.
    expect(refused.stdout).to.include('[STARTUP] migrations');
    const answered = await fetch(`http://127.0.0.1:${port}/healthz`).then(
      () => true,
      () => false,
    );
    expect(answered, `something answers on port ${port}`).to.equal(false);

    const same = await startMain(nodeEnv(databaseUrl, OLD_SECRET));
    running.push(same);
    expect(secretLine(same.stdout())).to.equal("[STARTUP] JWT_SECRET: the same as the cluster's");
    expect((await fetch(`${same.url}/readyz`)).status).to.equal(200);
    expectNoSecrets({ stdout: first.stdout() + same.stdout(), stderr: first.stderr() + same.stderr() });
  });

  it('jwt-secret adopt: without --yes says what it would do and changes nothing; with --yes the new secret starts, the old one is refused, and every session has ended', async () => {
    const node = await startMain(nodeEnv(databaseUrl, OLD_SECRET));
    running.push(node);
    const signup = await request<{ refreshToken: string }>(node.url, 'POST', '/auth/signup', {
      body: { username: uniqueUsername('adopt'), password: 'correct horse battery staple' },
    });
    expect(signup.status).to.equal(201);
    const sessionsBefore = await sessionCount(databaseUrl);
    expect(sessionsBefore).to.be.greaterThan(0);
    await node.kill('SIGTERM');

    const asked = await runCli(['jwt-secret', 'adopt'], nodeEnv(databaseUrl, NEW_SECRET));
    expect(asked.code, asked.stderr).to.equal(2);
    const question = expectOneLineFailure(asked);
    expect(question).to.match(/^xfchat jwt-secret: adopt would make the current JWT_SECRET the cluster's: /);
    expect(question)
      .to.include(`ends every session (${sessionsBefore} now)`)
      .and.to.include('xfchat jwt-secret adopt --yes');
    expectNoSecrets(asked);
    expect(await sessionCount(databaseUrl)).to.equal(sessionsBefore);
    expect(expectOneLineFailure(await runMain(nodeEnv(databaseUrl, NEW_SECRET)))).to.equal(
      `xfchat: cannot start: ${JWT_SECRET_MISMATCH}`,
    );

    const adopted = await runCli(['jwt-secret', 'adopt', '--yes'], nodeEnv(databaseUrl, NEW_SECRET));
    expect(adopted.code, adopted.stderr).to.equal(0);
    expect(adopted.stderr).to.equal('');
    expect(adopted.stdout).to.match(
      new RegExp(
        `^adopted: JWT_SECRET is now this database's cluster secret, and the ${sessionsBefore} sessions signed with the old one were ended: every access and refresh token of the old JWT_SECRET no longer works`,
      ),
    );
    expectNoSecrets(adopted);
    expect(await sessionCount(databaseUrl)).to.equal(0);

    const again = await runCli(['jwt-secret', 'adopt', '--yes'], nodeEnv(databaseUrl, NEW_SECRET));
    expect(again.code, again.stderr).to.equal(0);
    expect(again.stdout).to.equal("JWT_SECRET is already this database's cluster secret: nothing changed\n");

    const renewed = await startMain(nodeEnv(databaseUrl, NEW_SECRET));
    running.push(renewed);
    expect(secretLine(renewed.stdout())).to.equal("[STARTUP] JWT_SECRET: the same as the cluster's");
    const refresh = await request(renewed.url, 'POST', '/auth/refresh', {
      body: { refreshToken: signup.body.refreshToken },
    });
    expect(refresh.status).to.equal(401);

    const old = await runMain(nodeEnv(databaseUrl, OLD_SECRET));
    expect(expectOneLineFailure(old)).to.equal(`xfchat: cannot start: ${JWT_SECRET_MISMATCH}`);
  });

  it('jwt-secret adopt --yes refuses while a node still runs on the database, unless --force', async () => {
    const database = await createTestDatabase();
    const node = await startMain(nodeEnv(database, OLD_SECRET));
    running.push(node);
    const refused = await runCli(['jwt-secret', 'adopt', '--yes'], nodeEnv(database, NEW_SECRET));
    expect(refused.code, refused.stderr).to.equal(2);
    expect(expectOneLineFailure(refused)).to.match(
      /^xfchat jwt-secret: 1 node still runs on this database \(a connection named xfchat-control each\): stop every node first/,
    );
    expect((await fetch(`${node.url}/readyz`)).status).to.equal(200);
    expect(expectOneLineFailure(await runMain(nodeEnv(database, NEW_SECRET)))).to.equal(
      `xfchat: cannot start: ${JWT_SECRET_MISMATCH}`,
    );
    const forced = await runCli(['jwt-secret', 'adopt', '--yes', '--force'], nodeEnv(database, NEW_SECRET));
    expect(forced.code, forced.stderr).to.equal(0);
    expect(forced.stdout).to.match(/^adopted: /);
  });

  it('jwt-secret adopt: one line naming the fix on a database not migrated, or an unknown action', async () => {
    const empty = await createEmptyDatabase();
    const line = expectOneLineFailure(
      await runCli(['jwt-secret', 'adopt', '--yes'], nodeEnv(empty, NEW_SECRET)),
    );
    expect(line).to.match(/^xfchat jwt-secret: the database is not migrated to this release/);
    expect(line).to.include('xfchat migrate latest');

    const unknown = await runCli(['jwt-secret', 'rotate'], nodeEnv(empty, NEW_SECRET));
    expect(unknown.code).to.equal(2);
    expect(unknown.stderr).to.match(/^xfchat: unknown jwt-secret action "rotate": use adopt\n/);
  });
});
