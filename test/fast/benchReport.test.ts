import { expect } from 'chai';
import { renderMarkdown } from '../../bench/markdown.js';
import { parseOptions } from '../../bench/options.js';
import { newResults } from '../../bench/report.js';

describe('bench report: the database maintenance', () => {
  it('says whether autovacuum ran and how often and how long the bench vacuumed before the phases', () => {
    const results = newResults(parseOptions([], {}), []);
    results.postgres = { server_version: '18.4', autovacuum: 'off' };
    results.vacuums = {
      tables: ['messages', 'conversations', 'conversation_participants'],
      count: 15,
      ms: 12_340,
    };
    const report = renderMarkdown(results);
    expect(report).to.include('autovacuum off).');
    expect(report).to.include(
      'Before each phase: `VACUUM (ANALYZE) messages, conversations, conversation_participants` (15 times, 12.3 s in all).',
    );
  });

  it('claims no vacuum when no phase ran', () => {
    const report = renderMarkdown(newResults(parseOptions([], {}), []));
    expect(report).to.not.include('Before each phase');
  });
});
