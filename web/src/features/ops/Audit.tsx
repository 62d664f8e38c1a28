// The audit log with filters (actor, subject, action or action prefix, time range).
import { useState } from 'react';
import { useInfiniteQuery } from '@tanstack/react-query';
import { api, must } from '../../api/client';
import { useI18n } from '../../lib/i18n';
import { ErrorMessage, Loading } from '../../components/Status';

const NONE = { actor_id: '', user_id: '', action: '', since: '', until: '' };
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const id = (v: string) => (UUID.test(v.trim()) ? v.trim() : undefined);

export function Audit() {
  const { t, dateTime } = useI18n();
  const [draft, setDraft] = useState(NONE);
  const [f, setF] = useState(NONE);
  const log = useInfiniteQuery({
    queryKey: ['audit', f],
    initialPageParam: undefined as string | undefined,
    queryFn: async ({ pageParam }) =>
      must(
        await api.GET('/api/v1/admin/audit-log', {
          params: {
            query: {
              limit: 50,
              cursor: pageParam,
              actor_id: id(f.actor_id),
              user_id: id(f.user_id),
              action: f.action.trim() || undefined,
              since: f.since ? new Date(f.since).toISOString() : undefined,
              until: f.until ? new Date(f.until).toISOString() : undefined,
            },
          },
        }),
      ),
    getNextPageParam: (p) => p.next_cursor ?? undefined,
  });
  const rows = log.data?.pages.flatMap((p) => p.items) ?? [];
  const field = (k: keyof typeof NONE, label: string, type = 'text') => (
    <label>
      {label}
      <input name={k} type={type} value={draft[k]} onChange={(e) => setDraft({ ...draft, [k]: e.target.value })} />
    </label>
  );
  return (
    <div>
      <h1>{t('ops.audit.title')}</h1>
      <form
        className="filters"
        onSubmit={(e) => {
          e.preventDefault();
          setF(draft);
        }}
      >
        {field('actor_id', t('ops.audit.actor'))}
        {field('user_id', t('ops.audit.subject'))}
        {field('action', t('ops.audit.action'))}
        {field('since', t('ops.from'), 'datetime-local')}
        {field('until', t('ops.to'), 'datetime-local')}
        <button type="submit" className="button">
          {t('ops.filter')}
        </button>
      </form>
      {log.isPending && <Loading />}
      {log.isError && <ErrorMessage error={log.error} retry={() => void log.refetch()} />}
      {log.data && rows.length === 0 && <p>{t('ops.audit.none')}</p>}
      {rows.length > 0 && (
        <div className="table-wrap">
          <table data-testid="ops-audit">
            <thead>
              <tr>
                <th scope="col">{t('ops.audit.when')}</th>
                <th scope="col">{t('ops.audit.action')}</th>
                <th scope="col">{t('ops.audit.actor')}</th>
                <th scope="col">{t('ops.audit.subject')}</th>
                <th scope="col">{t('ops.audit.detail')}</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((e) => (
                <tr key={e.id}>
                  <td>
                    <time dateTime={e.occurred_at}>{dateTime(e.occurred_at)}</time>
                  </td>
                  <td>
                    <code>{e.action}</code>
                  </td>
                  <td title={e.actor_id ?? ''}>{e.actor_id?.slice(0, 8) ?? '—'}</td>
                  <td title={e.subject_user_id ?? ''}>{e.subject_user_id?.slice(0, 8) ?? '—'}</td>
                  <td className="small">
                    <code>{JSON.stringify(e.detail)}</code>
                    {e.ip && <span className="muted"> · {e.ip}</span>}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {log.hasNextPage && (
        <button type="button" className="button button-secondary" onClick={() => void log.fetchNextPage()}>
          {t('catalogue.more')}
        </button>
      )}
    </div>
  );
}
