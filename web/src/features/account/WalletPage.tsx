// /me/wallet: balance, a top-up (through the sandbox here; a real provider where configured),
// and the wallet's transactions.
import { useState } from 'react';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { api, must } from '../../api/client';
import { useI18n } from '../../lib/i18n';
import { ErrorMessage, Loading } from '../../components/Status';

export default function WalletPage() {
  const { t, money, dateTime } = useI18n();
  const qc = useQueryClient();
  const [amount, setAmount] = useState('100');
  const [pendingOrder, setPendingOrder] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const wallet = useQuery({ queryKey: ['wallet'], queryFn: async () => must(await api.GET('/api/v1/wallet')) });
  const txs = useQuery({
    queryKey: ['wallet', 'transactions'],
    queryFn: async () => must(await api.GET('/api/v1/wallet/transactions', { params: { query: { limit: 50 } } })),
  });
  useQuery({
    queryKey: ['order', pendingOrder],
    enabled: pendingOrder !== null,
    queryFn: async () => {
      const o = must(await api.GET('/api/v1/orders/{id}', { params: { path: { id: pendingOrder! } } }));
      if (o.status !== 'pending') {
        setPendingOrder(null);
        void qc.invalidateQueries({ queryKey: ['wallet'] });
      }
      return o;
    },
    refetchInterval: 1000,
  });
  if (wallet.isPending) return <Loading />;
  if (wallet.isError) return <ErrorMessage error={wallet.error} retry={() => void wallet.refetch()} />;
  const w = wallet.data;
  const topUp = async () => {
    setError(null);
    const minor = Math.round(Number(amount) * 100);
    if (!Number.isFinite(minor) || minor <= 0) return;
    try {
      const o = must(
        await api.POST('/api/v1/orders', {
          params: { header: { 'Idempotency-Key': crypto.randomUUID() } },
          body: { kind: 'wallet_topup', amount: { amount: minor, currency: w.balance.currency }, provider: 'sandbox' },
        }),
      );
      setPendingOrder(o.id);
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    }
  };
  return (
    <section className="page narrow">
      <h1>{t('wallet.title')}</h1>
      <p>
        {t('wallet.balance')}: <strong data-testid="balance">{money(w.available.amount, w.available.currency)}</strong>
      </p>
      <div className="form">
        <label>
          {t('wallet.amount')} ({w.balance.currency})
          <input type="number" min="1" step="1" inputMode="decimal" value={amount} onChange={(e) => setAmount(e.target.value)} />
        </label>
        <button type="button" className="button" onClick={topUp} disabled={pendingOrder !== null}>
          {pendingOrder ? t('checkout.waiting') : t('wallet.topup')}
        </button>
        {error && (
          <p className="form-error" role="alert">
            {error}
          </p>
        )}
      </div>
      <h2>{t('wallet.transactions')}</h2>
      {txs.data && txs.data.items.length === 0 && <p>{t('wallet.empty')}</p>}
      <table>
        <tbody>
          {(txs.data?.items ?? []).map((x) => (
            <tr key={x.id}>
              <td>
                <time dateTime={x.created_at}>{dateTime(x.created_at)}</time>
              </td>
              <td>{x.description || x.kind}</td>
              <td>{money(x.amount.amount, x.amount.currency)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
