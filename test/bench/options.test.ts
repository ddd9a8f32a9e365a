/**
 * --scenario as its usage (bench/options.ts USAGE, `npm run bench -- --help`) lists it: "comma-separated:
 * e0, ..., soak, default, all". The error for an unknown name says the same: "use e0, ..., soak, default or all".
 */
import { expect } from 'chai';
import { parseOptions, SCENARIOS, USAGE } from '../../bench/options.js';

describe('bench: --scenario with default or all in the list', () => {
  it('accepts default and all beside other scenarios, as the usage lists them', () => {
    expect(USAGE).to.match(/--scenario LIST\s+comma-separated: e0, .*soak, default, all/s);
    const defaults = parseOptions([], {}).scenarios;
    let withPoolSweep: readonly string[] | string;
    try {
      withPoolSweep = parseOptions(['--scenario', 'default,poolsweep'], {}).scenarios;
    } catch (err) {
      withPoolSweep = (err as Error).message;
    }
    expect(withPoolSweep).to.deep.equal(SCENARIOS.filter((s) => defaults.includes(s) || s === 'poolsweep'));
  });
});
