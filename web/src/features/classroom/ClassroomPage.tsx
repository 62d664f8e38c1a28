// /lessons/{id}: before the lesson a countdown, while live the player and the chat, after it
// the replay. Teachers (moderators of the course) get their controls on the same page.
//
// The page composes the lesson's room (one WebSocket, useLessonRoom): beside the picture the
// Chat | Q&A | Poll tabs; under it the students' reactions bar and the moderators' view of the
// class (raised hands, live reactions, viewing quality). After the lesson, the replay with its
// timeline (features/replay) — moderators may set its chapters — and, for a student, their own
// record of the lesson (minutes live, replay watched, completed).
import { useEffect, useState } from 'react';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { Link } from 'wouter';
import { api, must, ApiProblem } from '../../api/client';
import { useI18n, formatDuration } from '../../lib/i18n';
import { useSession } from '../../lib/useSession';
import { ErrorMessage, Loading } from '../../components/Status';
import { Player } from '../player/Player';
import { ChatPanel } from '../chat/ChatPanel';
import { useInteraction } from '../interaction/hooks';
import { CalledOnNotice, LiveBar, ReactionsFloat } from '../interaction/LiveBar';
import { ModeratorBoard } from '../interaction/ModeratorBoard';
import { ReplayStage } from '../replay/ReplayStage';
import { MyLessonRecord } from '../replay/MyLessonRecord';
import { SidePanel } from './SidePanel';
import { TeacherPanel } from './TeacherPanel';
import { useLessonRoom } from './useLessonRoom';

function Countdown({ startsAt }: { startsAt: string }) {
  const { t } = useI18n();
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const id = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(id);
  }, []);
  const left = (new Date(startsAt).getTime() - now) / 1000;
  return (
    <div className="stage stage-waiting" role="status">
      {left > 0 ? (
        <p className="countdown">{t('classroom.startsIn', { time: formatDuration(left) })}</p>
      ) : null}
      <p>{left > 0 ? t('classroom.startsSoon') : t('classroom.waitingForTeacher')}</p>
    </div>
  );
}

// The player's hls.js (187 KB gzipped) starts loading with the page, beside the lesson and
// playback API calls, instead of after them (docs/benchmarks.md, "Web app": median time to
// first frame 1031 → 907 ms in one pair of runs on a noisy machine).
const preloadHls = () => void import('hls.js');

export default function ClassroomPage({ id }: { id: string }) {
  useEffect(preloadHls, []);
  const { t, dateTime } = useI18n();
  const session = useSession();
  const qc = useQueryClient();
  const [endedNotice, setEndedNotice] = useState(false);
  const lesson = useQuery({
    queryKey: ['lesson', id],
    queryFn: async () => must(await api.GET('/api/v1/lessons/{id}', { params: { path: { id } } })),
    // The lesson's state follows its live stream: look again every few seconds.
    refetchInterval: 4000,
  });
  const status = lesson.data?.status;
  const playback = useQuery({
    queryKey: ['lesson', id, 'playback', status],
    queryFn: async () => must(await api.GET('/api/v1/lessons/{id}/playback', { params: { path: { id } } })),
    enabled: Boolean(lesson.data) && (lesson.data!.access.watch_live || lesson.data!.access.watch_replay),
    // After the end, wait for the replay to be ready.
    refetchInterval: (q) => (status === 'ended' && (q.state.data?.replays.length ?? 0) === 0 ? 3000 : false),
  });
  useEffect(() => {
    if (status === 'ended') setEndedNotice(true);
  }, [status]);
  const me = session.status === 'authenticated' ? session.user.id : '';
  const room = useLessonRoom(id, Boolean(lesson.data?.access.chat) && Boolean(me));
  const snap = useInteraction(room?.interaction ?? null);

  if (lesson.isPending) return <Loading />;
  if (lesson.isError) {
    const e = lesson.error;
    if (e instanceof ApiProblem && (e.status === 403 || e.status === 404)) {
      return (
        <section className="page narrow">
          <p role="alert">{t('classroom.notAllowed')}</p>
          <Link href="/courses">{t('common.backHome')}</Link>
        </section>
      );
    }
    return <ErrorMessage error={e} retry={() => void lesson.refetch()} />;
  }
  const l = lesson.data;
  const teacher = l.access.moderate && Boolean(l.live_stream_id);
  const live = playback.data?.live ?? null;
  const isLive = l.status === 'live';
  const replay = playback.data?.replays[0] ?? null;

  let stage;
  if (!l.access.watch_live && !l.access.watch_replay && !teacher) {
    stage = (
      <div className="stage stage-waiting">
        <p>{t('classroom.enrollFirst')}</p>
        <Link className="button" href={`/courses/${l.course_id}`}>
          {t('course.enroll')}
        </Link>
      </div>
    );
  } else if (l.status === 'live' && !live) {
    // Live, and the signed playback URL is on its way.
    stage = (
      <div className="stage stage-waiting" role="status">
        <p>{t('common.loading')}</p>
      </div>
    );
  } else if (l.status === 'live' && live) {
    stage = (
      <Player
        key={live.ll_hls_url ?? live.hls_url}
        src={live.ll_hls_url ?? live.hls_url}
        whep={live.whep_url}
        live
        title={l.title}
        lessonId={l.id}
        onEnded={() => void qc.invalidateQueries({ queryKey: ['lesson', id] })}
      />
    );
  } else if (l.status === 'ended') {
    stage = replay ? (
      <>
        <h2 className="sr-only">{t('classroom.replay')}</h2>
        <ReplayStage
          key={replay.recording_id}
          recordingId={replay.recording_id}
          src={replay.hls_url}
          title={`${l.title} — ${t('classroom.replay')}`}
          canEditChapters={l.access.moderate}
        />
      </>
    ) : (
      <div className="stage stage-waiting" role="status">
        <p>{t('classroom.ended')}</p>
        <p>{t('classroom.replayProcessing')}</p>
      </div>
    );
  } else {
    stage = <Countdown startsAt={l.starts_at} />;
  }

  return (
    <article className="classroom" data-lesson-status={l.status}>
      <header className="classroom-header">
        <div>
          <Link href={`/courses/${l.course_id}`} className="muted">
            ← {t('nav.courses')}
          </Link>
          <h1>{l.title}</h1>
          <p className="muted">
            <time dateTime={l.starts_at}>{dateTime(l.starts_at)}</time>
            {' · '}
            <span className={`badge badge-${l.status}`}>{t(`course.status.${l.status}`)}</span>
          </p>
        </div>
      </header>
      {endedNotice && l.status === 'ended' && (
        <p className="notice" role="status">
          {replay ? t('classroom.replayReadyNotice') : t('classroom.lessonEndedNotice')}
        </p>
      )}
      <div className="classroom-grid">
        <div className="classroom-main">
          {room && snap && !l.access.moderate && <CalledOnNotice client={room.interaction} snap={snap} />}
          {l.status === 'ended' && !l.access.moderate && <MyLessonRecord lessonId={l.id} />}
          <div className="stage-wrap">
            {stage}
            {snap && isLive && <ReactionsFloat snap={snap} />}
          </div>
          {room && snap && isLive && !l.access.moderate && <LiveBar client={room.interaction} snap={snap} />}
          {teacher && l.status !== 'ended' && (
            <TeacherPanel lesson={l} onEnded={() => void qc.invalidateQueries({ queryKey: ['lesson', id] })} />
          )}
          {room && snap && l.access.moderate && l.status !== 'ended' && (
            <ModeratorBoard client={room.interaction} snap={snap} lessonId={l.id} live={isLive} />
          )}
        </div>
        {room && snap && l.status !== 'ended' ? (
          <SidePanel room={room} snap={snap} lessonId={l.id} me={me} moderate={l.access.moderate} />
        ) : (
          room && <ChatPanel channel={`lesson:${l.id}`} me={me} moderate={l.access.moderate} client={room.chat} />
        )}
      </div>
    </article>
  );
}
