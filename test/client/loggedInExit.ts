/**
 * A script that signs up and makes REST calls without ever connecting, and forgets close(): spawned by
 * behaviour.test.ts, it must still exit by itself, which proves that the client's timed refresh of the session does
 * not keep Node.js running on its own.
 * Usage: node --import tsx test/client/loggedInExit.ts <baseUrl> <username>
 */
import { XFChatClient } from '../../lib/client/index.js';

const [baseUrl, username] = process.argv.slice(2);
if (baseUrl === undefined || username === undefined) {
  process.stderr.write('usage: loggedInExit.ts <baseUrl> <username>\n');
  process.exit(2);
}
const client = new XFChatClient({ baseUrl });
await client.signup({ username, password: 'a script password of some length' });
const me = await client.me();
process.stdout.write(
  `signed up as ${me.username}, refresh token kept: ${client.refreshToken !== undefined}\n`,
);
