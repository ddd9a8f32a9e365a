import { chmod, mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { closedFolderOnTheWay, startEmbeddedPostgres } from '../../lib/dev/embeddedPostgres.js';
import { StartupError } from '../../lib/startupErrors.js';

/**
 * As root, the embedded PostgreSQL runs as the `postgres` OS user, which must enter every folder on the way to its
 * programs and its data: a clone in a folder only root may enter (a home folder of mode 700) failed in initdb with
 * "could not access directory ... Permission denied" and no word of why or what to do.
 */
describe('the embedded PostgreSQL and folders its OS user cannot enter', function () {
  this.timeout(20_000);
  let root: string;
  let closed: string;

  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'xfchat-closed-'));
    // mkdtemp makes its folder for its owner only: this one is open, the one below closed.
    await chmod(root, 0o755);
    closed = path.join(root, 'home');
    await mkdir(path.join(closed, 'project'), { recursive: true });
    await chmod(closed, 0o700);
  });

  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('finds the first folder on the way that another user may not enter', async () => {
    const stranger = { uid: 4_000_000, gid: 4_000_000, groups: [4_000_000] };
    const data = path.join(closed, 'project', '.data', 'postgres');
    expect(await closedFolderOnTheWay(data, stranger)).to.equal(closed);
    expect(await closedFolderOnTheWay(path.join(root, 'elsewhere', 'postgres'), stranger)).to.equal(
      undefined,
    );
    // Its owner may.
    const owner = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, groups: [] };
    expect(await closedFolderOnTheWay(data, owner)).to.equal(undefined);
  });

  it('lets a user in through any of its groups, the supplementary ones too', async () => {
    const shared = path.join(root, 'shared');
    await mkdir(path.join(shared, 'project'), { recursive: true });
    await chmod(shared, 0o750);
    const group = process.getgid?.() ?? 0;
    const member = { uid: 4_000_001, gid: 4_000_001, groups: [4_000_001, group] };
    expect(await closedFolderOnTheWay(path.join(shared, 'project'), member)).to.equal(undefined);
    const outsider = { uid: 4_000_002, gid: 4_000_002, groups: [4_000_002] };
    expect(await closedFolderOnTheWay(path.join(shared, 'project'), outsider)).to.equal(shared);
  });

  it('as root, refuses a data folder the postgres user cannot reach, in one line naming the folder and the fixes; as another user, starts', async () => {
    const dataDir = path.join(closed, 'project', '.data', 'postgres');
    if (process.getuid?.() === 0) {
      let refused: unknown;
      try {
        await startEmbeddedPostgres({ dataDir, persistent: false });
      } catch (err) {
        refused = err;
      }
      expect(refused).to.be.instanceOf(StartupError);
      const message = (refused as Error).message;
      expect(message).to.include(`cannot enter ${closed} `).and.include(`chmod o+x ${closed}`);
      expect(message).to.include('--data-dir').and.not.include('\n');
    } else {
      const postgres = await startEmbeddedPostgres({ dataDir, persistent: false });
      await postgres.stop();
    }
  });
});
