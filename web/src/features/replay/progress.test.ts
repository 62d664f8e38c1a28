import { describe, expect, it } from 'vitest';
import { mergeRanges, PlayedRanges, toWholeSeconds } from './progress';

/** Time updates every 0.25 s from `from` to `to`. */
function play(r: PlayedRanges, from: number, to: number) {
  for (let t = from; t <= to + 1e-9; t += 0.25) r.observe(Math.round(t * 100) / 100);
}

describe('replay coverage ranges', () => {
  it('merges overlapping and touching ranges, in order', () => {
    expect(mergeRanges([[60, 75], [0, 42], [40, 50], [50, 55], [80, 80]])).toEqual([[0, 55], [60, 75]]);
  });

  it('extends one range while playing through', () => {
    const r = new PlayedRanges();
    play(r, 0, 42);
    expect(r.ranges()).toEqual([[0, 42]]);
  });

  it('starts a new range after a seek forward', () => {
    const r = new PlayedRanges();
    play(r, 0, 10);
    r.seek();
    play(r, 60, 75);
    expect(r.ranges()).toEqual([[0, 10], [60, 75]]);
  });

  it('treats a jump without a seek event as a seek', () => {
    const r = new PlayedRanges();
    play(r, 0, 10);
    play(r, 30, 35); // 10 → 30: not played through
    play(r, 5, 8); // backwards
    expect(r.ranges()).toEqual([[0, 10], [30, 35]]);
  });

  it('does not count the seek itself, reported while seeking', () => {
    const r = new PlayedRanges();
    play(r, 0, 10);
    r.observe(11, true);
    r.observe(11.5, true);
    play(r, 11.5, 13);
    expect(r.ranges()).toEqual([[0, 10], [11.5, 13]]);
  });

  it('continues the same range after a pause at the same position', () => {
    const r = new PlayedRanges();
    play(r, 0, 20);
    // Paused: no time updates; then playing on from 20.
    play(r, 20, 30);
    expect(r.ranges()).toEqual([[0, 30]]);
  });

  it('counts a part played twice once', () => {
    const r = new PlayedRanges();
    play(r, 0, 20);
    r.seek();
    play(r, 10, 25);
    expect(r.ranges()).toEqual([[0, 25]]);
  });

  it('reports only when the played set grew', () => {
    const r = new PlayedRanges();
    play(r, 0, 5);
    const before = r.covered();
    r.seek();
    play(r, 2, 4); // already played
    expect(r.covered()).toBe(before);
    r.observe(4.25);
    r.observe(6);
    expect(r.covered()).toBe(6);
  });

  it('reports whole seconds, at most 50 ranges a request', () => {
    expect(toWholeSeconds([[0.3, 41.6], [60.2, 75]])).toEqual([[0, 42], [60, 75]]);
    const r = new PlayedRanges();
    for (let i = 0; i < 60; i++) {
      r.seek();
      play(r, i * 10, i * 10 + 2);
    }
    const reports = r.reports();
    expect(reports.map((x) => x.length)).toEqual([50, 10]);
    expect(reports[0]![0]).toEqual([0, 2]);
  });

  it('ignores positions that are not numbers', () => {
    const r = new PlayedRanges();
    r.observe(Number.NaN);
    r.observe(-1);
    expect(r.ranges()).toEqual([]);
  });
});
