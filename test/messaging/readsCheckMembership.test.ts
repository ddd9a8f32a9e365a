import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { createGroup, expectOk, newUser, putMessage, record, subscribe } from '../helpers/chat.js';
import { expectAckError, expectError } from '../helpers/errors.js';
import { controlBusSettled } from '../helpers/faults.js';
import { request } from '../helpers/http.js';
import { useNode } from '../helpers/nodes.js';
import { insertFriendship } from '../helpers/users.js';

/**
 * A node keeps who takes part in each conversation in a cache, and hears of a removal made on another node a
 * moment after it was committed. A read in that moment must not get through: history, catch-up and subscribe
 * check the reader's membership in the statement that reads. Here the removal is made behind the node's back (by
 * SQL), so its cache goes on saying yes for as long as the test needs.
 */
describe('reads check membership in the database, not only in the node’s cache', function () {
  this.timeout(20_000);
  const { server, pool } = useNode();

  it('refuses history, changes and a subscribe to a participant removed without the node knowing', async () => {
    const [owner, member] = [await newUser(server), await newUser(server)];
    const { knex } = server.services.db;
    await insertFriendship(knex, owner.id, member.id);
    const group = await createGroup(server.url, owner, [member], 'cache');
    expect((await putMessage(server.url, owner, group.id, randomUUID(), { body: 'before' })).status).to.equal(
      201,
    );

    // The group's own membership.changed, heard late, would drop the entry the read below caches (and the reads
    // would then be refused by the cache's lookup, not by their statements).
    await controlBusSettled(server.services.controlBus);
    // The member reads once: the node now holds it as a participant.
    const socket = await pool.open(server.url, member);
    await subscribe(socket, group.id);
    expectOk(await socket.emitWithAck('conversation:unsubscribe', { conversationId: group.id }));

    await knex('conversation_participants').where({ conversation_id: group.id, user_id: member.id }).delete();

    const path = `/conversations/${group.id}`;
    expectError(
      await request(server.url, 'GET', `${path}/messages?after=0`, { token: member.token }),
      404,
      'NOT_FOUND',
    );
    expectError(
      await request(server.url, 'GET', `${path}/changes?since=0`, { token: member.token }),
      404,
      'NOT_FOUND',
    );
    const received = record(socket, 'message:new');
    expectAckError(
      await socket.emitWithAck('conversation:subscribe', { conversationId: group.id }),
      'NOT_FOUND',
    );
    // The refused subscribe left no room behind: the owner's next message does not reach the socket.
    expect((await putMessage(server.url, owner, group.id, randomUUID(), { body: 'after' })).status).to.equal(
      201,
    );
    // The refusal also made the node forget its cached yes: a typing is refused as well. Its ack, after the
    // message's broadcast, is also the moment by which a message:new would have come.
    expectAckError(await socket.emitWithAck('typing', { conversationId: group.id }), 'NOT_FOUND');
    expect(received).to.deep.equal([]);
  });
});
