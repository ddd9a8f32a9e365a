/**
 * XFChat in one script, through the SDK: two people sign up, become friends, open their direct conversation and
 * chat. Bob's subscription prints every message as it arrives (in seq order, each once); then both clients
 * close and the script exits by itself.
 *
 * Start a server first (`npm run dev` in the repository, or a released `xfchat` with DATABASE_URL and
 * JWT_SECRET), then install the SDK from its tarball and run it, as README.md here shows.
 */
import { randomBytes } from 'node:crypto';
import { XFChatClient, XFChatError } from '@xfchat/client';

const baseUrl = process.env.XFCHAT_URL ?? 'http://127.0.0.1:3000';
const password = 'correct horse battery staple';
const suffix = randomBytes(3).toString('hex');

const alice = new XFChatClient({ baseUrl });
const bob = new XFChatClient({ baseUrl });

try {
  const { user: a } = await alice.signup({ username: `alice_${suffix}`, password, displayName: 'Alice' });
  const { user: b } = await bob.signup({ username: `bob_${suffix}`, password, displayName: 'Bob' });
  console.log(`signed up ${a.username} and ${b.username} at ${baseUrl}`);

  const request = await alice.friends.sendRequest(b.username);
  await bob.friends.accept(request.id);
  console.log('they are friends');

  const conversation = await alice.conversations.createDirect(b.id);
  await Promise.all([alice.connect(), bob.connect()]);

  const script = [
    [alice, 'Hi Bob!'],
    [bob, 'Hi Alice, got it.'],
    [alice, 'Each message is stored once, in the order we send.'],
  ];
  const names = new Map([
    [a.id, 'Alice'],
    [b.id, 'Bob'],
  ]);
  let delivered = 0;
  let allDelivered;
  const done = new Promise((resolve) => (allDelivered = resolve));
  const subscription = bob.subscribe(conversation.id, (message) => {
    console.log(`  #${message.seq} ${names.get(message.senderId) ?? '?'}: ${message.body}`);
    if (++delivered === script.length) allDelivered();
  });
  await subscription.whenReady();

  for (const [client, text] of script) await client.send(conversation.id, text);
  await done;
  console.log(`done: ${delivered} messages, in order`);
} catch (err) {
  if (err instanceof XFChatError) console.error(`failed: ${err.code} (${err.status}): ${err.message}`);
  else console.error('failed:', err);
  process.exitCode = 1;
} finally {
  alice.close();
  bob.close();
}
