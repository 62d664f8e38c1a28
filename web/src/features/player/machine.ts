// The player as a state machine (a pure reducer, tested in machine.test.ts); Player.tsx feeds
// it the events of the <video> element and hls.js and renders from its state only.
//
//   idle --load--> loading --canplay/playing--> playing <--> stalled
//                     |                           |  \--ended--> ended
//                     +------fatal error------> error --retry--> loading
//
// Live only: the picture is "behind live" when the playhead trails the player's own target
// latency by more than two target durations (a paused or stalled viewer), which shows "go to
// live". The target latency itself (hls.js keeps ~3 segments back) is not "behind".

export type PlayerState =
  | { kind: 'idle' }
  | { kind: 'loading'; src: string; live: boolean; retries: number }
  | { kind: 'playing'; src: string; live: boolean; paused: boolean; behindLive: boolean; retries: number }
  | { kind: 'stalled'; src: string; live: boolean; since: number; retries: number }
  | { kind: 'ended'; src: string; live: boolean }
  | { kind: 'error'; src: string; live: boolean; detail: string; retries: number };

export type PlayerEvent =
  | { type: 'load'; src: string; live: boolean }
  | { type: 'canplay' }
  | { type: 'playing' }
  | { type: 'pause' }
  | { type: 'waiting'; at: number }
  | { type: 'timeupdate'; latency: number | null; targetLatency: number; targetDuration: number }
  | { type: 'ended' }
  | { type: 'fatal'; detail: string }
  | { type: 'retry' }
  | { type: 'unload' };

export const initial: PlayerState = { kind: 'idle' };

/** How many times a fatal error is retried by itself before the viewer is asked. */
export const MAX_AUTO_RETRIES = 3;

export function reduce(s: PlayerState, e: PlayerEvent): PlayerState {
  if (e.type === 'unload') return initial;
  if (e.type === 'load') return { kind: 'loading', src: e.src, live: e.live, retries: 0 };
  if (s.kind === 'idle') return s;
  switch (e.type) {
    case 'canplay':
    case 'playing':
      if (s.kind === 'loading' || s.kind === 'stalled') {
        return { kind: 'playing', src: s.src, live: s.live, paused: e.type === 'canplay', behindLive: false, retries: s.retries };
      }
      if (s.kind === 'playing' && e.type === 'playing') return { ...s, paused: false };
      return s;
    case 'pause':
      return s.kind === 'playing' ? { ...s, paused: true } : s;
    case 'waiting':
      if (s.kind === 'playing') return { kind: 'stalled', src: s.src, live: s.live, since: e.at, retries: s.retries };
      return s;
    case 'timeupdate':
      if (s.kind !== 'playing' || !s.live || e.latency === null) return s;
      {
        const behind = e.latency > e.targetLatency + 2 * Math.max(1, e.targetDuration);
        return behind === s.behindLive ? s : { ...s, behindLive: behind };
      }
    case 'ended':
      return s.kind === 'error' ? s : { kind: 'ended', src: s.src, live: s.live };
    case 'fatal':
      if (s.kind === 'ended') return s;
      return { kind: 'error', src: s.src, live: s.live, detail: e.detail, retries: 'retries' in s ? s.retries : 0 };
    case 'retry':
      if (s.kind !== 'error') return s;
      return { kind: 'loading', src: s.src, live: s.live, retries: s.retries + 1 };
  }
}

/** Should the player retry a fatal error by itself (live streams recover from network blips)? */
export function shouldAutoRetry(s: PlayerState): boolean {
  return s.kind === 'error' && s.retries < MAX_AUTO_RETRIES;
}
