import { describe, expect, it } from 'vitest';
import { fetchAllPages, joinCsvPages, nextCursorFromLink } from './paging';

describe('exports over every page', () => {
  it('follows next_cursor to the last page', async () => {
    const data: Record<string, { items: number[]; next_cursor: string | null }> = {
      first: { items: [1, 2], next_cursor: 'b' },
      b: { items: [3], next_cursor: 'c' },
      c: { items: [4], next_cursor: null },
    };
    const seen: number[] = [];
    const r = await fetchAllPages(async (c) => data[c ?? 'first']!, { onPage: (n) => seen.push(n) });
    expect(r).toEqual({ items: [1, 2, 3, 4], pages: 3, truncated: false });
    expect(seen).toEqual([1, 2, 3]);
  });

  it('stops at the cap and says so', async () => {
    let calls = 0;
    const r = await fetchAllPages(
      async () => {
        calls += 1;
        return { items: [calls], next_cursor: 'more' };
      },
      { cap: 3 },
    );
    expect(r).toEqual({ items: [1, 2, 3], pages: 3, truncated: true });
  });

  it('reads the next cursor of a Link header', () => {
    expect(nextCursorFromLink('<?cursor=0b5c1a52-0000-4000-8000-000000000001>; rel="next"')).toBe(
      '0b5c1a52-0000-4000-8000-000000000001',
    );
    expect(nextCursorFromLink('</x?limit=5&cursor=abc>; rel=next, </y>; rel="prev"')).toBe('abc');
    expect(nextCursorFromLink('</y?cursor=abc>; rel="prev"')).toBeNull();
    expect(nextCursorFromLink(null)).toBeNull();
  });

  it('keeps one header line when joining CSV pages', () => {
    expect(joinCsvPages(['id,kind\n1,a\n', 'id,kind\n2,b\n', 'id,kind\n'])).toBe('id,kind\n1,a\n2,b\n');
  });
});
