import { expect } from 'chai';
import { loadConfig } from '../../lib/config.js';
import { addressKey, isOriginAllowed } from '../../lib/requestOrigin.js';

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

  it('matches the Origin a browser sends with a CORS_ORIGINS entry written in capitals or with its default port', () => {
    const origins = (entries: string) =>
      loadConfig({
        DATABASE_URL: 'postgres://chat@db.internal:5432/xfchat',
        JWT_SECRET: 'jwt-secret-0123456789-abcdefghijklmnop',
        CORS_ORIGINS: entries,
      }).corsOrigins;
    const from = (origin: string) => ({ headers: { origin, host: 'xfchat.internal:3000' } });
    for (const entry of [
      'https://Chat.Example.com',
      'https://chat.example.com:443',
      'HTTPS://CHAT.EXAMPLE.COM/',
    ]) {
      const allowed = origins(entry);
      expect(isOriginAllowed(from('https://chat.example.com'), allowed), entry).to.equal(true);
      expect(isOriginAllowed(from('http://chat.example.com'), allowed), entry).to.equal(false);
      expect(isOriginAllowed(from('https://chat.example.com:8443'), allowed), entry).to.equal(false);
    }
    const plain = origins('http://LocalHost:80,http://localhost:5173');
    expect(isOriginAllowed(from('http://localhost'), plain)).to.equal(true);
    expect(isOriginAllowed(from('http://localhost:5173'), plain)).to.equal(true);
    expect(isOriginAllowed(from('http://localhost:8080'), plain)).to.equal(false);
  });
});

describe('requestOrigin: the key of a client address for the per-address limits', () => {
  it('keeps an IPv4 address, also one written as IPv6, and takes an IPv6 address by its /64', () => {
    expect(addressKey('203.0.113.9')).to.equal('203.0.113.9');
    expect(addressKey('::ffff:203.0.113.9')).to.equal('203.0.113.9');
    expect(addressKey('::FFFF:203.0.113.9')).to.equal('203.0.113.9');
    for (const address of ['2001:db8:1:2::1', '2001:db8:1:2:aaaa:bbbb:cccc:dddd', '2001:0DB8:0001:0002::'])
      expect(addressKey(address), address).to.equal('2001:db8:1:2::/64');
    expect(addressKey('2001:db8:1:3::1')).to.equal('2001:db8:1:3::/64');
    expect(addressKey('2001:db8::1.2.3.4')).to.equal('2001:db8:0:0::/64');
    expect(addressKey('::1')).to.equal('0:0:0:0::/64');
    expect(addressKey('fe80::1%eth0')).to.equal('fe80:0:0:0::/64');
    expect(addressKey('unknown')).to.equal('unknown');
  });

  it('counts an address with a port without it, and a long entry that is no address by a short digest', () => {
    expect(addressKey('203.0.113.9:5678')).to.equal('203.0.113.9');
    expect(addressKey('[2001:db8:1:2::1]:443')).to.equal('2001:db8:1:2::/64');
    expect(addressKey('[::ffff:203.0.113.9]')).to.equal('203.0.113.9');
    const forged = 'a'.repeat(300);
    expect(addressKey(forged)).to.match(/^~[A-Za-z0-9_-]{22}$/);
    expect(addressKey(forged)).to.equal(addressKey('a'.repeat(300)));
    expect(addressKey(forged)).not.to.equal(addressKey('b'.repeat(300)));
  });
});
