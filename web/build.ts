/**
 * Bundles the browser app with esbuild: web/app.ts (with the SDK and socket.io-client) into dist/web/app.js,
 * plus index.html and styles.css. `tsx web/build.ts` builds once; `--watch` rebuilds on change.
 */
import { copyFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const webDir = path.dirname(fileURLToPath(import.meta.url));
/** Where the server serves the app from (see lib/http/webStatic.ts). */
export const DEFAULT_OUT_DIR = path.resolve(webDir, '..', 'dist', 'web');

function options(outDir: string): esbuild.BuildOptions {
  return {
    entryPoints: [path.join(webDir, 'app.ts'), path.join(webDir, 'styles.css')],
    outdir: outDir,
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: ['es2022', 'chrome110', 'firefox115', 'safari16'],
    minify: true,
    // No source maps: dist/web is public, and a map would publish the whole source of the app.
    sourcemap: false,
    legalComments: 'linked',
    logLevel: 'warning',
  };
}

/** Builds the app into `outDir` (dist/web by default). */
export async function buildWeb(outDir: string = DEFAULT_OUT_DIR): Promise<void> {
  await mkdir(outDir, { recursive: true });
  await esbuild.build(options(outDir));
  await copyFile(path.join(webDir, 'index.html'), path.join(outDir, 'index.html'));
}

async function watch(outDir: string): Promise<void> {
  await mkdir(outDir, { recursive: true });
  await copyFile(path.join(webDir, 'index.html'), path.join(outDir, 'index.html'));
  const context = await esbuild.context(options(outDir));
  await context.watch();
  process.stdout.write(`[web] watching web/ -> ${path.relative(process.cwd(), outDir)}\n`);
}

async function main(): Promise<void> {
  const started = performance.now();
  if (process.argv.includes('--watch')) {
    await watch(DEFAULT_OUT_DIR);
    return;
  }
  await buildWeb();
  const ms = Math.round(performance.now() - started);
  process.stdout.write(`[web] built ${path.relative(process.cwd(), DEFAULT_OUT_DIR)} in ${ms} ms\n`);
}

// No top-level await: this module is also imported by the e2e tests, and mocha must load it synchronously.
const invokedDirectly =
  process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (invokedDirectly) {
  main().catch((err: unknown) => {
    process.stderr.write(`[web] build failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
}
