import { chmod, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { runMain } from './helpers/childProcess.js';
import { type DevChild, RUNNING, startDev } from './helpers/devServer.js';
import { createTestDatabase } from './helpers/postgres.js';
import { TEST_JWT_SECRET } from './helpers/server.js';
import { waitFor } from './helpers/waitFor.js';

/** A TCP server holding a loopback port, as another XFChat or any program would. */
async function occupyPort(): Promise<{ port: number; close(): Promise<void> }> {
  const server = net.createServer((socket) => socket.destroy());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    port,
    close: () =>
      new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve()))),
  };
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return false;
      throw err;
    },
  );
}

describe('the HTTP port taken, and the development loop', function () {
  this.timeout(90_000);

  it('npm start: exits 1 with one line naming the port and a free one, when the port is in use', async () => {
    const holder = await occupyPort();
    try {
      const env = {
        DATABASE_URL: await createTestDatabase(),
        JWT_SECRET: TEST_JWT_SECRET,
        PORT: String(holder.port),
        HOST: '127.0.0.1',
        LOG_LEVEL: 'warn',
      };
      const result = await runMain(env);
      expect(result.code).to.equal(1);
      const lines = result.stderr.split('\n').filter((l) => l.trim() !== '');
      expect(lines).to.have.length(1);
      expect(lines[0]).to.match(
        new RegExp(
          `^xfchat: cannot start: port ${holder.port} is in use: stop the other server or set PORT=\\d+$`,
        ),
      );
      const suggested = Number(/PORT=(\d+)$/.exec(lines[0]!)![1]);
      expect(suggested).to.be.above(holder.port);
    } finally {
      await holder.close();
    }
  });

  describe('npm run dev', () => {
    let dataDir: string;
    let child: DevChild | undefined;

    before(async () => {
      dataDir = await mkdtemp(path.join(os.tmpdir(), 'xfchat-dev-'));
      // PostgreSQL runs as the `postgres` OS user when we are root and must reach the data inside.
      await chmod(dataDir, 0o755);
    });

    afterEach(() => {
      child?.kill();
      child = undefined;
    });

    after(async () => {
      await rm(dataDir, { recursive: true, force: true });
    });

    it('says at once, before starting PostgreSQL, that the HTTP port is in use', async () => {
      const holder = await occupyPort();
      try {
        child = startDev(path.join(dataDir, 'busy'), { PORT: String(holder.port) });
        const result = await child.exited;
        expect(result.code).to.equal(1);
        expect(result.stderr.trim()).to.match(
          new RegExp(
            `^xfchat: cannot start: port ${holder.port} is in use: stop the other server or set PORT=\\d+$`,
          ),
        );
        expect(result.stdout).not.to.include('starting embedded PostgreSQL');
      } finally {
        await holder.close();
      }
    });

    it('says at once, as npm start does, that HOST is not an address of this machine', async () => {
      child = startDev(path.join(dataDir, 'elsewhere'), { HOST: '10.9.9.9', PORT: '3999' });
      const result = await child.exited;
      expect(result.code).to.equal(1);
      expect(result.stderr.trim()).to.match(
        /^xfchat: cannot start: HOST=10\.9\.9\.9 is not an address of this machine/,
      );
      expect(result.stdout).not.to.include('starting embedded PostgreSQL');
    });

    it('stops server and PostgreSQL on a SIGTERM to npm alone (a process manager), leaving nothing running', async () => {
      const data = path.join(dataDir, 'terminated');
      const dev = startDev(data, { PORT: '0' }, 'npm');
      child = dev;
      const match = await waitFor(() => RUNNING.exec(dev.stdout()), {
        timeoutMs: 60_000,
        what: `the dev server to run\n${dev.stdout()}\n${dev.stderr()}`,
      });
      dev.terminate();
      await dev.exited;
      // npm hands the signal to its script, which is the server itself (exec): it drains and stops PostgreSQL.
      await waitFor(async () => !(await exists(path.join(data, 'postgres', 'postmaster.pid'))), {
        timeoutMs: 30_000,
        what: `PostgreSQL to stop\n${dev.stdout()}`,
      });
      await waitFor(() => /\[dev\] stopped\n/.test(dev.stdout()), {
        what: 'the dev server to say it stopped',
      });
      const gone = await fetch(`${match[1]}/healthz`).then(
        () => false,
        () => true,
      );
      expect(gone, 'nothing answers on the dev server port').to.equal(true);
    });

    it('stops cleanly on Ctrl-C: server first, then PostgreSQL, exit 0, nothing on stderr; a restart reuses the database port', async () => {
      const data = path.join(dataDir, 'loop');
      const ports: string[] = [];
      for (let run = 0; run < 2; run++) {
        // The first run through npm as a developer types it (npm, sh, then node, all getting the Ctrl-C).
        const dev = startDev(data, { PORT: '0' }, run === 0 ? 'npm' : 'node');
        child = dev;
        const match = await waitFor(() => RUNNING.exec(dev.stdout()), {
          timeoutMs: 60_000,
          what: `the dev server to run\n${dev.stdout()}\n${dev.stderr()}`,
        });
        // The dev server listens on this machine only unless HOST says otherwise.
        expect(match[1]).to.match(/^http:\/\/127\.0\.0\.1:\d+$/);
        ports.push(match[2]!);
        const health = await fetch(`${match[1]}/healthz`);
        expect(health.status).to.equal(200);
        // Readable logs, not JSON lines.
        expect(dev.stdout()).to.match(/INFO: \[STARTUP\] listening on http:\/\/127\.0\.0\.1:\d+/);
        expect(dev.stdout()).not.to.match(/^\{"level"/m);

        dev.interrupt();
        const result = await dev.exited;
        expect(result.stderr).to.equal('');
        // The server exits 0; npm's script is the server itself (exec), so npm exits as it did.
        expect({ code: result.code, signal: result.signal }).to.deep.equal({ code: 0, signal: null });
        const afterListening = result.stdout.slice(result.stdout.indexOf('[dev] XFChat is running'));
        expect(afterListening).not.to.match(/WARN|ERROR|FATAL/);
        expect(afterListening).to.match(
          /signal received, draining[\s\S]*shutdown complete[\s\S]*\[dev\] stopped\n$/,
        );
        // PostgreSQL stopped (it removes its pid file at a clean shutdown).
        expect(await exists(path.join(data, 'postgres', 'postmaster.pid'))).to.equal(false);
      }
      expect(ports[1]).to.equal(ports[0]);
      expect((await readFile(path.join(data, 'postgres-port'), 'utf8')).trim()).to.equal(ports[0]);
    });
  });
});
