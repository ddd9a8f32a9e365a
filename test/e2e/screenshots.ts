/**
 * `npm run screenshots`: the pictures of the web app in docs/ (desktop, phone, dark theme), taken in headless
 * Chromium from a node on a temporary database, with a conversation seeded through the SDK: two days of a group
 * chat with replies, an edited message, reactions and a deleted message. Colour emoji need a colour emoji font on
 * the machine (Debian: `apt-get install fonts-noto-color-emoji`).
 */
import path from 'node:path';
import type { Browser, BrowserContextOptions, Page } from 'playwright-core';
import { XFChatClient } from '../../lib/client/index.js';
import type { RunningServer } from '../../lib/server.js';
import { buildWeb } from '../../web/build.js';
import { PROJECT_ROOT } from '../helpers/childProcess.js';
import { mochaGlobalSetup, mochaGlobalTeardown } from '../helpers/globalSetup.js';
import { createTestDatabase } from '../helpers/postgres.js';
import { startTestServer } from '../helpers/server.js';
import { launchBrowser } from './browser.js';
import { ChatPage } from './chatPage.js';

const PASSWORD = 'correct horse battery';
const MINUTE_MS = 60_000;
const DAY_MS = 86_400_000;
/** The pictures are taken as a reader in Berlin who reads English sees them. */
const LOCALE: BrowserContextOptions = { locale: 'en-GB', timezoneId: 'Europe/Berlin' };

interface Someone {
  id: string;
  client: XFChatClient;
}

async function person(server: RunningServer, username: string, displayName: string): Promise<Someone> {
  const client = new XFChatClient({ baseUrl: server.url });
  const { user } = await client.signup({ username, password: PASSWORD, displayName });
  return { id: user.id, client };
}

async function befriend(a: Someone, b: Someone, username: string): Promise<void> {
  const request = await a.client.friends.sendRequest(username);
  await b.client.friends.accept(request.id);
}

/**
 * The conversation of the pictures: a group planning a hike, yesterday evening and this morning. Returns the
 * group's id. Times are set in the database afterwards (a message's time is the server's clock when it is sent).
 */
async function seed(server: RunningServer): Promise<string> {
  const alice = await person(server, 'alice', 'Alice');
  const bob = await person(server, 'bob', 'Bob');
  const carol = await person(server, 'carol', 'Carol');
  const dave = await person(server, 'dave', 'Dave');
  await befriend(alice, bob, 'bob');
  await befriend(alice, carol, 'carol');
  await befriend(alice, dave, 'dave');
  await befriend(bob, carol, 'carol');

  const direct = await alice.client.conversations.createDirect(bob.id);
  await bob.client.messages.put(direct.id, 'd1', 'Did you get the tickets?');
  await alice.client.messages.put(direct.id, 'd2', 'Yes, both of them 🎟️');
  const book = await alice.client.conversations.createGroup('Book club', [carol.id, dave.id]);
  await carol.client.messages.put(book.id, 'b1', 'Next book: The Left Hand of Darkness');

  const group = await alice.client.conversations.createGroup('Weekend hike', [bob.id, carol.id, dave.id]);
  const id = group.id;
  let n = 0;
  const say = (who: Someone, body: string, replyToSeq?: number) =>
    who.client.messages.put(id, `m${++n}`, body, replyToSeq === undefined ? {} : { replyToSeq });

  // Yesterday evening.
  await say(carol, 'Anyone up for a hike this weekend? 🥾');
  await say(bob, 'Yes! Saturday works for me.');
  await say(dave, 'Count me in. Which trail?');
  const ridge = await say(
    alice,
    'How about the ridge loop? About 12 km, and the view from the top is worth it.',
  );
  // This morning.
  const meet = await say(carol, 'Ridge loop sounds perfect. Meet at the station at 9?', ridge.seq);
  await carol.client.messages.edit(id, meet.seq, 'Ridge loop sounds perfect. Meet at the station at 8?');
  const sorry = await say(dave, 'Can’t make it after all, sorry');
  await dave.client.messages.remove(id, sorry.seq);
  const snacks = await say(bob, 'I’ll bring snacks and the big thermos ☕');
  const sunny = await say(alice, '8 works. The forecast says sunny all day ☀️', meet.seq);
  await say(dave, 'Plans changed, I’m in after all! Tickets: https://example.com/trains', sorry.seq);
  for (const [who, seq, emoji] of [
    [bob, sunny.seq, '👍'],
    [carol, sunny.seq, '👍'],
    [dave, sunny.seq, '👍'],
    [carol, sunny.seq, '❤️'],
    [alice, snacks.seq, '🎉'],
    [carol, snacks.seq, '🎉'],
    [dave, snacks.seq, '😂'],
    [bob, ridge.seq, '👍'],
  ] as const)
    await who.client.react(id, seq, emoji);
  await alice.client.messages.read(id, n);

  // Yesterday evening, and this morning up to a few minutes ago (the edit stays the latest thing).
  const now = Date.now();
  const yesterday = new Date(now - DAY_MS);
  const evening = Date.UTC(
    yesterday.getUTCFullYear(),
    yesterday.getUTCMonth(),
    yesterday.getUTCDate(),
    18,
    2,
  );
  const times = [
    evening,
    evening + 4 * MINUTE_MS,
    evening + 9 * MINUTE_MS,
    evening + 23 * MINUTE_MS,
    now - 58 * MINUTE_MS,
    now - 44 * MINUTE_MS,
    now - 39 * MINUTE_MS,
    now - 25 * MINUTE_MS,
    now - 6 * MINUTE_MS,
  ];
  const { knex } = server.services.db;
  for (const [i, at] of times.entries())
    await knex.raw('UPDATE messages SET created_at = ? WHERE conversation_id = ? AND seq = ?', [
      new Date(at),
      id,
      i + 1,
    ]);
  for (const client of [alice, bob, carol, dave]) client.client.close();
  return id;
}

async function signedIn(
  browser: Browser,
  server: RunningServer,
  options: BrowserContextOptions,
): Promise<ChatPage> {
  const context = await browser.newContext({ ...LOCALE, ...options });
  const page = new ChatPage(await context.newPage());
  await page.page.goto(server.url);
  await page.logIn('alice', PASSWORD);
  await page.openConversation('Weekend hike');
  await page.waitForMessage('Tickets');
  return page;
}

function messageWith(page: ChatPage, text: string) {
  return page.log.locator('li[data-seq]', { has: page.page.locator(':scope > .body', { hasText: text }) });
}

async function shoot(page: Page, file: string): Promise<void> {
  // No blinking caret, no focus ring left over from logging in.
  await page.evaluate(() => (document.activeElement as HTMLElement | null)?.blur());
  await page.screenshot({ path: path.join(PROJECT_ROOT, 'docs', file) });
  process.stdout.write(`[screenshots] docs/${file}\n`);
}

async function main(): Promise<void> {
  await mochaGlobalSetup();
  let server: RunningServer | undefined;
  let browser: Browser | undefined;
  try {
    await buildWeb();
    server = await startTestServer(await createTestDatabase());
    await seed(server);
    browser = await launchBrowser();

    // Desktop: who reacted, on hover.
    const desktop = await signedIn(browser, server, { viewport: { width: 1280, height: 900 } });
    await desktop.page.evaluate(() => (document.activeElement as HTMLElement | null)?.blur());
    await messageWith(desktop, 'forecast says sunny').locator('button[data-emoji="👍"]').hover();
    await shoot(desktop.page, 'screenshot-desktop.png');
    await desktop.page.context().close();

    // Phone: the conversation alone, answering a message (its quote above the message box).
    const phone = await signedIn(browser, server, {
      viewport: { width: 390, height: 844 },
      deviceScaleFactor: 2,
      hasTouch: true,
      isMobile: true,
    });
    const meet = messageWith(phone, 'Meet at the station');
    await meet.getByRole('button', { name: /^Actions for/ }).click();
    await meet.getByRole('button', { name: 'Reply', exact: true }).click();
    await phone.composer.fill('I can give two people a lift from the station');
    await shoot(phone.page, 'screenshot-phone.png');
    await phone.page.context().close();

    // Dark theme: a message's actions open (the reaction picker, Reply, Edit, Delete).
    const dark = await signedIn(browser, server, {
      viewport: { width: 1280, height: 900 },
      colorScheme: 'dark',
    });
    const sunny = messageWith(dark, 'forecast says sunny');
    await sunny.getByRole('button', { name: /^Actions for/ }).click();
    await sunny.getByRole('group', { name: /^Actions for/ }).waitFor();
    await dark.page.mouse.move(0, 0);
    await dark.page.screenshot({ path: path.join(PROJECT_ROOT, 'docs', 'screenshot-dark.png') });
    process.stdout.write('[screenshots] docs/screenshot-dark.png\n');
    await dark.page.context().close();
  } finally {
    await browser?.close();
    await server?.close();
    await mochaGlobalTeardown();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(
    `[screenshots] failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exitCode = 1;
});
