import { useState, type FormEvent } from 'react';
import { Link, useLocation, useSearch } from 'wouter';
import { useI18n } from '../../lib/i18n';
import { login } from '../../lib/session';
import { AccountFields } from './AccountFields';

export function RegisterPage() {
  const { t, locale } = useI18n();
  const [, navigate] = useLocation();
  const next = new URLSearchParams(useSearch()).get('next');
  const [form, setForm] = useState({ email: '', password: '', display_name: '' });
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [sent, setSent] = useState<string | null>(null);
  const set = (k: keyof typeof form) => (e: React.ChangeEvent<HTMLInputElement>) =>
    setForm({ ...form, [k]: e.target.value });

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const r = await fetch('/api/v1/auth/register', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ ...form, email: form.email.trim(), locale }),
      });
      if (!r.ok) {
        const p = (await r.json().catch(() => ({}))) as { detail?: string };
        setError(r.status === 429 ? t('auth.rateLimited') : (p.detail ?? `HTTP ${r.status}`));
        return;
      }
      // The answer is the same whether or not the address already had an account (the
      // owner of a taken one is mailed instead). Signed in at once when the server allows it;
      // otherwise (auth.require_verified_email, or a taken address) the mail says what next.
      const l = await login(form.email.trim(), form.password);
      const to = next && next.startsWith('/') && !next.startsWith('//') ? next : '/courses';
      if (l.kind === 'error') setSent(form.email.trim());
      else navigate(l.kind === 'ok' ? to : '/login', { replace: true });
    } finally {
      setBusy(false);
    }
  };

  if (sent)
    return (
      <section className="page narrow">
        <h1>{t('auth.register.title')}</h1>
        <p role="status">{t('auth.register.done', { email: sent })}</p>
        <p>
          <Link href="/login">{t('nav.login')}</Link>
        </p>
      </section>
    );

  return (
    <section className="page narrow">
      <h1>{t('auth.register.title')}</h1>
      <form onSubmit={submit} className="form" noValidate>
        <AccountFields form={form} set={set} />
        {error && (
          <p className="form-error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" className="button" disabled={busy}>
          {t('auth.register.submit')}
        </button>
      </form>
      <p>
        {t('auth.register.haveAccount')} <Link href="/login">{t('nav.login')}</Link>
      </p>
    </section>
  );
}
