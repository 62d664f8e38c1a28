import { describe, expect, it } from 'vitest';
import { QualityMeter, newSessionId } from './quality';

const replay = () => new QualityMeter({ session_id: 's1', live: false, mode: 'hls', recording_id: 'r1' });
const live = (mode: 'webrtc' | 'll-hls' = 'll-hls') => new QualityMeter({ session_id: 's2', live: true, mode, lesson_id: 'l1' });

describe('viewing quality of a playback session', () => {
  it('measures the startup from load to the first playing, once', () => {
    const m = replay();
    m.load(1000);
    m.waiting(1100, false); // the first wait is the startup, not a rebuffer
    m.playing(1840);
    m.pause(5000);
    m.playing(6000);
    expect(m.report(6000)).toMatchObject({ startup_ms: 840, rebuffer_count: 0, rebuffer_ms: 0 });
  });

  it('counts a stall while playing as a rebuffer, until it plays again', () => {
    const m = replay();
    m.load(0);
    m.playing(500);
    m.waiting(10_500, false);
    expect(m.report(11_000)).toMatchObject({ rebuffer_count: 1, rebuffer_ms: 500, played_ms: 10_000 });
    m.playing(11_700);
    expect(m.report(12_700)).toMatchObject({ rebuffer_count: 1, rebuffer_ms: 1200, played_ms: 11_000 });
  });

  it('does not count the wait of a seek as a rebuffer', () => {
    const m = replay();
    m.load(0);
    m.playing(0);
    m.waiting(4000, true);
    m.playing(6000);
    expect(m.report(7000)).toMatchObject({ rebuffer_count: 0, rebuffer_ms: 0, played_ms: 5000 });
  });

  it('counts only the time spent playing as played', () => {
    const m = replay();
    m.load(0);
    m.playing(100);
    m.pause(10_100);
    m.playing(70_100);
    m.ended(80_100);
    expect(m.report(90_000).played_ms).toBe(20_000);
  });

  it('counts errors and says the rendition', () => {
    const m = replay();
    m.load(0);
    m.error();
    m.error();
    m.setRendition(720);
    expect(m.report(0)).toMatchObject({ errors: 2, rendition: '720p', recording_id: 'r1', live: false });
    m.setRendition(0);
    expect(m.report(0).rendition).toBeNull();
  });

  it('reports the live latency of HLS, none for WebRTC or a replay', () => {
    const hls = live('ll-hls');
    hls.setLatency(2.345);
    expect(hls.report(0)).toMatchObject({ latency_ms: 2345, mode: 'll-hls', lesson_id: 'l1', live: true });
    const rtc = live('webrtc');
    rtc.setLatency(0.4);
    expect(rtc.report(0).latency_ms).toBeNull();
    const r = replay();
    r.setLatency(3);
    expect(r.report(0).latency_ms).toBeNull();
  });

  it('follows a fallback from WebRTC to HLS in the same session', () => {
    const m = live('webrtc');
    m.load(0);
    m.setMode('hls');
    m.setLatency(4);
    expect(m.report(0)).toMatchObject({ session_id: 's2', mode: 'hls', latency_ms: 4000 });
  });

  it('has not started before the source is attached', () => {
    const m = replay();
    expect(m.started).toBe(false);
    expect(m.report(0)).toMatchObject({ startup_ms: null, played_ms: 0 });
    m.load(0);
    expect(m.started).toBe(true);
  });

  it('makes a new random session id each time', () => {
    expect(newSessionId()).not.toBe(newSessionId());
  });
});
