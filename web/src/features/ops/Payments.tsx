// Payments: payouts to approve, reject or mark paid (by state), the refunds still in flight
// (pending at their provider, oldest first, with their age), and the payment providers'
// events as received.
import { useState } from 'react';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { api, must } from '../../api/client';
import { useI18n, type I18n } from '../../lib/i18n';
import { ErrorMessage, Loading } from '../../components/Status';
import type { components } from '../../api/schema';

type Refund = components['schemas']['Refund'];

const STATES = ['pending', 'approved', 'paid', 'rejected', 'cancelled', 'expired'] as const;
/** Pending refunds read: at most this many pages of 100 (newest first from the API). */
const REFUND_PAGES = 5;
/** A refund pending longer than this is marked. */
const REFUND_LATE_S = 24 * 3600;

/** How long ago, coarsely: minutes, hours and minutes, or days and hours. */
function age(t: I18n['t'], seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 3600) return t('ops.age.minutes', { n: Math.floor(s / 60) });
  if (s < 86400) return t('ops.age.hours', { h: Math.floor(s / 3600), m: Math.floor((s % 3600) / 60) });
  return t('ops.age.days', { d: Math.floor(s / 86400), h: Math.floor((s % 86400) / 3600) });
}

function RefundsInFlight() {
  const { t, money, dateTime } = useI18n();
  const refunds = useQuery({
    queryKey: ['ops-refunds', 'pending'],
    queryFn: async () => {
      const items: Refund[] = [];
      let cursor: string | undefined;
      for (let page = 1; ; page += 1) {
        const r = must(await api.GET('/api/v1/refunds', { params: { query: { status: 'pending', limit: 100, cursor } } }));
        items.push(...r.items);
        cursor = r.next_cursor ?? undefined;
        if (!cursor || r.items.length === 0) return { items, more: false };
        if (page >= REFUND_PAGES) return { items, more: true };
      }
    },
    refetchInterval: 30_000,
  });
  const now = Date.now();
  const rows = [...(refunds.data?.items ?? [])].sort((a, b) => a.created_at.localeCompare(b.created_at));
  return (
    <section aria-labelledby="ops-refunds-title" data-testid="ops-refunds-section">
      <div className="toolbar">
        <h2 id="ops-refunds-title">{t('ops.refunds.title')}</h2>
        <button type="button" className="button button-secondary button-small" disabled={refunds.isFetching} onClick={() => void refunds.refetch()}>
          {t('ops.refresh')}
        </button>
      </div>
      {refunds.isPending && <Loading />}
      {refunds.isError && <ErrorMessage error={refunds.error} retry={() => void refunds.refetch()} />}
      {refunds.isSuccess && rows.length === 0 && (
        <p className="empty" data-testid="ops-refunds-empty">
          {t('ops.refunds.none')}
        </p>
      )}
      {rows.length > 0 && (
        <div className="table-wrap">
          <table data-testid="ops-refunds">
            <caption className="sr-only">{t('ops.refunds.title')}</caption>
            <thead>
              <tr>
                <th scope="col">{t('ops.refunds.refund')}</th>
                <th scope="col">{t('ops.refunds.order')}</th>
                <th scope="col" className="num">
                  {t('studio.earn.amountCol')}
                </th>
                <th scope="col">{t('ops.pay.provider')}</th>
                <th scope="col">{t('studio.earn.requestedAt')}</th>
                <th scope="col" className="num">
                  {t('ops.refunds.age')}
                </th>
              </tr>
            </thead>
            <tbody>
              {rows.map((r) => {
                const s = (now - Date.parse(r.created_at)) / 1000;
                return (
                  <tr key={r.id} data-refund-id={r.id}>
                    <th scope="row">
                      <code title={r.id}>{r.id.slice(0, 8)}</code>
                    </th>
                    <td>
                      <code title={r.order_id}>{r.order_id.slice(0, 8)}</code>
                    </td>
                    <td className="num">{money(r.amount.amount, r.amount.currency)}</td>
                    <td>{r.provider}</td>
                    <td>
                      <time dateTime={r.created_at}>{dateTime(r.created_at)}</time>
                    </td>
                    <td className={`num${s > REFUND_LATE_S ? ' ops-warn' : ''}`}>{age(t, s)}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
      {refunds.data?.more && <p className="muted small">{t('ops.refunds.more', { n: rows.length })}</p>}
    </section>
  );
}

export function Payments() {
  const { t, money, dateTime } = useI18n();
  const qc = useQueryClient();
  const [status, setStatus] = useState<string>('pending');
  const [msg, setMsg] = useState<{ ok: boolean; text: string } | null>(null);
  const payouts = useQuery({
    queryKey: ['ops-payouts', status],
    queryFn: async () => must(await api.GET('/api/v1/payouts', { params: { query: { status: status || undefined, limit: 100 } } })),
  });
  const events = useQuery({
    queryKey: ['ops-provider-events'],
    queryFn: async () => must(await api.GET('/api/v1/admin/payments/events', { params: { query: { limit: 30 } } })),
  });
  const ids = [...new Set((payouts.data?.items ?? []).map((p) => p.teacher_id))];
  const names = useQuery({
    queryKey: ['profiles', ids.join(',')],
    enabled: ids.length > 0,
    queryFn: async () => must(await api.GET('/api/v1/users/profiles', { params: { query: { ids: ids.join(',') } } })),
  });
  const decide = async (id: string, verb: 'approve' | 'reject' | 'paid') => {
    setMsg(null);
    try {
      if (verb === 'approve') must(await api.POST('/api/v1/admin/payouts/{id}/approve', { params: { path: { id } } }));
      if (verb === 'reject') {
        const reason = window.prompt(t('ops.pay.reason')) ?? '';
        must(await api.POST('/api/v1/admin/payouts/{id}/reject', { params: { path: { id } }, body: { reason } }));
      }
      if (verb === 'paid') {
        const reference = window.prompt(t('ops.pay.reference'));
        if (!reference) return;
        must(await api.POST('/api/v1/admin/payouts/{id}/paid', { params: { path: { id } }, body: { reference } }));
      }
      setMsg({ ok: true, text: t(`ops.pay.done.${verb}`) });
      await qc.invalidateQueries({ queryKey: ['ops-payouts'] });
    } catch (e) {
      setMsg({ ok: false, text: e instanceof Error ? e.message : String(e) });
    }
  };
  return (
    <div>
      <h1>{t('ops.pay.title')}</h1>
      <div className="toolbar">
        <h2>{t('ops.pay.payouts')}</h2>
        <label>
          {t('studio.earn.state')}{' '}
          <select name="payout_status" value={status} onChange={(e) => setStatus(e.target.value)}>
            <option value="">{t('studio.roster.all')}</option>
            {STATES.map((s) => (
              <option key={s} value={s}>
                {t(`payout.status.${s}`)}
              </option>
            ))}
          </select>
        </label>
      </div>
      {msg && (
        <p className={msg.ok ? 'form-ok' : 'form-error'} role={msg.ok ? 'status' : 'alert'}>
          {msg.text}
        </p>
      )}
      {payouts.isPending && <Loading />}
      {payouts.isError && <ErrorMessage error={payouts.error} retry={() => void payouts.refetch()} />}
      {payouts.data && payouts.data.items.length === 0 && <p>{t('studio.earn.noPayouts')}</p>}
      {payouts.data && payouts.data.items.length > 0 && (
        <div className="table-wrap">
          <table data-testid="ops-payouts">
            <thead>
              <tr>
                <th scope="col">{t('studio.earn.requestedAt')}</th>
                <th scope="col">{t('ops.pay.teacher')}</th>
                <th scope="col">{t('studio.earn.amountCol')}</th>
                <th scope="col">{t('studio.earn.destination')}</th>
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
                  <td>{names.data?.items.find((x) => x.id === p.teacher_id)?.display_name ?? p.teacher_id.slice(0, 8)}</td>
                  <td className="num">{money(p.amount.amount, p.amount.currency)}</td>
                  <td>
                    {t(`studio.earn.method.${p.method as 'alipay'}`)}: {p.destination}
                    {p.note && <span className="muted small"> — {p.note}</span>}
                  </td>
                  <td>{t(`payout.status.${p.status as 'pending'}`)}</td>
                  <td className="actions">
                    {p.status === 'pending' && (
                      <>
                        <button type="button" className="button button-small" onClick={() => void decide(p.id, 'approve')}>
                          {t('ops.pay.approve')}
                        </button>
                        <button type="button" className="button button-small button-danger" onClick={() => void decide(p.id, 'reject')}>
                          {t('ops.pay.reject')}
                        </button>
                      </>
                    )}
                    {p.status === 'approved' && (
                      <button type="button" className="button button-small" onClick={() => void decide(p.id, 'paid')}>
                        {t('ops.pay.markPaid')}
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <RefundsInFlight />
      <h2>{t('ops.pay.events')}</h2>
      {events.isError && <ErrorMessage error={events.error} />}
      {events.data && events.data.items.length === 0 && <p>{t('ops.pay.noEvents')}</p>}
      {events.data && events.data.items.length > 0 && (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">{t('ops.audit.when')}</th>
                <th scope="col">{t('ops.pay.provider')}</th>
                <th scope="col">{t('ops.pay.event')}</th>
                <th scope="col">{t('ops.pay.outcome')}</th>
              </tr>
            </thead>
            <tbody>
              {events.data.items.map((e) => (
                <tr key={e.id}>
                  <td>
                    <time dateTime={e.received_at}>{dateTime(e.received_at)}</time>
                  </td>
                  <td>{e.provider}</td>
                  <td>
                    <code>{e.event_type}</code>
                  </td>
                  <td>{e.outcome}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}
