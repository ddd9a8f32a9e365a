/**
 * Input the SDK refuses itself (VALIDATION_FAILED, status 0, nothing sent), as it does ids of only dots and
 * subscribe()'s afterSeq and limit. Before, an empty id was sent and its segment left out: `conversations.get('')`
 * read the conversation list (`GET /conversations/`) and failed as BAD_RESPONSE, `friends.cancel('')` reached the
 * unfriend route. A `sinceVersion` of NaN (`Number(localStorage.getItem(...))` with nothing stored) was taken, the
 * subscription reported ready with `version` NaN, and ended with VALIDATION_FAILED at the next reconnection.
 */
import { expect } from 'chai';
import { XFChatClient, XFChatError, type PublicMessage } from '../../lib/client/index.js';
import { useNode } from '../helpers/nodes.js';
import { uniqueUsername } from '../helpers/users.js';

const PASSWORD = 'correct horse battery';

async function failure(p: Promise<unknown>): Promise<XFChatError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof XFChatError) return err;
    throw err;
  }
  throw new Error('expected a rejection');
}

describe('client: empty ids and a sinceVersion that is no version, refused before sending', function () {
  this.timeout(30_000);
  const { server } = useNode();
  const clients: XFChatClient[] = [];
  afterEach(() => clients.splice(0).forEach((c) => c.close()));

  /** A client whose fetch records every request it sends. */
  function open(sent: string[]): XFChatClient {
    const recording: typeof fetch = (input, init) => {
      const url = input instanceof Request ? input.url : input.toString();
      sent.push(`${init?.method ?? 'GET'} ${url.replace(server.url, '')}`);
      return fetch(input, init);
    };
    const c = new XFChatClient({ baseUrl: server.url, fetch: recording, retryBaseMs: 50, retryMaxMs: 200 });
    clients.push(c);
    return c;
  }

  it('refuses conversations.get("") as it does get(".."), instead of reading the list route (BAD_RESPONSE)', async () => {
    const sent: string[] = [];
    const client = open(sent);
    await client.signup({ username: uniqueUsername('lc'), password: PASSWORD });
    sent.length = 0;
    const dots = await failure(client.conversations.get('..'));
    expect({ code: dots.code, status: dots.status, sent: [...sent] }).to.deep.equal({
      code: 'VALIDATION_FAILED',
      status: 0,
      sent: [],
    });
    const empty = await failure(client.conversations.get(''));
    expect({ code: empty.code, status: empty.status, sent }).to.deep.equal({
      code: 'VALIDATION_FAILED',
      status: 0,
      sent: [],
    });
  });

  it('refuses friends.cancel("") instead of sending DELETE /friends/requests/ (the unfriend route)', async () => {
    const sent: string[] = [];
    const client = open(sent);
    await client.signup({ username: uniqueUsername('lc'), password: PASSWORD });
    sent.length = 0;
    const error = await failure(client.friends.cancel(''));
    expect({ code: error.code, status: error.status, sent }).to.deep.equal({
      code: 'VALIDATION_FAILED',
      status: 0,
      sent: [],
    });
  });

  it('refuses subscribe() with a sinceVersion of NaN at once, as a bad afterSeq', async () => {
    const sent: string[] = [];
    const a = open(sent);
    const b = open([]);
    const na = uniqueUsername('lc');
    const nb = uniqueUsername('lc');
    await a.signup({ username: na, password: PASSWORD });
    const rb = await b.signup({ username: nb, password: PASSWORD });
    await b.friends.accept((await a.friends.sendRequest(nb)).id);
    const conv = await a.conversations.createDirect(rb.user.id);
    await a.connect();
    await a.send(conv.id, 'one');

    let afterSeqError: unknown;
    try {
      a.subscribe(conv.id, () => undefined, { afterSeq: Number.NaN });
    } catch (err) {
      afterSeqError = err;
    }
    expect(afterSeqError).to.be.instanceOf(XFChatError).with.property('code', 'VALIDATION_FAILED');

    let thrown: unknown;
    const errors: XFChatError[] = [];
    const got: PublicMessage[] = [];
    let subscription;
    try {
      // e.g. `Number(localStorage.getItem('xfchat.version'))` with nothing stored
      subscription = a.subscribe(conv.id, (m) => got.push(m), {
        afterSeq: 0,
        sinceVersion: Number.NaN,
        onError: (e) => errors.push(e),
      });
      await subscription.whenReady();
    } catch (err) {
      thrown = err;
    }
    const seen = {
      thrown: thrown instanceof XFChatError ? thrown.code : String(thrown),
      version: subscription?.version,
    };
    expect(seen).to.deep.equal({ thrown: 'VALIDATION_FAILED', version: undefined });
  });
});
