import type { ReactNode } from 'react';
import { useSession } from '../lib/useSession';
import { hasRole } from '../lib/session';
import { useI18n } from '../lib/i18n';
import type { MessageKey } from '../lib/i18n/en';

/**
 * Pages for some roles only (inside RequireSession). The page says why it is closed; the API
 * refuses the same calls anyway, so this is a courtesy, not the access control.
 */
export function RequireRole({ roles, denied, children }: { roles: string[]; denied: MessageKey; children: ReactNode }) {
  const s = useSession();
  const { t } = useI18n();
  if (!hasRole(s, ...roles)) {
    return (
      <section className="page narrow" data-testid="forbidden">
        <h1>{t('access.deniedTitle')}</h1>
        <p role="alert">{t(denied)}</p>
        <a href="/courses">{t('common.backHome')}</a>
      </section>
    );
  }
  return <>{children}</>;
}
