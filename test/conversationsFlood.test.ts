import { expect } from 'chai';
import pg from 'pg';
import { createGroup, friendsOf, newUser } from './helpers/chat.js';
import { expectError } from './helpers/errors.js';
import { request } from './helpers/http.js';
import { useNode } from './helpers/nodes.js';

/**
 * An owner removing the members of a big group all at once (a script, a "remove everyone" button) ran every removal's
 * transaction at once: each took a connection of the node's pool, then waited for the group's lock, and the pool was
 * spent on that one lock. Everyone else's requests on the node waited seconds for a connection (7-11 s, past the
 * 5 s within which the contract answers DB_UNAVAILABLE). A group's changes now queue on the node without a
 * connection (FANOUT hunt).
 */
describe('conversations: a flood of changes to one group', function () {
  this.timeout(120_000);
  const { server } = useNode();

  it('waits for the group’s lock with one of the node’s connections at most, however many removals come at once', async () => {
    const owner = await newUser(server);
    const members = await friendsOf(server, owner, 150);
    const group = await createGroup(server.url, owner, members);
    const { knex } = server.services.db;
    let done = false;
    let mostWaiting = 0;
    // PostgreSQL's sessions of this node that wait for the group's lock (a change's first statement), looked at all
    // along the flood. Only those: a session whose commit waits for PostgreSQL's one NOTIFY queue lock (each change
    // tells the other nodes, as other transactions of the node do) waits for a lock too, and a loaded machine saw
    // two of those at once.
    const watch = (async () => {
      while (!done) {
        const { rows } = await knex.raw<{ rows: Array<{ n: number }> }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity
            WHERE datname = current_database() AND wait_event_type = 'Lock'
              AND query ILIKE '%from "conversations"%for no key update%'`,
        );
        mostWaiting = Math.max(mostWaiting, rows[0]?.n ?? 0);
      }
    })();
    const answers = await Promise.all(
      members.map((member) =>
        request(server.url, 'DELETE', `/conversations/${group.id}/participants/${member.id}`, {
          token: owner.token,
        }),
      ),
    );
    done = true;
    await watch;
    expect(mostWaiting, 'sessions waiting for a lock at once').to.be.at.most(1);
    // A removal whose turn did not come within the pool's acquire timeout is answered DB_UNAVAILABLE, nothing
    // written (below), as when the pool itself is exhausted; the others are done.
    const refused = members.filter((_member, i) => answers[i]!.status !== 204);
    for (const [i, answer] of answers.entries())
      if (answer.status !== 204) expectError(answer, 503, 'DB_UNAVAILABLE', members[i]!.id);
    expect(refused.length, 'removals done').to.be.below(members.length);
    const left = async () =>
      (
        await request<{ conversation: { participants: unknown[] } }>(
          server.url,
          'GET',
          `/conversations/${group.id}`,
          { token: owner.token },
        )
      ).body.conversation.participants.length;
    expect(await left()).to.equal(1 + refused.length);
    for (const member of refused)
      expect(
        (
          await request(server.url, 'DELETE', `/conversations/${group.id}/participants/${member.id}`, {
            token: owner.token,
          })
        ).status,
      ).to.equal(204);
    expect(await left()).to.equal(1);
  });
});

/**
 * Queued, a group's changes waited for each other: with the group's row held elsewhere (a stalled transaction of
 * another node), each gave up at the statement timeout only after the one before it had, and the fifth leave was
 * answered after five statement timeouts (REV2 review). A change whose turn has not come within the pool's acquire
 * timeout is answered DB_UNAVAILABLE at once, nothing written.
 */
describe('conversations: a group’s changes while its row is held elsewhere', function () {
  this.timeout(60_000);
  const STATEMENT_MS = 2000;
  const ACQUIRE_MS = 1500;
  const node = useNode({
    env: { DB_STATEMENT_TIMEOUT_MS: String(STATEMENT_MS), DB_ACQUIRE_TIMEOUT_MS: String(ACQUIRE_MS) },
  });

  it('answers every change DB_UNAVAILABLE within a statement and an acquire timeout, not one timeout after another', async () => {
    const { server } = node;
    const owner = await newUser(server);
    const members = await friendsOf(server, owner, 5);
    const group = await createGroup(server.url, owner, members);
    const holder = new pg.Client({ connectionString: node.databaseUrl });
    await holder.connect();
    let answers: Array<{ status: number; ms: number; code: string | undefined }>;
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT id FROM conversations WHERE id = $1 FOR UPDATE', [group.id]);
      const started = performance.now();
      answers = await Promise.all(
        members.map(async (member) => {
          const res = await request<{ error?: { code: string } }>(
            server.url,
            'DELETE',
            `/conversations/${group.id}/participants/${member.id}`,
            { token: member.token },
          );
          return {
            status: res.status,
            ms: Math.round(performance.now() - started),
            code: res.body.error?.code,
          };
        }),
      );
    } finally {
      await holder.query('ROLLBACK');
      await holder.end();
    }
    for (const answer of answers)
      expect([answer.status, answer.code], JSON.stringify(answers)).to.deep.equal([503, 'DB_UNAVAILABLE']);
    expect(Math.max(...answers.map((a) => a.ms)), JSON.stringify(answers)).to.be.below(
      STATEMENT_MS + ACQUIRE_MS + 1000,
    );
    // Nothing was written: everyone is still in the group, and can leave now.
    const stillIn = await request<{ conversation: { participants: unknown[] } }>(
      server.url,
      'GET',
      `/conversations/${group.id}`,
      { token: owner.token },
    );
    expect(stillIn.body.conversation.participants).to.have.length(1 + members.length);
    for (const member of members)
      expect(
        (
          await request(server.url, 'DELETE', `/conversations/${group.id}/participants/${member.id}`, {
            token: member.token,
          })
        ).status,
      ).to.equal(204);
  });
});

describe('conversations: removals on the change budget', function () {
  const { server } = useNode({ env: { RATE_LIMIT_CONVERSATIONS_PER_MIN: '3' } });

  it('counts an owner’s removals of others against RATE_LIMIT_CONVERSATIONS_PER_MIN, refused ones too; leaving is never refused', async () => {
    const owner = await newUser(server);
    const members = await friendsOf(server, owner, 4);
    const group = await createGroup(server.url, owner, members);
    const remove = (as: { token: string }, userId: string) =>
      request(server.url, 'DELETE', `/conversations/${group.id}/participants/${userId}`, {
        token: as.token,
      });
    // The creation took one of three.
    expect((await remove(owner, members[0]!.id)).status).to.equal(204);
    expectError(await remove(owner, members[0]!.id), 404, 'NOT_FOUND');
    const refused = await remove(owner, members[1]!.id);
    expectError(refused, 429, 'RATE_LIMITED');
    expect(Number(refused.headers.get('retry-after'))).to.be.within(1, 20);
    // A member removing someone else pays for the attempt too; leaving costs nothing.
    for (let i = 0; i < 3; i++) expectError(await remove(members[1]!, members[2]!.id), 403, 'FORBIDDEN');
    expectError(await remove(members[1]!, members[2]!.id), 429, 'RATE_LIMITED');
    expect((await remove(members[1]!, members[1]!.id)).status).to.equal(204);
    expect((await remove(members[2]!, members[2]!.id)).status).to.equal(204);
  });
});
