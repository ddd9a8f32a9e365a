import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { expect } from 'chai';
import { loadDatabaseConfig } from '../../lib/config.js';
import { createDatabase, type Database } from '../../lib/db.js';
import { createLogger } from '../../lib/logger.js';
import { createGroup, expectOk, putMessage, record, seedMessages, send, subscribe } from '../helpers/chat.js';
import { startMain, type ChildResult, type RunningChild } from '../helpers/childProcess.js';
import { directConversation } from '../helpers/faults.js';
import { createTestDatabase } from '../helpers/postgres.js';
import { sampleValue, scrape } from '../helpers/prometheus.js';
import { TEST_JWT_SECRET, testConfig } from '../helpers/server.js';
import { connectSocket, type ClientSocket } from '../helpers/sockets.js';
import { startProxy, type FaultProxy } from '../helpers/proxy.js';
import { insertFriendship, insertUser, type TestUser } from '../helpers/users.js';
import { waitFor } from '../helpers/waitFor.js';

/** The node's old generation: without a bound on what it holds for a client, the attack below kills it. */
const HEAP_MB = 512;
/**
 * What the node may reach under the attack. Idle, the node (running TypeScript through tsx) sits near 200 MB;
 * the bound leaves room for the pages a node builds legitimately and for the garbage collector's slack.
 */
const RSS_BOUND_MB = 300;
const PAGE_MESSAGES = 200;
/** 4000 code points of an astral emoji: 16 KB of UTF-8 per message, a 3.2 MB history page. */
const BIG_BODY = '💥'.repeat(4000);
/**
 * The attack goes on until the node has cut both sockets, this long at most: the reader is cut only once the
 * messages put have filled the kernel's buffers on the way (several MB) and then the node's bound, which a busy
 * machine's puts take longer to do (a fixed 10 s could leave it uncut, and the wait for it below failed).
 */
const ATTACK_MS = 60_000;

async function rssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = /^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1];
  if (kb === undefined) throw new Error(`no VmRSS for ${pid}`);
  return Number(kb) / 1024;
}

describe('a client that stops reading (a real node, small heap)', function () {
  this.timeout(120_000);
  let databaseUrl: string;
  let db: Database | undefined;
  let child: RunningChild | undefined;
  let proxy: FaultProxy | undefined;
  const sockets: ClientSocket[] = [];

  before(async () => {
    databaseUrl = await createTestDatabase();
    db = createDatabase(loadDatabaseConfig({ DATABASE_URL: databaseUrl }), createLogger('silent'));
    child = await startMain(
      {
        DATABASE_URL: databaseUrl,
        JWT_SECRET: TEST_JWT_SECRET,
        PORT: '0',
        HOST: '127.0.0.1',
        LOG_LEVEL: 'info',
        NODE_OPTIONS: `--max-old-space-size=${HEAP_MB}`,
        // Sends are not what is tested: the paused subscriber must be offered many big messages quickly.
        RATE_LIMIT_MESSAGES_PER_SEC: '1000',
      },
      { timeoutMs: 60_000 },
    );
    proxy = await startProxy(child.url);
  });

  after(async () => {
    for (const socket of sockets.splice(0)) socket.close();
    await proxy?.close();
    await child?.kill();
    await db?.close();
  });

  async function open(url: string, user: TestUser): Promise<ClientSocket> {
    const socket = await connectSocket(url, user.token);
    sockets.push(socket);
    return socket;
  }

  it('disconnects the slow reader, stays under its memory bound, and keeps serving others', async () => {
    const { knex } = db!;
    const config = testConfig(databaseUrl);
    const node = child!;
    const attacker = await insertUser(knex, config);
    const group = await createGroup(node.url, attacker, [], 'my own group');
    await seedMessages(knex, group.id, attacker.id, PAGE_MESSAGES, BIG_BODY);
    const [alice, bob] = [await insertUser(knex, config), await insertUser(knex, config)];
    await insertFriendship(knex, alice.id, bob.id);
    const direct = await directConversation(node.url, alice, bob);

    let died: ChildResult | undefined;
    void node.exited.then((result) => {
      died = result;
    });
    const idleMb = await rssMb(node.pid);
    // A subscriber of the group that stops reading, then a flooder that asks for the biggest page within the
    // event rate (SOCKET_EVENTS_PER_SEC, default 50) and never reads the answers.
    const reader = await open(proxy!.url, attacker);
    await subscribe(reader, group.id, { limit: 1 });
    proxy!.connections[0]!.stall('downstream');
    const flooder = await open(proxy!.url, attacker);
    proxy!.connections[1]!.stall('downstream');
    const [readerLink, flooderLink] = [proxy!.connections[0]!, proxy!.connections[1]!];

    let peakMb = idleMb;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        try {
          peakMb = Math.max(peakMb, await rssMb(node.pid));
        } catch {
          // The process is gone: the assertions below say so.
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();

    const cuts = () => node.stdout().match(/disconnecting a socket that does not read/g) ?? [];
    const deadline = Date.now() + ATTACK_MS;
    const attacking = () => Date.now() < deadline && cuts().length < 2;
    const flood = (async () => {
      while (attacking() && !flooderLink.targetClosed) {
        flooder.emit(
          'conversation:subscribe',
          { conversationId: group.id, limit: PAGE_MESSAGES },
          () => undefined,
        );
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    })();
    const fill = (async () => {
      while (attacking() && !readerLink.targetClosed) {
        const puts = Array.from({ length: 10 }, () =>
          putMessage(node.url, attacker, group.id, randomUUID(), { body: BIG_BODY }),
        );
        // A node that died under the attack refuses these; the assertions below report it.
        if ((await Promise.allSettled(puts)).some((p) => p.status === 'rejected')) return;
      }
    })();
    await Promise.all([flood, fill]);
    sampling = false;
    await sampler;

    process.stdout.write(
      `      slow reader: node RSS idle ${idleMb.toFixed(0)} MB, peak ${peakMb.toFixed(0)} MB (bound ${RSS_BOUND_MB} MB)\n`,
    );
    expect(died, `the node died under the attack: ${died?.stderr.slice(-500) ?? ''}`).to.equal(undefined);
    expect((await fetch(`${node.url}/healthz`)).status, 'the node is alive').to.equal(200);
    expect(peakMb, 'peak RSS (MB)').to.be.below(RSS_BOUND_MB);
    // The node's own view: both attacker sockets are gone, cut for not reading (not by the heartbeat, which
    // would take 45 s).
    await waitFor(async () => sampleValue(await scrape(node.url), 'xfchat_connected_sockets') === 0, {
      what: 'the slow readers to be disconnected',
      timeoutMs: 10_000,
    });
    expect(cuts().length, 'sockets cut for not reading').to.equal(2);
    expect((await fetch(`${node.url}/readyz`)).status).to.equal(200);
    const [aliceSocket, bobSocket] = [await open(node.url, alice), await open(node.url, bob)];
    await subscribe(bobSocket, direct);
    const received = record(bobSocket, 'message:new');
    const sent = expectOk(await send(aliceSocket, direct, 'still here?'));
    await waitFor(() => received.some((m) => m.id === sent.message.id), {
      what: 'bob to receive the message',
    });
  });
});
