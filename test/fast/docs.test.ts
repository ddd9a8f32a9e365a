import { readdir, readFile } from 'node:fs/promises';
import { expect } from 'chai';
import { SETTINGS } from '../../lib/config.js';
import { ERROR_CATALOG } from '../../lib/protocol/errors.js';
import { shownDefault } from '../helpers/settingsTable.js';

/** The README's settings table, row by row: variable, default, meaning. */
async function readmeSettings(): Promise<Map<string, { shown: string; doc: string }>> {
  const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
  const section = readme.slice(readme.indexOf('## Configuration'), readme.indexOf('## API'));
  const rows = new Map<string, { shown: string; doc: string }>();
  for (const line of section.split('\n')) {
    const match = /^\| `([A-Z_]+)` +\| (.*?) +\| (.*?) +\|$/.exec(line);
    if (match) rows.set(match[1]!, { shown: match[2]!.trim(), doc: match[3]!.trim() });
  }
  return rows;
}

describe('docs agree with the code', function () {
  it('no other page keeps a copy of the settings table (it points to the README)', async () => {
    for (const file of ['docs/operations.md', 'docs/api.md', 'docs/security.md']) {
      const text = await readFile(new URL(`../../${file}`, import.meta.url), 'utf8');
      expect(/^\| *variable *\|/m.test(text), file).to.equal(false);
    }
  });

  it("README's settings table lists exactly lib/config.ts's SETTINGS, with their defaults and meanings", async () => {
    const rows = await readmeSettings();
    expect([...rows.keys()].sort()).to.deep.equal(Object.keys(SETTINGS).sort());
    for (const name of Object.keys(SETTINGS) as Array<keyof typeof SETTINGS>) {
      expect(rows.get(name)?.shown, name).to.equal(shownDefault(name));
      expect(rows.get(name)?.doc, name).to.equal(SETTINGS[name].doc);
    }
  });

  it('the named statements the docs mention (xfchat_write_v4, ...) are the ones the code prepares', async () => {
    const root = new URL('../../', import.meta.url);
    const sources = ['lib/messaging/statements.ts', 'lib/cluster/controlBus.ts'];
    const prepared = new Set<string>();
    for (const file of sources) {
      const text = await readFile(new URL(file, root), 'utf8');
      for (const [, name] of text.matchAll(/name: '(xfchat_[a-z_]+_v\d+)'/g)) prepared.add(name!);
    }
    expect(prepared.size).to.be.at.least(3);
    const pages = ['README.md', ...(await readdir(new URL('docs/', root))).map((f) => `docs/${f}`)];
    for (const page of pages.filter((f) => f.endsWith('.md'))) {
      const text = await readFile(new URL(page, root), 'utf8');
      // A statement's name, not a SQL function called by name (`xfchat_uuid_v7()`).
      for (const [name] of text.matchAll(/xfchat_[a-z_]+_v\d+(?![\d(])/g)) {
        expect(prepared.has(name), `${page}: ${name}`).to.equal(true);
      }
    }
  });

  for (const file of ['README.md', 'docs/errors.md', 'docs/api.md']) {
    it(`${file} lists exactly the catalog's error codes, each with its HTTP status`, async () => {
      const text = await readFile(new URL(`../../${file}`, import.meta.url), 'utf8');
      // Every row of a table whose first column is "code": the codes in its first cell, the status in its second.
      const listed = new Map<string, string>();
      let inCodeTable = false;
      for (const line of text.split('\n')) {
        if (/^\| *code *\|/.test(line)) inCodeTable = true;
        else if (!line.startsWith('|')) inCodeTable = false;
        else if (inCodeTable && !/^\| *-+/.test(line)) {
          const [first = '', second = ''] = line.split('|').slice(1);
          for (const code of first.match(/[A-Z][A-Z_]+[A-Z]/g) ?? []) listed.set(code, second.trim());
        }
      }
      expect([...listed.keys()].sort()).to.deep.equal(Object.keys(ERROR_CATALOG).sort());
      for (const [code, { status }] of Object.entries(ERROR_CATALOG)) {
        expect(listed.get(code), code).to.equal(String(status));
      }
    });
  }
});
