import { describe, expect, it } from 'vitest';
import { metricSum } from './metrics';

describe('metricSum', () => {
  const text = [
    '# HELP live_sessions_active Live sessions.',
    '# TYPE live_sessions_active gauge',
    'live_sessions_active{protocol="rtmp"} 2',
    'live_sessions_active{protocol="whip"} 1',
    'live_sessions_active_total 40',
    'chat_connections 7',
  ].join('\n');
  it('sums every label set of one family, and only that family', () => {
    expect(metricSum(text, 'live_sessions_active')).toBe(3);
    expect(metricSum(text, 'chat_connections')).toBe(7);
  });
  it('answers null for a family that is absent', () => {
    expect(metricSum(text, 'recording_upload_queue_depth')).toBeNull();
  });
});
