import { expect } from 'chai';
import { eitherSignal } from '../../lib/client/send.js';

/** Runs `body` as on a runtime without `AbortSignal.any` (browsers before 2024). */
function withoutAny(body: () => void): void {
  const saved = Object.getOwnPropertyDescriptor(AbortSignal, 'any');
  Reflect.deleteProperty(AbortSignal, 'any');
  try {
    expect(typeof AbortSignal.any).to.equal('undefined');
    body();
  } finally {
    if (saved) Object.defineProperty(AbortSignal, 'any', saved);
  }
}

/** An AbortController whose signal counts the abort listeners attached to it. */
function counted() {
  const controller = new AbortController();
  let listeners = 0;
  const { signal } = controller;
  const add = signal.addEventListener.bind(signal);
  const remove = signal.removeEventListener.bind(signal);
  signal.addEventListener = (...args: Parameters<AbortSignal['addEventListener']>) => {
    listeners += 1;
    add(...args);
  };
  signal.removeEventListener = (...args: Parameters<AbortSignal['removeEventListener']>) => {
    listeners -= 1;
    remove(...args);
  };
  return { controller, signal, listeners: () => listeners };
}

describe('client/send: the signal of a send (the caller’s or the client’s close)', () => {
  it('aborts with the reason of whichever aborts first, with or without AbortSignal.any', () => {
    for (const run of [(body: () => void) => body(), withoutAny]) {
      run(() => {
        const caller = new AbortController();
        const closing = new AbortController();
        const { signal, dispose } = eitherSignal(caller.signal, closing.signal);
        expect(signal.aborted).to.equal(false);
        closing.abort('closed');
        expect(signal.aborted).to.equal(true);
        expect(signal.reason).to.equal('closed');
        caller.abort('late');
        expect(signal.reason).to.equal('closed');
        dispose();
      });
    }
  });

  it('is aborted at once when a signal already is', () => {
    withoutAny(() => {
      const caller = new AbortController();
      caller.abort('before');
      const { signal } = eitherSignal(caller.signal, new AbortController().signal);
      expect(signal.aborted).to.equal(true);
      expect(signal.reason).to.equal('before');
    });
  });

  it('without AbortSignal.any, leaves no listener on the long-lived close signal once disposed', () => {
    withoutAny(() => {
      const closing = counted();
      for (let i = 0; i < 1000; i += 1) {
        const { dispose } = eitherSignal(new AbortController().signal, closing.signal);
        dispose();
      }
      expect(closing.listeners()).to.equal(0);
      expect(closing.signal.aborted).to.equal(false);
    });
  });
});
