// Every recording, filtered (owner, course, state, start date, size) and named (its course and
// lesson, its owner), with a bulk delete whose confirmation says how many recordings and bytes
// go. The owner and course choices are those holding recordings (the storage usage groups).
import { useState } from 'react';
import { useInfiniteQuery, useQuery, useQueryClient } from '@tanstack/react-query';
import { api, apiFetch, must } from '../../api/client';
import { useI18n } from '../../lib/i18n';
import { formatBytes } from '../../lib/format';
import { ErrorMessage, Loading } from '../../components/Status';

interface Filters {
  owner_id: string;
  course_id: string;
  status: string;
  after: string;
  before: string;
  min_mb: string;
}
const NONE: Filters = { owner_id: '', course_id: '', status: '', after: '', before: '', min_mb: '' };

const groups = (group_by: 'owner' | 'course') => ({
  queryKey: ['storage-usage', group_by],
  queryFn: async () => must(await api.GET('/api/v1/admin/storage/usage', { params: { query: { group_by } } })),
});

export function OpsRecordings() {
  const { t, dateTime, duration, locale } = useI18n();
  const qc = useQueryClient();
  const [draft, setDraft] = useState<Filters>(NONE);
  const [f, setF] = useState<Filters>(NONE);
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [confirming, setConfirming] = useState(false);
  const [result, setResult] = useState<string | null>(null);
  const owners = useQuery(groups('owner'));
  const courses = useQuery(groups('course'));
  const list = useInfiniteQuery({
    queryKey: ['ops-recordings', f],
    initialPageParam: undefined as string | undefined,
    queryFn: async ({ pageParam }) =>
      must(
        await api.GET('/api/v1/recordings', {
          params: {
            query: {
              limit: 100,
              cursor: pageParam,
              owner_id: f.owner_id || undefined,
              course_id: f.course_id || undefined,
              status: f.status || undefined,
              started_after: f.after ? new Date(`${f.after}T00:00:00`).toISOString() : undefined,
              started_before: f.before ? new Date(`${f.before}T23:59:59`).toISOString() : undefined,
              min_size_bytes: f.min_mb ? Math.round(Number(f.min_mb) * 1024 * 1024) : undefined,
            },
          },
        }),
      ),
    getNextPageParam: (p) => p.next_cursor ?? undefined,
  });
  const rows = list.data?.pages.flatMap((p) => p.items) ?? [];
  const chosen = rows.filter((r) => selected.has(r.id));
  const bytes = chosen.reduce((s, r) => s + r.size_bytes, 0);
  const toggle = (id: string) => {
    const next = new Set(selected);
    if (next.has(id)) next.delete(id);
    else next.add(id);
    setSelected(next);
  };
  const deletable = (s: string) => s === 'ready' || s === 'failed';
  const bulkDelete = async () => {
    let ok = 0;
    let failed = 0;
    for (const r of chosen) {
      const res = await apiFetch(`/api/v1/recordings/${r.id}`, { method: 'DELETE' });
      if (res.ok) ok += 1;
      else failed += 1;
    }
    setConfirming(false);
    setSelected(new Set());
    setResult(t('ops.rec.deleted', { n: ok, failed }));
    await qc.invalidateQueries({ queryKey: ['ops-recordings'] });
    await qc.invalidateQueries({ queryKey: ['storage-usage'] });
    await qc.invalidateQueries({ queryKey: ['recordings'] });
  };
  return (
    <div>
      <h1>{t('ops.rec.title')}</h1>
      <form
        className="filters"
        onSubmit={(e) => {
          e.preventDefault();
          setSelected(new Set());
          setF(draft);
        }}
      >
        <label>
          {t('ops.owner')}
          <select name="owner_id" value={draft.owner_id} onChange={(e) => setDraft({ ...draft, owner_id: e.target.value })}>
            <option value="">{t('studio.roster.all')}</option>
            {(owners.data?.groups ?? []).map((g) => (
              <option key={g.key} value={g.key}>
                {g.label || g.key.slice(0, 8)} ({g.recordings})
              </option>
            ))}
          </select>
        </label>
        <label>
          {t('ops.course')}
          <select name="course_id" value={draft.course_id} onChange={(e) => setDraft({ ...draft, course_id: e.target.value })}>
            <option value="">{t('studio.roster.all')}</option>
            {(courses.data?.groups ?? [])
              .filter((g) => g.key !== 'none')
              .map((g) => (
                <option key={g.key} value={g.key}>
                  {g.label} ({g.recordings})
                </option>
              ))}
          </select>
        </label>
        <label>
          {t('ops.rec.state')}
          <select name="status" value={draft.status} onChange={(e) => setDraft({ ...draft, status: e.target.value })}>
            <option value="">{t('studio.roster.all')}</option>
            {(['recording', 'processing', 'ready', 'failed'] as const).map((s) => (
              <option key={s} value={s}>
                {t(`studio.rec.status.${s}`)}
              </option>
            ))}
          </select>
        </label>
        <label>
          {t('ops.from')}
          <input name="after" type="date" value={draft.after} onChange={(e) => setDraft({ ...draft, after: e.target.value })} />
        </label>
        <label>
          {t('ops.to')}
          <input name="before" type="date" value={draft.before} onChange={(e) => setDraft({ ...draft, before: e.target.value })} />
        </label>
        <label>
          {t('ops.rec.minSize')}
          <input name="min_mb" type="number" min="0" step="0.1" value={draft.min_mb} onChange={(e) => setDraft({ ...draft, min_mb: e.target.value })} />
        </label>
        <button type="submit" className="button">
          {t('ops.filter')}
        </button>
      </form>
      <div className="toolbar">
        <p>{t('ops.rec.selected', { n: chosen.length, bytes: formatBytes(bytes, locale) })}</p>
        <button type="button" className="button button-danger" disabled={chosen.length === 0} onClick={() => setConfirming(true)}>
          {t('ops.rec.deleteSelected')}
        </button>
      </div>
      {confirming && (
        <div className="panel confirm" role="alertdialog" aria-labelledby="bulk-confirm" data-testid="bulk-confirm">
          <p id="bulk-confirm">{t('ops.rec.confirm', { n: chosen.length, bytes: formatBytes(bytes, locale), exact: bytes })}</p>
          <div className="actions">
            <button type="button" className="button button-danger" onClick={() => void bulkDelete()}>
              {t('ops.rec.confirmDelete')}
            </button>
            <button type="button" className="button button-secondary" onClick={() => setConfirming(false)}>
              {t('common.cancel')}
            </button>
          </div>
        </div>
      )}
      {result && <p role="status">{result}</p>}
      {list.isPending && <Loading />}
      {list.isError && <ErrorMessage error={list.error} retry={() => void list.refetch()} />}
      {list.data && rows.length === 0 && <p>{t('ops.rec.none')}</p>}
      {rows.length > 0 && (
        <div className="table-wrap">
          <table data-testid="ops-recordings">
            <thead>
              <tr>
                <th scope="col">
                  <span className="sr-only">{t('ops.select')}</span>
                </th>
                <th scope="col">{t('ops.rec.started')}</th>
                <th scope="col">{t('ops.rec.lesson')}</th>
                <th scope="col">{t('ops.owner')}</th>
                <th scope="col">{t('ops.rec.state')}</th>
                <th scope="col">{t('ops.rec.duration')}</th>
                <th scope="col">{t('ops.size')}</th>
                <th scope="col">{t('ops.rec.visibility')}</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((r) => (
                <tr key={r.id} data-recording-id={r.id}>
                  <td>
                    <input
                      type="checkbox"
                      aria-label={t('ops.rec.selectOne', { when: dateTime(r.started_at) })}
                      checked={selected.has(r.id)}
                      disabled={!deletable(r.status)}
                      onChange={() => toggle(r.id)}
                    />
                  </td>
                  <td>
                    <time dateTime={r.started_at}>{dateTime(r.started_at)}</time>
                  </td>
                  <td data-testid="rec-lesson">
                    {r.course_title ? (
                      <>
                        <span>{r.lesson_title}</span>
                        <br />
                        <span className="muted small">{r.course_title}</span>
                      </>
                    ) : (
                      r.stream_title
                    )}
                  </td>
                  <td title={r.owner_id}>{r.owner_name}</td>
                  <td>{t(`studio.rec.status.${r.status as 'ready'}`)}</td>
                  <td className="num">{duration(r.duration_s)}</td>
                  <td className="num" data-bytes={r.size_bytes}>
                    {formatBytes(r.size_bytes, locale)}
                  </td>
                  <td>{r.visibility === 'private' ? t('studio.rec.private') : t('studio.rec.public')}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {list.hasNextPage && (
        <button type="button" className="button button-secondary" onClick={() => void list.fetchNextPage()}>
          {t('catalogue.more')}
        </button>
      )}
    </div>
  );
}
