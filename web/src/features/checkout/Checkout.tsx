// Buying a course: enroll (free), or an order paid from the wallet or through a provider. The
// sandbox provider confirms by itself after a moment (a signed callback, like a real one);
// Alipay and WeChat Pay show their QR code, Stripe its card form (StripeCard, when the server
// configures one). Either way the order is polled until it is paid, and the course page
// refreshes.
import { useEffect, useState } from 'react';
import { useQuery } from '@tanstack/react-query';
import { api, must, ApiProblem } from '../../api/client';
import { useI18n } from '../../lib/i18n';
import { QrCode } from './QrCode';
import { StripeCard } from './StripeCard';

type Provider = 'wallet' | 'sandbox' | 'stripe' | 'alipay' | 'wechatpay';

function newKey(): string {
  return crypto.randomUUID();
}

export function Checkout({
  courseId,
  price,
  onDone,
}: {
  courseId: string;
  price: { amount: number; currency: string };
  onDone: () => void;
}) {
  const { t, money } = useI18n();
  const [provider, setProvider] = useState<Provider>('sandbox');
  const [orderId, setOrderId] = useState<string | null>(null);
  const [qr, setQr] = useState<string | null>(null);
  const [clientSecret, setClientSecret] = useState<string | null>(null);
  const [cardConfirmed, setCardConfirmed] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [idempotencyKey] = useState(newKey);
  const enabled = useQuery({
    queryKey: ['payment-providers'],
    queryFn: async () => must(await api.GET('/api/v1/payments/providers')),
    staleTime: Infinity,
  });
  const wallet = useQuery({
    queryKey: ['wallet'],
    queryFn: async () => must(await api.GET('/api/v1/wallet')),
  });
  const order = useQuery({
    queryKey: ['order', orderId],
    queryFn: async () => must(await api.GET('/api/v1/orders/{id}', { params: { path: { id: orderId! } } })),
    enabled: orderId !== null,
    refetchInterval: (q) => (q.state.data?.status === 'pending' ? 1000 : false),
  });
  const status = order.data?.status;
  useEffect(() => {
    if (status === 'paid') onDone();
  }, [status, onDone]);

  if (price.amount === 0) {
    return (
      <button
        type="button"
        className="button"
        disabled={busy}
        onClick={async () => {
          setBusy(true);
          try {
            must(await api.POST('/api/v1/courses/{id}/enrollments', { params: { path: { id: courseId } }, body: {} }));
            onDone();
          } catch (e) {
            setError(e instanceof Error ? e.message : String(e));
          } finally {
            setBusy(false);
          }
        }}
      >
        {t('course.enroll')}
      </button>
    );
  }

  const pay = async () => {
    setBusy(true);
    setError(null);
    try {
      const created = must(
        await api.POST('/api/v1/orders', {
          params: { header: { 'Idempotency-Key': `${idempotencyKey}-${provider}` } },
          body: { kind: 'course', course_id: courseId, amount: price, provider },
        }),
      );
      setOrderId(created.id);
      const ins = created.payment.instructions as Record<string, unknown> | null | undefined;
      const code = ins && (ins.qr_code ?? ins.code_url);
      if (typeof code === 'string') setQr(code);
      if (typeof ins?.client_secret === 'string') setClientSecret(ins.client_secret);
      if (created.status === 'paid') onDone();
    } catch (e) {
      if (e instanceof ApiProblem && e.code === 'insufficient_funds') setError(t('checkout.insufficient'));
      else setError(e instanceof Error ? e.message : String(e));
    } finally {
      setBusy(false);
    }
  };

  // Stripe's card form while the order waits for a card (shown when the server configures it).
  const stripe = enabled.data?.stripe;
  const cardForm = clientSecret && !cardConfirmed && stripe ? { ...stripe, clientSecret } : null;
  const balance = wallet.data?.balance;
  const providers: Provider[] = ['wallet', ...((enabled.data?.items ?? []) as Provider[])];
  return (
    <div className="checkout">
      <fieldset disabled={busy || orderId !== null}>
        <legend>{t('checkout.method')}</legend>
        {providers.map((p) => (
          <label key={p} className="radio">
            <input type="radio" name="provider" value={p} checked={provider === p} onChange={() => setProvider(p)} />
            {p === 'wallet'
              ? t('checkout.provider.wallet', { balance: balance ? money(balance.amount, balance.currency) : '…' })
              : t(`checkout.provider.${p}`)}
          </label>
        ))}
      </fieldset>
      {orderId === null ? (
        <button type="button" className="button" onClick={pay} disabled={busy}>
          {t('checkout.pay', { price: money(price.amount, price.currency) })}
        </button>
      ) : status === 'paid' ? (
        <p role="status" className="pill pill-ok">
          {t('checkout.paid')}
        </p>
      ) : status && status !== 'pending' ? (
        <p role="alert" className="form-error">
          {t('checkout.failed', { detail: status })}
        </p>
      ) : (
        <div role="status">
          {cardForm && (
            <StripeCard
              publishableKey={cardForm.publishable_key}
              jsUrl={cardForm.js_url}
              clientSecret={cardForm.clientSecret}
              price={money(price.amount, price.currency)}
              onConfirmed={() => setCardConfirmed(true)}
            />
          )}
          {qr && (
            <figure className="qr-box">
              <QrCode text={qr} label={t('checkout.scanQr')} />
              <figcaption>{t('checkout.scanQr')}</figcaption>
            </figure>
          )}
          {/* With a card form, the wait starts once the card went through. */}
          {!cardForm && <p>{t('checkout.waiting')}</p>}
        </div>
      )}
      {error && (
        <p role="alert" className="form-error">
          {error}
        </p>
      )}
    </div>
  );
}
