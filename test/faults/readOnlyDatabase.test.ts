import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import { createGroup, friendsOf, newUser, putMessage, seqState } from '../helpers/chat.js';
import { terminateAll } from '../helpers/faults.js';
import { useNode } from '../helpers/nodes.js';
import { adminQuery } from '../helpers/postgres.js';
import { waitFor } from '../helpers/waitFor.js';

/**
 * A failover that lands a node on a server still in recovery (a hot standby: read-only), or a database put
 * read-only for maintenance. docs/operations.md ("Failover"): "during the switch, sends answer DB_UNAVAILABLE and
 * clients retry". The SDK retries DB_UNAVAILABLE, and takes INTERNAL ("a bug") as final.
 */
describe('faults: sends while PostgreSQL accepts connections but refuses writes (read-only, as a hot standby)', function () {
  this.timeout(60_000);
  const { server } = useNode({ env: { DB_ACQUIRE_TIMEOUT_MS: '2000', DB_CONNECT_TIMEOUT_MS: '2000' } });
  let dbName = '';

  afterEach(async () => {
    if (dbName !== '') {
      await adminQuery(`ALTER DATABASE "${dbName}" RESET default_transaction_read_only`);
      await terminateAll(server.services.config.database.url);
    }
  });

  it('answers a send 503 DB_UNAVAILABLE (retryable), never 500 INTERNAL, and stores it once on the retry after', async () => {
    const url = server.url;
    const owner = await newUser(server);
    const group = await createGroup(url, owner, await friendsOf(server, owner, 1));
    const first = await putMessage(url, owner, group.id, randomUUID(), { body: 'before' });
    expect(first.status).to.equal(201);

    const databaseUrl = server.services.config.database.url;
    dbName = new URL(databaseUrl).pathname.slice(1);
    await adminQuery(`ALTER DATABASE "${dbName}" SET default_transaction_read_only = on`);
    await terminateAll(databaseUrl);
    // The node's pool is back, on read-only sessions (reads answer).
    await waitFor(async () => (await fetch(`${url}/readyz`)).status === 200, { what: '/readyz 200' });

    const clientMsgId = randomUUID();
    const answers: Array<{ status: number; code: string | undefined }> = [];
    for (let i = 0; i < 3; i++) {
      const res = await putMessage(url, owner, group.id, clientMsgId, { body: 'during the switch' });
      answers.push({ status: res.status, code: res.body.error?.code });
    }
    // The switch is over: the retry of the same clientMsgId is stored, once, with the next seq.
    await adminQuery(`ALTER DATABASE "${dbName}" RESET default_transaction_read_only`);
    await terminateAll(databaseUrl);
    const retried = await waitFor(
      async () => {
        const res = await putMessage(url, owner, group.id, clientMsgId, { body: 'during the switch' });
        return res.status === 201 ? res : undefined;
      },
      { what: 'the retry to be stored' },
    );
    expect(retried.body.message.seq).to.equal(2);
    expect(await seqState(server.services.db.knex, group.id)).to.deep.equal({ lastSeq: 2, seqs: [1, 2] });
    expect(answers, 'every send refused as the database being unavailable').to.deep.equal(
      answers.map(() => ({ status: 503, code: 'DB_UNAVAILABLE' })),
    );
  });
});
