// The pages mailed links open: /verify-email?token=… and /reset-password(?token=…).
import { useEffect, useState, type FormEvent } from 'react';
import { Link, useSearch } from 'wouter';
import { useI18n } from '../../lib/i18n';

export function VerifyEmailPage() {
  const { t } = useI18n();
  const token = new URLSearchParams(useSearch()).get('token') ?? '';
  const [result, setResult] = useState<'pending' | 'ok' | 'failed'>('pending');
  useEffect(() => {
    let cancelled = false;
    fetch('/api/v1/auth/verify-email', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token }),
    }).then(
      (r) => !cancelled && setResult(r.ok ? 'ok' : 'failed'),
      () => !cancelled && setResult('failed'),
    );
    return () => {
      cancelled = true;
    };
  }, [token]);
  return (
    <section className="page narrow">
      <h1>{t('auth.verify.title')}</h1>
      <p role="status">
        {result === 'pending' ? t('common.loading') : result === 'ok' ? t('auth.verify.ok') : t('auth.verify.failed')}
      </p>
      <Link href="/courses">{t('common.backHome')}</Link>
    </section>
  );
}

export function ResetPasswordPage() {
  const { t } = useI18n();
  const token = new URLSearchParams(useSearch()).get('token');
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [code, setCode] = useState('');
  const [message, setMessage] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    const r = token
      ? await fetch('/api/v1/auth/password-reset/confirm', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ token, new_password: password, ...(code ? { code } : {}) }),
        })
      : await fetch('/api/v1/auth/password-reset', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ email: email.trim() }),
        });
    if (r.ok) setMessage(token ? t('auth.reset.done') : t('auth.reset.sent'));
    else if (r.status === 429) setError(t('auth.rateLimited'));
    else {
      const p = (await r.json().catch(() => ({}))) as { detail?: string };
      setError(p.detail ?? t('auth.verify.failed'));
    }
  };

  return (
    <section className="page narrow">
      <h1>{t('auth.reset.title')}</h1>
      {message ? (
        <p role="status">
          {message} {token && <Link href="/login">{t('nav.login')}</Link>}
        </p>
      ) : (
        <form onSubmit={submit} className="form">
          {token ? (
            <>
              <label>
                {t('auth.reset.newPassword')}
                <input type="password" autoComplete="new-password" minLength={8} required value={password} onChange={(e) => setPassword(e.target.value)} />
              </label>
              <label>
                {t('auth.mfa.code')}
                <input inputMode="numeric" autoComplete="one-time-code" value={code} onChange={(e) => setCode(e.target.value)} />
              </label>
            </>
          ) : (
            <label>
              {t('auth.email')}
              <input type="email" autoComplete="email" required value={email} onChange={(e) => setEmail(e.target.value)} />
            </label>
          )}
          {error && (
            <p className="form-error" role="alert">
              {error}
            </p>
          )}
          <button type="submit" className="button">
            {token ? t('auth.reset.confirm') : t('auth.reset.request')}
          </button>
        </form>
      )}
    </section>
  );
}
