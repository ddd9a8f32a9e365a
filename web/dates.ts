/**
 * Dates and times as people read them, in the reader's locale and time zone (Intl): day separators ("Today",
 * "Yesterday", a weekday, then the full date), short times, list dates, and the full timestamp for hovering.
 */

const DAY_MS = 86_400_000;

const time = new Intl.DateTimeFormat(undefined, { hour: 'numeric', minute: '2-digit' });
const weekday = new Intl.DateTimeFormat(undefined, { weekday: 'long' });
const shortWeekday = new Intl.DateTimeFormat(undefined, { weekday: 'short' });
const fullDate = new Intl.DateTimeFormat(undefined, { dateStyle: 'full' });
const monthDay = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });
const shortDate = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short', day: 'numeric' });
const timestamp = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'long' });
const relativeDay = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });

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
  if (days < 7) return weekday.format(date);
  return fullDate.format(date);
}

/** When something happened, as short as a list allows: a time today, "Yesterday", a weekday, a date. */
export function listDate(date: Date, now: Date = new Date()): string {
  const days = daysBefore(date, now);
  if (days <= 0) return time.format(date);
  if (days === 1) return capitalized(relativeDay.format(-1, 'day'));
  if (days < 7) return shortWeekday.format(date);
  if (date.getFullYear() === now.getFullYear()) return monthDay.format(date);
  return shortDate.format(date);
}

/** Hour and minute (the day is in the separator above). */
export function shortTime(date: Date): string {
  return time.format(date);
}

/** Everything about the moment, for a tooltip: weekday, date, time and time zone. */
export function fullTimestamp(date: Date): string {
  return timestamp.format(date);
}
