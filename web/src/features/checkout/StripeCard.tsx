// Stripe's card form. Stripe.js (from the URL the server configures, loaded only when a card
// payment starts) draws the card fields in frames of its own, so card numbers never touch our
// page or server, and confirms the order's PaymentIntent with them; 3-D Secure, when the bank
// asks for it, is Stripe.js's own dialog. The order becomes paid by Stripe's signed webhook,
// which the checkout waits for (a confirmed card is not yet a paid order).
import { useEffect, useRef, useState } from 'react';
import { useI18n } from '../../lib/i18n';

/** The part of Stripe.js this form uses (https://docs.stripe.com/js). */
interface CardElement {
  mount(el: HTMLElement): void;
  destroy?(): void;
  unmount?(): void;
}
interface StripeJs {
  elements(): { create(type: 'card', options?: Record<string, unknown>): CardElement };
  confirmCardPayment(
    clientSecret: string,
    data: { payment_method: { card: CardElement } },
  ): Promise<{ error?: { message?: string } | null; paymentIntent?: { status: string } }>;
}
declare global {
  interface Window {
    Stripe?: (publishableKey: string, options?: { locale?: string }) => StripeJs;
  }
}

const loads = new Map<string, Promise<void>>();

/** Load Stripe.js once per page (a plain <script src>, which the page's CSP admits). */
function loadStripeJs(url: string): Promise<void> {
  let p = loads.get(url);
  if (!p) {
    p = new Promise<void>((resolve, reject) => {
      const s = document.createElement('script');
      s.src = url;
      s.async = true;
      s.onload = () => (window.Stripe ? resolve() : reject(new Error('Stripe.js did not load')));
      s.onerror = () => reject(new Error('Stripe.js did not load'));
      document.head.appendChild(s);
    });
    p.catch(() => loads.delete(url)); // a later attempt may succeed (network back)
    loads.set(url, p);
  }
  return p;
}

export function StripeCard({
  publishableKey,
  jsUrl,
  clientSecret,
  price,
  onConfirmed,
}: {
  publishableKey: string;
  jsUrl: string;
  clientSecret: string;
  price: string;
  /** The card went through: from now on the order waits for Stripe's webhook. */
  onConfirmed: () => void;
}) {
  const { t, locale } = useI18n();
  const host = useRef<HTMLDivElement>(null);
  const parts = useRef<{ stripe: StripeJs; card: CardElement } | null>(null);
  const [ready, setReady] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    let cancelled = false;
    let card: CardElement | null = null;
    loadStripeJs(jsUrl)
      .then(() => {
        if (cancelled || !host.current || !window.Stripe) return;
        // Stripe.js speaks both of our languages: `zh` is Simplified Chinese there.
        const stripe = window.Stripe(publishableKey, { locale: locale.startsWith('zh') ? 'zh' : 'en' });
        card = stripe.elements().create('card', { hidePostalCode: true });
        card.mount(host.current);
        parts.current = { stripe, card };
        setReady(true);
      })
      .catch(() => !cancelled && setError(t('checkout.cardUnavailable')));
    return () => {
      cancelled = true;
      parts.current = null;
      if (card) (card.destroy ?? card.unmount)?.call(card);
    };
  }, [jsUrl, publishableKey, locale, t]);

  const pay = async () => {
    const p = parts.current;
    if (!p) return;
    setBusy(true);
    setError(null);
    try {
      const r = await p.stripe.confirmCardPayment(clientSecret, { payment_method: { card: p.card } });
      if (r.error) setError(r.error.message || t('checkout.cardDeclined'));
      else onConfirmed();
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    } finally {
      setBusy(false);
    }
  };

  return (
    <div className="stripe-card" data-ready={ready}>
      <p id="stripe-card-label">{t('checkout.cardDetails')}</p>
      <div ref={host} className="stripe-card-field" role="group" aria-labelledby="stripe-card-label" />
      <button type="button" className="button" onClick={pay} disabled={!ready || busy}>
        {busy ? t('checkout.cardConfirming') : t('checkout.pay', { price })}
      </button>
      {error && (
        <p role="alert" className="form-error">
          {error}
        </p>
      )}
    </div>
  );
}
