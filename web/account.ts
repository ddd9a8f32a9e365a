import {
  XFChatError,
  type PublicSession,
  type PublicUser,
  type SessionEndReason,
  type XFChatClient,
} from '../lib/client/index.js';
import { fullTimestamp, listDate, sinceNow } from './dates.js';
import { button, byId, el, OneAtATime, replaceItems } from './dom.js';
import { waitWords } from './text.js';
import { describeUserAgent } from './userAgent.js';

/** What a sign-out leaves behind: a sentence for this tab's login screen, a reason for the profile's other tabs. */
export interface SignedOut {
  note?: string;
  reason?: SessionEndReason;
}

/** Signs this device out by the user's own doing (see AccountDeps.signOut). */
export type SignOut = (work: () => Promise<void>, after?: SignedOut) => Promise<void>;

export interface AccountDeps {
  client: XFChatClient;
  report: (error: unknown) => void;
  /** Who I am now. */
  me: () => PublicUser;
  /** My display name changed here: show it everywhere. */
  profileChanged: (user: PublicUser) => void;
  /**
   * This device signs out by my own doing: `work` does it on the server (and may fail, leaving me signed in);
   * then the stored login goes and the page starts over, saying `after.note` on the login screen.
   */
  signOut: SignOut;
}

const PASSWORD_MIN = 8;
const PASSWORD_MAX = 128;
const NAME_MAX = 64;

/** Characters as the server counts them (Unicode code points). */
function length(text: string): number {
  return [...text].length;
}

/** One of a device's times: the moment, and its words as of `now`. */
interface DeviceTime {
  date: Date;
  text: string;
}

/** When a device signed in and when it was last active, in the words the device list shows at `now`. */
function deviceTimes(session: PublicSession, now: Date): { created: DeviceTime; used: DeviceTime } {
  const created = new Date(session.createdAt);
  const used = new Date(session.lastUsedAt);
  return {
    created: { date: created, text: listDate(created, now) },
    used: { date: used, text: session.current ? 'now' : sinceNow(used, now) },
  };
}

function retryIn(err: XFChatError): string {
  return err.retryAfter === undefined ? 'in a while' : `in ${waitWords(err.retryAfter)}`;
}

/**
 * "Your account": the devices signed in (log out one, every other one, or all), the display name, the password,
 * and deleting the account after a confirmation step. A modal dialog: focus moves into it when it opens, Escape
 * closes it, and focus returns to the "Account" button.
 */
export class AccountDialog {
  private readonly dialog = byId('account-dialog', HTMLDialogElement);
  private readonly opener = byId('account-button', HTMLButtonElement);
  private readonly title = byId('account-title', HTMLHeadingElement);
  private readonly devices = byId('device-list', HTMLUListElement);
  private readonly devicesTitle = byId('devices-title', HTMLHeadingElement);
  private readonly devicesStatus = byId('devices-status', HTMLParagraphElement);
  private readonly logoutOthers = byId('logout-others', HTMLButtonElement);
  private readonly logoutAll = byId('logout-all', HTMLButtonElement);
  private readonly nameInput = byId('profile-name', HTMLInputElement);
  private readonly nameError = byId('profile-error', HTMLParagraphElement);
  private readonly nameStatus = byId('profile-status', HTMLParagraphElement);
  private readonly currentPassword = byId('current-password', HTMLInputElement);
  private readonly newPassword = byId('new-password', HTMLInputElement);
  private readonly passwordError = byId('password-error', HTMLParagraphElement);
  private readonly passwordStatus = byId('password-status', HTMLParagraphElement);
  private readonly deleteStart = byId('delete-start', HTMLButtonElement);
  private readonly deleteForm = byId('delete-form', HTMLFormElement);
  private readonly deletePassword = byId('delete-password', HTMLInputElement);
  private readonly deleteError = byId('delete-error', HTMLParagraphElement);
  private sessions: PublicSession[] = [];
  /** Only the newest device list answer is shown. */
  private listTicket = 0;
  /**
   * Each form and log-out button one at a time: a double click on "Change password" changes it once (a second
   * request, with the password just replaced, would be refused and the page say the password was wrong).
   */
  private readonly once = new OneAtATime();

  constructor(private readonly deps: AccountDeps) {
    this.opener.addEventListener('click', () => this.open());
    byId('account-close', HTMLButtonElement).addEventListener('click', () => this.dialog.close());
    this.dialog.addEventListener('close', () => {
      this.showDeleteStep(false, false);
      this.opener.focus();
    });
    const profileForm = byId('profile-form', HTMLFormElement);
    profileForm.addEventListener('submit', (event) => {
      event.preventDefault();
      void this.once.run('name', profileForm, () => this.saveName());
    });
    const passwordForm = byId('password-form', HTMLFormElement);
    passwordForm.addEventListener('submit', (event) => {
      event.preventDefault();
      void this.once.run('password', passwordForm, () => this.changePassword());
    });
    this.logoutOthers.addEventListener(
      'click',
      () => void this.once.run('logout-others', this.logoutOthers, () => this.logOutOthers()),
    );
    this.logoutAll.addEventListener(
      'click',
      () => void this.once.run('logout-all', this.logoutAll, () => this.logOutAll()),
    );
    this.deleteStart.addEventListener('click', () => this.showDeleteStep(true, true));
    byId('delete-cancel', HTMLButtonElement).addEventListener('click', () =>
      this.showDeleteStep(false, true),
    );
    this.deleteForm.addEventListener('submit', (event) => {
      event.preventDefault();
      void this.once.run('delete', this.deleteForm, () => this.deleteAccount());
    });
  }

  open(): void {
    this.nameInput.value = this.deps.me().displayName;
    for (const line of [this.nameError, this.nameStatus, this.passwordError, this.passwordStatus])
      line.textContent = '';
    this.devicesStatus.textContent = '';
    this.currentPassword.value = '';
    this.newPassword.value = '';
    this.dialog.showModal();
    this.title.focus();
    void this.loadDevices();
  }

  /**
   * Called once a minute: the devices shown say their times again while the dialog is open ("active 5 minutes
   * ago" ages, and a changed time zone gives other times).
   */
  minutePassed(): void {
    if (!this.dialog.open) return;
    // In place: rebuilt, the rows would move a keyboard user's focus to a new button each minute (and a screen
    // reader say it again), for a time that changed in them (review).
    const now = new Date();
    for (const session of this.sessions) {
      const row = [...this.devices.children].find(
        (item) => item instanceof HTMLElement && item.dataset.key === session.id,
      );
      const [created, used] = row?.querySelectorAll('time') ?? [];
      if (created === undefined || used === undefined) continue;
      const times = deviceTimes(session, now);
      this.setTime(created, times.created);
      this.setTime(used, times.used);
      const logOut = row?.querySelector('button');
      const label = this.logOutLabel(session);
      if (logOut && logOut.getAttribute('aria-label') !== label) logOut.setAttribute('aria-label', label);
    }
  }

  /** A `<time>`'s words and full timestamp, changed only where they differ. */
  private setTime(time: HTMLTimeElement, { date, text }: DeviceTime): void {
    if (time.textContent !== text) time.textContent = text;
    const title = fullTimestamp(date);
    if (time.title !== title) time.title = title;
  }

  /** What a device's log-out button is called: which device, and when it signed in. */
  private logOutLabel(session: PublicSession): string {
    const device = describeUserAgent(session.userAgent);
    return session.current
      ? `Log out this device (${device})`
      : `Log out ${device}, signed in ${fullTimestamp(new Date(session.createdAt))}`;
  }

  // Devices

  private async loadDevices(): Promise<void> {
    const ticket = ++this.listTicket;
    this.devices.setAttribute('aria-busy', 'true');
    try {
      const sessions = await this.deps.client.sessions.list();
      if (ticket !== this.listTicket) return;
      // This device first, then the others as the server orders them (most recently used first).
      this.sessions = [...sessions.filter((s) => s.current), ...sessions.filter((s) => !s.current)];
      this.renderDevices();
    } catch (err) {
      if (ticket !== this.listTicket) return;
      this.deps.report(err);
      this.devicesStatus.textContent = 'Could not load your devices; close this and try again.';
    } finally {
      if (ticket === this.listTicket) this.devices.removeAttribute('aria-busy');
    }
  }

  private renderDevices(): void {
    const now = new Date();
    replaceItems(
      this.devices,
      this.sessions.map((session) => this.deviceItem(session, now)),
    );
    this.logoutOthers.disabled = !this.sessions.some((s) => !s.current);
  }

  private deviceItem(session: PublicSession, now: Date): HTMLLIElement {
    const device = describeUserAgent(session.userAgent);
    const times = deviceTimes(session, now);
    const time = ({ date, text }: DeviceTime) =>
      el('time', { text, attrs: { datetime: date.toISOString(), title: fullTimestamp(date) } });
    // Drawn again while its log-out is on its way (the list is read again after one), a row's button stays busy.
    const key = session.current ? 'logout-here' : `revoke:${session.id}`;
    const action: HTMLButtonElement = this.once.mark(
      key,
      session.current
        ? button(
            'Log out this device',
            () => void this.once.run(key, action, () => this.deps.signOut(() => this.logoutHere())),
            { label: this.logOutLabel(session) },
          )
        : button('Log out', () => void this.once.run(key, action, () => this.revoke(session, device)), {
            label: this.logOutLabel(session),
            secondary: true,
          }),
    );
    return el(
      'li',
      { className: 'device', dataset: { key: session.id } },
      el(
        'span',
        { className: 'who' },
        el(
          'span',
          { className: 'name' },
          el('span', { text: device, attrs: session.userAgent ? { title: session.userAgent } : {} }),
          session.current ? el('span', { className: 'badge', text: 'This device' }) : null,
        ),
        el(
          'span',
          { className: 'status' },
          'Signed in ',
          time(times.created),
          ' · active ',
          time(times.used),
        ),
      ),
      action,
    );
  }

  /** This device's own logout; a network failure still signs it out here (the session then just expires). */
  private async logoutHere(): Promise<void> {
    await this.deps.client.logout().catch(this.deps.report);
  }

  private async revoke(session: PublicSession, device: string): Promise<void> {
    this.devicesStatus.textContent = '';
    try {
      await this.revokeQuietly(session.id);
      this.devicesStatus.textContent = `${device} was logged out.`;
    } catch (err) {
      this.deps.report(err);
    }
    // The row and its button are gone: keep focus in the same part of the dialog.
    this.devicesTitle.focus();
    await this.loadDevices();
  }

  /** Ends another session; one that already ended (NOT_FOUND) is what was asked for. */
  private async revokeQuietly(sessionId: string): Promise<void> {
    try {
      await this.deps.client.sessions.revoke(sessionId);
    } catch (err) {
      if (!(err instanceof XFChatError && err.code === 'NOT_FOUND')) throw err;
    }
  }

  private async logOutOthers(): Promise<void> {
    const others = this.sessions.filter((s) => !s.current);
    this.devicesStatus.textContent = '';
    try {
      await Promise.all(others.map((s) => this.revokeQuietly(s.id)));
      this.devicesStatus.textContent =
        others.length === 1
          ? 'Your other device was logged out.'
          : `${others.length} other devices were logged out.`;
    } catch (err) {
      this.deps.report(err);
    }
    this.devicesTitle.focus();
    await this.loadDevices();
  }

  private async logOutAll(): Promise<void> {
    if (!confirm('Log out on all your devices, this one included?')) return;
    try {
      await this.deps.signOut(() => this.deps.client.logoutAll(), {
        note: 'You logged out on all your devices. Log in again to continue here.',
        reason: 'logged_out',
      });
    } catch (err) {
      this.deps.report(err);
    }
  }

  // Display name

  private async saveName(): Promise<void> {
    this.nameError.textContent = '';
    this.nameStatus.textContent = '';
    this.nameInput.removeAttribute('aria-invalid');
    const displayName = this.nameInput.value.trim();
    if (displayName === '' || length(displayName) > NAME_MAX) {
      this.invalid(this.nameInput, this.nameError, `A display name is 1-${NAME_MAX} characters.`);
      return;
    }
    try {
      const user = await this.deps.client.updateProfile({ displayName });
      this.deps.profileChanged(user);
      this.nameInput.value = user.displayName;
      this.nameStatus.textContent = `Your name is now “${user.displayName}”.`;
    } catch (err) {
      if (err instanceof XFChatError && err.code === 'VALIDATION_FAILED')
        this.invalid(
          this.nameInput,
          this.nameError,
          `A display name is 1-${NAME_MAX} characters, without control or text-direction characters.`,
        );
      else this.deps.report(err);
    }
  }

  // Password

  private async changePassword(): Promise<void> {
    this.passwordError.textContent = '';
    this.passwordStatus.textContent = '';
    this.currentPassword.removeAttribute('aria-invalid');
    this.newPassword.removeAttribute('aria-invalid');
    const current = this.currentPassword.value;
    const next = this.newPassword.value;
    const nextLength = Math.min(length(next), length(next.normalize('NFC')));
    if (current === '') {
      this.invalid(this.currentPassword, this.passwordError, 'Type your current password.');
      return;
    }
    if (nextLength < PASSWORD_MIN || nextLength > PASSWORD_MAX) {
      this.invalid(
        this.newPassword,
        this.passwordError,
        `The new password must be ${PASSWORD_MIN}-${PASSWORD_MAX} characters.`,
      );
      return;
    }
    try {
      await this.deps.client.changePassword(current, next);
      this.currentPassword.value = '';
      this.newPassword.value = '';
      this.passwordStatus.textContent =
        'Your password was changed. Your other devices were logged out; this one stays signed in.';
      await this.loadDevices();
    } catch (err) {
      const code = err instanceof XFChatError ? err.code : undefined;
      if (code === 'INVALID_CREDENTIALS')
        this.invalid(
          this.currentPassword,
          this.passwordError,
          'Your current password is wrong. The password was not changed.',
        );
      else if (code === 'VALIDATION_FAILED')
        this.invalid(
          this.newPassword,
          this.passwordError,
          `The new password must be ${PASSWORD_MIN}-${PASSWORD_MAX} characters.`,
        );
      else if (err instanceof XFChatError && code === 'RATE_LIMITED')
        this.say(this.passwordError, `Too many wrong passwords. Try again ${retryIn(err)}.`);
      else this.deps.report(err);
    }
  }

  // Deleting the account

  /** Shows or hides the confirmation step, moving focus into it, or back to the button that opens it. */
  private showDeleteStep(shown: boolean, moveFocus: boolean): void {
    this.deleteForm.hidden = !shown;
    this.deleteStart.hidden = shown;
    this.deleteStart.setAttribute('aria-expanded', String(shown));
    this.deletePassword.value = '';
    this.deletePassword.removeAttribute('aria-invalid');
    this.deleteError.textContent = '';
    if (!moveFocus) return;
    if (shown) this.deletePassword.focus();
    else this.deleteStart.focus();
  }

  private async deleteAccount(): Promise<void> {
    this.deleteError.textContent = '';
    this.deletePassword.removeAttribute('aria-invalid');
    const password = this.deletePassword.value;
    if (password === '') {
      this.invalid(this.deletePassword, this.deleteError, 'Type your password to confirm.');
      return;
    }
    try {
      await this.deps.signOut(() => this.deps.client.deleteAccount(password), {
        note: 'Your account was deleted. Thank you for using XFChat.',
        reason: 'deleted',
      });
    } catch (err) {
      const code = err instanceof XFChatError ? err.code : undefined;
      if (code === 'INVALID_CREDENTIALS')
        this.invalid(
          this.deletePassword,
          this.deleteError,
          'That is not your password. Your account was not deleted.',
        );
      else if (err instanceof XFChatError && code === 'RATE_LIMITED')
        this.say(this.deleteError, `Too many wrong passwords. Try again ${retryIn(err)}.`);
      else this.deps.report(err);
    }
  }

  /** Marks a field as wrong, says why (its `aria-describedby` names the message), and puts focus on it. */
  private invalid(input: HTMLInputElement, line: HTMLParagraphElement, text: string): void {
    input.setAttribute('aria-invalid', 'true');
    this.say(line, text);
    input.focus();
  }

  private say(line: HTMLParagraphElement, text: string): void {
    line.textContent = text;
  }
}
