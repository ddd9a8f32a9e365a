import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { PROJECT_ROOT } from '../helpers/childProcess.js';
import { useNode } from '../helpers/nodes.js';

const run = promisify(execFile);
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const SDK_DIR = path.join(PROJECT_ROOT, 'packages', 'client');

interface PackResult {
  name: string;
  version: string;
  filename: string;
  files: Array<{ path: string }>;
}

/** `npm pack` of the SDK workspace (its prepack builds it) into `destination`. */
async function packSdk(destination: string): Promise<PackResult> {
  const { stdout } = await run(
    npm,
    ['pack', '-w', '@xfchat/client', '--pack-destination', destination, '--json'],
    {
      cwd: PROJECT_ROOT,
      maxBuffer: 16 * 1024 * 1024,
    },
  );
  // The build's own progress line comes first; npm's JSON answer is the array after it.
  const json = stdout.slice(stdout.search(/^\[$/m));
  const [result] = JSON.parse(json) as PackResult[];
  if (!result) throw new Error(`npm pack printed no result:\n${stdout}`);
  return result;
}

/**
 * A fresh ESM project that installs the tarball with npm, offline: the SDK's dependencies come from this
 * repository's node_modules (an `overrides` entry per dependency), so no registry is needed.
 */
async function projectWithTarball(dir: string, tarball: string): Promise<void> {
  const manifest = JSON.parse(await readFile(path.join(SDK_DIR, 'package.json'), 'utf8')) as {
    dependencies: Record<string, string>;
  };
  const overrides = Object.fromEntries(
    Object.keys(manifest.dependencies).map((name) => [
      name,
      `file:${path.join(PROJECT_ROOT, 'node_modules', name)}`,
    ]),
  );
  await writeFile(
    path.join(dir, 'package.json'),
    JSON.stringify({
      name: 'sdk-consumer',
      private: true,
      type: 'module',
      dependencies: { '@xfchat/client': `file:${tarball}` },
      overrides,
    }),
  );
  await run(npm, ['install', '--offline', '--no-audit', '--no-fund'], { cwd: dir });
}

/** What the consumer's script does: import the package by name, use it against a real node, print the result. */
const CONSUMER_SCRIPT = `
import { XFChatClient, XFChatError, isRetryable, newClientMsgId, tokenSubject } from '@xfchat/client';
const [baseUrl, username] = process.argv.slice(2);
const client = new XFChatClient({ baseUrl });
const { user, token } = await client.signup({ username, password: 'correct horse battery' });
await client.connect();
const state = client.state;
client.close();
const error = new XFChatError('TIMEOUT', 'no ack');
console.log(JSON.stringify({
  exports: [typeof XFChatClient, typeof XFChatError, typeof isRetryable, typeof newClientMsgId, typeof tokenSubject],
  signedUp: user.username,
  subjectIsUser: tokenSubject(token) === user.id,
  state,
  error: { isError: error instanceof Error, code: error.code, retryable: isRetryable(error) },
  clientMsgId: /^[0-9a-f-]{36}$/.test(newClientMsgId()),
}));
`;

/** A TypeScript consumer: compiled against the package's declarations, with nothing of this repository. */
const CONSUMER_TYPES = `
import { XFChatClient, XFChatError, type PublicMessage, type XFChatErrorCode, type ConnectionState } from '@xfchat/client';
const client: XFChatClient = new XFChatClient({ baseUrl: 'http://127.0.0.1:3000', ackTimeoutMs: 5000 });
const code: XFChatErrorCode = 'ALREADY_SUBSCRIBED';
const state: ConnectionState = client.state;
export async function firstSeq(conversationId: string): Promise<number> {
  const message: PublicMessage = await client.send(conversationId, 'hello', { clientMsgId: 'abc' });
  const page = await client.messages.after(conversationId, 0, 10);
  return page.messages[0]?.seq ?? message.seq;
}
export const described = [code, state, new XFChatError('NOT_CONNECTED', 'offline').status];
`;

describe('client SDK: the @xfchat/client package', function () {
  // Packing builds the SDK (esbuild and tsc) and npm installs it: seconds, not milliseconds.
  this.timeout(120_000);
  const { server } = useNode();
  let workDir: string;
  let packed: PackResult;
  let project: string;

  before(async () => {
    workDir = await mkdtemp(path.join(os.tmpdir(), 'xfchat-sdk-package-'));
    packed = await packSdk(workDir);
    project = path.join(workDir, 'consumer');
    await mkdir(project);
    await projectWithTarball(project, path.join(workDir, packed.filename));
  });

  after(async () => {
    if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
  });

  it('packs version 0.2.0 with the bundle and the declarations only, nothing from outside the package', () => {
    expect(packed).to.include({ name: '@xfchat/client', version: '0.2.0' });
    const files = packed.files.map((f) => f.path).sort();
    expect(files).to.include.members([
      'package.json',
      'README.md',
      'dist/index.js',
      'dist/types/client/index.d.ts',
      'dist/types/protocol/index.d.ts',
    ]);
    for (const file of files) {
      expect(file).to.match(/^(package\.json|README\.md|dist\/index\.js(\.map)?|dist\/types\/.+\.d\.ts)$/);
    }
  });

  it('installs from the tarball and imports by name (ESM) in a fresh project, and talks to a real node', async () => {
    await writeFile(path.join(project, 'consumer.mjs'), CONSUMER_SCRIPT);
    const username = `pkg_${Date.now().toString(36)}`;
    const { stdout, stderr } = await run(process.execPath, ['consumer.mjs', server.url, username], {
      cwd: project,
      timeout: 20_000,
    });
    expect(stderr).to.equal('');
    expect(JSON.parse(stdout)).to.deep.equal({
      exports: ['function', 'function', 'function', 'function', 'function'],
      signedUp: username,
      subjectIsUser: true,
      state: 'connected',
      error: { isError: true, code: 'TIMEOUT', retryable: true },
      clientMsgId: true,
    });
  });

  it('type-checks a strict TypeScript consumer against the declarations in the tarball', async () => {
    await writeFile(path.join(project, 'consumer.ts'), CONSUMER_TYPES);
    const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
    const args = [
      tsc,
      '--noEmit',
      '--strict',
      '--target',
      'es2022',
      '--module',
      'nodenext',
      '--moduleResolution',
      'nodenext',
      '--lib',
      'es2023,dom',
      'consumer.ts',
    ];
    const result = await run(process.execPath, args, { cwd: project }).catch(
      (err: { stdout?: string; message: string }) => {
        throw new Error(`tsc failed:\n${err.stdout ?? err.message}`);
      },
    );
    expect(result.stdout).to.equal('');
  });
});
