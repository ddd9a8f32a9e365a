import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { createGroup, friendsOf, newUser } from './helpers/chat.js';
import { request } from './helpers/http.js';
import { useNode } from './helpers/nodes.js';
import { captureQueries } from './helpers/queries.js';
import type { TestUser } from './helpers/users.js';

/**
 * A conversation's own routes (`GET` and `PATCH /conversations/:id`, `POST` and `DELETE .../participants`) for a
 * caller outside it: the same 404 as for an id that names nothing, reached by the same work (one membership probe,
 * no lock or load of the conversation), so that neither the answer nor its time tells an outsider that the
 * conversation exists or how big it is (the contract: "existence is not revealed"); and within the budget of
 * lookups that find nothing, as the message routes are.
 */
describe('conversation routes for a caller outside the conversation', function () {
  const { server } = useNode({ env: { RATE_LIMIT_READS_PER_SEC: '1' } });

  /** Each route, for conversation `id`, as `outsider` would call it. */
  const routes = (outsider: TestUser, member: TestUser) =>
    [
      ['GET', (id: string) => `/conversations/${id}`, undefined],
      ['PATCH', (id: string) => `/conversations/${id}`, { title: 'taken over' }],
      ['POST', (id: string) => `/conversations/${id}/participants`, { userId: outsider.id }],
      ['DELETE', (id: string) => `/conversations/${id}/participants/${member.id}`, undefined],
      ['DELETE', (id: string) => `/conversations/${id}/participants/${outsider.id}`, undefined],
    ] as const;

  async function groupWithOutsider() {
    const owner = await newUser(server);
    const [member] = (await friendsOf(server, owner, 1)) as [TestUser];
    const group = await createGroup(server.url, owner, [member]);
    return { owner, member, group, outsider: await newUser(server) };
  }

  it('runs the same statements for a group the caller is not in as for a made-up id, and answers the same 404', async () => {
    const knex = server.services.db.knex;
    const { member, group, outsider: first } = await groupWithOutsider();
    /** The statements the node ran while it answered `method path(id)`. */
    const seen = async (outsider: TestUser, index: number, id: string) => {
      const [method, path, body] = routes(outsider, member)[index]!;
      let answer: Awaited<ReturnType<typeof request>> | undefined;
      const captured = await captureQueries(
        knex,
        async () => (answer = await request(server.url, method, path(id), { token: outsider.token, body })),
        { transactionControl: true },
      );
      const statements = captured.map((query) => query.sql);
      return { what: `${method} ${path(':id')}`, status: answer!.status, text: answer!.text, statements };
    };
    for (const [index] of routes(first, member).entries()) {
      // The node's own work in the background (a heartbeat, a sampled gauge) may run a statement while a request
      // is answered: a difference must hold on a second try to count. A fresh outsider per try: two lookups of
      // its own bucket (bursts of two at one a second).
      let tries = 0;
      for (;;) {
        const outsider = await newUser(server);
        const real = await seen(outsider, index, group.id);
        const madeUp = await seen(outsider, index, randomUUID());
        expect(real.status, real.what).to.equal(404);
        expect(real.text, real.what).to.equal(madeUp.text);
        tries += 1;
        if (tries < 3 && JSON.stringify(real.statements) !== JSON.stringify(madeUp.statements)) continue;
        expect(real.statements, real.what).to.deep.equal(madeUp.statements);
        break;
      }
    }
  });

  it("an outsider's requests run out of lookups (429) on every one of these routes", async () => {
    const { member, group, outsider: first } = await groupWithOutsider();
    for (const [index] of routes(first, member).entries()) {
      // A fresh outsider per route: its own bucket, two lookups in a burst at one a second.
      const outsider = await newUser(server);
      const [method, path, body] = routes(outsider, member)[index]!;
      const answers = await Promise.all(
        Array.from({ length: 8 }, () =>
          request(server.url, method, path(group.id), { token: outsider.token, body }),
        ),
      );
      const statuses = answers.map((a) => a.status);
      expect(statuses, `${method} ${path(':id')}`).to.include(429);
      expect(
        statuses.every((s) => s === 404 || s === 429),
        `${method} ${path(':id')}: ${JSON.stringify(statuses)}`,
      ).to.equal(true);
    }
  });

  it('a participant still gets the conversation, renames it and adds and removes its members', async () => {
    const { owner, member, group } = await groupWithOutsider();
    const [friend] = (await friendsOf(server, owner, 1)) as [TestUser];
    const got = await request(server.url, 'GET', `/conversations/${group.id}`, { token: member.token });
    expect(got.status).to.equal(200);
    const renamed = await request(server.url, 'PATCH', `/conversations/${group.id}`, {
      token: owner.token,
      body: { title: 'renamed' },
    });
    expect(renamed.status).to.equal(200);
    const added = await request(server.url, 'POST', `/conversations/${group.id}/participants`, {
      token: owner.token,
      body: { userId: friend.id },
    });
    expect(added.status).to.equal(201);
    const removed = await request(
      server.url,
      'DELETE',
      `/conversations/${group.id}/participants/${friend.id}`,
      {
        token: owner.token,
      },
    );
    expect(removed.status).to.equal(204);
    const left = await request(server.url, 'DELETE', `/conversations/${group.id}/participants/${member.id}`, {
      token: member.token,
    });
    expect(left.status).to.equal(204);
  });
});
