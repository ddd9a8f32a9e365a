/**
 * Dates and times as people read them, in the reader's locale and time zone (Intl): day separators ("Today",
 * "Yesterday", a weekday, then the full date), short times, list dates, and the full timestamp for hovering.
 */

const DAY_MS = 86_400_000;

/**
 * The formats, made for the time zone the computer is in now. A format keeps the zone of when it was made, while
 * `Date`'s getters (the days, below) follow the computer's: made once, a laptop that changed zones (a flight) would
 * group messages by the new zone's days and show the old zone's times under them.
 */
function makeFormats(timeZone: string) {
  return {
    timeZone,
    time: new Intl.DateTimeFormat(undefined, { hour: 'numeric', minute: '2-digit' }),
    weekday: new Intl.DateTimeFormat(undefined, { weekday: 'long' }),
    shortWeekday: new Intl.DateTimeFormat(undefined, { weekday: 'short' }),
    fullDate: new Intl.DateTimeFormat(undefined, { dateStyle: 'full' }),
    monthDay: new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' }),
    shortDate: new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short', day: 'numeric' }),
    timestamp: new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'long' }),
  };
}
const relativeDay = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
let made = makeFormats(currentTimeZone());

/** The computer's time zone now. */
function currentTimeZone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone;
}

/** The formats in use: those of the time zone of the last {@link followTimeZone}. */
function formats(): ReturnType<typeof makeFormats> {
  return made;
}

/**
 * Makes the formats again if the computer's time zone changed since they were made: called once a minute (asking
 * the zone costs a tenth of a millisecond or more, too much for each time shown). True if it changed.
 */
export function followTimeZone(): boolean {
  const zone = currentTimeZone();
  if (made.timeZone === zone) return false;
  made = makeFormats(zone);
  return true;
}
const MINUTE_MS = 60_000;
const HOUR_MS = 3_600_000;

function pad(n: number): string {
  return String(n).padStart(2, '0');
}

/** The local calendar day of `date` as YYYY-MM-DD: a `<time datetime>` value and a grouping key. */
export function dayKey(date: Date): string {
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

/** Calendar days from `date`'s day to `now`'s (0: today, 1: yesterday), in local time, DST-proof. */
function daysBefore(date: Date, now: Date): number {
  const day = Date.UTC(date.getFullYear(), date.getMonth(), date.getDate());
  const today = Date.UTC(now.getFullYear(), now.getMonth(), now.getDate());
  return Math.round((today - day) / DAY_MS);
}

function capitalized(text: string): string {
  return text.charAt(0).toLocaleUpperCase() + text.slice(1);
}

/** A day separator's words: "Today", "Yesterday", a weekday within the last week, else the full date. */
export function dayLabel(date: Date, now: Date = new Date()): string {
  const days = daysBefore(date, now);
  // A clock a little ahead of ours (another device's) counts as today.
  if (days <= 1) return capitalized(relativeDay.format(-Math.max(days, 0), 'day'));
  if (days < 7) return formats().weekday.format(date);
  return formats().fullDate.format(date);
}

/** When something happened, as short as a list allows: a time today, "Yesterday", a weekday, a date. */
export function listDate(date: Date, now: Date = new Date()): string {
  const days = daysBefore(date, now);
  if (days <= 0) return formats().time.format(date);
  if (days === 1) return capitalized(relativeDay.format(-1, 'day'));
  if (days < 7) return formats().shortWeekday.format(date);
  if (date.getFullYear() === now.getFullYear()) return formats().monthDay.format(date);
  return formats().shortDate.format(date);
}

/** Hour and minute (the day is in the separator above). */
export function shortTime(date: Date): string {
  return formats().time.format(date);
}

/** Everything about the moment, for a tooltip: weekday, date, time and time zone. */
export function fullTimestamp(date: Date): string {
  return formats().timestamp.format(date);
}

/** How long ago, for "last active": "now", "5 minutes ago", "3 hours ago", then as {@link listDate}. */
export function sinceNow(date: Date, now: Date = new Date()): string {
  const ago = now.getTime() - date.getTime();
  if (ago < MINUTE_MS) return relativeDay.format(0, 'second');
  if (ago < HOUR_MS) return relativeDay.format(-Math.floor(ago / MINUTE_MS), 'minute');
  if (ago < 12 * HOUR_MS) return relativeDay.format(-Math.floor(ago / HOUR_MS), 'hour');
  return listDate(date, now);
}
