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
