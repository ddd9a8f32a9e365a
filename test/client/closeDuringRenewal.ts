/**
 * Signs up, then connects with an access token the handshake refuses (as after the machine slept), so the SDK
 * renews it with a refresh; the refresh gets no answer, and close() is called while it is on its way.
 * close() is documented to leave nothing open: the script must exit at once.
 * Usage: node --import tsx test/client/closeDuringRenewal.ts <baseUrl> <username>
 */
import { XFChatClient } from '../../lib/client/index.js';

const [baseUrl, username] = process.argv.slice(2);
if (baseUrl === undefined || username === undefined) process.exit(2);
let refreshSeen: () => void = () => undefined;
const refreshing = new Promise<void>((resolve) => (refreshSeen = resolve));
const holdingFetch: typeof fetch = (input, init) => {
  const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
  if (url.endsWith('/auth/refresh')) {
    refreshSeen();
    // Never answers (a network that hangs); the SDK's abort (close()) ends it.
    return new Promise((_resolve, reject) =>
      init?.signal?.addEventListener('abort', () => reject(new Error('aborted'))),
    );
  }
  return fetch(input, init);
};
// Long backoff: a retry timer left behind keeps the process alive that long.
const client = new XFChatClient({ baseUrl, fetch: holdingFetch, retryBaseMs: 60_000, retryMaxMs: 60_000 });
await client.signup({ username, password: 'a script password of some length' });
client.token = 'not-a-valid-token';
const connecting = client.connect().catch((err: unknown) => (err as { code?: string }).code);
await refreshing;
client.close();
process.stdout.write(`connect: ${String(await connecting)}\n`);
