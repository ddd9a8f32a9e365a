import { expect } from 'chai';
import { XFChatClient, XFChatError, type XFChatClientOptions } from '../../lib/client/index.js';
import { MAX_RETRY_AFTER_MS, retryAfterMs } from '../../lib/client/retry.js';
import { failure, useClientPool } from './fixtures.js';

const NO_CONVERSATION = '00000000-0000-0000-0000-000000000000';

/** What `new XFChatClient(options)` throws, or undefined if it does not. */
function thrownBy(options: XFChatClientOptions): unknown {
  try {
    new XFChatClient({ baseUrl: 'http://127.0.0.1:9', ...options }).close();
  } catch (err) {
    return err;
  }
  return undefined;
}

describe('client SDK: input refused before anything is sent', function () {
  const pool = useClientPool();

  /** A client whose fetch counts the requests it is given (and fails them: none is expected). */
  function counted(): { client: XFChatClient; requests: () => number } {
    let requests = 0;
    const counting: typeof fetch = () => {
      requests += 1;
      return Promise.reject(new Error('no request expected'));
    };
    const client = pool.open('http://127.0.0.1:9', { token: 'any', fetch: counting });
    return { client, requests: () => requests };
  }

  it('refuses a baseUrl with credentials, a query or a fragment with VALIDATION_FAILED (status 0)', () => {
    for (const baseUrl of [
      'http://user:secret@127.0.0.1:3000',
      'https://user@example.com/chat',
      'http://127.0.0.1:3000/?x=1',
      'http://127.0.0.1:3000?',
      'http://127.0.0.1:3000/#top',
      'http://127.0.0.1:3000#',
      'localhost:3000',
      'ftp://example.com',
    ]) {
      const error = thrownBy({ baseUrl });
      expect(error, baseUrl)
        .to.be.instanceOf(XFChatError)
        .and.include({ code: 'VALIDATION_FAILED', status: 0 });
    }
    for (const baseUrl of ['http://127.0.0.1:3000', 'https://example.com/chat/']) {
      expect(thrownBy({ baseUrl }), baseUrl).to.equal(undefined);
    }
  });

  /**
   * docs/client.md: omit `baseUrl` only in a page served by XFChat. In Node.js (`baseUrl: process.env.XFCHAT_URL`
   * with the variable unset) there is no origin to fall back on: the client was made all the same, its connect() never
   * settled (socket.io-client dialled `undefined//undefined`) and its changes retried NETWORK_ERROR for ever.
   */
  it('refuses a client without baseUrl outside a page served over http(s), at once, with VALIDATION_FAILED (status 0)', () => {
    expect(typeof (globalThis as { location?: unknown }).location, 'no page here').to.equal('undefined');
    for (const baseUrl of [undefined, '']) {
      const error = thrownBy({ baseUrl, token: 'any' });
      expect(error, JSON.stringify(baseUrl))
        .to.be.instanceOf(XFChatError)
        .and.include({ code: 'VALIDATION_FAILED', status: 0 });
      expect((error as XFChatError).details).to.deep.equal({
        baseUrl: 'is required outside a page served by XFChat',
      });
    }
    const page = (origin: string) => ({
      origin,
      protocol: new URL(origin).protocol,
      host: '127.0.0.1:9',
      hostname: '127.0.0.1',
      port: '9',
      href: `${origin}/`,
    });
    const inPage = (location: object) => {
      Object.defineProperty(globalThis, 'location', { value: location, configurable: true, writable: true });
      try {
        return thrownBy({ baseUrl: undefined });
      } finally {
        delete (globalThis as { location?: unknown }).location;
      }
    };
    // A page served over http(s) is the server: its origin stands in for the baseUrl.
    expect(inPage(page('http://127.0.0.1:9'))).to.equal(undefined);
    // A page opened from a file (origin "null") has none.
    expect(inPage({ ...page('http://127.0.0.1:9'), origin: 'null', protocol: 'file:' }))
      .to.be.instanceOf(XFChatError)
      .and.include({ code: 'VALIDATION_FAILED' });
  });

  it('refuses an id of only dots with VALIDATION_FAILED, nothing sent (it would name another route)', async () => {
    const { client, requests } = counted();
    for (const dots of ['.', '..', '...']) {
      expect(await failure(client.users.get(dots)), `users.get('${dots}')`).to.include({
        code: 'VALIDATION_FAILED',
        status: 0,
      });
      expect(await failure(client.conversations.get(dots))).to.include({ code: 'VALIDATION_FAILED' });
      expect(await failure(client.messages.after(dots, 0))).to.include({ code: 'VALIDATION_FAILED' });
      expect(await failure(client.friends.accept(dots))).to.include({ code: 'VALIDATION_FAILED' });
      expect(await failure(client.react(dots, 1, '👍'))).to.include({ code: 'VALIDATION_FAILED' });
    }
    expect((await failure(client.users.get('..'))).details).to.deep.equal({ id: 'must not be only dots' });
    expect((await failure(client.react(NO_CONVERSATION, 1, '..'))).details).to.deep.equal({
      emoji: 'must not be only dots',
    });
    expect(requests()).to.equal(0);
  });

  it('rejects the promise of every REST helper given an id that cannot be put in a URL, never throwing at the call site', async () => {
    const { client, requests } = counted();
    const broken = 'ab\uD83D';
    const calls: Array<[string, () => Promise<unknown>]> = [
      ['conversations.get', () => client.conversations.get(broken)],
      ['messages.after', () => client.messages.after(broken, 0)],
      ['messages.before', () => client.messages.before(broken)],
      ['messages.changes', () => client.messages.changes(broken, 0)],
    ];
    const outcomes: string[] = [];
    for (const [name, call] of calls) {
      let promise: Promise<unknown>;
      try {
        promise = call();
      } catch (err) {
        outcomes.push(`${name}: threw ${err instanceof XFChatError ? err.code : String(err)}`);
        continue;
      }
      const error = await promise.then(
        () => undefined,
        (e: unknown) => e,
      );
      outcomes.push(`${name}: rejected ${error instanceof XFChatError ? error.code : String(error)}`);
    }
    expect(outcomes).to.deep.equal(calls.map(([name]) => `${name}: rejected VALIDATION_FAILED`));
    expect(requests()).to.equal(0);
  });

  it('gives the failures it makes itself, with nothing sent, status 0 (there was no answer)', async () => {
    const { client, requests } = counted();
    const dots = await failure(client.react(NO_CONVERSATION, 1, '..'));
    const halfEmoji = await failure(client.conversations.get('\uD83D'));
    const badBase = thrownBy({ baseUrl: 'localhost:3000' }) as XFChatError;
    const noCallback = (() => {
      try {
        client.subscribe(NO_CONVERSATION, undefined as unknown as () => void);
      } catch (err) {
        return err as XFChatError;
      }
      return undefined;
    })();
    const loggedOut = pool.open('http://127.0.0.1:9');
    const notLoggedIn = await failure(loggedOut.conversations.leave(NO_CONVERSATION));
    expect(requests()).to.equal(0);
    expect(
      [dots, halfEmoji, badBase, noCallback, notLoggedIn].map((e) => [e?.code, e?.status]),
    ).to.deep.equal([
      ['VALIDATION_FAILED', 0],
      ['VALIDATION_FAILED', 0],
      ['VALIDATION_FAILED', 0],
      ['VALIDATION_FAILED', 0],
      ['UNAUTHORIZED', 0],
    ]);
  });

  it('refuses a time option that is not a positive number, and takes a longer one than a timer waits as that longest wait', () => {
    for (const name of ['ackTimeoutMs', 'retryBaseMs', 'retryMaxMs', 'requestTimeoutMs'] as const) {
      for (const value of [0, -1, Number.NaN, '100' as unknown as number]) {
        const error = thrownBy({ [name]: value });
        expect(error, `${name}: ${String(value)}`)
          .to.be.instanceOf(XFChatError)
          .and.include({ code: 'VALIDATION_FAILED', status: 0 });
        expect((error as XFChatError).details).to.have.property(name);
      }
      expect(thrownBy({ [name]: Number.POSITIVE_INFINITY }), `${name}: Infinity`).to.equal(undefined);
      expect(thrownBy({ [name]: 2 ** 40 }), `${name}: 2^40`).to.equal(undefined);
    }
  });

  it('waits a Retry-After of at most one hour before it retries by itself, and keeps what the server said', () => {
    const said = (seconds: number) => new XFChatError('RATE_LIMITED', 'Slow down.', { retryAfter: seconds });
    expect(retryAfterMs(said(3))).to.equal(3000);
    expect(retryAfterMs(said(3_000_000))).to.equal(MAX_RETRY_AFTER_MS);
    expect(MAX_RETRY_AFTER_MS).to.equal(3_600_000);
    expect(said(3_000_000).retryAfter).to.equal(3_000_000);
    expect(retryAfterMs(new XFChatError('NETWORK_ERROR', 'x'))).to.equal(0);
  });
});
