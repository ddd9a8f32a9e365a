import type { Locator, Page } from 'playwright-core';
import { TOUCH_ONLY } from '../../web/touchOnly.js';

/** What a person does in the XFChat web app, through labels and roles as a screen reader would see them. */
export class ChatPage {
  constructor(readonly page: Page) {}

  async signUp(username: string, password: string, displayName: string): Promise<void> {
    const form = this.page.locator('#signup-form');
    await form.getByLabel('Choose a username').fill(username);
    await form.getByLabel('Display name (optional)').fill(displayName);
    await form.getByLabel('Choose a password').fill(password);
    await form.getByRole('button', { name: 'Sign up' }).click();
    await this.page.locator('#me-name').getByText(displayName).waitFor();
  }

  async logIn(username: string, password: string): Promise<void> {
    const form = this.page.locator('#login-form');
    await form.getByLabel('Username').fill(username);
    await form.getByLabel('Password').fill(password);
    await form.getByRole('button', { name: 'Log in' }).click();
    await this.page.locator('#chat-view').waitFor();
  }

  /** Finds a user by username and sends them a friend request. */
  async addFriend(username: string, displayName: string): Promise<void> {
    await this.page.locator('#find-form').getByLabel('Username').fill(username);
    await this.page.getByRole('button', { name: 'Find' }).click();
    await this.page.getByRole('button', { name: `Add ${displayName} as a friend` }).click();
    await this.page.getByText(`Friend request sent to ${displayName}.`).waitFor();
  }

  async acceptFriendRequest(displayName: string): Promise<void> {
    await this.page.getByRole('button', { name: `Accept friend request from ${displayName}` }).click();
    await this.page.getByRole('button', { name: `Message ${displayName}` }).waitFor();
  }

  /** Opens (creating if needed) the direct conversation with a friend. */
  async openChatWith(displayName: string): Promise<void> {
    await this.page.getByRole('button', { name: `Message ${displayName}` }).click();
    await this.page.locator('#conversation-title').getByText(displayName).waitFor();
  }

  /** Opens a conversation from the list (its accessible name starts with the title). */
  async openConversation(title: string): Promise<void> {
    await this.conversationButton(title).click();
    await this.page.locator('#conversation-title').getByText(title).waitFor();
  }

  conversationButton(title: string): Locator {
    return this.page.locator('#conversations').getByRole('button', { name: new RegExp(`^${title}`) });
  }

  /** Sends `text` as a person would: Enter, or on a touch-only device (where Enter starts a new line) Send. */
  async send(text: string): Promise<void> {
    await this.composer.fill(text);
    const touchOnly = await this.page.evaluate((query) => matchMedia(query).matches, TOUCH_ONLY);
    if (touchOnly) await this.page.locator('#composer-send').click();
    else await this.composer.press('Enter');
  }

  /** The message box. */
  get composer(): Locator {
    return this.page.getByRole('textbox', { name: 'Message' });
  }

  /** The open conversation's title. */
  get title(): Locator {
    return this.page.locator('#conversation-title');
  }

  /** Waits until the open conversation is the one titled `title`. */
  async waitForTitle(title: string): Promise<void> {
    await this.title.getByText(title, { exact: true }).waitFor();
  }

  /** Says yes to every confirm() (leaving, removing, blocking). */
  acceptDialogs(): void {
    this.page.on('dialog', (dialog) => void dialog.accept());
  }

  /** The path of the address bar, e.g. `/c/<conversationId>`. */
  path(): string {
    return new URL(this.page.url()).pathname;
  }

  /** The message log (role=log). */
  get log(): Locator {
    return this.page.getByRole('log', { name: 'Messages' });
  }

  /** Waits until a stored (not pending) message with this text is shown. */
  async waitForMessage(text: string): Promise<void> {
    await this.log.locator('li[data-seq] .body', { hasText: text }).first().waitFor();
  }

  /** The bodies of the stored messages shown, in display order. */
  async shownMessages(): Promise<string[]> {
    return this.log.locator('li[data-seq] .body').allTextContents();
  }

  /** The seqs of the stored messages shown, in display order. */
  async shownSeqs(): Promise<number[]> {
    return (
      await this.log
        .locator('li[data-seq]')
        .evaluateAll((items) => items.map((i) => (i as HTMLElement).dataset.seq))
    ).map(Number);
  }

  /** Whether `item` is (at least partly) inside the message list's visible area. */
  async inView(item: Locator): Promise<boolean> {
    const box = await item.boundingBox();
    const pane = await this.scroller.boundingBox();
    if (!box || !pane) return false;
    return box.y + box.height > pane.y && box.y < pane.y + pane.height;
  }

  /** The scrolling area around the message list (and its "Load older messages" button). */
  get scroller(): Locator {
    return this.page.locator('#message-scroller');
  }

  /** Who the app says is signed in (top of the sidebar). */
  get meName(): Locator {
    return this.page.locator('#me-name');
  }

  /** Waits for the login screen saying why the session ended. */
  async waitForLoggedOut(reason: string | RegExp): Promise<void> {
    await this.page.locator('#auth-reason').getByText(reason).waitFor();
    await this.page.locator('#login-form').waitFor();
  }

  /** The "Your account" dialog (opened by {@link openAccount}). */
  get account(): Locator {
    return this.page.getByRole('dialog', { name: 'Your account' });
  }

  async openAccount(): Promise<void> {
    await this.page.getByRole('button', { name: 'Account and devices' }).click();
    await this.account.waitFor();
  }

  /** The rows of the Devices list. */
  get devices(): Locator {
    return this.account.getByRole('list', { name: 'Signed-in devices' }).getByRole('listitem');
  }

  /** The connection banner (role=status); out of sight (but in the accessibility tree) while connected. */
  get banner(): Locator {
    return this.page.locator('#connection-banner');
  }

  /** Waits until the banner says the connection is up (its words are then out of sight). */
  async waitForConnected(timeout = 5000): Promise<void> {
    await this.page
      .locator('#connection-banner[data-state="connected"]')
      .waitFor({ state: 'attached', timeout });
  }
}
