/**
 * Builds @xfchat/client from the SDK's sources where they live, lib/client (the server's tests and the web app
 * use them there): dist/index.js, one ESM bundle with its dependencies (socket.io-client, valibot) left as imports,
 * and dist/types, the declarations of lib/client and of the lib/protocol types they use. dist/index.js.map holds
 * the sources' text and names them `xfchat-client:///lib/...`, no path on disk. Then it checks that every import in
 * the declarations resolves inside the package or to one of its dependencies, so the tarball stands on its own.
 *
 * `npm run build -w @xfchat/client`; `npm pack -w @xfchat/client` runs it first (prepack).
 */
import { execFileSync } from 'node:child_process';
import { readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import ts from 'typescript';

const packageDir = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(packageDir, '..', '..');
const sdkEntry = path.join(repoRoot, 'lib', 'client', 'index.ts');
/**
 * What the source map names the bundled sources by: `xfchat-client:///lib/client/client.ts`, a name of no file on
 * disk. esbuild names them relative to dist/ (`../../../lib/client/client.ts`), a path outside the package: installed
 * as node_modules/@xfchat/client, stack traces under `node --enable-source-maps` and debuggers would point at
 * node_modules/lib/client/client.ts. Their text is in the map (sourcesContent) all the same.
 */
const SOURCE_SCHEME = 'xfchat-client://';
const distDir = path.join(packageDir, 'dist');
const typesDir = path.join(distDir, 'types');

interface PackageJson {
  name: string;
  version: string;
  dependencies?: Record<string, string>;
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch {
    return false; // stat fails for a missing file: that is the answer
  }
}

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
}

/** The package a bare specifier names: `socket.io-client`, `@scope/name` (without a subpath). */
function packageName(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : (parts[0] ?? specifier);
}

/** Every import of every declaration file that does not resolve inside dist/types or to a dependency. */
async function unresolvedImports(dependencies: readonly string[]): Promise<string[]> {
  const problems: string[] = [];
  for (const file of await filesUnder(typesDir)) {
    const where = path.relative(packageDir, file);
    // TypeScript's own scanner: imports, `import("...")` types and `/// <reference>` lines, never comments.
    const info = ts.preProcessFile(await readFile(file, 'utf8'), true, true);
    for (const reference of [
      ...info.referencedFiles,
      ...info.typeReferenceDirectives,
      ...info.libReferenceDirectives,
    ])
      problems.push(`${where}: has a triple-slash reference to "${reference.fileName}"`);
    for (const { fileName: specifier } of info.importedFiles) {
      if (specifier.startsWith('.')) {
        const target = path.resolve(path.dirname(file), specifier.replace(/\.js$/, '.d.ts'));
        if (!target.startsWith(typesDir + path.sep) || !(await exists(target)))
          problems.push(`${where}: "${specifier}" does not resolve inside the package`);
      } else if (!dependencies.includes(packageName(specifier))) {
        problems.push(`${where}: "${specifier}" is not a dependency of the package`);
      }
    }
  }
  return problems;
}

/**
 * Renames the sources of dist/index.js.map from paths relative to dist/ to {@link SOURCE_SCHEME} URLs of their place
 * in the repository (`xfchat-client:///lib/client/client.ts`); one from outside lib/ fails the build.
 */
async function renameMapSources(mapFile: string): Promise<void> {
  const map = JSON.parse(await readFile(mapFile, 'utf8')) as {
    sources: string[];
    sourcesContent?: Array<string | null>;
    sourceRoot?: string;
  };
  if (map.sourcesContent?.length !== map.sources.length || map.sourcesContent.some((text) => text === null))
    throw new Error('the source map lacks the text of its sources (sourcesContent)');
  map.sources = map.sources.map((source) => {
    const file = path.relative(repoRoot, path.resolve(path.dirname(mapFile), map.sourceRoot ?? '', source));
    const name = file.split(path.sep).join('/');
    if (!name.startsWith('lib/')) throw new Error(`the bundle holds ${source}, from outside lib/`);
    return `${SOURCE_SCHEME}/${name}`;
  });
  delete map.sourceRoot;
  await writeFile(mapFile, JSON.stringify(map));
}

async function main(): Promise<void> {
  const started = performance.now();
  const manifest = JSON.parse(await readFile(path.join(packageDir, 'package.json'), 'utf8')) as PackageJson;
  const dependencies = Object.keys(manifest.dependencies ?? {});
  await rm(distDir, { recursive: true, force: true });

  await esbuild.build({
    entryPoints: [sdkEntry],
    outfile: path.join(distDir, 'index.js'),
    bundle: true,
    format: 'esm',
    platform: 'neutral',
    target: 'es2022',
    external: dependencies,
    sourcemap: true,
    sourcesContent: true,
    banner: { js: `/* ${manifest.name} ${manifest.version} (MIT) */` },
    logLevel: 'warning',
  });
  await renameMapSources(path.join(distDir, 'index.js.map'));

  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  execFileSync(process.execPath, [tsc, '-p', path.join(packageDir, 'tsconfig.types.json')], {
    stdio: 'inherit',
  });
  if (!(await exists(path.join(typesDir, 'client', 'index.d.ts'))))
    throw new Error('tsc did not emit dist/types/client/index.d.ts');

  const problems = await unresolvedImports(dependencies);
  if (problems.length > 0)
    throw new Error(`the declarations reach outside the package:\n${problems.join('\n')}`);

  const ms = Math.round(performance.now() - started);
  process.stdout.write(`[client] built ${manifest.name} ${manifest.version} into dist/ in ${ms} ms\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`[client] build failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
