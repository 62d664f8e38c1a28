import { describe, expect, it } from 'vitest';
import { addDays, csvField, formatBytes, isoToZonedInput, mondayOf, perDay, toCsv, zonedDay, zonedInputToIso, zoneOffsetMinutes } from './format';

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
  it('converts wall-clock times of a named zone to UTC and back', () => {
    expect(zoneOffsetMinutes('Asia/Shanghai', Date.parse('2026-12-03T00:00:00Z'))).toBe(480);
    expect(zonedInputToIso('2026-12-03T09:30', 'Asia/Shanghai')).toBe('2026-12-03T01:30:00.000Z');
    expect(isoToZonedInput('2026-12-03T01:30:00Z', 'Asia/Shanghai')).toBe('2026-12-03T09:30');
    expect(zonedInputToIso('2026-07-01T09:00', 'America/New_York')).toBe('2026-07-01T13:00:00.000Z');
    expect(zonedInputToIso('2026-12-01T09:00', 'America/New_York')).toBe('2026-12-01T14:00:00.000Z');
    // Shanghai's morning is still the previous day in New York.
    expect(zonedDay('2026-12-03T01:30:00Z', 'Asia/Shanghai')).toBe('2026-12-03');
    expect(zonedDay('2026-12-03T01:30:00Z', 'America/New_York')).toBe('2026-12-02');
    expect(zonedInputToIso('not a time', 'UTC')).toBeNull();
  });
  it('takes clock changes as people do', () => {
    // Berlin, 29 March 2026: 02:00 → 03:00. 02:30 does not exist: it moves forward to 03:30.
    expect(zonedInputToIso('2026-03-29T02:30', 'Europe/Berlin')).toBe('2026-03-29T01:30:00.000Z');
    // 25 October 2026: 03:00 → 02:00. 02:30 happens twice: the first one (summer time).
    expect(zonedInputToIso('2026-10-25T02:30', 'Europe/Berlin')).toBe('2026-10-25T00:30:00.000Z');
    expect(isoToZonedInput('2026-10-25T01:30:00Z', 'Europe/Berlin')).toBe('2026-10-25T02:30');
  });
  it('counts calendar days and finds the Monday', () => {
    expect(addDays('2026-12-31', 1)).toBe('2027-01-01');
    expect(addDays('2026-03-01', -1)).toBe('2026-02-28');
    expect(mondayOf('2026-12-03')).toBe('2026-11-30');
    expect(mondayOf('2026-11-30')).toBe('2026-11-30');
    expect(mondayOf('2026-12-06')).toBe('2026-11-30');
  });
});
