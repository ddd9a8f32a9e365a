import { expect } from 'chai';
import { clientMsgIdSource, newClientMsgId } from '../../lib/client/retry.js';
import { millisOfV7, UUID_V7 } from '../helpers/uuid.js';

/** The 12-bit counter after the version. */
const counterOf = (id: string): number => parseInt(id.replaceAll('-', '').slice(13, 16), 16);

/** Ids in the order they were made are sorted and distinct. */
function expectAscending(ids: readonly string[]): void {
  for (let i = 1; i < ids.length; i++)
    expect(ids[i]! > ids[i - 1]!, `${ids[i - 1]} then ${ids[i]}`).to.equal(true);
}

describe('clientMsgIds (the SDK and the web app)', () => {
  it('are UUIDs of version 7 that the contract accepts, carrying the time they were made', () => {
    const before = Date.now();
    const ids = Array.from({ length: 1000 }, () => newClientMsgId());
    const after = Date.now();
    for (const id of ids) {
      expect(id).to.match(UUID_V7);
      expect(id).to.match(/^[A-Za-z0-9_-]{1,64}$/);
      expect(millisOfV7(id)).to.be.within(before, after + 1);
    }
    expectAscending(ids);
  });

  it('count up within a millisecond, from a random start below 2048', () => {
    const next = clientMsgIdSource(() => 1_764_000_000_000);
    const ids = Array.from({ length: 100 }, () => next());
    expect(ids.every((id) => millisOfV7(id) === 1_764_000_000_000)).to.equal(true);
    const first = counterOf(ids[0]!);
    expect(first).to.be.below(2048);
    expect(ids.map(counterOf)).to.deep.equal(Array.from({ length: 100 }, (_, i) => first + i));
    expectAscending(ids);
    // The next millisecond starts a new count.
    const starts = new Set(
      Array.from({ length: 20 }, (_, i) => counterOf(clientMsgIdSource(() => 1_764_000_000_000 + i)())),
    );
    expect(starts.size).to.be.above(1);
  });

  it('stay in order when the clock steps back, and borrow the next millisecond when 4096 are not enough', () => {
    let clock = 1_764_000_000_500;
    const next = clientMsgIdSource(() => clock);
    const ids = [next(), next()];
    clock -= 400;
    ids.push(next(), next());
    expect(ids.map(millisOfV7)).to.deep.equal(Array(4).fill(1_764_000_000_500));
    expectAscending(ids);

    clock = 1_764_000_001_000;
    const many = Array.from({ length: 4200 }, () => next());
    expect(millisOfV7(many[0]!)).to.equal(1_764_000_001_000);
    expect(millisOfV7(many.at(-1)!)).to.equal(1_764_000_001_001);
    expectAscending([...ids, ...many]);
    expect(new Set(many).size).to.equal(many.length);
  });
});
