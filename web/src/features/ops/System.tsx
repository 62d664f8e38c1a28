// System: readiness of each dependency (/readyz) and a few key metrics read from /metrics,
// sampled every 5 s while the page is open (a short history, charted).
import { useEffect, useMemo, useState } from 'react';
import { useQuery } from '@tanstack/react-query';
import { useI18n } from '../../lib/i18n';
import { DayChart } from '../../components/Chart';
import { apiFetch } from '../../api/client';
import { metricSum } from '../../lib/metrics';

interface Readiness {
  status: string;
  failing: string[];
  checks: { name: string; status: string; error?: string; latency_ms: number }[];
}

interface Sample {
  at: number;
  live: number;
  segments: number;
  backlog: number;
  chat: number;
  requests: number;
  errors: number;
}

export function System() {
  const { t, dateTime } = useI18n();
  const ready = useQuery({
    queryKey: ['readyz'],
    queryFn: async () => (await (await fetch('/readyz')).json()) as Readiness,
    refetchInterval: 10_000,
  });
  const [samples, setSamples] = useState<Sample[]>([]);
  const [metricsError, setMetricsError] = useState<number | null>(null);
  useEffect(() => {
    let stop = false;
    const poll = async () => {
      const r = await apiFetch('/metrics');
      if (!r.ok) {
        setMetricsError(r.status);
        return;
      }
      const text = await r.text();
      const errors = [...text.matchAll(/^http_requests_total\{[^}]*status="5\d\d"[^}]*\}\s+(\S+)/gm)].reduce((s, m) => s + Number(m[1]), 0);
      const s: Sample = {
        at: Date.now() / 1000,
        live: metricSum(text, 'live_sessions_active') ?? 0,
        segments: metricSum(text, 'live_segments_total') ?? 0,
        backlog: metricSum(text, 'recording_upload_queue_depth') ?? 0,
        chat: metricSum(text, 'chat_connections') ?? 0,
        requests: metricSum(text, 'http_requests_total') ?? 0,
        errors,
      };
      if (!stop) setSamples((old) => [...old.slice(-59), s]);
    };
    void poll();
    const id = setInterval(() => void poll(), 5000);
    return () => {
      stop = true;
      clearInterval(id);
    };
  }, []);
  const last = samples[samples.length - 1];
  const prev = samples[samples.length - 2];
  const rate = (k: 'segments' | 'requests' | 'errors') => (last && prev ? (last[k] - prev[k]) / (last.at - prev.at) : 0);
  const errRate = last && prev && last.requests > prev.requests ? (last.errors - prev.errors) / (last.requests - prev.requests) : 0;
  const chart = useMemo(() => {
    const pts = samples.slice(1).map((s, i) => {
      const p = samples[i] ?? s;
      return { at: s.at, seg: s.at > p.at ? (s.segments - p.segments) / (s.at - p.at) : 0 };
    });
    return {
      days: pts.map((p) => Math.round(p.at)),
      series: [
        { label: t('ops.sys.live'), color: '#dc2626', values: samples.slice(1).map((s) => s.live), line: true },
        { label: t('ops.sys.segments'), color: '#1d4ed8', values: pts.map((p) => Number(p.seg.toFixed(2))), line: true },
      ],
    };
  }, [samples, t]);
  const timeLabel = useMemo(() => (s: number) => dateTime(new Date(s * 1000), { timeStyle: 'medium' }), [dateTime]);
  const num = useMemo(() => (v: number) => String(Math.round(v * 100) / 100), []);
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
      {metricsError !== null && <p role="alert">{t('ops.sys.metricsUnavailable', { status: metricsError })}</p>}
      {last && (
        <dl className="stats" data-testid="metrics">
          <div>
            <dt>{t('ops.sys.live')}</dt>
            <dd>{last.live}</dd>
          </div>
          <div>
            <dt>{t('ops.sys.segments')}</dt>
            <dd>{rate('segments').toFixed(2)}</dd>
          </div>
          <div>
            <dt>{t('ops.sys.backlog')}</dt>
            <dd>{last.backlog}</dd>
          </div>
          <div>
            <dt>{t('ops.sys.chat')}</dt>
            <dd>{last.chat}</dd>
          </div>
          <div>
            <dt>{t('ops.sys.errors')}</dt>
            <dd>{(errRate * 100).toFixed(1)} %</dd>
          </div>
        </dl>
      )}
      {chart.days.length > 1 && <DayChart label={t('ops.sys.history')} days={chart.days} series={chart.series} format={num} dateLabel={timeLabel} pad={5} xLabel={t('chart.time')} />}
    </div>
  );
}
