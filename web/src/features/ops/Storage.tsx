// Storage: usage now and over time (uPlot: bytes held at the end of each day, and each day's
// change), the biggest owners, courses and streams by name, the consistency scan and its
// repair, and the retention job (what the next run deletes; run it now).
import { useMemo, useState } from 'react';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { api, must } from '../../api/client';
import { useI18n } from '../../lib/i18n';
import { formatBytes } from '../../lib/format';
import { ErrorMessage, Loading } from '../../components/Status';
import { DayChart } from '../../components/Chart';
import type { components } from '../../api/schema';

type Report = components['schemas']['ScanReport'];
type Group = 'owner' | 'stream' | 'course';

const usage = (group_by: Group) => ({
  queryKey: ['storage-usage', group_by],
  queryFn: async () => must(await api.GET('/api/v1/admin/storage/usage', { params: { query: { group_by } } })),
});

export function Storage() {
  const { t, locale, dateTime, duration } = useI18n();
  const qc = useQueryClient();
  const [span, setSpan] = useState(30);
  const history = useQuery({
    queryKey: ['storage-usage', 'history', span],
    queryFn: async () => must(await api.GET('/api/v1/admin/storage/history', { params: { query: { days: span } } })),
  });
  const byOwner = useQuery(usage('owner'));
  const byCourse = useQuery(usage('course'));
  const byStream = useQuery(usage('stream'));
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
    const rows = history.data?.days ?? [];
    const days = rows.map((r) => Date.parse(`${r.day}T00:00:00Z`) / 1000);
    const held = rows.map((r) => r.bytes);
    // The first day's change is unknown from the window alone: the server's figure is a level.
    const change = held.map((b, i) => (i === 0 ? 0 : b - (held[i - 1] ?? b)));
    return {
      days,
      series: [
        { label: t('ops.storage.change'), color: '#1d4ed8', values: change },
        { label: t('ops.storage.held'), color: '#166534', values: held, line: true },
      ],
    };
  }, [history.data, t]);
  if (byOwner.isPending) return <Loading />;
  if (byOwner.isError) return <ErrorMessage error={byOwner.error} retry={() => void byOwner.refetch()} />;
  const total = byOwner.data.total;
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
      <h2>{t('ops.storage.overTime')}</h2>
      <label className="inline">
        {t('ops.storage.span')}{' '}
        <select name="span" value={span} onChange={(e) => setSpan(Number(e.target.value))}>
          {[30, 90, 365].map((n) => (
            <option key={n} value={n}>
              {t('ops.storage.lastDays', { n })}
            </option>
          ))}
        </select>
      </label>
      {history.isError && <ErrorMessage error={history.error} retry={() => void history.refetch()} />}
      {history.data && (
        <DayChart label={t('ops.storage.overTime')} days={chart.days} series={chart.series} format={fmt} dateLabel={dayLabel} testId="usage-chart" xLabel={t('chart.day')} />
      )}
      <div className="three-col">
        <section>
          <h2>{t('ops.storage.topOwners')}</h2>
          <Top rows={(byOwner.data?.groups ?? []).slice(0, 10)} fmt={fmt} keyTitle={t('ops.owner')} testId="top-owners" />
        </section>
        <section>
          <h2>{t('ops.storage.topCourses')}</h2>
          <Top rows={(byCourse.data?.groups ?? []).slice(0, 10)} fmt={fmt} keyTitle={t('ops.course')} testId="top-courses" />
        </section>
        <section>
          <h2>{t('ops.storage.topStreams')}</h2>
          <Top rows={(byStream.data?.groups ?? []).slice(0, 10)} fmt={fmt} keyTitle={t('ops.stream')} testId="top-streams" />
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
          {report.kind === 'scan' && (report.r.orphan_objects.length > 0 || report.r.recordings_with_missing_objects.length > 0) && (
            <ChooseRepair
              report={report.r}
              busy={busy}
              onRepair={async (objects, recordings) => {
                if (!window.confirm(t('ops.storage.repairChosenConfirm', { objects: objects.length, recordings: recordings.length }))) return;
                setBusy(true);
                try {
                  const r = must(await api.POST('/api/v1/admin/storage/repair/selected', { body: { objects, recordings } }));
                  setReport({ kind: 'repair', r });
                  await refreshAll();
                } finally {
                  setBusy(false);
                }
              }}
            />
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

/** The scan's findings with a checkbox each; repair only those ticked. */
function ChooseRepair({ report, busy, onRepair }: { report: Report; busy: boolean; onRepair: (objects: string[], recordings: string[]) => Promise<void> }) {
  const { t, locale } = useI18n();
  const [objects, setObjects] = useState<Set<string>>(new Set());
  const [recordings, setRecordings] = useState<Set<string>>(new Set());
  const flip = (set: Set<string>, v: string, put: (s: Set<string>) => void) => {
    const next = new Set(set);
    if (next.has(v)) next.delete(v);
    else next.add(v);
    put(next);
  };
  return (
    <fieldset className="choose-repair" data-testid="choose-repair">
      <legend>{t('ops.storage.choose')}</legend>
      {report.orphan_objects.slice(0, 200).map((o) => (
        <label key={o.key} className="check small">
          <input type="checkbox" checked={objects.has(o.key)} onChange={() => flip(objects, o.key, setObjects)} />
          <code>{o.key}</code> ({formatBytes(o.size_bytes, locale)}) — {t('ops.storage.orphan')}
        </label>
      ))}
      {report.recordings_with_missing_objects.slice(0, 200).map((m) => (
        <label key={m.recording_id} className="check small">
          <input type="checkbox" checked={recordings.has(m.recording_id)} onChange={() => flip(recordings, m.recording_id, setRecordings)} />
          <code>{m.recording_id}</code> — {t('ops.storage.missing', { n: m.missing.length })}
        </label>
      ))}
      <button
        type="button"
        className="button button-danger button-small"
        disabled={busy || objects.size + recordings.size === 0}
        onClick={() => void onRepair([...objects], [...recordings])}
      >
        {t('ops.storage.repairChosen', { n: objects.size + recordings.size })}
      </button>
    </fieldset>
  );
}

function Top({ rows, fmt, keyTitle, testId }: { rows: components['schemas']['UsageRow'][]; fmt: (v: number) => string; keyTitle: string; testId: string }) {
  const { t } = useI18n();
  if (rows.length === 0) return <p>{t('ops.storage.none')}</p>;
  return (
    <table data-testid={testId}>
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
            {/* Streams outside a course group under `none`, without a title. */}
            <td title={r.key}>{r.key === 'none' ? t('ops.storage.noCourse') : r.label || r.key.slice(0, 8)}</td>
            <td className="num">{r.recordings}</td>
            <td className="num">{fmt(r.bytes)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
