import { describe, expect, it } from 'vitest';
import { initial, reduce, shouldAutoRetry, type PlayerEvent, type PlayerState } from './machine';

const run = (events: PlayerEvent[], from: PlayerState = initial) => events.reduce(reduce, from);
const load: PlayerEvent = { type: 'load', src: '/hls/live/x/index.m3u8', live: true };

describe('player state machine', () => {
  it('goes idle → loading → playing', () => {
    expect(run([load]).kind).toBe('loading');
    const s = run([load, { type: 'playing' }]);
    expect(s).toMatchObject({ kind: 'playing', paused: false, behindLive: false });
  });

  it('is stalled while waiting for data and plays again when data comes', () => {
    const stalled = run([load, { type: 'playing' }, { type: 'waiting', at: 10 }]);
    expect(stalled).toMatchObject({ kind: 'stalled', since: 10 });
    expect(run([{ type: 'playing' }], stalled).kind).toBe('playing');
  });

  it('shows "behind live" past the target latency plus two target durations, and clears it', () => {
    const playing = run([load, { type: 'playing' }]);
    // hls.js aims 3 segments back: 6 s at 2 s segments is where it should be, not behind.
    expect(reduce(playing, { type: 'timeupdate', latency: 7, targetLatency: 6, targetDuration: 2 })).toMatchObject({ behindLive: false });
    const behind = reduce(playing, { type: 'timeupdate', latency: 10.5, targetLatency: 6, targetDuration: 2 });
    expect(behind).toMatchObject({ behindLive: true });
    const caughtUp = reduce(behind, { type: 'timeupdate', latency: 6.5, targetLatency: 6, targetDuration: 2 });
    expect(caughtUp).toMatchObject({ behindLive: false });
  });

  it('never says "behind live" for a replay', () => {
    const vod = run([{ type: 'load', src: '/hls/vod/r/index.m3u8', live: false }, { type: 'playing' }]);
    expect(reduce(vod, { type: 'timeupdate', latency: 100, targetLatency: 6, targetDuration: 2 })).toMatchObject({ behindLive: false });
  });

  it('ends, and an ended player ignores late errors', () => {
    const ended = run([load, { type: 'playing' }, { type: 'ended' }]);
    expect(ended.kind).toBe('ended');
    expect(reduce(ended, { type: 'fatal', detail: 'x' }).kind).toBe('ended');
  });

  it('retries a fatal error a bounded number of times by itself', () => {
    let s = run([load, { type: 'fatal', detail: 'networkError' }]);
    let auto = 0;
    while (shouldAutoRetry(s)) {
      s = reduce(reduce(s, { type: 'retry' }), { type: 'fatal', detail: 'networkError' });
      auto += 1;
    }
    expect(auto).toBe(3);
    expect(s).toMatchObject({ kind: 'error', detail: 'networkError' });
  });

  it('a new source starts over', () => {
    const s = run([load, { type: 'fatal', detail: 'x' }, { type: 'load', src: '/hls/vod/r/index.m3u8', live: false }]);
    expect(s).toEqual({ kind: 'loading', src: '/hls/vod/r/index.m3u8', live: false, retries: 0 });
  });
});
