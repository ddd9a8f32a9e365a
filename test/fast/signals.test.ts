import { expect } from 'chai';
import { handleSignals, type SignalSource } from '../../lib/main.js';
import type { RunningServer } from '../../lib/server.js';
import { captureLogs } from '../helpers/logCapture.js';

describe('signals', () => {
  it('a second signal more than a second after the first exits 1 at once, and says why in the log', async () => {
    const logs = captureLogs('info');
    // A node whose drain never ends (a database that does not answer, say).
    const server = {
      close: () => new Promise<void>(() => undefined),
      services: { logger: logs.logger },
    } as unknown as RunningServer;
    let deliver: (signal: NodeJS.Signals) => void = () => undefined;
    const signals: SignalSource = {
      handle: (handler) => (deliver = handler),
      whileStarting: new AbortController().signal,
    };
    const exits: Array<number | undefined> = [];
    const exit = Object.getOwnPropertyDescriptor(process, 'exit');
    process.exit = ((code?: number) => void exits.push(code)) as typeof process.exit;
    try {
      handleSignals(server, undefined, signals);
      deliver('SIGTERM');
      // The same request twice within a second (npm forwarding a Ctrl-C) is not a second signal.
      deliver('SIGTERM');
      expect(exits).to.deep.equal([]);
      await new Promise((resolve) => setTimeout(resolve, 1100));
      deliver('SIGTERM');
    } finally {
      if (exit) Object.defineProperty(process, 'exit', exit);
    }
    expect(exits).to.deep.equal([1]);
    const messages = logs.entries().map((e) => e.msg);
    expect(messages).to.deep.equal([
      'signal received, draining',
      'second signal: exiting at once, without finishing the drain',
    ]);
  });
});
