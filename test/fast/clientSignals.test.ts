import { getEventListeners } from 'node:events';
import { expect } from 'chai';
import { retryChange } from '../../lib/client/changes.js';
import { XFChatError } from '../../lib/client/errors.js';
import { Closing, linkedAbort } from '../../lib/client/retry.js';
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

// react(), edit(), delete() (retryChange) and every REST call (linkedAbort) added an abort listener per call to the
// caller's signal: a dozen changes at once under one screen's signal made Node.js print MaxListenersExceededWarning
// (SDKLONG hunt). The sends of a dozen conversations at once (eitherSignal) did the same.
describe('client/retry: calls at once under one caller signal', () => {
  it('changes keep one abort listener on it however many run, none once they are over; its abort stops every one', async () => {
    const screen = new AbortController();
    const closing = new Closing();
    const started: AbortSignal[] = [];
    const changes = Array.from({ length: 12 }, () =>
      retryChange(
        { backoff: { baseMs: 1, maxMs: 2 }, closing },
        (signal) => {
          started.push(signal);
          // A server slow to answer: the attempt ends only with its signal.
          return new Promise<never>((_, reject) =>
            signal.addEventListener('abort', () => reject(signal.reason as XFChatError), { once: true }),
          );
        },
        { signal: screen.signal },
      ).catch((err: unknown) => err),
    );
    expect(started).to.have.length(12);
    expect(getEventListeners(screen.signal, 'abort')).to.have.length(1);
    screen.abort();
    for (const outcome of await Promise.all(changes)) {
      expect(outcome).to.be.instanceOf(XFChatError).and.include({ code: 'CLIENT_CLOSED' });
    }
    expect(started.every((signal) => signal.aborted)).to.equal(true);
    expect(getEventListeners(screen.signal, 'abort')).to.have.length(0);
  });

  it('linked operations leave no listener on a live signal once released, and one released early misses its abort', () => {
    const screen = new AbortController();
    const closing = new Closing();
    const links = Array.from({ length: 30 }, () => linkedAbort(closing, screen.signal));
    expect(getEventListeners(screen.signal, 'abort')).to.have.length(1);
    links[0]!.release();
    screen.abort(new XFChatError('UNAUTHORIZED', 'The session ended.'));
    expect(links[0]!.signal.aborted, 'released before the abort').to.equal(false);
    for (const link of links.slice(1)) {
      expect(link.signal.reason).to.be.instanceOf(XFChatError).and.include({ code: 'UNAUTHORIZED' });
    }
    for (const link of links) link.release();
    expect(getEventListeners(screen.signal, 'abort')).to.have.length(0);
    const view = new AbortController();
    for (const link of Array.from({ length: 30 }, () => linkedAbort(closing, view.signal))) link.release();
    expect(getEventListeners(view.signal, 'abort')).to.have.length(0);
    const again = linkedAbort(closing, view.signal);
    expect(
      getEventListeners(view.signal, 'abort'),
      'a signal used again after its calls ended',
    ).to.have.length(1);
    view.abort();
    expect(again.signal.aborted).to.equal(true);
  });

  it('sends running at once keep one abort listener on it, none once disposed; its abort reaches every one', () => {
    const screen = new AbortController();
    const sends = Array.from({ length: 12 }, () => eitherSignal(screen.signal, new AbortController().signal));
    expect(getEventListeners(screen.signal, 'abort')).to.have.length(1);
    screen.abort('gone');
    expect(sends.map(({ signal }): unknown => signal.reason)).to.deep.equal(
      Array.from({ length: 12 }, () => 'gone'),
    );
    for (const { dispose } of sends) dispose();
    const view = new AbortController();
    const running = Array.from({ length: 12 }, () => eitherSignal(view.signal, new AbortController().signal));
    for (const { dispose } of running) dispose();
    expect(getEventListeners(view.signal, 'abort')).to.have.length(0);
  });
});
