/**
 * Process contract: "`npm start`: one production node ... `SIGTERM`: ... exit 0". npm runs a script under `sh -c`
 * and forwards a SIGTERM it receives to that shell only: without `exec` in the start script the shell died, npm
 * exited 143 at once, and the node ran on, orphaned, never told to drain (a process manager or `docker stop`
 * signals npm). This runs the project's own start script, word for word, in a scratch folder whose
 * dist/lib/main.js is a stand-in node that drains on SIGTERM and exits 0.
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';

const STAND_IN = `
import { writeFileSync } from 'node:fs';
writeFileSync(process.env.MARKER + '.pid', String(process.pid));
process.on('SIGTERM', () => { writeFileSync(process.env.MARKER, 'drained'); setTimeout(() => process.exit(0), 200); });
writeFileSync(process.env.MARKER, 'listening');
setInterval(() => {}, 1000);
`;

async function until(check: () => Promise<boolean>, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

describe('`npm start` and SIGTERM', function () {
  this.timeout(30_000);
  let dir: string;
  before(async () => {
    const manifest = JSON.parse(await readFile('package.json', 'utf8')) as { scripts: { start: string } };
    dir = await mkdtemp(path.join(os.tmpdir(), 'xfchat-hunt-npm-start-'));
    await mkdir(path.join(dir, 'dist', 'lib'), { recursive: true });
    await writeFile(path.join(dir, 'dist', 'lib', 'main.js'), STAND_IN);
    await writeFile(
      path.join(dir, 'package.json'),
      JSON.stringify({ name: 'stand-in', type: 'module', scripts: { start: manifest.scripts.start } }),
    );
  });
  after(async () => {
    // An orphaned stand-in (the defect) would run forever: end it.
    const pid = Number(await readFile(path.join(dir, 'marker.pid'), 'utf8').catch(() => ''));
    if (pid > 0) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
      }
    }
    await rm(dir, { recursive: true, force: true });
  });

  it('reaches the node, which drains, and npm exits 0', async () => {
    const marker = path.join(dir, 'marker');
    const npm = spawn('npm', ['start', '--silent'], { cwd: dir, env: { ...process.env, MARKER: marker } });
    const exited = new Promise<number | null>((resolve) =>
      npm.once('exit', (code, signal) =>
        resolve(code ?? (signal ? 128 + os.constants.signals[signal] : null)),
      ),
    );
    const read = async () => readFile(marker, 'utf8').catch(() => '');
    expect(await until(async () => (await read()) === 'listening', 20_000), 'stand-in started').to.equal(
      true,
    );
    npm.kill('SIGTERM');
    const code = await exited;
    const drained = await until(async () => (await read()) === 'drained', 3000);
    expect({ npmExit: code, nodeToldToDrain: drained }).to.deep.equal({ npmExit: 0, nodeToldToDrain: true });
  });
});
