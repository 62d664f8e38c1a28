// A student's own record of a lesson, under its replay: minutes live, how much of the replay
// they played, completed or not, and their quiz score (`GET /api/v1/lessons/{id}/attendance/me`).
// Shown only when the request succeeds: teachers and whoever is not enrolled get a 404.
import { useQuery } from '@tanstack/react-query';
import { useI18n } from '../../lib/i18n';
import { getMyLessonAttendance } from '../interaction/api';

/** The replay's coverage grows while it plays (reported every 15 s): read it again this often. */
const REFRESH_MS = 30_000;

export function MyLessonRecord({ lessonId }: { lessonId: string }) {
  const { t } = useI18n();
  const q = useQuery({
    queryKey: ['lesson', lessonId, 'attendance', 'me'],
    queryFn: () => getMyLessonAttendance(lessonId),
    retry: false,
    refetchInterval: (query) => (query.state.status === 'success' ? REFRESH_MS : false),
  });
  const r = q.data;
  if (!r) return null;
  const pct = Math.min(100, Math.round(r.replay_coverage * 100));
  return (
    <p className="my-lesson-record" data-testid="my-lesson-record" data-completed={r.completed}>
      <span>{t('progress.lessonRecord', { min: Math.round(r.live_s / 60), pct })}</span>{' '}
      {r.completed ? (
        <span className="badge badge-correct" data-testid="my-lesson-completed">
          ✓ {t('progress.completed')}
        </span>
      ) : (
        <span className="badge">{t('progress.notCompleted')}</span>
      )}
      {r.quiz_total > 0 && <span className="muted"> {t('progress.quizLine', { correct: r.quiz_correct, total: r.quiz_total })}</span>}
    </p>
  );
}
