import { expect } from 'chai';
import type { PublicConversation } from '../lib/protocol/index.js';
import type { ConversationSummary } from '../lib/client/index.js';
import { ConversationStore } from '../web/store.js';
import { createGroup, expectOk, friendsOf, newUser, send } from './helpers/chat.js';
import { type ErrorResponse } from './helpers/errors.js';
import { useNode } from './helpers/nodes.js';
import { request } from './helpers/http.js';
import type { TestUser } from './helpers/users.js';

/**
 * GROUP hunt: the web app's store kept read markers "never backwards" across the server's answers, but a member
 * removed and added back starts over at lastReadSeq 0 (docs/messaging.md: "removed and added again, their marker
 * starts over at 0"). A page that read the list again after a dropped connection (reloadList, then upsert), or heard
 * one coalesced conversation:updated, kept the old marker: read receipts and unread counts disagreed with the server
 * until a reload, and a page that thought everything read never marked it read.
 */
describe('web app store: read markers across a removal and re-add', function () {
  const { server, pool } = useNode();
  const api = <T = ErrorResponse>(method: string, path: string, user: TestUser | undefined, body?: unknown) =>
    request<T>(server.url, method, path, { token: user?.token, body });
  const list = async (u: TestUser) =>
    (await api<{ conversations: ConversationSummary[] }>('GET', '/conversations', u)).body.conversations;

  it('another member’s read marker follows the server after they were removed and re-added', async () => {
    const owner = await newUser(server);
    const [observer, m] = (await friendsOf(server, owner, 2)) as [TestUser, TestUser];
    const group = await createGroup(server.url, owner, [observer, m]);
    const ownerSocket = await pool.open(server.url, owner);
    for (let i = 1; i <= 5; i++) expectOk(await send(ownerSocket, group.id, `m${i}`));
    expect((await api('POST', `/conversations/${group.id}/read`, m, { seq: 5 })).status).to.equal(204);
    // The observer's page loads its list.
    const store = new ConversationStore(observer.id);
    for (const c of await list(observer)) store.upsert(c);
    // While the observer's connection is down: m is removed and added back.
    expect((await api('DELETE', `/conversations/${group.id}/participants/${m.id}`, owner)).status).to.equal(
      204,
    );
    expect(
      (await api('POST', `/conversations/${group.id}/participants`, owner, { userId: m.id })).status,
    ).to.equal(201);
    // Back: the page reads the list again (web/chat.ts reloadList).
    for (const c of await list(observer)) store.upsert(c);
    const server_ = (
      await api<{ conversation: PublicConversation }>('GET', `/conversations/${group.id}`, observer)
    ).body.conversation;
    const serverMarker = server_.participants.find((p) => p.userId === m.id)!.lastReadSeq;
    const storeMarker = store.get(group.id)!.participants.find((p) => p.userId === m.id)!.lastReadSeq;
    expect(serverMarker).to.equal(0);
    expect(storeMarker, 'the web store’s marker for the re-added member').to.equal(serverMarker);
  });

  it('my own unread count follows the server after I was removed and re-added while my page was disconnected', async () => {
    const owner = await newUser(server);
    const [me] = (await friendsOf(server, owner, 1)) as [TestUser];
    const group = await createGroup(server.url, owner, [me]);
    const ownerSocket = await pool.open(server.url, owner);
    for (let i = 1; i <= 3; i++) expectOk(await send(ownerSocket, group.id, `m${i}`));
    expect((await api('POST', `/conversations/${group.id}/read`, me, { seq: 3 })).status).to.equal(204);
    const store = new ConversationStore(me.id);
    for (const c of await list(me)) store.upsert(c);
    expect((await api('DELETE', `/conversations/${group.id}/participants/${me.id}`, owner)).status).to.equal(
      204,
    );
    expect(
      (await api('POST', `/conversations/${group.id}/participants`, owner, { userId: me.id })).status,
    ).to.equal(201);
    for (const c of await list(me)) store.upsert(c);
    const serverUnread = (await list(me)).find((c) => c.id === group.id)!.unreadCount;
    expect(serverUnread).to.equal(3);
    expect(store.unread(store.get(group.id)!), 'the web store’s unread count').to.equal(serverUnread);
  });
});
