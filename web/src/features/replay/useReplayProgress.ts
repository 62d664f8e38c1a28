// Replay coverage reports: the played ranges (progress.ts) go to the server every 15 s when
// they grew, and when the page is hidden or left (keepalive, so the request outlives the page).
import { useCallback, useEffect, useMemo } from 'react';
import { postProgress } from '../interaction/api';
import { PlayedRanges } from './progress';
import { reportPeriodically } from '../../lib/reporting';

const REPORT_EVERY_MS = 15_000;

/** The callback for the player's `onTime`. */
export function useReplayProgress(recordingId: string): (t: number, info: { seeking: boolean }) => void {
  const ranges = useMemo(() => new PlayedRanges(), [recordingId]);
  useEffect(() => {
    let reported = 0;
    const send = (keepalive: boolean) => {
      const covered = ranges.covered();
      if (covered <= reported) return;
      reported = covered;
      for (const chunk of ranges.reports()) {
        postProgress(recordingId, chunk, keepalive).catch(() => {
          reported = 0; // sent again next time (the server merges: nothing counts twice)
        });
      }
    };
    return reportPeriodically(REPORT_EVERY_MS, send);
  }, [ranges, recordingId]);
  return useCallback((t: number, info: { seeking: boolean }) => ranges.observe(t, info.seeking), [ranges]);
}
