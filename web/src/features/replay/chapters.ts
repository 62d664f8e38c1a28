// Chapters set by hand on a replay (docs/interaction.md, "The replay, enriched"): the editor's
// rows (a time as typed, a title) and what `PUT /api/v1/recordings/{id}/chapters` takes. Pure,
// tested in chapters.test.ts. Chapters of pinned questions are not the editor's: they stay.
import { formatDuration } from '../../lib/i18n';
import type { ChapterInput, TimelineChapter } from '../interaction/types';

/** The server's limits. */
export const MAX_CHAPTERS = 100;
export const MAX_TITLE = 200;
/** A chapter may sit this far past the recording's end (the server's tolerance). */
const SLACK_S = 5;

export interface ChapterDraft {
  key: string;
  /** As typed: `1:05`, `1:02:05` or seconds (`65`, `65.5`). */
  time: string;
  title: string;
  /** The exact time the row started from, kept while `time` still reads `timeText(exact)`. */
  exact?: number;
}

/** The time a row shows: the clock of the replay (`1:05`, `1:02:05`). */
export const timeText = (t: number): string => formatDuration(t);

/** `1:02:05`, `1:05`, `65` or `65.5` as seconds; null when it is none of these. */
export function parseClock(input: string): number | null {
  const s = input.trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s);
  const m = /^(?:(\d+):)?(\d{1,2}):(\d{1,2}(?:\.\d+)?)$/.exec(s);
  if (!m) return null;
  const h = m[1] === undefined ? 0 : Number(m[1]);
  const min = Number(m[2]);
  const sec = Number(m[3]);
  if (sec >= 60 || (m[1] !== undefined && min >= 60)) return null;
  return h * 3600 + min * 60 + sec;
}

let seq = 0;
const newKey = () => `c${(seq += 1)}`;

/** The editor's rows for the chapters set by hand, in time order. */
export function draftsOf(chapters: readonly TimelineChapter[]): ChapterDraft[] {
  return chapters
    .filter((c) => (c.source ?? 'manual') === 'manual')
    .slice()
    .sort((a, b) => a.t - b.t)
    .map((c) => ({ key: newKey(), time: timeText(c.t), title: c.title, exact: c.t }));
}

/** A new row at `t` (the playhead), placed in time order; the list and its key. */
export function addAt(drafts: readonly ChapterDraft[], t: number): { drafts: ChapterDraft[]; key: string } {
  const exact = Math.max(0, Math.round(t * 1000) / 1000);
  const row: ChapterDraft = { key: newKey(), time: timeText(exact), title: '', exact };
  const at = drafts.findIndex((d) => {
    const dt = secondsOf(d);
    return dt !== null && dt > exact;
  });
  const next = drafts.slice();
  next.splice(at < 0 ? next.length : at, 0, row);
  return { drafts: next, key: row.key };
}

/** A row's time in seconds: the exact one while the text was not changed. */
export function secondsOf(d: ChapterDraft): number | null {
  if (d.exact !== undefined && d.time.trim() === timeText(d.exact)) return d.exact;
  return parseClock(d.time);
}

export type DraftProblem = { kind: 'time' | 'title'; index: number } | { kind: 'count' };

/** The request's chapters (in time order), or the first row at fault. */
export function toChapters(
  drafts: readonly ChapterDraft[],
  durationS: number,
): { ok: true; chapters: ChapterInput[] } | { ok: false; problem: DraftProblem } {
  if (drafts.length > MAX_CHAPTERS) return { ok: false, problem: { kind: 'count' } };
  const limit = Number.isFinite(durationS) && durationS > 0 ? durationS + SLACK_S : Infinity;
  const chapters: ChapterInput[] = [];
  for (const [index, d] of drafts.entries()) {
    const t = secondsOf(d);
    if (t === null || !Number.isFinite(t) || t < 0 || t > limit) return { ok: false, problem: { kind: 'time', index } };
    const title = d.title.replace(/\s+/g, ' ').trim();
    if (!title || [...title].length > MAX_TITLE) return { ok: false, problem: { kind: 'title', index } };
    chapters.push({ t, title });
  }
  return { ok: true, chapters: chapters.sort((a, b) => a.t - b.t) };
}
