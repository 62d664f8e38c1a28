// /me/orders: the buyer's orders, and a refund request where one can be asked.
import { useState } from 'react';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { api, must } from '../../api/client';
import { useI18n } from '../../lib/i18n';
import { ErrorMessage, Loading } from '../../components/Status';

export default function OrdersPage() {
  const { t, money, dateTime } = useI18n();
  const qc = useQueryClient();
  const [asked, setAsked] = useState<Record<string, string>>({});
  const orders = useQuery({
    queryKey: ['orders'],
    queryFn: async () => must(await api.GET('/api/v1/orders', { params: { query: { limit: 50 } } })),
  });
  if (orders.isPending) return <Loading />;
  if (orders.isError) return <ErrorMessage error={orders.error} retry={() => void orders.refetch()} />;
  const refund = async (id: string) => {
    const r = await api.POST('/api/v1/refunds', {
      params: { header: { 'Idempotency-Key': `refund-${id}` } },
      body: { order_id: id, reason: 'requested in the web app' },
    });
    setAsked({ ...asked, [id]: r.error ? ((r.error as { detail?: string }).detail ?? 'error') : t('orders.refundAsked') });
    void qc.invalidateQueries({ queryKey: ['orders'] });
  };
  return (
    <section className="page">
      <h1>{t('orders.title')}</h1>
      {orders.data.items.length === 0 && <p>{t('orders.empty')}</p>}
      <table>
        <tbody>
          {orders.data.items.map((o) => (
            <tr key={o.id}>
              <td>
                <time dateTime={o.created_at}>{dateTime(o.created_at)}</time>
              </td>
              <td>{o.kind}</td>
              <td>{money(o.amount.amount, o.amount.currency)}</td>
              <td>{o.status}</td>
              <td>
                {asked[o.id] ? (
                  <span role="status">{asked[o.id]}</span>
                ) : (
                  o.status === 'paid' && (
                    <button type="button" className="button button-small button-secondary" onClick={() => void refund(o.id)}>
                      {t('orders.refund')}
                    </button>
                  )
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
