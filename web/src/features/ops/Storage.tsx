// Storage: usage now and per day (uPlot), the biggest owners and streams, the consistency
// scan and its repair, and the retention job (what the next run deletes; run it now).
import { useMemo, useState } from 'react';
import { useQueries, useQuery, useQueryClient } from '@tanstack/react-query';
import { api, must } from '../../api/client';
import { useI18n } from '../../lib/i18n';
import { formatBytes } from '../../lib/format';
import { ErrorMessage, Loading } from '../../components/Status';
import { DayChart } from '../../components/Chart';
import type { components } from '../../api/schema';

type Report = components['schemas']['ScanReport'];

const usage = (group_by: 'owner' | 'stream' | 'day') => ({
  queryKey: ['storage-usage', group_by],
  queryFn: async () => must(await api.GET('/api/v1/admin/storage/usage', { params: { query: { group_by } } })),
});

export function Storage() {
  const { t, locale, dateTime, duration } = useI18n();
  const qc = useQueryClient();
  const byDay = useQuery(usage('day'));
  const byOwner = useQuery(usage('owner'));
  const byStream = useQuery(usage('stream'));
  const ownerIds = (byOwner.data?.groups ?? []).slice(0, 10).map((g) => g.key);
  const names = useQuery({
    queryKey: ['profiles', ownerIds.join(',')],
    enabled: ownerIds.length > 0,
    queryFn: async () => must(await api.GET('/api/v1/users/profiles', { params: { query: { ids: ownerIds.join(',') } } })),
  });
  // The top streams' titles (one read per stream shown; a deleted stream keeps its id prefix).
  const streamIds = (byStream.data?.groups ?? []).slice(0, 10).map((g) => g.key);
  const streams = useQueries({
    queries: streamIds.map((id) => ({
      queryKey: ['live-stream', id],
      queryFn: async () => must(await api.GET('/api/v1/live-streams/{id}', { params: { path: { id } } })),
      retry: false,
      staleTime: 5 * 60_000,
    })),
  });
  const preview = useQuery({
    queryKey: ['retention-preview'],
    queryFn: async () => must(await api.GET('/api/v1/admin/storage/retention/preview')),
  });
  const [report, setReport] = useState<{ kind: 'scan' | 'repair'; r: Report } | null>(null);
  const [busy, setBusy] = useState(false);
  const [retention, setRetention] = useState<number | null>(null);
  const fmt = useMemo(() => (v: number) => formatBytes(v, locale), [locale]);
  const dayLabel = useMemo(() => (d: number) => dateTime(new Date(d * 1000), { dateStyle: 'medium', timeZone: 'UTC' }), [dateTime]);
  const chart = useMemo(() => {
    const rows = [...(byDay.data?.groups ?? [])].sort((a, b) => a.key.localeCompare(b.key));
    const days = rows.map((r) => Date.parse(`${r.key}T00:00:00Z`) / 1000);
    let acc = 0;
    const kept = rows.map((r) => (acc += r.bytes));
    return {
      days,
      series: [
        { label: t('ops.storage.added'), color: '#1d4ed8', values: rows.map((r) => r.bytes) },
        { label: t('ops.storage.cumulative'), color: '#166534', values: kept, line: true },
      ],
    };
  }, [byDay.data, t]);
  if (byDay.isPending) return <Loading />;
  if (byDay.isError) return <ErrorMessage error={byDay.error} retry={() => void byDay.refetch()} />;
  const total = byDay.data.total;
  const refreshAll = () => qc.invalidateQueries({ queryKey: ['storage-usage'] });
  const act = async (kind: 'scan' | 'repair') => {
    if (kind === 'repair' && !window.confirm(t('ops.storage.repairConfirm'))) return;
    setBusy(true);
    try {
      const r = must(await (kind === 'scan' ? api.POST('/api/v1/admin/storage/scan') : api.POST('/api/v1/admin/storage/repair')));
      setReport({ kind, r });
      if (kind === 'repair') await refreshAll();
    } finally {
      setBusy(false);
    }
  };
  const runRetention = async () => {
    setBusy(true);
    try {
      const r = must(await api.POST('/api/v1/admin/storage/retention/run'));
      setRetention(r.deleted);
      await refreshAll();
      await qc.invalidateQueries({ queryKey: ['retention-preview'] });
    } finally {
      setBusy(false);
    }
  };
  const name = (id: string) => names.data?.items.find((p) => p.id === id)?.display_name ?? id.slice(0, 8);
  const streamTitle = (id: string) => streams[streamIds.indexOf(id)]?.data?.title || id.slice(0, 8);
  return (
    <div>
      <h1>{t('ops.storage.title')}</h1>
      <dl className="stats">
        <div>
          <dt>{t('ops.storage.used')}</dt>
          <dd data-testid="usage-total" data-bytes={total.bytes}>
            {formatBytes(total.bytes, locale)}
          </dd>
        </div>
        <div>
          <dt>{t('ops.storage.recordings')}</dt>
          <dd data-testid="usage-count">{total.recordings}</dd>
        </div>
        <div>
          <dt>{t('ops.storage.hours')}</dt>
          <dd>{duration(total.hours * 3600)}</dd>
        </div>
      </dl>
      <button type="button" className="button button-secondary button-small" onClick={() => void refreshAll()}>
        {t('ops.refresh')}
      </button>
      <h2>{t('ops.storage.perDay')}</h2>
      {chart.days.length ? (
        <DayChart label={t('ops.storage.perDay')} days={chart.days} series={chart.series} format={fmt} dateLabel={dayLabel} testId="usage-chart" xLabel={t('chart.day')} />
      ) : (
        <p>{t('ops.storage.none')}</p>
      )}
      <div className="two-col">
        <section>
          <h2>{t('ops.storage.topOwners')}</h2>
          <Top rows={(byOwner.data?.groups ?? []).slice(0, 10)} label={name} fmt={fmt} keyTitle={t('ops.owner')} />
        </section>
        <section>
          <h2>{t('ops.storage.topStreams')}</h2>
          <Top rows={(byStream.data?.groups ?? []).slice(0, 10)} label={streamTitle} fmt={fmt} keyTitle={t('ops.stream')} />
        </section>
      </div>
      <h2>{t('ops.storage.consistency')}</h2>
      <p className="muted">{t('ops.storage.consistencyHelp')}</p>
      <div className="actions">
        <button type="button" className="button button-secondary" disabled={busy} onClick={() => void act('scan')}>
          {t('ops.storage.scan')}
        </button>
        <button type="button" className="button button-danger" disabled={busy} onClick={() => void act('repair')}>
          {t('ops.storage.repair')}
        </button>
      </div>
      {report && (
        <div className="panel" role="status" data-testid="scan-report">
          <p>
            {t('ops.storage.report', {
              recordings: report.r.recordings_scanned,
              objects: report.r.objects_scanned,
              orphans: report.r.orphan_objects.length,
              bytes: formatBytes(report.r.orphan_bytes, locale),
              missing: report.r.recordings_with_missing_objects.length,
            })}
          </p>
          {report.kind === 'repair' && <p>{t('ops.storage.repaired', { deleted: report.r.deleted_objects, repaired: report.r.repaired_recordings })}</p>}
          {report.r.orphan_objects.length > 0 && (
            <ul className="small">
              {report.r.orphan_objects.slice(0, 20).map((o) => (
                <li key={o.key}>
                  <code>{o.key}</code> ({formatBytes(o.size_bytes, locale)})
                </li>
              ))}
            </ul>
          )}
        </div>
      )}
      <h2>{t('ops.storage.retention')}</h2>
      {preview.data && (
        <>
          <p>
            {preview.data.default_days > 0
              ? t('ops.storage.retentionDays', { n: preview.data.default_days })
              : t('ops.storage.retentionForever')}{' '}
            {t('ops.storage.interval', { n: Math.round(preview.data.interval_s / 60) })}
          </p>
          <p data-testid="retention-preview">
            {t('ops.storage.nextDeletes', { n: preview.data.items.length, bytes: formatBytes(preview.data.bytes, locale) })}
          </p>
          {preview.data.items.length > 0 && (
            <ul className="small">
              {preview.data.items.slice(0, 20).map((r) => (
                <li key={r.id}>
                  <code>{r.id.slice(0, 8)}</code> · {dateTime(r.started_at)} · {formatBytes(r.size_bytes, locale)}
                </li>
              ))}
            </ul>
          )}
        </>
      )}
      <button type="button" className="button button-secondary" disabled={busy} onClick={() => void runRetention()}>
        {t('ops.storage.runRetention')}
      </button>
      {retention !== null && <p role="status">{t('ops.storage.retentionDone', { n: retention })}</p>}
    </div>
  );
}

function Top({
  rows,
  label,
  fmt,
  keyTitle,
}: {
  rows: components['schemas']['UsageRow'][];
  label: (k: string) => string;
  fmt: (v: number) => string;
  keyTitle: string;
}) {
  const { t } = useI18n();
  if (rows.length === 0) return <p>{t('ops.storage.none')}</p>;
  return (
    <table>
      <thead>
        <tr>
          <th scope="col">{keyTitle}</th>
          <th scope="col">{t('ops.storage.recordings')}</th>
          <th scope="col">{t('ops.size')}</th>
        </tr>
      </thead>
      <tbody>
        {rows.map((r) => (
          <tr key={r.key}>
            <td title={r.key}>{label(r.key)}</td>
            <td className="num">{r.recordings}</td>
            <td className="num">{fmt(r.bytes)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
