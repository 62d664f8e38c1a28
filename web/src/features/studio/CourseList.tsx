// The teacher's courses and the form for a new one (created as a draft, then edited).
import { useState } from 'react';
import { Link, useLocation } from 'wouter';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { api, must } from '../../api/client';
import { useI18n } from '../../lib/i18n';
import { ErrorMessage, Loading } from '../../components/Status';

export function CourseList() {
  const { t, money } = useI18n();
  const qc = useQueryClient();
  const [, navigate] = useLocation();
  const [title, setTitle] = useState('');
  const [error, setError] = useState<string | null>(null);
  const courses = useQuery({
    queryKey: ['courses', 'teaching'],
    queryFn: async () => must(await api.GET('/api/v1/courses/teaching', { params: { query: { limit: 100 } } })),
  });
  const create = async (e: React.FormEvent) => {
    e.preventDefault();
    setError(null);
    try {
      const c = must(await api.POST('/api/v1/courses', { body: { title, visibility: 'draft' } }));
      await qc.invalidateQueries({ queryKey: ['courses'] });
      navigate(`/courses/${c.id}`);
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    }
  };
  return (
    <>
      <h1>{t('studio.title')}</h1>
      <form className="inline-form" onSubmit={create}>
        <label>
          {t('studio.newCourseTitle')}
          <input name="new_title" required maxLength={200} value={title} onChange={(e) => setTitle(e.target.value)} />
        </label>
        <button type="submit" className="button">
          {t('studio.createCourse')}
        </button>
      </form>
      {error && (
        <p className="form-error" role="alert">
          {error}
        </p>
      )}
      <h2>{t('studio.yourCourses')}</h2>
      {courses.isPending && <Loading />}
      {courses.isError && <ErrorMessage error={courses.error} retry={() => void courses.refetch()} />}
      {courses.data && courses.data.items.length === 0 && <p>{t('studio.noCourses')}</p>}
      <div className="table-wrap">
        <table data-testid="studio-courses">
          <thead>
            <tr>
              <th scope="col">{t('studio.course')}</th>
              <th scope="col">{t('studio.visibility')}</th>
              <th scope="col">{t('studio.price')}</th>
              <th scope="col">{t('studio.nextLesson')}</th>
            </tr>
          </thead>
          <tbody>
            {(courses.data?.items ?? []).map((c) => (
              <tr key={c.id}>
                <td>
                  <Link href={`/courses/${c.id}`}>{c.title}</Link>
                </td>
                <td>
                  <span className={`badge badge-${c.visibility}`}>{t(`studio.vis.${c.visibility}`)}</span>
                </td>
                <td>{c.price.amount === 0 ? t('common.free') : money(c.price.amount, c.price.currency)}</td>
                <td>{c.next_lesson_at ? <NextLesson at={c.next_lesson_at} /> : '—'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </>
  );
}

function NextLesson({ at }: { at: string }) {
  const { dateTime } = useI18n();
  return <time dateTime={at}>{dateTime(at)}</time>;
}
