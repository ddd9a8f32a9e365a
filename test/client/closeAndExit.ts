/**
 * A script that uses the SDK the way a command-line tool would (log in with a token, connect, subscribe, send,
 * read over REST) and then calls close(): spawned by lifecycle.test.ts, it must exit by itself, which proves
 * that close() leaves no open handle (socket, timer, keep-alive connection) behind.
 * Usage: node --import tsx test/client/closeAndExit.ts <baseUrl> <token> <conversationId>
 */
import { XFChatClient } from '../../lib/client/index.js';

const [baseUrl, token, conversationId] = process.argv.slice(2);
if (baseUrl === undefined || token === undefined || conversationId === undefined) {
  process.stderr.write('usage: closeAndExit.ts <baseUrl> <token> <conversationId>\n');
  process.exit(2);
}
const client = new XFChatClient({ baseUrl, token });
await client.connect();
const subscription = client.subscribe(conversationId, () => undefined);
await subscription.whenReady();
const message = await client.send(conversationId, 'sent by a script that then exits');
await client.messages.after(conversationId, 0);
client.close();
process.stdout.write(`closed after seq ${message.seq}\n`);
