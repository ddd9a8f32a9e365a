import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Whether this process runs XFChat's TypeScript (tsx: `npm run dev`, `npm run migrate`, the tests) or dist/. */
const fromTypeScript = path.extname(fileURLToPath(import.meta.url)) === '.ts';

/**
 * The migration files this process can load, by extension, the preferred first: JavaScript always, TypeScript
 * when it runs from TypeScript (the built server runs plain Node, which cannot import `.ts`).
 */
export const LOADABLE_MIGRATION_EXTENSIONS: readonly string[] = fromTypeScript ? ['.ts', '.js'] : ['.js'];

/** A migration file's name without its extension, or undefined for a file that is no loadable migration. */
export function migrationName(
  file: string,
  extensions: readonly string[] = LOADABLE_MIGRATION_EXTENSIONS,
): { name: string; extension: string } | undefined {
  if (file.endsWith('.d.ts')) return undefined;
  const extension = path.extname(file);
  if (!extensions.includes(extension)) return undefined;
  return { name: file.slice(0, -extension.length), extension };
}

/**
 * What is wrong with a folder of migrations holding `files`, for a process that loads `extensions`: TypeScript
 * migrations without a compiled copy where only JavaScript loads (never skipped in silence), or no migration at
 * all. Undefined if nothing is.
 */
export function migrationFilesProblem(
  files: readonly string[],
  extensions: readonly string[] = LOADABLE_MIGRATION_EXTENSIONS,
): string | undefined {
  const loadable = new Set(files.flatMap((file) => migrationName(file, extensions)?.name ?? []));
  const unloadable = files.filter(
    (file) => file.endsWith('.ts') && !file.endsWith('.d.ts') && !loadable.has(file.slice(0, -'.ts'.length)),
  );
  if (unloadable.length > 0) {
    return `holds TypeScript migrations that the built server cannot load (${unloadable.join(', ')}): compile them to .js`;
  }
  if (loadable.size === 0) return 'holds no migration files (.ts or .js)';
  return undefined;
}
