import type { ReactNode } from 'react';
import { Link, useLocation } from 'wouter';
import { LOCALES, useI18n, type Locale } from '../lib/i18n';
import { useSession } from '../lib/useSession';
import { hasRole, logout } from '../lib/session';
import { NotificationBell } from '../features/notifications/NotificationBell';

export function Layout({ children }: { children: ReactNode }) {
  const { t, locale, setLocale } = useI18n();
  const session = useSession();
  const [, navigate] = useLocation();
  const signedIn = session.status === 'authenticated';
  return (
    <>
      <a className="skip" href="#content">
        {t('app.skip')}
      </a>
      <header className="topbar">
        <Link href="/courses" className="brand">
          {t('app.name')}
        </Link>
        <nav aria-label={t('nav.menu')} className="nav">
          <Link href="/courses">{t('nav.courses')}</Link>
          {hasRole(session, 'teacher', 'admin') && <Link href="/studio">{t('nav.studio')}</Link>}
          {hasRole(session, 'ops', 'admin') && <Link href="/ops">{t('nav.ops')}</Link>}
          {signedIn && <Link href="/me/wallet">{t('nav.wallet')}</Link>}
          {signedIn && <Link href="/me/orders">{t('nav.orders')}</Link>}
        </nav>
        <div className="topbar-end">
          <label className="lang">
            <span className="sr-only">{t('nav.language')}</span>
            <select value={locale} onChange={(e) => setLocale(e.target.value as Locale)} data-testid="language">
              {LOCALES.map((l) => (
                <option key={l.id} value={l.id} lang={l.id}>
                  {l.label}
                </option>
              ))}
            </select>
          </label>
          {session.status === 'authenticated' ? (
            <>
              <NotificationBell userId={session.user.id} />
              <Link href="/me" className="me-link">
                {session.user.display_name}
              </Link>
              <button
                type="button"
                className="link-button"
                onClick={async () => {
                  await logout();
                  navigate('/login');
                }}
              >
                {t('nav.logout')}
              </button>
            </>
          ) : session.status === 'anonymous' ? (
            <>
              <Link href="/login">{t('nav.login')}</Link>
              <Link href="/register" className="button button-small">
                {t('nav.register')}
              </Link>
            </>
          ) : null}
        </div>
      </header>
      <main id="content" tabIndex={-1}>
        {children}
      </main>
    </>
  );
}
