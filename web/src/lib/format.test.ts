import { describe, expect, it } from 'vitest';
import { csvField, formatBytes, perDay, toCsv } from './format';

describe('format', () => {
  it('formats bytes in binary units', () => {
    expect(formatBytes(512, 'en')).toBe('512 B');
    expect(formatBytes(1536, 'en')).toBe('1.5 KiB');
    expect(formatBytes(5 * 1024 * 1024, 'en')).toBe('5 MiB');
  });
  it('quotes CSV fields that need it', () => {
    expect(csvField('plain')).toBe('plain');
    expect(csvField('a,b')).toBe('"a,b"');
    expect(csvField('say "hi"')).toBe('"say ""hi"""');
    expect(toCsv(['a', 'b'], [[1, null]])).toBe('a,b\r\n1,\r\n');
  });
  it('sums per UTC day in order', () => {
    const r = perDay(
      [
        { at: '2026-12-02T10:00:00Z', v: 2 },
        { at: '2026-12-01T23:00:00Z', v: 1 },
        { at: '2026-12-02T01:00:00Z', v: 3 },
      ],
      (x) => x.at,
      [(x) => x.v],
    );
    expect(r.days).toEqual([Date.UTC(2026, 11, 1) / 1000, Date.UTC(2026, 11, 2) / 1000]);
    expect(r.values).toEqual([[1, 5]]);
  });
});
