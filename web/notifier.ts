import { byId } from './dom.js';
import { showControls, startOf } from './text.js';

/**
 * Telling the user about new messages they are not looking at: the unread count in the tab title, and, if they
 * opt in, a browser notification and a short sound for messages in conversations not in view or while the tab is
 * hidden. The browser's permission is asked only when the user ticks the box (a click), never on load.
 *
 * The two choices are each user's: kept under keys with the user's id, so that the next person to sign in on
 * this browser is not shown the previous one's choice, nor notified of their own messages without opting in.
 */
const NOTIFY_PREFIX = 'xfchat.notifications.';
const SOUND_PREFIX = 'xfchat.sound.';
/** Where earlier versions kept the choices, for whoever signed in: not anyone's in particular, so dropped. */
const UNOWNED_KEYS = ['xfchat.notifications', 'xfchat.sound'];
const APP_TITLE = 'XFChat';
/** At most one sound per this interval, however many messages arrive. */
const SOUND_GAP_MS = 1500;

export interface Incoming {
  conversationId: string;
  /** The conversation's title, as the list shows it. */
  title: string;
  sender: string;
  body: string;
}

function notificationsSupported(): boolean {
  // Browsers offer notifications only to pages of a secure context (HTTPS or localhost).
  return 'Notification' in window && window.isSecureContext;
}

export class Notifier {
  private readonly notifyBox = byId('notify-toggle', HTMLInputElement);
  private readonly soundBox = byId('sound-toggle', HTMLInputElement);
  private readonly hint = byId('notify-hint', HTMLParagraphElement);
  private audio: AudioContext | undefined;
  /**
   * When the last sound played, by performance.now(): a monotonic clock. By the wall clock (Date.now()), a
   * computer's clock set back (NTP after a resume, a user by hand) would silence every sound for as long as the step.
   */
  private lastSound = Number.NEGATIVE_INFINITY;
  private readonly notifyKey: string;
  private readonly soundKey: string;

  constructor(
    userId: string,
    private readonly open: (conversationId: string) => void,
    private readonly report: (error: unknown) => void,
  ) {
    this.notifyKey = `${NOTIFY_PREFIX}${userId}`;
    this.soundKey = `${SOUND_PREFIX}${userId}`;
    for (const key of UNOWNED_KEYS) localStorage.removeItem(key);
    const supported = notificationsSupported();
    this.notifyBox.disabled = !supported;
    this.notifyBox.checked =
      supported && localStorage.getItem(this.notifyKey) === 'on' && Notification.permission === 'granted';
    if (!supported) this.hint.textContent = 'Browser notifications need the page to be served over HTTPS.';
    this.notifyBox.addEventListener('change', () => void this.toggleNotifications());
    this.soundBox.checked = localStorage.getItem(this.soundKey) === 'on';
    this.soundBox.addEventListener('change', () => {
      localStorage.setItem(this.soundKey, this.soundBox.checked ? 'on' : 'off');
      if (this.soundBox.checked) this.beep(); // a sample, and the click lets the page play sound
    });
  }

  /**
   * The tab title: the open conversation's name first (what a screen reader says on switching tabs, and a tab
   * strip shows), then the app; "(3) " before it while 3 messages are unread: "(3) Bob – XFChat".
   */
  setTitle(total: number, conversation: string | undefined): void {
    const name = conversation === undefined ? APP_TITLE : `${conversation} – ${APP_TITLE}`;
    const title = total > 0 ? `(${total}) ${name}` : name;
    if (document.title !== title) document.title = title;
  }

  /** A message from someone else arrived; `inView` when its conversation is the one on screen. */
  message(incoming: Incoming, inView: boolean): void {
    if (inView && document.visibilityState === 'visible') return;
    if (this.soundBox.checked) this.beep();
    if (this.notifyBox.checked && notificationsSupported() && Notification.permission === 'granted') {
      const notification = new Notification(incoming.title, {
        // Cut at whole characters, not UTF-16 units or code points: an emoji cut in half would end in "�" or a lone
        // half of a flag.
        body: startOf(`${incoming.sender}: ${showControls(incoming.body)}`, 200),
        // One notification per conversation: a newer message replaces the older one.
        tag: incoming.conversationId,
      });
      notification.onclick = () => {
        window.focus();
        this.open(incoming.conversationId);
        notification.close();
      };
    }
  }

  private async toggleNotifications(): Promise<void> {
    if (!this.notifyBox.checked) {
      localStorage.setItem(this.notifyKey, 'off');
      this.hint.textContent = '';
      return;
    }
    let permission: NotificationPermission;
    try {
      permission = await Notification.requestPermission();
    } catch (err) {
      this.report(err);
      permission = 'denied';
    }
    const granted = permission === 'granted';
    this.notifyBox.checked = granted;
    localStorage.setItem(this.notifyKey, granted ? 'on' : 'off');
    this.hint.textContent = granted
      ? ''
      : 'Notifications are blocked for this site in your browser settings.';
  }

  /** A short, quiet tone, made on the spot (no audio file to fetch). */
  private beep(): void {
    const now = performance.now();
    if (now - this.lastSound < SOUND_GAP_MS) return;
    this.lastSound = now;
    try {
      this.audio ??= new AudioContext();
      const audio = this.audio;
      if (audio.state === 'suspended')
        audio.resume().catch((err: unknown) => console.error('could not play the sound', err));
      const start = audio.currentTime;
      const tone = audio.createOscillator();
      const volume = audio.createGain();
      tone.frequency.value = 880;
      volume.gain.setValueAtTime(0.08, start);
      volume.gain.exponentialRampToValueAtTime(0.0001, start + 0.25);
      tone.connect(volume).connect(audio.destination);
      tone.start(start);
      tone.stop(start + 0.25);
    } catch (err) {
      console.error('could not play the sound', err);
    }
  }
}
