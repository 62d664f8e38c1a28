// Replay coverage (docs/interaction.md, "Attendance"): the seconds of a recording the viewer
// played, from the player's time updates — pure, tested in progress.test.ts.
//
// Contiguous playback (each position a little after the previous one) extends the current
// range; a seek (the player says so, or the position jumps back or more than MAX_STEP_S ahead)
// starts a new one. A pause adds nothing: no time updates come while paused, and playing on
// from the same position extends the same range. The server merges what it is sent (repeated
// and overlapping plays count once), so reports carry every range so far, merged.

export type Range = [number, number];

/**
 * Largest step between two time updates that still counts as playing through: browsers send
 * one every 250 ms or so, at up to 2× speed, less often in a background tab.
 */
export const MAX_STEP_S = 2;
/** At most this many ranges per request (the server's limit). */
export const MAX_RANGES_PER_REPORT = 50;

/** Sorted, overlapping and touching ranges joined, empty ones left out. */
export function mergeRanges(ranges: readonly Range[]): Range[] {
  const sorted = ranges.filter(([a, b]) => Number.isFinite(a) && Number.isFinite(b) && b > a).sort((x, y) => x[0] - y[0]);
  const out: Range[] = [];
  for (const [a, b] of sorted) {
    const last = out[out.length - 1];
    if (last && a <= last[1]) last[1] = Math.max(last[1], b);
    else out.push([a, b]);
  }
  return out;
}

/** Whole seconds for the server: every second a range touches. */
export function toWholeSeconds(ranges: readonly Range[]): Range[] {
  return mergeRanges(ranges.map(([a, b]) => [Math.max(0, Math.floor(a)), Math.ceil(b)] as Range));
}

export class PlayedRanges {
  private done: Range[] = [];
  private current: Range | null = null;
  private last: number | null = null;

  constructor(private maxStep = MAX_STEP_S) {}

  /** A time update at position `t` (seconds); `seeking` while the player seeks. */
  observe(t: number, seeking = false): void {
    if (!Number.isFinite(t) || t < 0) return;
    if (seeking) {
      this.seek();
      return;
    }
    const cur = this.current;
    if (cur && this.last !== null && t >= this.last && t - this.last <= this.maxStep) {
      if (t > cur[1]) cur[1] = t;
    } else {
      this.close();
      this.current = [t, t];
    }
    this.last = t;
  }

  /** The viewer jumped: the next position starts a new range. */
  seek(): void {
    this.close();
    this.last = null;
  }

  /** Every range played so far, merged. */
  ranges(): Range[] {
    return mergeRanges(this.current ? [...this.done, this.current] : this.done);
  }

  /** Seconds played (each once): grows only when the played set grows, so a reporter sends when it changed. */
  covered(): number {
    return this.ranges().reduce((sum, [a, b]) => sum + (b - a), 0);
  }

  /** The requests to send: whole seconds, at most MAX_RANGES_PER_REPORT ranges each. */
  reports(): Range[][] {
    const all = toWholeSeconds(this.ranges());
    const out: Range[][] = [];
    for (let i = 0; i < all.length; i += MAX_RANGES_PER_REPORT) out.push(all.slice(i, i + MAX_RANGES_PER_REPORT));
    return out;
  }

  private close(): void {
    const cur = this.current;
    this.current = null;
    if (cur && cur[1] > cur[0]) this.done = mergeRanges([...this.done, cur]);
  }
}
