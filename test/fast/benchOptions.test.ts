import { expect } from 'chai';
import { parseOptions, twoNodeInWindows } from '../../bench/options.js';

describe('bench options', () => {
  it('puts the members of a two-node conversation on different nodes unless told otherwise', () => {
    expect(parseOptions([], {}).members).to.equal('apart');
    expect(parseOptions(['--members', 'together'], {}).members).to.equal('together');
    expect(parseOptions(['--members', 'apart'], {}).members).to.equal('apart');
  });

  it('leaves the pool sweep, the split echo control, the large history and the soak out of the default run, and runs each when named', () => {
    const defaults = parseOptions([], {}).scenarios;
    expect(defaults).to.include.members(['e0', 'xfchat', 'twonode']);
    expect(defaults).not.to.include('e0split');
    expect(defaults).not.to.include('poolsweep');
    expect(defaults).not.to.include('history');
    expect(defaults).not.to.include('soak');
    expect(parseOptions(['--scenario', 'e0,e0split'], {}).scenarios).to.deep.equal(['e0', 'e0split']);
    expect(parseOptions(['--scenario', 'soak'], {}).scenarios).to.deep.equal(['soak']);
    expect(parseOptions(['--scenario', 'all'], {}).scenarios).to.include.members([
      'e0split',
      'poolsweep',
      'history',
      'soak',
    ]);
  });

  it('runs 40 soak rounds unless told otherwise, and refuses a count that is not a whole number', () => {
    expect(parseOptions([], {}).soakRounds).to.equal(40);
    expect(parseOptions(['--soak-rounds', '12'], {}).soakRounds).to.equal(12);
    expect(() => parseOptions(['--soak-rounds', '0'], {})).to.throw(
      '--soak-rounds must be a whole number from 1 to 10000 (got "0")',
    );
  });

  it('prefills the history scenario with 3 million messages and the ids of the schema unless told otherwise', () => {
    const defaults = parseOptions([], {});
    expect(defaults.historyMessages).to.equal(3_000_000);
    expect(defaults.historyIds).to.equal('time');
    const control = parseOptions(['--history-ids', 'random', '--history-messages', '500000'], {});
    expect(control.historyIds).to.equal('random');
    expect(control.historyMessages).to.equal(500_000);
    expect(() => parseOptions(['--history-ids', 'v4'], {})).to.throw(
      '--history-ids must be time or random (got "v4")',
    );
  });

  it('makes clientMsgIds from a counter unless told to make random or time-ordered UUIDs', () => {
    expect(parseOptions([], {}).clientMsgIds).to.equal('counter');
    expect(parseOptions(['--client-msg-ids', 'uuid4'], {}).clientMsgIds).to.equal('uuid4');
    expect(parseOptions(['--client-msg-ids', 'uuid7'], {}).clientMsgIds).to.equal('uuid7');
    expect(() => parseOptions(['--client-msg-ids', 'ulid'], {})).to.throw(
      '--client-msg-ids must be counter, uuid4 or uuid7 (got "ulid")',
    );
  });

  it('alternates the two nodes with X and N in the window phases, unless other XFChat nodes stay up through them', () => {
    const inWindows = (argv: string[]) => twoNodeInWindows(parseOptions(argv, {}));
    expect(inWindows([])).to.equal(true);
    expect(inWindows(['--scenario', 'xfchat,twonode'])).to.equal(true);
    expect(inWindows(['--scenario', 'n,twonode'])).to.equal(true);
    // Nothing to alternate with: the two-node scenario runs on its own.
    expect(inWindows(['--scenario', 'twonode'])).to.equal(false);
    expect(inWindows(['--scenario', 'xfchat'])).to.equal(false);
    // X's extra nodes, or the compared XFChat, would count as the two nodes' peers.
    expect(inWindows(['--nodes', '2'])).to.equal(false);
    expect(inWindows(['--compare-dir', '../baseline'])).to.equal(false);
  });

  it('refuses a placement it does not know, saying which ones it knows', () => {
    expect(() => parseOptions(['--members', 'mixed'], {})).to.throw(
      '--members must be apart or together (got "mixed")',
    );
  });

  it('passes flags to the node of every XFChat node, none by default, one flag per --node-flag=FLAG (a value starting with a dash needs the =)', () => {
    expect(parseOptions([], {}).nodeFlags).to.deep.equal([]);
    expect(
      parseOptions(['--node-flag=--single-threaded-gc', '--node-flag=--max_semi_space_size=32'], {})
        .nodeFlags,
    ).to.deep.equal(['--single-threaded-gc', '--max_semi_space_size=32']);
  });

  it('refuses a node flag that is not one flag', () => {
    for (const bad of ['single-threaded-gc', '--a --b', '--inspect=0.0.0.0:9229 x']) {
      expect(() => parseOptions([`--node-flag=${bad}`], {}), bad).to.throw('--node-flag must be one flag');
    }
  });
});
