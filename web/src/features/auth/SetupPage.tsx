// The first admin without a shell: the server prints /setup#token=… in its log while no admin
// exists (src/identity/setup.rs). The token rides in the fragment, which the browser never
// sends, and is read here; a link without it lets the token be pasted.
import { useEffect, useState, type FormEvent } from 'react';
import { Link, useLocation } from 'wouter';
import { useI18n } from '../../lib/i18n';
import { login } from '../../lib/session';
import { Loading } from '../../components/Status';
import { AccountFields } from './AccountFields';

function tokenFromFragment(): string {
  const hash = window.location.hash.replace(/^#/, '');
  return new URLSearchParams(hash).get('token') ?? '';
}

export function SetupPage() {
  const { t } = useI18n();
  const [, navigate] = useLocation();
  const [needed, setNeeded] = useState<boolean | null>(null);
  const [form, setForm] = useState({ display_name: '', email: '', password: '', token: tokenFromFragment() });
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const fromLink = form.token !== '' && tokenFromFragment() === form.token;
  const set = (k: keyof typeof form) => (e: React.ChangeEvent<HTMLInputElement>) =>
    setForm({ ...form, [k]: e.target.value });

  useEffect(() => {
    fetch('/api/v1/setup')
      .then((r) => (r.ok ? (r.json() as Promise<{ needed: boolean }>) : Promise.reject(r.status)))
      .then((s) => setNeeded(s.needed))
      .catch(() => setNeeded(false));
  }, []);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const body = {
        token: form.token.trim(),
        email: form.email.trim(),
        password: form.password,
        ...(form.display_name.trim() ? { display_name: form.display_name.trim() } : {}),
      };
      const r = await fetch('/api/v1/setup', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      if (!r.ok) {
        const p = (await r.json().catch(() => ({}))) as { code?: string; detail?: string };
        if (p.code === 'setup_done') setNeeded(false);
        else if (p.code === 'setup_token_invalid') setError(t('setup.badToken'));
        else setError(r.status === 429 ? t('auth.rateLimited') : (p.detail ?? `HTTP ${r.status}`));
        return;
      }
      // The token is spent: drop it from the address bar and the history entry.
      window.history.replaceState(null, '', '/setup');
      const l = await login(body.email, body.password);
      navigate(l.kind === 'ok' ? '/ops' : '/login', { replace: true });
    } finally {
      setBusy(false);
    }
  };

  if (needed === null) return <Loading />;
  if (!needed)
    return (
      <section className="page narrow">
        <h1>{t('setup.title')}</h1>
        <p role="status">{t('setup.done')}</p>
        <p>
          <Link href="/login">{t('nav.login')}</Link>
        </p>
      </section>
    );

  return (
    <section className="page narrow">
      <h1>{t('setup.title')}</h1>
      <p>{t('setup.intro')}</p>
      <form onSubmit={submit} className="form" noValidate>
        <AccountFields form={form} set={set} nameRequired={false} />
        {!fromLink && (
          <label>
            {t('setup.token')}
            <input name="token" autoComplete="off" required value={form.token} onChange={set('token')} aria-describedby="setup-token-hint" />
            <small id="setup-token-hint">{t('setup.tokenHint')}</small>
          </label>
        )}
        {error && (
          <p className="form-error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" className="button" disabled={busy}>
          {t('setup.submit')}
        </button>
      </form>
    </section>
  );
}
