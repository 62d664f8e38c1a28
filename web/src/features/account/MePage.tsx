// /me: profile (name, avatar, e-mail language, the time zone the studio plans in), password, two-factor (QR code, recovery codes), signed-in devices with revoke
// and "sign out everywhere", and notification preferences.
import { useMemo, useState, type FormEvent } from 'react';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { useLocation } from 'wouter';
import { api, apiFetch, must } from '../../api/client';
import { useI18n, type Locale } from '../../lib/i18n';
import type { MessageKey } from '../../lib/i18n/en';
import { logout, reloadUser } from '../../lib/session';
import { useSession } from '../../lib/useSession';
import { browserTimeZone } from '../../lib/format';

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function Profile() {
  const { t } = useI18n();
  const s = useSession();
  const user = s.status === 'authenticated' ? s.user : null;
  const [name, setName] = useState(user?.display_name ?? '');
  const [locale, setLocale] = useState<string>(user?.locale ?? 'en');
  // '' = the browser's zone (null on the server).
  const [zone, setZone] = useState<string>(user?.time_zone ?? '');
  const zones = useMemo(() => {
    const all = typeof Intl.supportedValuesOf === 'function' ? Intl.supportedValuesOf('timeZone') : [];
    return zone && !all.includes(zone) ? [zone, ...all] : all;
  }, [zone]);
  const [msg, setMsg] = useState<string | null>(null);
  const save = async (e: FormEvent) => {
    e.preventDefault();
    try {
      must(await api.PATCH('/api/v1/me', { body: { display_name: name, locale, time_zone: zone || null } }));
      await reloadUser();
      setMsg(t('me.saved'));
    } catch (err) {
      setMsg(errorText(err));
    }
  };
  return (
    <form className="form" onSubmit={save} aria-labelledby="me-profile">
      <h2 id="me-profile">{t('me.profile')}</h2>
      <p className="muted">{user?.email}</p>
      <div className="avatar-row">
        {user?.avatar_url && <img className="avatar" src={user.avatar_url} alt="" width={64} height={64} />}
        <label>
          {t('me.avatar')}
          <input
            type="file"
            accept="image/png,image/jpeg,image/webp"
            onChange={async (e) => {
              const file = e.target.files?.[0];
              if (!file) return;
              const r = await apiFetch('/api/v1/me/avatar', {
                method: 'PUT',
                headers: { 'content-type': file.type },
                body: file,
              });
              if (r.ok) {
                await reloadUser();
                setMsg(t('me.saved'));
              } else {
                const p = (await r.json().catch(() => ({}))) as { detail?: string };
                setMsg(p.detail ?? `HTTP ${r.status}`);
              }
            }}
          />
        </label>
      </div>
      <label>
        {t('auth.displayName')}
        <input value={name} onChange={(e) => setName(e.target.value)} autoComplete="name" />
      </label>
      <label>
        {t('me.locale')}
        <select value={locale} onChange={(e) => setLocale(e.target.value as Locale)}>
          <option value="zh-CN">简体中文</option>
          <option value="en">English</option>
        </select>
      </label>
      <label>
        {t('me.timeZone')}
        <select name="time_zone" value={zone} onChange={(e) => setZone(e.target.value)}>
          <option value="">{t('me.timeZoneBrowser', { tz: browserTimeZone() })}</option>
          {zones.map((z) => (
            <option key={z} value={z}>
              {z}
            </option>
          ))}
        </select>
      </label>
      <button type="submit" className="button">
        {t('me.save')}
      </button>
      {msg && <p role="status">{msg}</p>}
    </form>
  );
}

function Password() {
  const { t } = useI18n();
  const [, navigate] = useLocation();
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const [msg, setMsg] = useState<string | null>(null);
  const save = async (e: FormEvent) => {
    e.preventDefault();
    try {
      must(await api.POST('/api/v1/me/password', { body: { current_password: current, new_password: next } }));
      // Every session ends with a password change: log in again.
      await logout();
      navigate('/login');
    } catch (err) {
      setMsg(errorText(err));
    }
  };
  return (
    <form className="form" onSubmit={save} aria-labelledby="me-password">
      <h2 id="me-password">{t('me.password')}</h2>
      <label>
        {t('me.currentPassword')}
        <input type="password" autoComplete="current-password" value={current} onChange={(e) => setCurrent(e.target.value)} />
      </label>
      <label>
        {t('me.newPassword')}
        <input type="password" autoComplete="new-password" minLength={8} value={next} onChange={(e) => setNext(e.target.value)} />
      </label>
      <button type="submit" className="button">
        {t('me.changePassword')}
      </button>
      {msg && (
        <p role="alert" className="form-error">
          {msg}
        </p>
      )}
    </form>
  );
}

function TwoFactor() {
  const { t } = useI18n();
  const s = useSession();
  const on = s.status === 'authenticated' && Boolean((s.user as { two_factor_enabled?: boolean }).two_factor_enabled);
  const [password, setPassword] = useState('');
  const [enrol, setEnrol] = useState<{ qr_png: string; secret: string } | null>(null);
  const [code, setCode] = useState('');
  const [codes, setCodes] = useState<string[] | null>(null);
  const [msg, setMsg] = useState<string | null>(null);
  const start = async () => {
    try {
      setEnrol(must(await api.POST('/api/v1/me/two-factor', { body: { password } })));
      setMsg(null);
    } catch (e) {
      setMsg(errorText(e));
    }
  };
  const confirm = async () => {
    try {
      setCodes(must(await api.POST('/api/v1/me/two-factor/confirm', { body: { code } })).recovery_codes);
      setEnrol(null);
      await reloadUser();
    } catch (e) {
      setMsg(errorText(e));
    }
  };
  const disable = async () => {
    try {
      must(await api.POST('/api/v1/me/two-factor/disable', { body: { password, code } }));
      await reloadUser();
    } catch (e) {
      setMsg(errorText(e));
    }
  };
  return (
    <section className="form" aria-labelledby="me-2fa">
      <h2 id="me-2fa">{t('me.twoFactor')}</h2>
      <p>{on ? t('me.twoFactorOn') : t('me.twoFactorOff')}</p>
      {codes && (
        <div role="status">
          <p>{t('me.recoveryCodes')}</p>
          <ul className="codes">
            {codes.map((c) => (
              <li key={c}>
                <code>{c}</code>
              </li>
            ))}
          </ul>
        </div>
      )}
      {!enrol && (
        <label>
          {t('auth.password')}
          <input type="password" autoComplete="current-password" value={password} onChange={(e) => setPassword(e.target.value)} />
        </label>
      )}
      {enrol && (
        <>
          <p>{t('me.twoFactorScan')}</p>
          <img src={enrol.qr_png} alt={t('me.qrAlt')} width={200} height={200} />
          <p>
            <code>{enrol.secret}</code>
          </p>
        </>
      )}
      {(enrol || on) && (
        <label>
          {t('auth.mfa.code')}
          <input inputMode="numeric" autoComplete="one-time-code" value={code} onChange={(e) => setCode(e.target.value)} />
        </label>
      )}
      {on ? (
        <button type="button" className="button button-danger" onClick={disable}>
          {t('me.twoFactorDisable')}
        </button>
      ) : enrol ? (
        <button type="button" className="button" onClick={confirm}>
          {t('me.twoFactorConfirm')}
        </button>
      ) : (
        <button type="button" className="button" onClick={start}>
          {t('me.twoFactorSetup')}
        </button>
      )}
      {msg && (
        <p role="alert" className="form-error">
          {msg}
        </p>
      )}
    </section>
  );
}

function Sessions() {
  const { t, dateTime } = useI18n();
  const qc = useQueryClient();
  const [, navigate] = useLocation();
  const sessions = useQuery({ queryKey: ['me', 'sessions'], queryFn: async () => must(await api.GET('/api/v1/me/sessions')) });
  const revoke = async (id: string, current: boolean) => {
    await api.DELETE('/api/v1/me/sessions/{id}', { params: { path: { id } } });
    if (current) {
      await logout();
      navigate('/login');
    } else void qc.invalidateQueries({ queryKey: ['me', 'sessions'] });
  };
  const everywhere = async () => {
    await api.DELETE('/api/v1/me/sessions');
    await logout();
    navigate('/login');
  };
  return (
    <section aria-labelledby="me-sessions">
      <h2 id="me-sessions">{t('me.sessions')}</h2>
      <ul className="sessions">
        {(sessions.data?.items ?? []).map((s) => (
          <li key={s.id}>
            <span>
              {s.user_agent ?? s.auth_method} · {s.ip ?? ''} · <time dateTime={s.last_used_at}>{dateTime(s.last_used_at)}</time>
              {s.current && <strong> ({t('me.sessionCurrent')})</strong>}
            </span>{' '}
            <button type="button" className="button button-small button-secondary" onClick={() => void revoke(s.id, s.current)}>
              {t('me.revoke')}
            </button>
          </li>
        ))}
      </ul>
      <button type="button" className="button button-danger" onClick={everywhere}>
        {t('me.signOutEverywhere')}
      </button>
    </section>
  );
}

function NotificationPrefs() {
  const { t } = useI18n();
  const qc = useQueryClient();
  const prefs = useQuery({
    queryKey: ['me', 'notification-preferences'],
    queryFn: async () => must(await api.GET('/api/v1/me/notification-preferences')),
  });
  const items = (prefs.data?.items ?? []) as unknown as { kind: string; in_app: boolean; email: boolean }[];
  const toggle = async (kind: string, field: 'in_app' | 'email', value: boolean) => {
    const item = items.find((i) => i.kind === kind);
    if (!item) return;
    await api.PUT('/api/v1/me/notification-preferences', {
      body: { items: [{ ...item, [field]: value }] } as never,
    });
    void qc.invalidateQueries({ queryKey: ['me', 'notification-preferences'] });
  };
  return (
    <section aria-labelledby="me-notifications">
      <h2 id="me-notifications">{t('me.notifications')}</h2>
      <table>
        <tbody>
          {items.map((i) => (
            <tr key={i.kind}>
              <th scope="row">{t(`notify.${i.kind}` as MessageKey)}</th>
              <td>
                <label>
                  <input type="checkbox" checked={i.in_app} onChange={(e) => void toggle(i.kind, 'in_app', e.target.checked)} /> {t('me.inApp')}
                </label>
              </td>
              <td>
                <label>
                  <input type="checkbox" checked={i.email} onChange={(e) => void toggle(i.kind, 'email', e.target.checked)} /> {t('me.byEmail')}
                </label>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

export default function MePage() {
  const { t } = useI18n();
  return (
    <div className="page narrow account">
      <h1>{t('me.title')}</h1>
      <Profile />
      <Password />
      <TwoFactor />
      <Sessions />
      <NotificationPrefs />
    </div>
  );
}
