import { expect } from 'chai';
import { XFChatClient, XFChatError, isRetryable } from '../../lib/client/index.js';

describe('client: the baseUrl option', () => {
  it('refuses at construction anything but an absolute http(s) URL, with VALIDATION_FAILED (not retryable)', () => {
    for (const baseUrl of [
      'not a url',
      'ftp://example.com',
      '127.0.0.1:3000',
      '/chat',
      'ws://127.0.0.1:3000',
    ]) {
      let error: unknown;
      try {
        new XFChatClient({ baseUrl }).close();
      } catch (err) {
        error = err;
      }
      expect(error, baseUrl).to.be.instanceOf(XFChatError).and.include({ code: 'VALIDATION_FAILED' });
      expect((error as XFChatError).message, baseUrl).to.include(JSON.stringify(baseUrl));
      expect((error as XFChatError).details).to.deep.equal({
        baseUrl: 'must be an absolute http:// or https:// URL',
      });
      expect(isRetryable(error as XFChatError), baseUrl).to.equal(false);
    }
  });

  it('takes http and https URLs, and none at all only in a page served over http(s) (its own origin)', () => {
    for (const baseUrl of ['http://127.0.0.1:3000', 'https://chat.example.com/', 'HTTP://LOCALHOST:3000']) {
      new XFChatClient({ baseUrl }).close();
    }
    // No page here (Node.js): no origin to fall back on (test/client/localChecks.test.ts has the page case).
    for (const options of [{}, { baseUrl: '' }, { baseUrl: undefined }]) {
      expect(() => new XFChatClient(options).close(), JSON.stringify(options))
        .to.throw(XFChatError)
        .with.property('details')
        .that.deep.equals({ baseUrl: 'is required outside a page served by XFChat' });
    }
  });
});
