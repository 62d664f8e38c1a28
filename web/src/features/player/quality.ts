// Viewing quality of one playback session (docs/interaction.md, "Viewing quality"): running
// totals the player reports every 30 s and when the page is hidden. Pure — the player feeds it
// the <video> element's events with a monotonic clock (performance.now()) — tested in
// quality.test.ts.
//
//   idle --load--> starting --playing--> playing --waiting (not seeking)--> rebuffering
//                                          |  ^                                |
//                                  pause/ended/seek-wait --playing-------------+
//
// - startup_ms: from `load` (the source attached) to the first `playing`, once per session;
// - a rebuffer is a `waiting` while playing that is not a seek, until the next `playing`
//   (its time is rebuffer_ms; the wait of a seek or of the startup is not a rebuffer);
// - played_ms: time spent in `playing` (paused, waiting and seeking do not count).
import type { PlaybackMode, PlaybackReport } from '../interaction/types';

export type { PlaybackMode, PlaybackReport };

type Phase = 'idle' | 'starting' | 'playing' | 'paused' | 'rebuffering' | 'seeking';

export interface SessionInfo {
  session_id: string;
  live: boolean;
  mode: PlaybackMode;
  lesson_id?: string;
  recording_id?: string;
}

export class QualityMeter {
  private phase: Phase = 'idle';
  private loadAt: number | null = null;
  private startupMs: number | null = null;
  private since = 0;
  private playedMs = 0;
  private rebufferMs = 0;
  private rebufferCount = 0;
  private errors = 0;
  private latencyMs: number | null = null;
  private rendition: string | null = null;

  constructor(private info: SessionInfo) {}

  get sessionId(): string {
    return this.info.session_id;
  }

  /** Something happened worth reporting (the player started, or failed). */
  get started(): boolean {
    return this.loadAt !== null;
  }

  /** The source is attached: the startup clock starts (once per session). */
  load(at: number): void {
    if (this.loadAt !== null) return;
    this.loadAt = at;
    this.phase = 'starting';
  }

  playing(at: number): void {
    this.settle(at);
    if (this.startupMs === null && this.loadAt !== null) this.startupMs = Math.max(0, Math.round(at - this.loadAt));
    this.phase = 'playing';
  }

  /** The player waits for data: a rebuffer unless it is seeking or has not started yet. */
  waiting(at: number, seeking: boolean): void {
    this.settle(at);
    if (seeking && (this.phase === 'playing' || this.phase === 'paused' || this.phase === 'rebuffering')) {
      this.phase = 'seeking';
    } else if (!seeking && this.phase === 'playing') {
      this.rebufferCount += 1;
      this.phase = 'rebuffering';
    }
  }

  pause(at: number): void {
    this.settle(at);
    if (this.phase !== 'idle' && this.phase !== 'starting') this.phase = 'paused';
  }

  ended(at: number): void {
    this.pause(at);
  }

  error(): void {
    this.errors += 1;
  }

  setMode(mode: PlaybackMode): void {
    this.info = { ...this.info, mode };
  }

  /** The picture's height, as `720p`; null when unknown. */
  setRendition(height: number | null | undefined): void {
    this.rendition = height && height > 0 ? `${Math.round(height)}p` : null;
  }

  /** Live only: how far behind the live edge (seconds, as hls.js says), null when unknown. */
  setLatency(seconds: number | null | undefined): void {
    this.latencyMs = this.info.live && typeof seconds === 'number' && Number.isFinite(seconds) && seconds >= 0 ? Math.round(seconds * 1000) : null;
  }

  /** The running totals at `at`, the time of the ongoing phase included. */
  report(at: number): PlaybackReport {
    const ongoing = Math.max(0, at - this.since);
    const played = this.playedMs + (this.phase === 'playing' ? ongoing : 0);
    const rebuffer = this.rebufferMs + (this.phase === 'rebuffering' ? ongoing : 0);
    return {
      session_id: this.info.session_id,
      ...(this.info.lesson_id ? { lesson_id: this.info.lesson_id } : {}),
      ...(this.info.recording_id ? { recording_id: this.info.recording_id } : {}),
      live: this.info.live,
      mode: this.info.mode,
      rendition: this.rendition,
      startup_ms: this.startupMs,
      rebuffer_count: this.rebufferCount,
      rebuffer_ms: Math.round(rebuffer),
      played_ms: Math.round(played),
      errors: this.errors,
      latency_ms: this.info.live && this.info.mode !== 'webrtc' ? this.latencyMs : null,
    };
  }

  /** Close the ongoing phase's time at `at`. */
  private settle(at: number): void {
    const d = Math.max(0, at - this.since);
    if (this.phase === 'playing') this.playedMs += d;
    else if (this.phase === 'rebuffering') this.rebufferMs += d;
    this.since = at;
  }
}

/** A random id for one playback session. */
export function newSessionId(): string {
  const c = globalThis.crypto as Crypto | undefined;
  if (c?.randomUUID) return c.randomUUID();
  return `s-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;
}
