import { useEffect, useState, type FormEvent } from 'react';
import { Link, useLocation, useSearch } from 'wouter';
import { useQuery } from '@tanstack/react-query';
import { useI18n } from '../../lib/i18n';
import { login, loginMfa, type LoginResult } from '../../lib/session';
import { useSession } from '../../lib/useSession';

/** Only same-app paths: an open redirect through ?next= would be a phishing aid. */
function safeNext(next: string | null): string {
  return next && next.startsWith('/') && !next.startsWith('//') ? next : '/courses';
}

export function LoginPage() {
  const { t } = useI18n();
  const params = new URLSearchParams(useSearch());
  const [, navigate] = useLocation();
  const session = useSession();
  const next = safeNext(params.get('next'));
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [challenge, setChallenge] = useState<string | null>(params.get('mfa'));
  const [code, setCode] = useState('');
  const [recovery, setRecovery] = useState('');
  const [error, setError] = useState<string | null>(
    params.get('expired') ? t('auth.sessionExpired') : params.get('oidc_error') ? t('auth.login.failed') : null,
  );
  const [busy, setBusy] = useState(false);
  const providers = useQuery({
    queryKey: ['oidc-providers'],
    queryFn: async () => ((await (await fetch('/api/v1/auth/oidc')).json()) as { items: string[] }).items,
    staleTime: Infinity,
  });

  useEffect(() => {
    if (session.status === 'authenticated') navigate(next, { replace: true });
  }, [session.status, next, navigate]);

  const outcome = (r: LoginResult, mfaStep: boolean) => {
    if (r.kind === 'ok') navigate(next, { replace: true });
    else if (r.kind === 'mfa') {
      setChallenge(r.challenge);
      setError(null);
    } else if (r.status === 429) setError(t('auth.rateLimited'));
    else setError(mfaStep ? t('auth.mfa.failed') : t('auth.login.failed'));
  };

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    try {
      if (challenge) {
        outcome(await loginMfa(challenge, recovery ? { recovery_code: recovery } : { code }), true);
      } else {
        outcome(await login(email.trim(), password), false);
      }
    } finally {
      setBusy(false);
    }
  };

  return (
    <section className="page narrow">
      <h1>{challenge ? t('auth.mfa.title') : t('auth.login.title')}</h1>
      <form onSubmit={submit} className="form" noValidate>
        {challenge ? (
          <>
            <label>
              {t('auth.mfa.code')}
              <input
                name="code"
                inputMode="numeric"
                autoComplete="one-time-code"
                pattern="[0-9]*"
                maxLength={6}
                value={code}
                onChange={(e) => setCode(e.target.value)}
                autoFocus
              />
            </label>
            <label>
              {t('auth.mfa.recovery')}
              <input name="recovery" value={recovery} onChange={(e) => setRecovery(e.target.value)} />
            </label>
          </>
        ) : (
          <>
            <label>
              {t('auth.email')}
              <input
                name="email"
                type="email"
                autoComplete="email"
                required
                value={email}
                onChange={(e) => setEmail(e.target.value)}
              />
            </label>
            <label>
              {t('auth.password')}
              <input
                name="password"
                type="password"
                autoComplete="current-password"
                required
                value={password}
                onChange={(e) => setPassword(e.target.value)}
              />
            </label>
          </>
        )}
        {error && (
          <p className="form-error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" className="button" disabled={busy}>
          {challenge ? t('auth.mfa.submit') : t('auth.login.submit')}
        </button>
      </form>
      {!challenge && (
        <>
          {(providers.data ?? []).length > 0 && (
            <div className="oidc">
              {providers.data!.map((p) => (
                <a key={p} className="button button-secondary" href={`/api/v1/auth/oidc/${encodeURIComponent(p)}/login`}>
                  {t('auth.oidc.with', { name: p })}
                </a>
              ))}
            </div>
          )}
          <p>
            <Link href="/reset-password">{t('auth.login.forgot')}</Link>
          </p>
          <p>
            {t('auth.login.noAccount')} <Link href={`/register?next=${encodeURIComponent(next)}`}>{t('nav.register')}</Link>
          </p>
        </>
      )}
    </section>
  );
}
