// The teacher's earnings: balance, available, held and owed; sales and refunds per day
// (uPlot, over the posted transactions of up to CHART_PAGES pages); the transactions (100 at a
// time) with a CSV export of every page (the API's `?format=csv`, following its `Link` header);
// payout requests and their states.
import { useMemo, useState } from 'react';
import { useInfiniteQuery, useQuery, useQueryClient } from '@tanstack/react-query';
import { api, apiFetch, must } from '../../api/client';
import { useI18n } from '../../lib/i18n';
import { ErrorMessage, Loading } from '../../components/Status';
import { DayChart } from '../../components/Chart';
import { download, perDay } from '../../lib/format';
import { EXPORT_PAGE_CAP, fetchAllCsv, fetchAllPages } from './paging';

const METHODS = ['bank_transfer', 'alipay', 'wechatpay'] as const;
/** The chart reads at most this many pages of 100 posted transactions. */
const CHART_PAGES = 10;

export function Earnings() {
  const { t, money, dateTime, locale } = useI18n();
  const qc = useQueryClient();
  const earnings = useQuery({ queryKey: ['earnings'], queryFn: async () => must(await api.GET('/api/v1/earnings')) });
  const txs = useInfiniteQuery({
    queryKey: ['earnings', 'transactions'],
    initialPageParam: undefined as string | undefined,
    queryFn: async ({ pageParam }) =>
      must(await api.GET('/api/v1/earnings/transactions', { params: { query: { limit: 100, cursor: pageParam } } })),
    getNextPageParam: (p) => p.next_cursor ?? undefined,
  });
  const txRows = txs.data?.pages.flatMap((p) => p.items) ?? [];
  // The chart's own read: posted movements only, every page up to CHART_PAGES.
  const posted = useQuery({
    queryKey: ['earnings', 'chart'],
    queryFn: () =>
      fetchAllPages(
        async (cursor) =>
          must(await api.GET('/api/v1/earnings/transactions', { params: { query: { limit: 100, state: 'posted', cursor } } })),
        { cap: CHART_PAGES },
      ),
  });
  const [exporting, setExporting] = useState<number | null>(null);
  const [exportMsg, setExportMsg] = useState<{ ok: boolean; text: string } | null>(null);
  const payouts = useQuery({
    queryKey: ['payouts'],
    queryFn: async () => must(await api.GET('/api/v1/payouts', { params: { query: { limit: 50 } } })),
  });
  const [form, setForm] = useState({ amount: '', method: 'bank_transfer', destination: '', note: '' });
  const [msg, setMsg] = useState<{ ok: boolean; text: string } | null>(null);
  const currency = earnings.data?.available.currency ?? 'CNY';
  const chart = useMemo(() => {
    const items = (posted.data?.items ?? []).filter((x) => x.state === 'posted');
    const r = perDay(items, (x) => x.created_at, [
      (x) => (x.kind === 'purchase' && x.amount.amount > 0 ? x.amount.amount : 0),
      (x) => (x.kind.startsWith('refund') ? Math.abs(x.amount.amount) : 0),
    ]);
    return {
      days: r.days,
      series: [
        { label: t('studio.earn.sales'), color: '#1d4ed8', values: r.values[0] ?? [] },
        { label: t('studio.earn.refunds'), color: '#b91c1c', values: r.values[1] ?? [] },
      ],
    };
  }, [posted.data, t]);
  const fmt = useMemo(() => (v: number) => money(v, currency), [money, currency]);
  const dayLabel = useMemo(() => (d: number) => dateTime(new Date(d * 1000), { dateStyle: 'medium', timeZone: 'UTC' }), [dateTime]);
  if (earnings.isPending) return <Loading />;
  if (earnings.isError) return <ErrorMessage error={earnings.error} retry={() => void earnings.refetch()} />;
  const e = earnings.data;
  const ask = async (ev: React.FormEvent) => {
    ev.preventDefault();
    setMsg(null);
    const digits = new Intl.NumberFormat('en', { style: 'currency', currency }).resolvedOptions().maximumFractionDigits ?? 2;
    const amount = Math.round(Number(form.amount) * 10 ** digits);
    try {
      must(
        await api.POST('/api/v1/payouts', {
          params: { header: { 'Idempotency-Key': crypto.randomUUID() } },
          body: { amount: { amount, currency }, method: form.method, destination: form.destination, note: form.note },
        }),
      );
      setForm({ ...form, amount: '', note: '' });
      setMsg({ ok: true, text: t('studio.earn.requested') });
      await qc.invalidateQueries({ queryKey: ['earnings'] });
      await qc.invalidateQueries({ queryKey: ['payouts'] });
    } catch (err) {
      setMsg({ ok: false, text: err instanceof Error ? err.message : String(err) });
    }
  };
  const exportCsv = async () => {
    setExporting(0);
    setExportMsg(null);
    try {
      const r = await fetchAllCsv('/api/v1/earnings/transactions?format=csv&limit=100', { onPage: setExporting });
      download('earnings.csv', new Blob([r.text], { type: 'text/csv;charset=utf-8' }));
      setExportMsg(
        r.truncated ? { ok: false, text: t('studio.export.truncated', { n: EXPORT_PAGE_CAP * 100 }) } : { ok: true, text: t('studio.export.done') },
      );
    } catch (err) {
      setExportMsg({ ok: false, text: t('attendance.csvFailed', { detail: err instanceof Error ? err.message : String(err) }) });
    } finally {
      setExporting(null);
    }
  };
  const cancel = async (id: string) => {
    await apiFetch(`/api/v1/payouts/${id}/cancel`, { method: 'POST' });
    await qc.invalidateQueries({ queryKey: ['payouts'] });
    await qc.invalidateQueries({ queryKey: ['earnings'] });
  };
  return (
    <div className="earnings">
      <h1>{t('studio.earnings')}</h1>
      <dl className="stats" data-testid="earnings">
        <div>
          <dt>{t('studio.earn.available')}</dt>
          <dd data-testid="earn-available">{money(e.available.amount, e.available.currency)}</dd>
        </div>
        <div>
          <dt>{t('studio.earn.balance')}</dt>
          <dd>{money(e.balance.amount, e.balance.currency)}</dd>
        </div>
        <div>
          <dt>{t('studio.earn.held')}</dt>
          <dd>{money(e.held.amount, e.held.currency)}</dd>
        </div>
        <div>
          <dt>{t('studio.earn.owed')}</dt>
          <dd>{money(e.owed.amount, e.owed.currency)}</dd>
        </div>
        <div>
          <dt>{t('studio.earn.paidOut')}</dt>
          <dd>{money(e.paid_out.amount, e.paid_out.currency)}</dd>
        </div>
      </dl>
      <h2>{t('studio.earn.chart')}</h2>
      {chart.days.length ? (
        <DayChart label={t('studio.earn.chart')} days={chart.days} series={chart.series} format={fmt} dateLabel={dayLabel} testId="earnings-chart" xLabel={t('chart.day')} />
      ) : (
        <p>{t('studio.earn.noSales')}</p>
      )}
      {posted.data?.truncated && <p className="muted small">{t('studio.earn.chartPartial', { n: posted.data.items.length })}</p>}
      {posted.isError && <ErrorMessage error={posted.error} retry={() => void posted.refetch()} />}
      <h2>{t('studio.earn.payouts')}</h2>
      <form className="form panel" onSubmit={ask} data-testid="payout-form">
        <div className="row">
          <label>
            {t('studio.earn.amount', { currency })}
            <input name="payout_amount" type="number" min="0.01" step="0.01" required value={form.amount} onChange={(x) => setForm({ ...form, amount: x.target.value })} />
          </label>
          <label>
            {t('studio.earn.method')}
            <select name="payout_method" value={form.method} onChange={(x) => setForm({ ...form, method: x.target.value })}>
              {METHODS.map((m) => (
                <option key={m} value={m}>
                  {t(`studio.earn.method.${m}`)}
                </option>
              ))}
            </select>
          </label>
          <label>
            {t('studio.earn.destination')}
            <input name="payout_destination" required maxLength={200} value={form.destination} onChange={(x) => setForm({ ...form, destination: x.target.value })} />
          </label>
        </div>
        <label>
          {t('studio.earn.note')}
          <input name="payout_note" maxLength={500} value={form.note} onChange={(x) => setForm({ ...form, note: x.target.value })} />
        </label>
        <button type="submit" className="button">
          {t('studio.earn.request')}
        </button>
        {msg && (
          <p className={msg.ok ? 'form-ok' : 'form-error'} role={msg.ok ? 'status' : 'alert'}>
            {msg.text}
          </p>
        )}
      </form>
      {payouts.data && payouts.data.items.length === 0 && <p>{t('studio.earn.noPayouts')}</p>}
      {payouts.data && payouts.data.items.length > 0 && (
        <div className="table-wrap">
          <table data-testid="payouts">
            <thead>
              <tr>
                <th scope="col">{t('studio.earn.requestedAt')}</th>
                <th scope="col">{t('studio.earn.amountCol')}</th>
                <th scope="col">{t('studio.earn.method')}</th>
                <th scope="col">{t('studio.earn.state')}</th>
                <th scope="col">
                  <span className="sr-only">{t('studio.actions')}</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {payouts.data.items.map((p) => (
                <tr key={p.id} data-payout-id={p.id}>
                  <td>
                    <time dateTime={p.created_at}>{dateTime(p.created_at)}</time>
                  </td>
                  <td>{money(p.amount.amount, p.amount.currency)}</td>
                  <td>{t(`studio.earn.method.${p.method as 'alipay'}`)}</td>
                  <td>
                    <span className={`badge badge-payout-${p.status}`} data-testid="payout-status">
                      {t(`payout.status.${p.status as 'pending'}`)}
                    </span>
                    {p.reason && <span className="muted"> — {p.reason}</span>}
                    {p.paid_reference && <span className="muted"> — {p.paid_reference}</span>}
                  </td>
                  <td>
                    {p.status === 'pending' && (
                      <button type="button" className="button button-small button-secondary" onClick={() => void cancel(p.id)}>
                        {t('studio.earn.cancel')}
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <div className="toolbar">
        <h2>{t('studio.earn.transactions')}</h2>
        <button
          type="button"
          className="button button-secondary"
          data-testid="earnings-csv"
          disabled={exporting !== null}
          aria-busy={exporting !== null}
          onClick={() => void exportCsv()}
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
      {txs.isError && <ErrorMessage error={txs.error} retry={() => void txs.refetch()} />}
      {txs.data && txRows.length === 0 && <p>{t('wallet.empty')}</p>}
      {txRows.length > 0 && (
        <div className="table-wrap">
          <table data-testid="earnings-transactions">
            <caption className="sr-only">{t('studio.earn.transactions')}</caption>
            <thead>
              <tr>
                <th scope="col">{t('studio.earn.col.when')}</th>
                <th scope="col">{t('studio.earn.col.description')}</th>
                <th scope="col">{t('studio.earn.state')}</th>
                <th scope="col" className="num">
                  {t('studio.earn.amountCol')}
                </th>
              </tr>
            </thead>
            <tbody>
              {txRows.map((x) => (
                <tr key={x.id}>
                  <td>
                    <time dateTime={x.created_at}>{dateTime(x.created_at)}</time>
                  </td>
                  <td>{x.description || x.kind}</td>
                  <td>{x.state}</td>
                  <td className="num">{money(x.amount.amount, x.amount.currency)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {txs.hasNextPage && (
        <button type="button" className="button button-secondary" disabled={txs.isFetchingNextPage} onClick={() => void txs.fetchNextPage()}>
          {t('catalogue.more')}
        </button>
      )}
      <p className="muted small" lang={locale}>
        {t('studio.earn.note2')}
      </p>
    </div>
  );
}
