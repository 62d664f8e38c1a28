// Exports over every page of a cursor-paginated list: JSON pages (`items` + `next_cursor`) or the
// server's own CSV pages (`?format=csv`, the next page in a `Link: <?cursor=…>; rel="next"`
// header). Both stop at a cap so a huge account cannot hang the tab; the caller says so.
import { apiFetch, ApiProblem } from '../../api/client';

/** At most this many pages (of 100 rows) in one export. */
export const EXPORT_PAGE_CAP = 50;

export interface AllPages<T> {
  items: T[];
  pages: number;
  /** The cap was reached with more pages left. */
  truncated: boolean;
}

/** Follow `next_cursor` from the first page until the last one or `cap` pages. */
export async function fetchAllPages<T>(
  page: (cursor: string | undefined) => Promise<{ items: T[]; next_cursor?: string | null }>,
  { cap = EXPORT_PAGE_CAP, onPage }: { cap?: number; onPage?: (pages: number) => void } = {},
): Promise<AllPages<T>> {
  const items: T[] = [];
  let cursor: string | undefined;
  let pages = 0;
  for (;;) {
    const p = await page(cursor);
    pages += 1;
    items.push(...p.items);
    onPage?.(pages);
    const next = p.next_cursor ?? undefined;
    if (!next || p.items.length === 0) return { items, pages, truncated: false };
    if (pages >= cap) return { items, pages, truncated: true };
    cursor = next;
  }
}

/** The cursor of a `Link` header's `rel="next"` target (`<?cursor=…>; rel="next"`), or null. */
export function nextCursorFromLink(link: string | null): string | null {
  if (!link) return null;
  for (const part of link.split(',')) {
    const m = /<([^>]*)>\s*;(.*)/.exec(part.trim());
    if (!m || !/\brel\s*=\s*"?next"?/i.test(m[2] ?? '')) continue;
    const c = /[?&]cursor=([^&]+)/.exec(m[1] ?? '');
    if (c?.[1]) return decodeURIComponent(c[1]);
  }
  return null;
}

/** Join CSV pages that each start with the same header line: the header once. */
export function joinCsvPages(pages: string[]): string {
  return pages
    .map((text, i) => {
      if (i === 0) return text;
      const nl = text.indexOf('\n');
      return nl < 0 ? '' : text.slice(nl + 1);
    })
    .join('');
}

/** Every CSV page of `path` (which already has its `?format=csv&…` query), fetched with the
 * session's token, joined under one header. */
export async function fetchAllCsv(
  path: string,
  { cap = EXPORT_PAGE_CAP, onPage }: { cap?: number; onPage?: (pages: number) => void } = {},
): Promise<{ text: string; pages: number; truncated: boolean }> {
  const texts: string[] = [];
  let cursor: string | null = null;
  for (;;) {
    const url: string = cursor ? `${path}&cursor=${encodeURIComponent(cursor)}` : path;
    const r = await apiFetch(url, { headers: { accept: 'text/csv' } });
    if (!r.ok) {
      const p = (await r.json().catch(() => ({}))) as { code?: string; detail?: string };
      throw new ApiProblem(r.status, p.code, p.detail);
    }
    texts.push(await r.text());
    onPage?.(texts.length);
    cursor = nextCursorFromLink(r.headers.get('link'));
    if (!cursor) return { text: joinCsvPages(texts), pages: texts.length, truncated: false };
    if (texts.length >= cap) return { text: joinCsvPages(texts), pages: texts.length, truncated: true };
  }
}
