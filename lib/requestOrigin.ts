import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';

/** Where a request comes from, for REST and the Socket.IO handshake alike. */

/** What the Origin check needs from a request: its headers (HTTP and the Socket.IO handshake alike). */
export interface OriginRequest {
  headers: IncomingHttpHeaders;
}

function firstHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/**
 * The Origin policy shared by HTTP and the Socket.IO handshake. No Origin header: a non-browser client, allowed
 * (it could forge any Origin anyway; the bearer token is what protects it). A browser Origin is allowed when it is
 * in CORS_ORIGINS (compared exactly: lib/config.ts keeps each entry as browsers serialize an Origin, host in lower
 * case and no default port) or names the host the request was sent to (same-origin pages served behind the same
 * name).
 * With `trustProxy`, the proxy's X-Forwarded-Host counts as that host, and when the proxy says which scheme the
 * request came by (X-Forwarded-Proto) the Origin's must be the same: a plain-HTTP page of the host (served by
 * anyone who can answer for it unencrypted) is not the HTTPS site's origin.
 */
export function isOriginAllowed(req: OriginRequest, allowlist: readonly string[], trustProxy = 0): boolean {
  const origin = firstHeader(req.headers.origin);
  if (origin === undefined) return true;
  if (allowlist.includes(origin)) return true;
  let originHost: string;
  let originScheme: string;
  try {
    const url = new URL(origin);
    originHost = url.host.toLowerCase();
    originScheme = url.protocol.slice(0, -1).toLowerCase();
  } catch {
    // "null" (sandboxed frames, file://) and garbage name no host: refused.
    return false;
  }
  if (trustProxy > 0) {
    const scheme = firstHeader(req.headers['x-forwarded-proto'])?.split(',')[0]?.trim().toLowerCase();
    if (scheme !== undefined && scheme !== '' && scheme !== originScheme) return false;
  }
  const forwarded = trustProxy > 0 ? firstHeader(req.headers['x-forwarded-host']) : undefined;
  const host = (forwarded?.split(',')[0]?.trim() ?? firstHeader(req.headers.host))?.toLowerCase();
  return host !== undefined && host !== '' && originHost === host;
}

/**
 * The client's address: the TCP peer, or with `trustProxy` hops the address that many entries from the right
 * of X-Forwarded-For (what Express computes for REST with the same setting).
 */
export function clientAddress(
  headers: IncomingMessage['headers'],
  remoteAddress: string | undefined,
  trustProxy: number,
): string {
  const peer = remoteAddress ?? 'unknown';
  if (trustProxy <= 0) return peer;
  const header = headers['x-forwarded-for'];
  const forwarded = (Array.isArray(header) ? header.join(',') : (header ?? ''))
    .split(',')
    .map((a) => a.trim())
    .filter((a) => a !== '');
  // Right to left: the peer, then each proxy's view; stop after the trusted hops.
  const chain = [peer, ...forwarded.reverse()];
  return chain[Math.min(trustProxy, chain.length - 1)] ?? peer;
}

/**
 * The key of a client address for the per-address limits: an IPv4 address as it is (also one written as IPv6,
 * `::ffff:1.2.3.4`), an IPv6 address by its /64 network (`2001:db8:1:2::/64`). One IPv6 host commonly has a whole
 * /64 to itself: counted by the full address, one client would be as many addresses as it likes. An address with a
 * port (`1.2.3.4:5678`, `[2001:db8::1]:443`, as some proxies forward it) is counted without it; anything else (an
 * X-Forwarded-For entry a client wrote, with the trusted hops set one too many) as it is up to 64 characters, and
 * a longer one by a digest of 22: the limits' keys are kept in a column of 255, and a longer key made logins and
 * signups fail `500 INTERNAL`.
 */
export function addressKey(address: string): string {
  if (isIP(address) === 0) {
    const unported =
      /^\[([^\]]+)\](?::\d+)?$/.exec(address)?.[1] ?? /^(\d{1,3}(?:\.\d{1,3}){3}):\d+$/.exec(address)?.[1];
    if (unported !== undefined && isIP(unported) !== 0) return addressKey(unported);
    return address.length <= 64
      ? address
      : `~${createHash('sha256').update(address).digest('base64url').slice(0, 22)}`;
  }
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address);
  if (mapped?.[1] !== undefined) return mapped[1];
  if (isIP(address) !== 6) return address;
  const [head = '', tail = ''] = (address.split('%')[0] ?? address).toLowerCase().split('::');
  const groups = (part: string) => (part === '' ? [] : part.split(':'));
  const left = groups(head);
  const right = address.includes('::') ? groups(tail) : [];
  // An embedded IPv4 tail (`::1.2.3.4`) counts as two groups; only the first four groups matter here.
  const width = (parts: string[]) => parts.reduce((n, p) => n + (p.includes('.') ? 2 : 1), 0);
  const full = [...left, ...Array<string>(Math.max(0, 8 - width(left) - width(right))).fill('0'), ...right];
  const network = full.slice(0, 4).map((g) => (g.includes('.') ? g : Number.parseInt(g, 16).toString(16)));
  return `${network.join(':')}::/64`;
}
