// A replay with what happened live: the player, the timeline under it (chapters, heat strip,
// chat replay) following the playhead, and the coverage reports of what this viewer played.
// Used by the recording page and by the classroom once the lesson has ended; `canEditChapters`
// (whoever may set the replay's chapters) adds the chapters editor to the timeline.
import { useCallback, useRef, useState } from 'react';
import { Player } from '../player/Player';
import { Timeline } from './Timeline';
import { useReplayProgress } from './useReplayProgress';

export function ReplayStage({
  recordingId,
  src,
  title,
  poster,
  canEditChapters = false,
}: {
  recordingId: string;
  src: string;
  title: string;
  poster?: string | null;
  canEditChapters?: boolean;
}) {
  const seekRef = useRef<((t: number) => void) | null>(null);
  const [time, setTime] = useState(0);
  const report = useReplayProgress(recordingId);
  const onTime = useCallback(
    (t: number, info: { seeking: boolean }) => {
      report(t, info);
      setTime(t);
    },
    [report],
  );
  const seek = useCallback((t: number) => seekRef.current?.(t), []);
  return (
    <div className="replay-stage">
      <Player key={src} src={src} live={false} poster={poster} title={title} onTime={onTime} seekRef={seekRef} recordingId={recordingId} />
      <Timeline recordingId={recordingId} time={time} seek={seek} canEdit={canEditChapters} />
    </div>
  );
}
