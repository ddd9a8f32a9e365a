/**
 * The README's settings table, rendered from `SETTINGS` (lib/config.ts). `npm run docs` writes it into the README
 * between its markers; test/docs.test.ts checks that the README holds exactly this table.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { SETTINGS } from '../../lib/config.js';

export const README_URL = new URL('../../README.md', import.meta.url);
export const START = '<!-- settings:start (npm run docs) -->';
export const END = '<!-- settings:end -->';

/** How a setting's default reads in the docs. */
export function shownDefault(name: keyof typeof SETTINGS): string {
  const setting = SETTINGS[name];
  return setting.kind === 'text' ? setting.shownDefault : `\`${setting.default}\``;
}

/** The table: variable, default, meaning, in the order of SETTINGS. */
export function settingsTable(): string {
  const rows = (Object.keys(SETTINGS) as Array<keyof typeof SETTINGS>).map(
    (name) => `| \`${name}\` | ${shownDefault(name)} | ${SETTINGS[name].doc} |`,
  );
  return ['| variable | default | meaning |', '| --- | --- | --- |', ...rows].join('\n');
}

/** The README with its table between the markers replaced by a fresh one. */
export function withTable(readme: string, table: string): string {
  const start = readme.indexOf(START);
  const end = readme.indexOf(END);
  if (start < 0 || end < start) throw new Error(`README.md has no ${START} ... ${END} markers`);
  return `${readme.slice(0, start + START.length)}\n\n${table}\n\n${readme.slice(end)}`;
}

const invokedDirectly = process.argv[1]?.endsWith('settingsTable.ts') === true;
if (invokedDirectly) {
  const readme = await readFile(README_URL, 'utf8');
  await writeFile(README_URL, withTable(readme, settingsTable()));
}
