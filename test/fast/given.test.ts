import { expect } from 'chai';
import { Given } from '../../lib/messaging/given.js';

describe('messaging/given: what a node’s subscribers of a conversation were given', () => {
  it('starts with everything up to its marks given', () => {
    const given = new Given(3, 7);
    expect([given.seq, given.version, given.unsettled]).to.deep.equal([3, 7, 0]);
    expect(given.hasSeq(3)).to.equal(true);
    expect(given.hasSeq(4)).to.equal(false);
    expect(given.hasVersion(7)).to.equal(true);
    expect(given.hasVersion(8)).to.equal(false);
  });

  it('keeps seqs given out of order above the mark, and moves the mark when the hole below fills', () => {
    const given = new Given(4, 4);
    // This node's own write (seq 6) is delivered before another node's seq 5, unannounced so far.
    given.giveMessage(6, 6);
    expect(given.seq, 'seq 5 is missing').to.equal(4);
    expect(given.hasSeq(5)).to.equal(false);
    expect(given.hasSeq(6)).to.equal(true);
    expect(given.unsettled).to.equal(2);
    given.giveMessage(5, 5);
    expect([given.seq, given.version, given.unsettled]).to.deep.equal([6, 6, 0]);
  });

  it('takes a version gone for good (a message changed twice, read once) when a catch-up reads past it', () => {
    const given = new Given(2, 2);
    // Seq 1 was edited twice (versions 3 and 4); the node read it once, in the state of version 4.
    given.giveVersion(4);
    expect(given.version).to.equal(2);
    expect(given.hasVersion(4)).to.equal(true);
    expect(given.hasVersion(3)).to.equal(false);
    given.raise(0, 4);
    expect([given.seq, given.version, given.unsettled]).to.deep.equal([2, 4, 0]);
  });

  it('raises its marks over everything a read covered, and never lowers them', () => {
    const given = new Given(1, 1);
    given.giveMessage(5, 9);
    given.giveMessage(9, 12);
    given.raise(6, 0);
    expect(given.seq).to.equal(6);
    expect(given.hasSeq(9)).to.equal(true);
    expect(given.unsettled, 'seq 9 and versions 9 and 12 remain above').to.equal(3);
    given.raise(2, 1);
    expect([given.seq, given.version]).to.deep.equal([6, 1]);
    given.giveMessage(7, 2);
    given.giveMessage(8, 3);
    expect(given.seq, 'the marks move on through the seq given before').to.equal(9);
  });

  it('remembers the newest state of each message given above the version mark, until the mark passes it', () => {
    const given = new Given(5, 10);
    // Versions 11 and 12 are missing; message 3 was given in the state of version 13.
    given.giveVersion(13, 3);
    expect(given.hasNewerState(3, 12)).to.equal(true);
    expect(given.hasNewerState(3, 13)).to.equal(false);
    expect(given.hasNewerState(4, 12), 'another message').to.equal(false);
    // Passed over, the older state still counts as given; the mark then moves past both and forgets them.
    given.giveVersion(12, 3);
    given.giveVersion(11);
    expect([given.version, given.unsettled]).to.deep.equal([13, 0]);
    expect(given.hasNewerState(3, 12)).to.equal(false);
    expect(given.hasVersion(12)).to.equal(true);
  });
});
