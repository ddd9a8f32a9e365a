import { expect } from 'chai';
import { createGroup, friendsOf, newUser } from './helpers/chat.js';
import { useNode } from './helpers/nodes.js';
import { untilAStatementWaitsForALock } from './helpers/postgres.js';
import { sampleValue, scrape } from './helpers/prometheus.js';
import { waitFor } from './helpers/waitFor.js';

/**
 * A request is counted (xfchat_http_requests_total) and timed (xfchat_http_request_duration_seconds) when its answer
 * is written whole, or when its client goes away before (a balancer's or an SDK's timeout, a closed tab), with the
 * status 499 if no answer was begun. Counted on `finish` only, those requests, the slowest, were in neither metric,
 * and the latency alerts (docs/operations.md) lost the tail the moment clients gave up on it.
 */
describe('HTTP metrics: a request whose client left before the answer', function () {
  this.timeout(60_000);
  const { server } = useNode();

  it('is counted and timed, as 499: a rename that waited for a lock, abandoned by its client', async () => {
    const { knex } = server.services.db;
    const owner = await newUser(server);
    const group = await createGroup(server.url, owner, await friendsOf(server, owner, 1));
    const labels = { method: 'PATCH', route: '/conversations/:id' };
    const count = async (status: string) =>
      sampleValue(await scrape(server.url), 'xfchat_http_requests_total', { ...labels, status }) ?? 0;
    const timed = async (status: string) =>
      sampleValue(await scrape(server.url), 'xfchat_http_request_duration_seconds_count', {
        ...labels,
        status,
      }) ?? 0;
    // A rename its client waits for is counted: the helper reads the series right.
    const plain = await fetch(`${server.url}/conversations/${group.id}`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${owner.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ title: 'renamed' }),
    });
    expect(plain.status).to.equal(200);
    expect(await count('200')).to.equal(1);

    const holder = await knex.transaction();
    const abort = new AbortController();
    let rename: Promise<unknown> | undefined;
    try {
      await holder('conversations').where({ id: group.id }).forUpdate();
      rename = fetch(`${server.url}/conversations/${group.id}`, {
        method: 'PATCH',
        headers: { authorization: `Bearer ${owner.token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ title: 'renamed while held' }),
        signal: abort.signal,
      }).catch((err: unknown) => err);
      await untilAStatementWaitsForALock(knex, 'the rename to wait for the row lock');
      // The client gives up (its timeout), as a balancer or the SDK does with a slow request.
      abort.abort();
      await rename;
    } finally {
      await holder.commit();
    }
    // The node finishes the rename all the same once the lock is free.
    await waitFor(
      async () =>
        (await knex('conversations').where({ id: group.id }).first<{ title: string }>())?.title ===
        'renamed while held',
      { what: 'the rename to commit' },
    );
    expect(await count('499'), 'the abandoned rename').to.equal(1);
    expect(await timed('499')).to.equal(1);
    expect(await count('200'), 'counted once').to.equal(1);
  });
});
