import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import pg from 'pg';
import { createGroup, friendsOf, newUser, record, rows, subscribe } from '../helpers/chat.js';
import { useNode } from '../helpers/nodes.js';
import { startMain, type RunningChild } from '../helpers/childProcess.js';
import { startProxy } from '../helpers/proxy.js';
import { startTestServer, testEnv } from '../helpers/server.js';
import { waitFor } from '../helpers/waitFor.js';
import { untilAStatementWaitsForALock } from '../helpers/postgres.js';

/**
 * Committed messages reach the other nodes even if the writer dies the instant it has committed: announced by a
 * NOTIFY inside the write transaction (MESSAGE_ANNOUNCE=commit), or right after it (`after`, the default), and
 * then, when the writer died in between, read by the other nodes once its heartbeat stops. A node alone
 * announces nothing.
 */
describe('cross-node delivery coupled to the commit', function () {
  this.timeout(60_000);
  const node = useNode();
  const { server: reader, pool } = node;
  let writer: RunningChild | undefined;

  afterEach(async () => {
    if (writer) {
      process.kill(writer.pid, 'SIGCONT');
      await writer.kill('SIGKILL');
      writer = undefined;
    }
    // A killed node stays in the reader's view until the adapter's heartbeat timeout; the next test counts nodes.
    await waitFor(async () => (await reader.services.io.of('/').adapter.serverCount()) === 1, {
      what: 'the killed node to leave the reader’s view',
      timeoutMs: 20_000,
    });
  });

  /**
   * A LISTEN of our own on the announcements channel: the commits a node would hear (not the hellos, answers and
   * catch-up notices the nodes also send there).
   */
  async function listenToAnnouncements(): Promise<{ heard: string[]; close: () => Promise<void> }> {
    const client = new pg.Client({ connectionString: node.databaseUrl });
    await client.connect();
    const heard: string[] = [];
    client.on('notification', (n) => {
      if (n.channel !== 'xfchat_messages' || n.payload === undefined) return;
      const payload = JSON.parse(n.payload) as Record<string, unknown>;
      if ('m' in payload || 'r' in payload || 'u' in payload) heard.push(n.payload);
    });
    await client.query('LISTEN xfchat_messages');
    return { heard, close: () => client.end() };
  }

  it('a node alone announces nothing; with a second node every commit is announced', async () => {
    const listener = await listenToAnnouncements();
    try {
      const owner = await newUser(reader);
      const group = await createGroup(reader.url, owner, await friendsOf(reader, owner, 1));
      const socket = await pool.open(reader.url, owner);
      await subscribe(socket, group.id);
      const alone = await socket.emitWithAck('message:send', {
        conversationId: group.id,
        clientMsgId: randomUUID(),
        body: 'nobody else is listening',
      });
      expect(alone.ok).to.equal(true);
      // Another commit that is announced proves the channel works, so the silence above was not a fluke.
      const second = await startTestServer(node.databaseUrl);
      try {
        await waitFor(async () => (await reader.services.io.of('/').adapter.serverCount()) === 2, {
          what: 'the first node to see the second',
        });
        const together = await socket.emitWithAck('message:send', {
          conversationId: group.id,
          clientMsgId: randomUUID(),
          body: 'now there are two',
        });
        expect(together.ok).to.equal(true);
        await waitFor(() => listener.heard.length > 0, { what: 'an announcement' });
        expect(listener.heard).to.have.length(1);
        expect(listener.heard[0]).to.include('now there are two');
        expect(listener.heard.join('')).not.to.include('nobody else is listening');
      } finally {
        await second.close();
      }
    } finally {
      await listener.close();
    }
  });

  for (const mode of ['after', 'commit'] as const) {
    it(`reaches a subscriber on another node when the writing node is killed right after its commit (MESSAGE_ANNOUNCE=${mode})`, async () => {
      writer = await startMain(testEnv(node.databaseUrl, { LOG_LEVEL: 'info', MESSAGE_ANNOUNCE: mode }));
      const sender = await newUser(reader);
      const [receiver] = await friendsOf(reader, sender, 1);
      const group = await createGroup(reader.url, sender, [receiver!]);
      const onReader = await pool.open(reader.url, receiver!);
      await subscribe(onReader, group.id);
      const arrived = record(onReader, 'message:new');
      const onWriter = await pool.open(writer.url, sender);
      await waitFor(async () => (await reader.services.io.of('/').adapter.serverCount()) === 2, {
        what: 'the two nodes to see each other',
      });

      // Hold the conversation's row, so the writer's commit waits for us while it is in PostgreSQL's hands.
      const lock = await reader.services.db.knex.transaction();
      try {
        await lock.raw('SELECT id FROM conversations WHERE id = ? FOR UPDATE', [group.id]);
        onWriter.emit(
          'message:send',
          { conversationId: group.id, clientMsgId: randomUUID(), body: 'last words' },
          () => {
            throw new Error('the writing node must not live to ack');
          },
        );
        await untilAStatementWaitsForALock(reader.services.db.knex, 'the write to wait for the lock');
        // The writing node is frozen: whatever it would do after the commit, it will never do.
        process.kill(writer.pid, 'SIGSTOP');
      } finally {
        await lock.commit();
      }
      await waitFor(
        async () =>
          (
            await rows(reader.services.db.knex, 'SELECT 1 FROM messages WHERE conversation_id = ?', [
              group.id,
            ])
          ).length === 1,
        { what: 'the commit' },
      );
      await writer.kill('SIGKILL');
      writer = undefined;

      // Announced in the commit, it arrives at once; after it, when the reader finds the writer silent (3.5 s).
      await waitFor(() => arrived.length === 1, { what: 'the message on the other node', timeoutMs: 15_000 });
      const [message] = arrived;
      expect(message!.body).to.equal('last words');
      expect(message!.seq).to.equal(1);
    });
  }

  it('gives the subscribers of a node what was committed while its LISTEN connection was down, no resubscribe', async () => {
    const proxy = await startProxy(node.databaseUrl);
    const cutOff = await startTestServer(proxy.urlThrough(node.databaseUrl));
    try {
      const sender = await newUser(reader);
      const [receiver] = await friendsOf(reader, sender, 1);
      const group = await createGroup(reader.url, sender, [receiver!]);
      const onCutOff = await pool.open(cutOff.url, receiver!);
      await subscribe(onCutOff, group.id);
      const arrived = record(onCutOff, 'message:new');
      const onReader = await pool.open(reader.url, sender);
      await waitFor(async () => (await reader.services.io.of('/').adapter.serverCount()) >= 2, {
        what: 'the nodes to see each other',
      });
      const say = (body: string) =>
        onReader.emitWithAck('message:send', { conversationId: group.id, clientMsgId: randomUUID(), body });
      expect((await say('before the cut')).ok).to.equal(true);
      await waitFor(() => arrived.length === 1, { what: 'the first message on the cut-off node' });

      // The cut-off node loses PostgreSQL, its LISTEN connection with it; a message commits meanwhile.
      await proxy.stop();
      expect((await say('while it heard nothing')).ok).to.equal(true);
      await proxy.start();

      await waitFor(() => arrived.length === 2, {
        what: 'the missed message after the reconnect',
        timeoutMs: 20_000,
      });
      expect(arrived.map((m) => [m.seq, m.body])).to.deep.equal([
        [1, 'before the cut'],
        [2, 'while it heard nothing'],
      ]);
    } finally {
      await cutOff.close();
      await proxy.close();
    }
  });
});
