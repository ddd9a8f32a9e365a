import { randomUUID } from 'node:crypto';
import { createTestDatabase } from '../test/helpers/postgres.js';
import { mochaGlobalSetup, mochaGlobalTeardown } from '../test/helpers/globalSetup.js';
import { startTestServer } from '../test/helpers/server.js';
import { createGroup, friendsOf, newUser, subscribe } from '../test/helpers/chat.js';
import { SocketPool } from '../test/helpers/nodes.js';

await mochaGlobalSetup();
const url = await createTestDatabase();
const server = await startTestServer(url, { LOG_LEVEL: 'warn' });
const pool = new SocketPool();
const a = await newUser(server);
const [b] = await friendsOf(server, a, 1);
const group = await createGroup(server.url, a, [b!]);
const sa = await pool.open(server.url, a);
const sb = await pool.open(server.url, b!);
await subscribe(sa, group.id);
await subscribe(sb, group.id);
const lat: number[] = [];
for (let i = 0; i < 300; i++) {
  const t0 = performance.now();
  await sa.emitWithAck('message:send', { conversationId: group.id, clientMsgId: randomUUID(), body: 'x' + i });
  lat.push(performance.now() - t0);
  await new Promise((r) => setTimeout(r, 20));
}
lat.sort((x, y) => x - y);
console.log('p50', lat[150]!.toFixed(2), 'p90', lat[270]!.toFixed(2), 'min', lat[0]!.toFixed(2));
pool.closeAll();
await server.close();
await mochaGlobalTeardown();
