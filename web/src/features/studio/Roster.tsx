// A course's roster: students with their state (active, left, refunded), a filter by state,
// and a CSV export of every page of the filtered roster (the API has no CSV form of it: the
// pages are fetched here, up to EXPORT_PAGE_CAP of them).
import { useState } from 'react';
import { useInfiniteQuery } from '@tanstack/react-query';
import { api, must } from '../../api/client';
import { useI18n } from '../../lib/i18n';
import { ErrorMessage, Loading } from '../../components/Status';
import { download, toCsv } from '../../lib/format';
import { EXPORT_PAGE_CAP, fetchAllPages } from './paging';

const STATES = ['active', 'left', 'refunded'] as const;

export function Roster({ courseId }: { courseId: string }) {
  const { t, dateTime } = useI18n();
  const [status, setStatus] = useState<string>('');
  const roster = useInfiniteQuery({
    queryKey: ['roster', courseId, status],
    initialPageParam: undefined as string | undefined,
    queryFn: async ({ pageParam }) =>
      must(
        await api.GET('/api/v1/courses/{id}/enrollments', {
          params: { path: { id: courseId }, query: { limit: 100, status: status || undefined, cursor: pageParam } },
        }),
      ),
    getNextPageParam: (p) => p.next_cursor ?? undefined,
  });
  const rows = roster.data?.pages.flatMap((p) => p.items) ?? [];
  const [exporting, setExporting] = useState<number | null>(null);
  const [exportMsg, setExportMsg] = useState<{ ok: boolean; text: string } | null>(null);
  const exportCsv = async () => {
    setExporting(0);
    setExportMsg(null);
    try {
      const all = await fetchAllPages(
        async (cursor) =>
          must(
            await api.GET('/api/v1/courses/{id}/enrollments', {
              params: { path: { id: courseId }, query: { limit: 100, status: status || undefined, cursor } },
            }),
          ),
        { onPage: setExporting },
      );
      download(
        `roster-${courseId}.csv`,
        new Blob(
          [
            toCsv(
              ['user_id', 'display_name', 'status', 'source', 'enrolled_at', 'order_id'],
              all.items.map((r) => [r.user_id, r.display_name, r.status, r.source, r.created_at, r.order_id]),
            ),
          ],
          { type: 'text/csv' },
        ),
      );
      setExportMsg(
        all.truncated ? { ok: false, text: t('studio.export.truncated', { n: EXPORT_PAGE_CAP * 100 }) } : { ok: true, text: t('studio.export.done') },
      );
    } catch (err) {
      setExportMsg({ ok: false, text: t('attendance.csvFailed', { detail: err instanceof Error ? err.message : String(err) }) });
    } finally {
      setExporting(null);
    }
  };
  return (
    <div>
      <div className="toolbar">
        <label>
          {t('studio.roster.filter')}{' '}
          <select value={status} onChange={(e) => setStatus(e.target.value)} name="roster_status">
            <option value="">{t('studio.roster.all')}</option>
            {STATES.map((s) => (
              <option key={s} value={s}>
                {t(`studio.roster.${s}`)}
              </option>
            ))}
          </select>
        </label>
        <button
          type="button"
          className="button button-secondary"
          data-testid="roster-csv"
          onClick={() => void exportCsv()}
          disabled={rows.length === 0 || exporting !== null}
          aria-busy={exporting !== null}
        >
          {exporting !== null ? t('studio.exporting') : t('studio.exportCsv')}
        </button>
      </div>
      {exporting !== null && (
        <p className="status" role="status">
          {t('studio.exportingPages', { n: exporting })}
        </p>
      )}
      {exportMsg && (
        <p className={exportMsg.ok ? 'form-ok' : 'form-error'} role={exportMsg.ok ? 'status' : 'alert'}>
          {exportMsg.text}
        </p>
      )}
      {roster.isPending && <Loading />}
      {roster.isError && <ErrorMessage error={roster.error} retry={() => void roster.refetch()} />}
      {roster.data && rows.length === 0 && <p>{t('studio.roster.empty')}</p>}
      {rows.length > 0 && (
        <div className="table-wrap">
          <table data-testid="roster">
            <caption className="sr-only">{t('studio.tab.roster')}</caption>
            <thead>
              <tr>
                <th scope="col">{t('studio.roster.student')}</th>
                <th scope="col">{t('studio.roster.state')}</th>
                <th scope="col">{t('studio.roster.since')}</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((r) => (
                <tr key={r.id}>
                  <td>{r.display_name}</td>
                  <td>{t(`studio.roster.${r.status}`)}</td>
                  <td>
                    <time dateTime={r.created_at}>{dateTime(r.created_at)}</time>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {roster.hasNextPage && (
        <button type="button" className="button button-secondary" onClick={() => void roster.fetchNextPage()}>
          {t('catalogue.more')}
        </button>
      )}
    </div>
  );
}
