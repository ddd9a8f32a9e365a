import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { type DevChild, RUNNING, startDev } from '../helpers/devServer.js';
import { waitFor } from '../helpers/waitFor.js';

describe('a second `xfchat dev` on a data dir a running one uses', function () {
  this.timeout(120_000);
  let root: string;
  const children: DevChild[] = [];

  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'xfchat-dev-'));
    await chmod(root, 0o755);
  });

  after(async () => {
    // Ctrl-C, so each stops its embedded PostgreSQL (a SIGKILL would leave it running in its own process group).
    for (const child of children) {
      try {
        child.interrupt();
      } catch {
        // already gone
      }
      await Promise.race([child.exited, new Promise((resolve) => setTimeout(resolve, 20_000))]);
      child.kill();
    }
    await rm(root, { recursive: true, force: true });
  });

  it('is refused in one line (exit 1), and leaves the remembered database port as it was: a restart of the first reuses it', async () => {
    const data = path.join(root, 'shared');
    const first = startDev(data, { PORT: '0' });
    children.push(first);
    const match = await waitFor(() => RUNNING.exec(first.stdout()), {
      timeoutMs: 90_000,
      what: `the first dev server to run\n${first.stdout()}\n${first.stderr()}`,
    });
    const port = match[2]!;
    expect((await readFile(path.join(data, 'postgres-port'), 'utf8')).trim()).to.equal(port);

    // A second one on the same data dir (another HTTP port: PORT=0) while the first runs.
    const second = startDev(data, { PORT: '0' });
    children.push(second);
    const refused = await second.exited;
    expect(refused.code, refused.stderr).to.equal(1);
    expect(refused.stderr.trim()).to.match(/^xfchat: cannot start: PostgreSQL already runs in /);

    // README: "on a free port it picks once and remembers there"; devServer.ts: "the one used last time if it is
    // still free (so a database client configured for it keeps working)". The refused run must not have
    // remembered another port in its place.
    expect(
      (await readFile(path.join(data, 'postgres-port'), 'utf8')).trim(),
      'postgres-port after a refused second dev',
    ).to.equal(port);

    first.interrupt();
    expect((await first.exited).code).to.equal(0);
    const again = startDev(data, { PORT: '0' });
    children.push(again);
    const rematch = await waitFor(() => RUNNING.exec(again.stdout()), {
      timeoutMs: 90_000,
      what: `the restarted dev server to run\n${again.stdout()}\n${again.stderr()}`,
    });
    again.interrupt();
    await again.exited;
    expect(rematch[2], 'the database port of the restarted dev server').to.equal(port);
  });
});
