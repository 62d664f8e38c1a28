// An enrolled student's own record of a course (`GET /api/v1/courses/{id}/attendance/me`):
// lessons completed of those held, completion, minutes live and quiz score. Shown only when
// the request succeeds (teachers and whoever is not enrolled get a 404).
import { useQuery } from '@tanstack/react-query';
import { api, must } from '../../api/client';
import { useI18n } from '../../lib/i18n';

export function MyProgress({ courseId }: { courseId: string }) {
  const { t } = useI18n();
  const q = useQuery({
    queryKey: ['course', courseId, 'attendance', 'me'],
    queryFn: async () => must(await api.GET('/api/v1/courses/{id}/attendance/me', { params: { path: { id: courseId } } })),
    retry: false,
  });
  const r = q.data;
  if (!r) return null;
  return (
    <section className="my-progress" data-testid="my-progress" aria-labelledby="my-progress-title">
      <h2 id="my-progress-title">{t('progress.title')}</h2>
      <dl className="stats">
        <div>
          <dt>{t('progress.lessons')}</dt>
          <dd data-testid="my-progress-lessons">{t('progress.lessonsOf', { done: r.lessons_completed, held: r.lessons_held })}</dd>
        </div>
        <div>
          <dt>{t('progress.completion')}</dt>
          <dd>{t('progress.percent', { n: Math.round(r.completion * 100) })}</dd>
        </div>
        <div>
          <dt>{t('progress.live')}</dt>
          <dd>{t('course.minutes', { n: Math.round(r.live_s / 60) })}</dd>
        </div>
        <div>
          <dt>{t('progress.quiz')}</dt>
          <dd>{r.quiz_total > 0 ? `${r.quiz_correct}/${r.quiz_total}` : '–'}</dd>
        </div>
      </dl>
      <p className="muted small">{t('progress.hint')}</p>
    </section>
  );
}
