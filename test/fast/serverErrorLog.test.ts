import { expect } from 'chai';
import { AppError } from '../../lib/errors.js';
import { createLogThrottle, createServerErrorLog } from '../../lib/serverErrorLog.js';
import { captureLogs } from '../helpers/logCapture.js';

describe('server error log', () => {
  it('logs every INTERNAL, at error, with its cause', () => {
    const capture = captureLogs();
    const log = createServerErrorLog({ now: () => 0 });
    for (let i = 0; i < 3; i++) {
      log(
        capture.logger,
        new AppError('INTERNAL', { cause: new Error(`bug ${i}`) }),
        { event: 'x' },
        'failed',
      );
    }
    const lines = capture.entries();
    expect(lines.map((l) => [l.level, l.code, (l.err as { message: string }).message])).to.deep.equal([
      [50, 'INTERNAL', 'bug 0'],
      [50, 'INTERNAL', 'bug 1'],
      [50, 'INTERNAL', 'bug 2'],
    ]);
  });

  it('logs a code of load or outage once per interval, at warn, with how many it left out', () => {
    const capture = captureLogs();
    let clock = 1000;
    const log = createServerErrorLog({ intervalMs: 10_000, now: () => clock });
    const overloaded = () => new AppError('OVERLOADED');
    const unavailable = () => new AppError('DB_UNAVAILABLE', { cause: new Error('connect ECONNREFUSED') });
    for (let i = 0; i < 500; i++) log(capture.logger, overloaded(), {}, 'socket event failed');
    log(capture.logger, unavailable(), {}, 'request failed');
    clock += 9_999;
    log(capture.logger, overloaded(), {}, 'socket event failed');
    clock += 1;
    log(capture.logger, overloaded(), {}, 'socket event failed');
    const lines = capture.entries().map((l) => [l.level, l.code, l.suppressed, l.msg]);
    expect(lines).to.deep.equal([
      [40, 'OVERLOADED', 0, 'socket event failed'],
      [40, 'DB_UNAVAILABLE', 0, 'request failed'],
      [40, 'OVERLOADED', 500, 'socket event failed'],
    ]);
    const unavailableLine = capture.entries()[1]!;
    expect((unavailableLine.err as { message: string }).message).to.equal('connect ECONNREFUSED');
  });
});

describe('log throttle', () => {
  it('lets the first line of each key through, then one per interval, counting what it left out', () => {
    let clock = 0;
    const throttle = createLogThrottle({ intervalMs: 10_000, now: () => clock });
    const taken: Array<[string, number | undefined]> = [];
    const take = (key: string) => taken.push([key, throttle.take(key)]);
    take('a');
    take('b');
    for (let i = 0; i < 99; i++) take('a');
    clock = 9_999;
    take('a');
    clock = 10_000;
    take('a');
    take('b');
    take('a');
    expect(taken.filter(([, n]) => n !== undefined)).to.deep.equal([
      ['a', 0],
      ['b', 0],
      ['a', 100],
      ['b', 0],
    ]);
  });
});
