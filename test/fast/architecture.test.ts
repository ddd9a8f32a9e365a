import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { expect } from 'chai';
import { PROJECT_ROOT } from '../helpers/childProcess.js';

/** Every module an import statement of each .ts file under `folder` names, by file. */
async function importsUnder(folder: string): Promise<Map<string, string[]>> {
  const found = new Map<string, string[]>();
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) await walk(full);
      else if (entry.name.endsWith('.ts')) {
        const text = await readFile(full, 'utf8');
        const specifiers = [...text.matchAll(/^\s*(?:import|export)[^'"]*from\s+'([^']+)'/gm)].map(
          (m) => m[1]!,
        );
        found.set(
          path.relative(PROJECT_ROOT, full),
          // Relative imports as paths from the project root; packages as they are.
          specifiers.map((s) => (s.startsWith('.') ? path.relative(PROJECT_ROOT, path.resolve(dir, s)) : s)),
        );
      }
    }
  };
  await walk(path.join(PROJECT_ROOT, folder));
  return found;
}

function offenders(imports: Map<string, string[]>, bad: (specifier: string) => boolean): string[] {
  return [...imports].flatMap(([file, specifiers]) => specifiers.filter(bad).map((s) => `${file} -> ${s}`));
}

describe('architecture: dependencies point one way (docs/architecture.md)', () => {
  it('no service or the messaging core imports Socket.IO: they tell clients things through the Notifier', async () => {
    for (const folder of ['lib/auth', 'lib/social', 'lib/conversations', 'lib/messaging']) {
      expect(
        offenders(await importsUnder(folder), (s) => s.startsWith('socket.io')),
        folder,
      ).to.deep.equal([]);
    }
  });

  it('nothing under lib/realtime imports lib/http', async () => {
    const imports = await importsUnder('lib/realtime');
    // The scan sees what is there: the realtime layer does import Socket.IO and the services.
    expect(offenders(imports, (s) => s === 'socket.io')).not.to.be.empty;
    expect(offenders(imports, (s) => s.startsWith('lib/http'))).to.deep.equal([]);
  });

  it('actors/ import nothing of lib/ but the error catalog and the logger type', async () => {
    const allowed = new Set(['lib/errors.js', 'lib/logger.js']);
    expect(
      offenders(await importsUnder('actors'), (s) => s.startsWith('lib/') && !allowed.has(s)),
    ).to.deep.equal([]);
  });

  it('services, the messaging core and the models never import the interfaces (lib/http, lib/realtime)', async () => {
    for (const folder of ['lib/auth', 'lib/social', 'lib/conversations', 'lib/messaging', 'lib/models']) {
      expect(
        offenders(
          await importsUnder(folder),
          (s) => s.startsWith('lib/http') || s.startsWith('lib/realtime'),
        ),
        folder,
      ).to.deep.equal([]);
    }
  });

  it("a node's state lives in the node: no module-level throttle, map, set or variable under lib/ or actors/", async () => {
    // Tests (and embedders) run several nodes in one process: a module's state would be shared by all of them, as
    // the server-error log throttles once were (one node's outage line silenced another's).
    const state =
      /^(?:let\s|(?:export\s+)?const\s+\w+\s*(?::[^=]+)?=\s*(?:create\w*(?:ServerErrorLog|LogThrottle)\(|new\s+(?:Map|WeakMap|WeakSet)\b|new\s+Set\(\s*\)))/m;
    const found: string[] = [];
    for (const folder of ['lib', 'actors']) {
      for (const file of (await importsUnder(folder)).keys()) {
        // The SDK runs in the client; the dev tools and the CLI are one per process.
        if (/^lib\/(?:client|dev)\/|^lib\/cli\.ts$/.test(file)) continue;
        const text = await readFile(path.join(PROJECT_ROOT, file), 'utf8');
        const match = state.exec(text);
        if (match) found.push(`${file}: ${match[0]}`);
      }
    }
    expect(found).to.deep.equal([]);
  });

  it('the SDK imports nothing of the server but lib/protocol', async () => {
    expect(
      offenders(
        await importsUnder('lib/client'),
        (s) => s.startsWith('lib/') && !s.startsWith('lib/client/') && !s.startsWith('lib/protocol/'),
      ),
    ).to.deep.equal([]);
  });
});
