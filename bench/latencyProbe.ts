// Temporary probe (not committed): ack latency of lone sends against an in-process node.
import { randomUUID } from 'node:crypto';
import { loadConfig } from '../lib/config.js';
import { createLogger } from '../lib/logger.js';
import { startServer } from '../lib/server.js';
import { startEmbeddedPostgres } from '../lib/dev/embeddedPostgres.js';
import { io } from 'socket.io-client';
import { insertUser, insertFriendship } from '../test/helpers/users.js';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

const dir = await mkdtemp(path.join(os.tmpdir(), 'probe-'));
const { chmod } = await import('node:fs/promises');
await chmod(dir, 0o755);
const pg = await startEmbeddedPostgres({ dataDir: path.join(dir, 'data'), persistent: false });
const config = loadConfig({ DATABASE_URL: pg.adminUrl, JWT_SECRET: 'x'.repeat(40), PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'silent', RATE_LIMIT_MESSAGES_PER_SEC: '0', SOCKET_EVENTS_PER_SEC: '0' });
const server = await startServer(config, { logger: createLogger('silent') });
const knex = server.services.db.knex;
const a = await insertUser(knex, config);
const b = await insertUser(knex, config);
await insertFriendship(knex, a.id, b.id);
const res = await fetch(`${server.url}/conversations`, { method: 'POST', headers: { authorization: `Bearer ${a.token}`, 'content-type': 'application/json' }, body: JSON.stringify({ type: 'direct', userId: b.id }) });
const { conversation } = (await res.json()) as { conversation: { id: string } };
const socket = io(server.url, { auth: { token: a.token }, transports: ['websocket'] });
await new Promise((r) => socket.once('connect', r));
await socket.emitWithAck('conversation:subscribe', { conversationId: conversation.id });
const times: number[] = [];
for (let i = 0; i < Number(process.argv[2] ?? 200); i++) {
  const t0 = performance.now();
  await socket.emitWithAck('message:send', { conversationId: conversation.id, clientMsgId: randomUUID(), body: 'hello there' });
  times.push(performance.now() - t0);
  await new Promise((r) => setTimeout(r, 20));
}
times.sort((x, y) => x - y);
console.log('p50', times[Math.floor(times.length / 2)]?.toFixed(2), 'p90', times[Math.floor(times.length * 0.9)]?.toFixed(2), 'min', times[0]?.toFixed(2));
socket.close();
await server.close();
await pg.stop();
