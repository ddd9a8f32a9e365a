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

/**
 * A consumer compiled with `exactOptionalPropertyTypes`, passing `undefined` (an unset variable, a missing stored
 * value) to every option the SDK takes as absent when undefined. The declarations said `x?: T`, which that flag reads
 * as "absent or T, never undefined": each of these failed with TS2379.
 */
const CONSUMER_EXACT_OPTIONALS = `
import { XFChatClient } from '@xfchat/client';
declare const env: Record<string, string | undefined>;
declare const stored: { lastSeq: number; version: number; clientMsgId: string } | undefined;
declare const signal: AbortSignal | undefined;
const id = '0190a6b0-0000-7000-8000-000000000000';
const client = new XFChatClient({
  baseUrl: env.XFCHAT_URL,
  token: env.XFCHAT_TOKEN,
  onTokens: undefined,
  transports: undefined,
  ackTimeoutMs: undefined,
  retryBaseMs: undefined,
  retryMaxMs: undefined,
  fetch: undefined,
  requestTimeoutMs: undefined,
});
client.subscribe(id, () => {}, {
  afterSeq: stored?.lastSeq,
  sinceVersion: stored?.version,
  limit: undefined,
  onUpdate: undefined,
  onError: undefined,
  onReset: undefined,
});
void client.send(id, 'hi', { clientMsgId: stored?.clientMsgId, replyToSeq: stored?.lastSeq, signal, onRetry: undefined });
void client.edit(id, 1, 'hi', { signal, onRetry: undefined });
void client.changes(id, 0, { signal });
void client.messages.put(id, 'c1', 'hi', { replyToSeq: stored?.lastSeq });
void client.messages.edit(id, 1, 'hi', { signal });
void client.conversations.listPage({ limit: undefined, cursor: env.CURSOR });
void client.signup({ username: 'alice', password: 'correct horse battery', displayName: env.NAME });
`;

/** A script that makes the SDK throw from its own code (a baseUrl it refuses), run with `--enable-source-maps`. */
const CONSUMER_STACK = `
import { XFChatClient } from '@xfchat/client';
try {
  new XFChatClient({ baseUrl: 'ftp://example.com' });
} catch (err) {
  console.log(err.stack);
}
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

  it('packs version 0.2.0 with the bundle, the declarations and the license only, nothing from outside the package', () => {
    expect(packed).to.include({ name: '@xfchat/client', version: '0.2.0' });
    const files = packed.files.map((f) => f.path).sort();
    expect(files).to.include.members([
      'package.json',
      'README.md',
      'LICENSE',
      'dist/index.js',
      'dist/types/client/index.d.ts',
      'dist/types/protocol/index.d.ts',
    ]);
    for (const file of files) {
      expect(file).to.match(
        /^(package\.json|README\.md|LICENSE|dist\/index\.js(\.map)?|dist\/types\/.+\.d\.ts)$/,
      );
    }
  });

  it('carries the MIT license its package.json names (LICENSE)', async () => {
    const license = await readFile(
      path.join(project, 'node_modules', '@xfchat', 'client', 'LICENSE'),
      'utf8',
    );
    expect(license).to.match(/^MIT License\n\nCopyright \(c\) 2026 the XFChat authors\n/);
  });

  /**
   * The map named its sources relative to dist/ (`../../../lib/client/client.ts`): installed as
   * node_modules/@xfchat/client, that is node_modules/lib/client/client.ts, a file that is not there, which stack
   * traces under `--enable-source-maps` and debuggers showed.
   */
  it('names the sources of its source map xfchat-client:///lib/..., with their text, and stack traces show those names', async () => {
    const installed = path.join(project, 'node_modules', '@xfchat', 'client');
    const map = JSON.parse(await readFile(path.join(installed, 'dist', 'index.js.map'), 'utf8')) as {
      sources: string[];
      sourcesContent: Array<string | null>;
      sourceRoot?: string;
    };
    expect(map.sourceRoot).to.equal(undefined);
    expect(map.sources).to.include('xfchat-client:///lib/client/client.ts');
    expect(
      map.sources.filter((source) => !/^xfchat-client:\/\/\/lib\/[\w/]+\.ts$/.test(source)),
    ).to.deep.equal([]);
    expect(map.sourcesContent).to.have.length(map.sources.length);
    const clientText = map.sourcesContent[map.sources.indexOf('xfchat-client:///lib/client/client.ts')];
    expect(clientText).to.include('export class XFChatClient');

    await writeFile(path.join(project, 'stack.mjs'), CONSUMER_STACK);
    const { stdout } = await run(process.execPath, ['--enable-source-maps', 'stack.mjs'], {
      cwd: project,
      timeout: 20_000,
    });
    expect(stdout).to.match(/at checkedBaseUrl \(xfchat-client:\/\/\/lib\/client\/client\.ts:\d+:\d+\)/);
    expect(stdout).not.to.include('node_modules/lib/');
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

  it('type-checks a consumer with exactOptionalPropertyTypes that passes undefined for absent options', async () => {
    await writeFile(path.join(project, 'exact.ts'), CONSUMER_EXACT_OPTIONALS);
    const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
    const args = [tsc, '--noEmit', '--strict', '--exactOptionalPropertyTypes', '--target', 'es2022'];
    args.push('--module', 'nodenext', '--moduleResolution', 'nodenext', '--lib', 'es2023,dom', 'exact.ts');
    const output = await run(process.execPath, args, { cwd: project }).then(
      (r) => r.stdout,
      (err: { stdout?: string; message: string }) => err.stdout ?? err.message,
    );
    expect(output).to.equal('');
  });

  /** The README said valibot was a dependency "for the request types only"; the bundle checks requests with it. */
  it('says in its README that valibot, which the bundle imports, is a run-time dependency', async () => {
    const installed = path.join(project, 'node_modules', '@xfchat', 'client');
    const bundle = await readFile(path.join(installed, 'dist', 'index.js'), 'utf8');
    const readme = (await readFile(path.join(installed, 'README.md'), 'utf8')).replace(/\s+/g, ' ');
    expect(bundle).to.match(/^import \* as \w+ from "valibot";$/m);
    expect(readme).to.include('it depends on `socket.io-client` and `valibot`, both at run time');
    expect(readme).not.to.include('types only');
  });
});

interface DryRun {
  files: Array<{ path: string }>;
}

/** The files `npm pack` would put in the tarball of the package in `dir`, without running its scripts. */
async function packedFiles(dir: string): Promise<Set<string>> {
  const { stdout } = await run(npm, ['pack', '--dry-run', '--json', '--ignore-scripts'], {
    cwd: dir,
    maxBuffer: 64 * 1024 * 1024,
  });
  const [result] = JSON.parse(stdout.slice(stdout.search(/^\[$/m))) as DryRun[];
  if (!result) throw new Error(`npm pack printed no result:\n${stdout}`);
  return new Set(result.files.map((f) => f.path));
}

describe('client SDK: the server package (xfchat) and its xfchat/client export', function () {
  // A production build of the server's TypeScript: seconds.
  this.timeout(120_000);

  it('packs the license (LICENSE) of the MIT package', async () => {
    expect(await packedFiles(PROJECT_ROOT)).to.include('LICENSE');
    expect(await readFile(path.join(PROJECT_ROOT, 'LICENSE'), 'utf8')).to.equal(
      await readFile(path.join(SDK_DIR, 'LICENSE'), 'utf8'),
    );
  });

  /**
   * package.json "files" leaves the server's source maps out (and CI refuses them), but every built file of
   * dist/lib/client ended with a `//# sourceMappingURL=` naming one: tools that follow it found nothing there.
   */
  it('builds (tsconfig.build.json) no .js that names a source map the tarball leaves out', async () => {
    // Built into a scratch directory with the repository's package.json, so /work/main/dist stays as it is.
    const scratch = await mkdtemp(path.join(os.tmpdir(), 'xfchat-server-package-'));
    try {
      const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
      await run(
        process.execPath,
        [tsc, '-p', 'tsconfig.build.json', '--outDir', path.join(scratch, 'dist')],
        {
          cwd: PROJECT_ROOT,
          maxBuffer: 16 * 1024 * 1024,
        },
      );
      await writeFile(
        path.join(scratch, 'package.json'),
        await readFile(path.join(PROJECT_ROOT, 'package.json')),
      );
      const files = await packedFiles(scratch);
      expect(files).to.include('dist/lib/client/index.js');
      const dangling: string[] = [];
      for (const file of files) {
        if (!file.endsWith('.js')) continue;
        const text = await readFile(path.join(scratch, file), 'utf8');
        const url = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(text)?.[1];
        if (url !== undefined && !files.has(path.posix.join(path.posix.dirname(file), url)))
          dangling.push(file);
      }
      expect(dangling, 'packed files whose sourceMappingURL names a file left out').to.deep.equal([]);
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  });
});
