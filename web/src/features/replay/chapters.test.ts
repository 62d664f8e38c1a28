import { describe, expect, it } from 'vitest';
import { addAt, draftsOf, MAX_CHAPTERS, parseClock, secondsOf, toChapters, type ChapterDraft } from './chapters';

const row = (time: string, title: string, exact?: number): ChapterDraft => ({ key: `${time}-${title}`, time, title, exact });

describe('chapters set by hand', () => {
  it('reads a clock or seconds', () => {
    expect(parseClock('65')).toBe(65);
    expect(parseClock(' 65.5 ')).toBe(65.5);
    expect(parseClock('1:05')).toBe(65);
    expect(parseClock('0:00')).toBe(0);
    expect(parseClock('1:02:05')).toBe(3725);
    expect(parseClock('90:00')).toBe(5400);
    expect(parseClock('1:60')).toBeNull();
    expect(parseClock('1:60:00')).toBeNull();
    expect(parseClock('')).toBeNull();
    expect(parseClock('-5')).toBeNull();
    expect(parseClock('abc')).toBeNull();
    expect(parseClock('1:2:3:4')).toBeNull();
  });

  it('edits only the manual chapters, in time order, keeping their exact times', () => {
    const d = draftsOf([
      { t: 412.3, title: 'Why is…', source: 'pin' },
      { t: 300.25, title: 'Second', source: 'manual' },
      { t: 0, title: 'Start', source: 'manual' },
    ]);
    expect(d.map((x) => [x.time, x.title])).toEqual([
      ['0:00', 'Start'],
      ['5:00', 'Second'],
    ]);
    expect(secondsOf(d[1]!)).toBe(300.25);
    // Typed again: what was typed counts.
    expect(secondsOf({ ...d[1]!, time: '5:01' })).toBe(301);
  });

  it('adds a row at the playhead, in time order', () => {
    const start = [row('0:00', 'Start', 0), row('5:00', 'Later', 300)];
    const { drafts, key } = addAt(start, 125.4567);
    expect(drafts.map((x) => x.time)).toEqual(['0:00', '2:05', '5:00']);
    const added = drafts.find((x) => x.key === key)!;
    expect(added.title).toBe('');
    expect(secondsOf(added)).toBe(125.457);
    expect(addAt(start, 900).drafts.map((x) => x.time)).toEqual(['0:00', '5:00', '15:00']);
  });

  it('builds the request in time order and names the row at fault', () => {
    expect(toChapters([row('2:00', '  Two  '), row('0:10', 'One')], 300)).toEqual({
      ok: true,
      chapters: [
        { t: 10, title: 'One' },
        { t: 120, title: 'Two' },
      ],
    });
    expect(toChapters([row('0:10', 'One'), row('1:00', '   ')], 300)).toEqual({ ok: false, problem: { kind: 'title', index: 1 } });
    expect(toChapters([row('soon', 'One')], 300)).toEqual({ ok: false, problem: { kind: 'time', index: 0 } });
    // Up to 5 s past the end is accepted (the server's tolerance), not more.
    expect(toChapters([row('304', 'End')], 300).ok).toBe(true);
    expect(toChapters([row('306', 'End')], 300)).toEqual({ ok: false, problem: { kind: 'time', index: 0 } });
    expect(toChapters([row('1', 'x'.repeat(201))], 300)).toEqual({ ok: false, problem: { kind: 'title', index: 0 } });
    const many = Array.from({ length: MAX_CHAPTERS + 1 }, (_, i) => row(String(i), `c${i}`));
    expect(toChapters(many, 300)).toEqual({ ok: false, problem: { kind: 'count' } });
    expect(toChapters([], 300)).toEqual({ ok: true, chapters: [] });
  });
});
