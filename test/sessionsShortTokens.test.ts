import { expect } from 'chai';
import { refreshDelayMs } from '../lib/client/tokens.js';
import { request } from './helpers/http.js';
import { useNode } from './helpers/nodes.js';
import { uniqueUsername } from './helpers/users.js';

/**
 * The successful refreshes of a session are held to N (RATE_LIMIT_AUTH_PER_MIN) a minute, bursts of 3N, or four per
 * access token's life when that is more. Before, a short JWT_TTL_SECONDS beside a small N (both accepted) had the
 * SDK's refreshes, once half a token's life is gone, refused 429 after the burst, while the access token ran out:
 * with N = 1 and 5 s tokens, the fourth refresh; with the default N and 3 s tokens, after about 90 s.
 */
describe('sessions: refreshes at the SDK’s pace with a short JWT_TTL_SECONDS', function () {
  this.timeout(60_000);
  const { server } = useNode({ env: { JWT_TTL_SECONDS: '5', RATE_LIMIT_AUTH_PER_MIN: '1' } });

  it('are never refused: 5 s tokens and N = 1, refreshed as the SDK does for 12 s; a loop is still held', async () => {
    const signup = await request<{ refreshToken: string; expiresIn: number }>(
      server.url,
      'POST',
      '/auth/signup',
      { body: { username: uniqueUsername(), password: 'a long enough password 123' } },
    );
    expect(signup.status, signup.text).to.equal(201);
    let { refreshToken, expiresIn } = signup.body;
    const statuses: number[] = [];
    const started = performance.now();
    while (performance.now() - started < 12_000) {
      await new Promise((resolve) => setTimeout(resolve, refreshDelayMs(expiresIn)));
      const res = await request<{ refreshToken: string; expiresIn: number }>(
        server.url,
        'POST',
        '/auth/refresh',
        {
          body: { refreshToken },
        },
      );
      statuses.push(res.status);
      if (res.status !== 200) break;
      ({ refreshToken, expiresIn } = res.body);
    }
    expect(statuses.length, 'refreshes made').to.be.at.least(5);
    expect(
      statuses.filter((status) => status !== 200),
      `statuses ${statuses.join(',')}`,
    ).to.deep.equal([]);

    // A client refreshing in a loop is still held: 429 once the burst (3N) is spent.
    const looped: number[] = [];
    for (let i = 0; i < 10; i++) {
      const res = await request<{ refreshToken: string }>(server.url, 'POST', '/auth/refresh', {
        body: { refreshToken },
      });
      looped.push(res.status);
      if (res.status !== 200) break;
      ({ refreshToken } = res.body);
    }
    expect(looped.at(-1), `statuses of refreshes in a loop: ${looped.join(',')}`).to.equal(429);
    expect(looped.length, 'refreshes in a loop before the 429').to.be.at.most(4);
  });
});
