// Viewing quality across the platform (`GET /admin/playback-quality`): the lessons whose viewers
// reported in the chosen period (most viewers now first), each with viewers now and at peak,
// sessions, startup and latency percentiles, the rebuffering ratio, errors and the playback
// modes; totals per mode over those lessons. The period picks the lessons; each lesson's
// figures cover its whole live playback (that is what the API aggregates).
import { useMemo, useState } from 'react';
import { Link } from 'wouter';
import { useQuery } from '@tanstack/react-query';
import { api, must } from '../../api/client';
import { useI18n } from '../../lib/i18n';
import type { MessageKey } from '../../lib/i18n/en';
import { ErrorMessage, Loading } from '../../components/Status';
import type { components } from '../../api/schema';

type Percentiles = components['schemas']['Percentiles'];

const PERIODS: [number, MessageKey][] = [
  [15, 'ops.quality.period.15'],
  [60, 'ops.quality.period.60'],
  [360, 'ops.quality.period.360'],
  [1440, 'ops.quality.period.1440'],
];

const MODES: Record<string, MessageKey> = {
  webrtc: 'ops.quality.mode.webrtc',
  'll-hls': 'ops.quality.mode.ll-hls',
  hls: 'ops.quality.mode.hls',
  native: 'ops.quality.mode.native',
};

export function Quality() {
  const { t, locale } = useI18n();
  const [minutes, setMinutes] = useState(60);
  const q = useQuery({
    queryKey: ['ops-quality', minutes],
    queryFn: async () => must(await api.GET('/api/v1/admin/playback-quality', { params: { query: { minutes, limit: 50 } } })),
    refetchInterval: 15_000,
  });
  const fmt = useMemo(() => {
    const int = new Intl.NumberFormat(locale);
    const pct = new Intl.NumberFormat(locale, { style: 'percent', maximumFractionDigits: 1 });
    const ms = new Intl.NumberFormat(locale, { style: 'unit', unit: 'millisecond', maximumFractionDigits: 0 });
    const sec = new Intl.NumberFormat(locale, { style: 'unit', unit: 'second', maximumFractionDigits: 1 });
    return {
      int: (n: number) => int.format(n),
      pct: (r: number) => pct.format(r),
      time: (v: number | null | undefined) => (v === null || v === undefined ? '–' : v < 1000 ? ms.format(v) : sec.format(v / 1000)),
    };
  }, [locale]);
  const modeLabel = (m: string) => (MODES[m] ? t(MODES[m]) : m);
  const items = q.data?.items ?? [];
  const totals = useMemo(() => {
    const byMode = new Map<string, number>();
    let now = 0;
    let sessions = 0;
    let errors = 0;
    let peak = 0;
    for (const it of items) {
      now += it.quality.viewers_now;
      sessions += it.quality.sessions;
      errors += it.quality.errors;
      peak = Math.max(peak, it.quality.viewers_peak);
      for (const m of it.quality.by_mode) byMode.set(m.mode, (byMode.get(m.mode) ?? 0) + m.sessions);
    }
    return { now, sessions, errors, peak, byMode: [...byMode.entries()].sort((a, b) => b[1] - a[1]) };
  }, [items]);
  const period = t(PERIODS.find(([m]) => m === minutes)?.[1] ?? 'ops.quality.period.60');
  const pair = (p: Percentiles) => `${fmt.time(p.p50)} / ${fmt.time(p.p95)}`;
  return (
    <div>
      <h1>{t('ops.quality.title')}</h1>
      <div className="toolbar">
        <label>
          {t('ops.quality.period')}{' '}
          <select name="quality_minutes" value={minutes} onChange={(e) => setMinutes(Number(e.target.value))}>
            {PERIODS.map(([m, key]) => (
              <option key={m} value={m}>
                {t(key)}
              </option>
            ))}
          </select>
        </label>
        <button type="button" className="button button-secondary button-small" disabled={q.isFetching} onClick={() => void q.refetch()}>
          {t('ops.refresh')}
        </button>
      </div>
      <p className="muted small">{t('ops.quality.help')}</p>
      {q.isPending && <Loading />}
      {q.isError && <ErrorMessage error={q.error} retry={() => void q.refetch()} />}
      {q.isSuccess && items.length === 0 && (
        <p className="empty" data-testid="ops-quality-empty">
          {t('ops.quality.none', { period })}
        </p>
      )}
      {items.length > 0 && (
        <>
          <dl className="stats" data-testid="quality-totals">
            <div>
              <dt>{t('ops.quality.lessons')}</dt>
              <dd>{fmt.int(items.length)}</dd>
            </div>
            <div>
              <dt>{t('ops.quality.viewersNow')}</dt>
              <dd>{fmt.int(totals.now)}</dd>
            </div>
            <div>
              <dt>{t('ops.quality.highestPeak')}</dt>
              <dd>{fmt.int(totals.peak)}</dd>
            </div>
            <div>
              <dt>{t('ops.quality.sessions')}</dt>
              <dd>{fmt.int(totals.sessions)}</dd>
            </div>
            <div>
              <dt>{t('ops.quality.errors')}</dt>
              <dd>{fmt.int(totals.errors)}</dd>
            </div>
          </dl>
          <div className="table-wrap">
            <table data-testid="ops-quality" className="quality-table">
              <caption>{t('ops.quality.caption', { period })}</caption>
              <thead>
                <tr>
                  <th scope="col">{t('ops.quality.lesson')}</th>
                  <th scope="col" className="num">
                    {t('ops.quality.viewersNow')}
                  </th>
                  <th scope="col" className="num">
                    {t('ops.quality.peak')}
                  </th>
                  <th scope="col" className="num">
                    {t('ops.quality.sessions')}
                  </th>
                  <th scope="col" className="num">
                    {t('ops.quality.startup')}
                  </th>
                  <th scope="col" className="num">
                    {t('ops.quality.latency')}
                  </th>
                  <th scope="col" className="num">
                    {t('ops.quality.rebuffer')}
                  </th>
                  <th scope="col" className="num">
                    {t('ops.quality.errors')}
                  </th>
                  <th scope="col">{t('ops.quality.modes')}</th>
                </tr>
              </thead>
              <tbody>
                {items.map((it) => {
                  const x = it.quality;
                  return (
                    <tr key={it.lesson_id} data-lesson-id={it.lesson_id}>
                      <th scope="row">
                        <Link href={`~/lessons/${it.lesson_id}`}>{it.title}</Link>
                        <br />
                        <span className="muted small">
                          {t('ops.stream')} <code title={it.live_stream_id}>{it.live_stream_id.slice(0, 8)}</code>
                        </span>
                      </th>
                      <td className="num">{fmt.int(x.viewers_now)}</td>
                      <td className="num">{fmt.int(x.viewers_peak)}</td>
                      <td className="num">{fmt.int(x.sessions)}</td>
                      <td className="num">{pair(x.startup_ms)}</td>
                      <td className="num">{pair(x.latency_ms)}</td>
                      <td className="num">
                        {fmt.pct(x.rebuffer_ratio)}
                        <span className="muted small"> ({t('ops.quality.stalls', { n: x.rebuffer_count })})</span>
                      </td>
                      <td className={`num${x.errors > 0 ? ' ops-warn' : ''}`}>{fmt.int(x.errors)}</td>
                      <td>
                        {x.by_mode.length === 0
                          ? '–'
                          : x.by_mode.map((m) => `${modeLabel(m.mode)} ${fmt.int(m.sessions)}`).join(' · ')}
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
          <h2>{t('ops.quality.byMode')}</h2>
          <div className="table-wrap">
            <table data-testid="ops-quality-modes">
              <caption className="sr-only">{t('ops.quality.byMode')}</caption>
              <thead>
                <tr>
                  <th scope="col">{t('ops.quality.mode')}</th>
                  <th scope="col" className="num">
                    {t('ops.quality.sessions')}
                  </th>
                  <th scope="col" className="num">
                    {t('ops.quality.share')}
                  </th>
                </tr>
              </thead>
              <tbody>
                {totals.byMode.map(([mode, n]) => (
                  <tr key={mode}>
                    <th scope="row">{modeLabel(mode)}</th>
                    <td className="num">{fmt.int(n)}</td>
                    <td className="num">{fmt.pct(totals.sessions > 0 ? n / totals.sessions : 0)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
    </div>
  );
}
