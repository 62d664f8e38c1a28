// Small formatting and export helpers shared by the studio and the ops console.

/** Bytes for people: 1 decimal from KB up, binary units (what storage bills in). */
export function formatBytes(bytes: number, locale: string): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  const n = new Intl.NumberFormat(locale, { maximumFractionDigits: i === 0 ? 0 : 1 }).format(v);
  return `${n} ${units[i]}`;
}

/** One CSV field: quoted when it holds a comma, quote or line break (RFC 4180). */
export function csvField(v: unknown): string {
  const s = v === null || v === undefined ? '' : String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function toCsv(header: string[], rows: unknown[][]): string {
  return [header, ...rows].map((r) => r.map(csvField).join(',')).join('\r\n') + '\r\n';
}

/** Offer a Blob as a file download. */
export function download(name: string, blob: Blob): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** Sum amounts per UTC day: the x values (seconds) and one series per key. */
export function perDay<T>(
  items: T[],
  when: (x: T) => string,
  series: ((x: T) => number)[],
): { days: number[]; values: number[][] } {
  const map = new Map<number, number[]>();
  for (const it of items) {
    const d = new Date(when(it));
    const day = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()) / 1000;
    const acc = map.get(day) ?? series.map(() => 0);
    series.forEach((f, i) => (acc[i] = (acc[i] ?? 0) + f(it)));
    map.set(day, acc);
  }
  const days = [...map.keys()].sort((a, b) => a - b);
  return { days, values: series.map((_, i) => days.map((d) => map.get(d)?.[i] ?? 0)) };
}

/** A datetime-local input's value (the browser's time zone) as RFC 3339 UTC, or null. */
export function localInputToIso(v: string): string | null {
  if (!v) return null;
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

/** An RFC 3339 time as a datetime-local input's value in the browser's time zone. */
export function isoToLocalInput(iso: string): string {
  const d = new Date(iso);
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export const browserTimeZone = (): string => Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';

/** The zone a user plans in: their profile's, else the browser's. */
export const planningTimeZone = (profile: string | null | undefined): string => profile || browserTimeZone();

const pad2 = (n: number) => String(n).padStart(2, '0');

/** How far `tz` is ahead of UTC at the instant `ms`, in minutes (Asia/Shanghai: 480). */
export function zoneOffsetMinutes(tz: string, ms: number): number {
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone: tz,
    hourCycle: 'h23',
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
  }).formatToParts(new Date(ms));
  const get = (type: string) => Number(parts.find((p) => p.type === type)?.value ?? 0);
  const wall = Date.UTC(get('year'), get('month') - 1, get('day'), get('hour'), get('minute'), get('second'));
  return Math.round((wall - Math.floor(ms / 1000) * 1000) / 60_000);
}

/** A wall-clock time `YYYY-MM-DDTHH:mm` in `tz` as RFC 3339 UTC, or null. A time skipped by a
 * clock change moves forward with it; a repeated one is taken at its first occurrence. */
export function zonedInputToIso(v: string, tz: string): string | null {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})$/.exec(v);
  if (!m) return null;
  const [, y, mo, d, h, mi] = m.map(Number) as [number, number, number, number, number, number];
  const wall = Date.UTC(y, mo - 1, d, h, mi);
  // The zone's offsets a day before and a day after: the same, or the two sides of a change.
  const before = wall - zoneOffsetMinutes(tz, wall - 86_400_000) * 60_000;
  const after = wall - zoneOffsetMinutes(tz, wall + 86_400_000) * 60_000;
  const shows = (ms: number) => isoToZonedInput(new Date(ms).toISOString(), tz) === v;
  const valid = [before, after].filter(shows);
  // Both (a repeated hour): the first; none (a skipped hour): the old offset, which lands after.
  return new Date(valid.length ? Math.min(...valid) : before).toISOString();
}

/** An RFC 3339 time as `YYYY-MM-DDTHH:mm` on the wall clocks of `tz` (a datetime-local value). */
export function isoToZonedInput(iso: string, tz: string): string {
  const ms = Date.parse(iso);
  const d = new Date(ms + zoneOffsetMinutes(tz, ms) * 60_000);
  return `${d.getUTCFullYear()}-${pad2(d.getUTCMonth() + 1)}-${pad2(d.getUTCDate())}T${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}`;
}

/** The day (`YYYY-MM-DD`) of an instant in `tz`. */
export const zonedDay = (iso: string | number, tz: string): string => isoToZonedInput(new Date(iso).toISOString(), tz).slice(0, 10);

/** `YYYY-MM-DD` plus `n` days (calendar arithmetic, no zone involved). */
export function addDays(day: string, n: number): string {
  const d = new Date(`${day}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + n);
  return d.toISOString().slice(0, 10);
}

/** The Monday of the week holding `day` (`YYYY-MM-DD`). */
export function mondayOf(day: string): string {
  const d = new Date(`${day}T00:00:00Z`);
  return addDays(day, -((d.getUTCDay() + 6) % 7));
}
