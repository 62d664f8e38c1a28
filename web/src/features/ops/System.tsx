// System: readiness of each dependency (/readyz) and this node's key metrics over the last
// hour, from the history the server keeps (GET /admin/system/metrics, refreshed every 10 s):
// two charts, traffic (requests/s, segments/s, live sessions) and load (chat connections,
// upload backlog, memory).
import { useMemo } from 'react';
import { useQuery } from '@tanstack/react-query';
import { useI18n } from '../../lib/i18n';
import { DayChart } from '../../components/Chart';
import { api, must } from '../../api/client';
import { formatBytes } from '../../lib/format';
import { ErrorMessage } from '../../components/Status';

interface Readiness {
  status: string;
  failing: string[];
  checks: { name: string; status: string; error?: string; latency_ms: number }[];
}

export function System() {
  const { t, dateTime, locale } = useI18n();
  const ready = useQuery({
    queryKey: ['readyz'],
    queryFn: async () => (await (await fetch('/readyz')).json()) as Readiness,
    refetchInterval: 10_000,
  });
  const history = useQuery({
    queryKey: ['system-metrics'],
    queryFn: async () => must(await api.GET('/api/v1/admin/system/metrics')),
    refetchInterval: 10_000,
  });
  const samples = history.data?.samples ?? [];
  const last = samples[samples.length - 1];
  const charts = useMemo(() => {
    const at = samples.map((s) => Math.round(Date.parse(s.at) / 1000));
    const round = (v: number) => Math.round(v * 100) / 100;
    return {
      at,
      traffic: [
        { label: t('ops.sys.requests'), color: '#7c3aed', values: samples.map((s) => round(s.requests_per_s)), line: true },
        { label: t('ops.sys.segments'), color: '#1d4ed8', values: samples.map((s) => round(s.segments_per_s)), line: true },
        { label: t('ops.sys.live'), color: '#dc2626', values: samples.map((s) => s.live_sessions), line: true },
      ],
      load: [
        { label: t('ops.sys.chat'), color: '#0b6e4f', values: samples.map((s) => s.chat_connections), line: true },
        { label: t('ops.sys.backlog'), color: '#b45309', values: samples.map((s) => s.upload_backlog), line: true },
      ],
      memory: [{ label: t('ops.sys.memory'), color: '#374151', values: samples.map((s) => s.rss_bytes), line: true }],
    };
  }, [samples, t]);
  const timeLabel = useMemo(() => (s: number) => dateTime(new Date(s * 1000), { timeStyle: 'medium' }), [dateTime]);
  const num = useMemo(() => (v: number) => String(Math.round(v * 100) / 100), []);
  const bytes = useMemo(() => (v: number) => formatBytes(v, locale), [locale]);
  return (
    <div>
      <h1>{t('ops.sys.title')}</h1>
      <h2>{t('ops.sys.readiness')}</h2>
      {ready.data && (
        <ul className="checks" data-testid="readiness">
          {ready.data.checks.map((c) => (
            <li key={c.name}>
              <span className={`badge ${c.status === 'ok' ? 'badge-ready' : 'badge-failed'}`}>{c.status === 'ok' ? t('ops.sys.ok') : t('ops.sys.failing')}</span>{' '}
              <strong>{c.name}</strong> <span className="muted">{c.latency_ms} ms</span>
              {c.error && <span className="form-error"> {c.error}</span>}
            </li>
          ))}
        </ul>
      )}
      <h2>{t('ops.sys.metrics')}</h2>
      {history.isError && <ErrorMessage error={history.error} retry={() => void history.refetch()} />}
      {history.data && (
        <p className="muted small">{t('ops.sys.node', { node: history.data.node, n: Math.round((samples.length * history.data.interval_s) / 60) })}</p>
      )}
      {history.data && !last && <p data-testid="metrics">{t('ops.sys.warming')}</p>}
      {last && (
        <dl className="stats" data-testid="metrics">
          <div>
            <dt>{t('ops.sys.live')}</dt>
            <dd>{last.live_sessions}</dd>
          </div>
          <div>
            <dt>{t('ops.sys.segments')}</dt>
            <dd>{last.segments_per_s.toFixed(2)}</dd>
          </div>
          <div>
            <dt>{t('ops.sys.backlog')}</dt>
            <dd>{last.upload_backlog}</dd>
          </div>
          <div>
            <dt>{t('ops.sys.chat')}</dt>
            <dd>{last.chat_connections}</dd>
          </div>
          <div>
            <dt>{t('ops.sys.requests')}</dt>
            <dd>{last.requests_per_s.toFixed(1)}</dd>
          </div>
          <div>
            <dt>{t('ops.sys.errors')}</dt>
            <dd>{(last.error_ratio * 100).toFixed(1)} %</dd>
          </div>
          <div>
            <dt>{t('ops.sys.memory')}</dt>
            <dd>{formatBytes(last.rss_bytes, locale)}</dd>
          </div>
        </dl>
      )}
      {charts.at.length > 1 && (
        <>
          <h3>{t('ops.sys.traffic')}</h3>
          <DayChart label={t('ops.sys.traffic')} days={charts.at} series={charts.traffic} format={num} dateLabel={timeLabel} pad={5} xLabel={t('chart.time')} testId="metrics-traffic" />
          <h3>{t('ops.sys.load')}</h3>
          <DayChart label={t('ops.sys.load')} days={charts.at} series={charts.load} format={num} dateLabel={timeLabel} pad={5} xLabel={t('chart.time')} />
          <h3>{t('ops.sys.memory')}</h3>
          <DayChart label={t('ops.sys.memory')} days={charts.at} series={charts.memory} format={bytes} dateLabel={timeLabel} pad={5} xLabel={t('chart.time')} />
        </>
      )}
    </div>
  );
}
