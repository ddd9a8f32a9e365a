import { expect } from 'chai';
import { isOriginAllowed } from '../../lib/requestOrigin.js';

const allowlist = ['https://app.example.com'];

describe('requestOrigin: which browser origins may call', () => {
  it('allows requests without an Origin, an origin in CORS_ORIGINS, and the host the request was sent to', () => {
    expect(isOriginAllowed({ headers: { host: 'chat.example.com' } }, allowlist)).to.equal(true);
    expect(isOriginAllowed({ headers: { origin: 'https://app.example.com' } }, allowlist)).to.equal(true);
    const same = { headers: { origin: 'http://chat.example.com', host: 'chat.example.com' } };
    expect(isOriginAllowed(same, allowlist)).to.equal(true);
    const other = { headers: { origin: 'https://evil.example', host: 'chat.example.com' } };
    expect(isOriginAllowed(other, allowlist)).to.equal(false);
  });

  it('behind a trusted proxy, takes its host and wants the scheme it names', () => {
    const behindTls = (origin: string) => ({
      headers: {
        origin,
        host: 'node-1:3000',
        'x-forwarded-host': 'chat.example.com',
        'x-forwarded-proto': 'https',
      },
    });
    expect(isOriginAllowed(behindTls('https://chat.example.com'), allowlist, 1)).to.equal(true);
    expect(isOriginAllowed(behindTls('http://chat.example.com'), allowlist, 1)).to.equal(false);
    // Not trusted: the forwarded headers are anyone's, and count for nothing.
    expect(isOriginAllowed(behindTls('https://chat.example.com'), allowlist, 0)).to.equal(false);
    expect(isOriginAllowed(behindTls('http://node-1:3000'), allowlist, 0)).to.equal(true);
  });
});
