import { getEventListeners } from 'node:events';
import { expect } from 'chai';
import { XFChatError } from '../../lib/client/errors.js';
import { eitherSignal } from '../../lib/client/send.js';
import { SendQueue } from '../../lib/client/sendQueue.js';

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

describe('client/sendQueue: sends waiting for their turn under one signal', () => {
  it('keep one abort listener on it however many wait, and none once they are over; its abort rejects every one', async () => {
    const queue = new SendQueue();
    const screen = new AbortController();
    let release = (): void => undefined;
    const first = queue.enqueue(
      'c',
      () => new Promise<string>((resolve) => (release = () => resolve('first'))),
    );
    const waiting = Array.from({ length: 40 }, (_, i) =>
      queue.enqueue('c', () => Promise.resolve(`m ${i}`), screen.signal).catch((err: unknown) => err),
    );
    // Forty with a listener each made Node.js print MaxListenersExceededWarning.
    expect(getEventListeners(screen.signal, 'abort')).to.have.length(1);
    screen.abort();
    for (const outcome of await Promise.all(waiting)) {
      expect(outcome).to.be.instanceOf(XFChatError).and.include({ code: 'CLIENT_CLOSED' });
    }
    expect(getEventListeners(screen.signal, 'abort')).to.have.length(0);
    release();
    expect(await first).to.equal('first');
    // Under a live signal, every send that ran leaves nothing on it.
    const view = new AbortController();
    const sent = await Promise.all(
      Array.from({ length: 20 }, (_, i) => queue.enqueue('c', () => Promise.resolve(i), view.signal)),
    );
    expect(sent).to.deep.equal(Array.from({ length: 20 }, (_, i) => i));
    expect(getEventListeners(view.signal, 'abort')).to.have.length(0);
  });
});
