import { Link } from 'wouter';
import { useQuery } from '@tanstack/react-query';
import { api, must } from '../../api/client';
import { useI18n } from '../../lib/i18n';

export default function StudioPage() {
  const { t } = useI18n();
  const courses = useQuery({
    queryKey: ['courses', 'teaching'],
    queryFn: async () => must(await api.GET('/api/v1/courses/teaching', { params: { query: { limit: 100 } } })),
  });
  return (
    <section className="page">
      <h1>{t('studio.title')}</h1>
      <p>{t('studio.soon')}</p>
      <ul>
        {(courses.data?.items ?? []).map((c) => (
          <li key={c.id}>
            <Link href={`/courses/${c.id}`}>{c.title}</Link>
          </li>
        ))}
      </ul>
    </section>
  );
}
