import { Link } from 'wouter';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { api, must } from '../../api/client';
import { useI18n } from '../../lib/i18n';
import { useSession } from '../../lib/useSession';
import { ErrorMessage, Loading } from '../../components/Status';
import { Checkout } from '../checkout/Checkout';
import { Price } from './Price';
import { MyProgress } from './MyProgress';

export function CoursePage({ id }: { id: string }) {
  const { t, dateTime } = useI18n();
  const session = useSession();
  const signedIn = session.status === 'authenticated';
  const qc = useQueryClient();
  const course = useQuery({
    queryKey: ['course', id],
    queryFn: async () => must(await api.GET('/api/v1/courses/{id}', { params: { path: { id } } })),
    enabled: session.status !== 'unknown',
  });
  const lessons = useQuery({
    queryKey: ['course', id, 'lessons'],
    queryFn: async () => must(await api.GET('/api/v1/courses/{id}/lessons', { params: { path: { id } } })),
    enabled: session.status !== 'unknown',
  });
  // What the caller is to this course, from the lessons' access (the policy's answer).
  const items = lessons.data?.items ?? [];
  const teaching = signedIn && course.data && (course.data.owner_id === session.user.id || items.some((l) => l.access.moderate));
  const enrolled = items.some((l) => l.access.chat && !l.access.moderate);
  const refresh = () => {
    void qc.invalidateQueries({ queryKey: ['course', id] });
  };

  if (course.isPending) return <Loading />;
  if (course.isError) return <ErrorMessage error={course.error} retry={() => void course.refetch()} />;
  const c = course.data;
  const tz = Intl.DateTimeFormat().resolvedOptions().timeZone;
  return (
    <article className="page course">
      <header className="course-header">
        {c.cover_url && <img className="course-cover" src={c.cover_url} alt="" />}
        <div>
          <h1>{c.title}</h1>
          <p className="lead">{c.summary}</p>
          {c.teacher_name && <p className="muted">{t('catalogue.by', { name: c.teacher_name })}</p>}
          <p>
            <Price money={c.price} />
          </p>
          <div className="course-actions">
            {teaching ? (
              <p className="pill">{t('course.teaching')}</p>
            ) : enrolled ? (
              <p className="pill pill-ok">{t('course.enrolled')}</p>
            ) : !signedIn ? (
              <Link className="button" href={`/login?next=${encodeURIComponent(`/courses/${id}`)}`}>
                {t('course.loginToBuy')}
              </Link>
            ) : (
              <Checkout courseId={id} price={c.price} onDone={refresh} />
            )}
          </div>
        </div>
      </header>
      {signedIn && enrolled && !teaching && <MyProgress courseId={id} />}
      {/* Sanitized on the server (ammonia). */}
      <div className="prose" dangerouslySetInnerHTML={{ __html: c.description_html }} />
      <h2>{t('course.lessons')}</h2>
      {lessons.isPending && <Loading />}
      {lessons.isSuccess && items.length === 0 && <p>{t('course.noLessons')}</p>}
      <ol className="lessons">
        {items.map((l) => (
          <li key={l.id} className="lesson-row">
            <div>
              <strong>{l.title}</strong>
              <p className="muted">
                <time dateTime={l.starts_at} title={tz}>
                  {dateTime(l.starts_at, { weekday: 'short', dateStyle: undefined, month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' })}
                </time>
                {' · '}
                {t('course.minutes', { n: l.duration_minutes })}
              </p>
            </div>
            <span className={`badge badge-${l.status}`}>{t(`course.status.${l.status}`)}</span>
            {(l.access.watch_live || l.access.watch_replay || l.access.moderate) && (
              <Link className="button button-small" href={`/lessons/${l.id}`}>
                {t('course.openLesson')}
              </Link>
            )}
          </li>
        ))}
      </ol>
    </article>
  );
}
