import { useState, type FormEvent } from 'react';
import { Link } from 'wouter';
import { useInfiniteQuery } from '@tanstack/react-query';
import { api, must } from '../../api/client';
import { useI18n } from '../../lib/i18n';
import { ErrorMessage, Loading } from '../../components/Status';
import { Price } from './Price';

export function CataloguePage() {
  const { t, dateTime } = useI18n();
  const [input, setInput] = useState('');
  const [q, setQ] = useState('');
  const courses = useInfiniteQuery({
    queryKey: ['courses', 'catalogue', q],
    initialPageParam: undefined as string | undefined,
    queryFn: async ({ pageParam }) =>
      must(await api.GET('/api/v1/courses', { params: { query: { q: q || undefined, cursor: pageParam, limit: 24 } } })),
    getNextPageParam: (last) => last.next_cursor ?? undefined,
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    setQ(input.trim());
  };
  const items = courses.data?.pages.flatMap((p) => p.items) ?? [];
  return (
    <section className="page">
      <h1>{t('catalogue.title')}</h1>
      <form role="search" onSubmit={submit} className="search">
        <label className="sr-only" htmlFor="catalogue-q">
          {t('catalogue.search')}
        </label>
        <input
          id="catalogue-q"
          type="search"
          value={input}
          placeholder={t('catalogue.search')}
          onChange={(e) => setInput(e.target.value)}
        />
        <button type="submit" className="button">
          {t('catalogue.searchButton')}
        </button>
      </form>
      {courses.isPending && <Loading />}
      {courses.isError && <ErrorMessage error={courses.error} retry={() => void courses.refetch()} />}
      {courses.isSuccess && items.length === 0 && <p>{t('catalogue.empty')}</p>}
      <ul className="cards">
        {items.map((c) => (
          <li key={c.id} className="card">
            <Link href={`/courses/${c.id}`} className="card-link">
              <div className="card-cover" aria-hidden="true">
                {c.cover_url ? <img src={c.cover_url} alt="" loading="lazy" /> : <span>{c.title.slice(0, 1)}</span>}
              </div>
              <div className="card-body">
                <h2>{c.title}</h2>
                {c.teacher_name && <p className="muted">{t('catalogue.by', { name: c.teacher_name })}</p>}
                <p className="card-summary">{c.summary}</p>
                <p className="card-meta">
                  <Price money={c.price} />
                  {c.next_lesson_at && (
                    <span className="muted">{t('catalogue.nextLesson', { when: dateTime(c.next_lesson_at) })}</span>
                  )}
                </p>
              </div>
            </Link>
          </li>
        ))}
      </ul>
      {courses.hasNextPage && (
        <button type="button" className="button button-secondary" onClick={() => void courses.fetchNextPage()}>
          {t('catalogue.more')}
        </button>
      )}
    </section>
  );
}
