// /ops: the console for ops and admins. Nested routes (relative to /ops): storage, recordings,
// live now, viewing quality, users, audit log, payments, system, webhooks.
import { Link, Redirect, Route, Switch, useLocation } from 'wouter';
import { useI18n } from '../../lib/i18n';
import type { MessageKey } from '../../lib/i18n/en';
import { Storage } from './Storage';
import { OpsRecordings } from './OpsRecordings';
import { LiveNow } from './LiveNow';
import { Quality } from './Quality';
import { Users } from './Users';
import { Audit } from './Audit';
import { Payments } from './Payments';
import { System } from './System';
import { Webhooks } from './Webhooks';

const SECTIONS: [string, MessageKey][] = [
  ['storage', 'ops.nav.storage'],
  ['recordings', 'ops.nav.recordings'],
  ['live', 'ops.nav.live'],
  ['quality', 'ops.nav.quality'],
  ['users', 'ops.nav.users'],
  ['audit', 'ops.nav.audit'],
  ['payments', 'ops.nav.payments'],
  ['system', 'ops.nav.system'],
  ['webhooks', 'ops.nav.webhooks'],
];

export default function OpsPage() {
  const { t } = useI18n();
  const [loc] = useLocation();
  return (
    <section className="page ops">
      <nav className="subnav" aria-label={t('ops.title')}>
        {SECTIONS.map(([k, label]) => {
          const on = loc.startsWith(`/${k}`);
          return (
            <Link key={k} href={`/${k}`} className={on ? 'subnav-on' : undefined} aria-current={on ? 'page' : undefined}>
              {t(label)}
            </Link>
          );
        })}
      </nav>
      <Switch>
        <Route path="/">
          <Redirect to="/storage" replace />
        </Route>
        <Route path="/storage" component={Storage} />
        <Route path="/recordings" component={OpsRecordings} />
        <Route path="/live" component={LiveNow} />
        <Route path="/quality" component={Quality} />
        <Route path="/users" component={Users} />
        <Route path="/audit" component={Audit} />
        <Route path="/payments" component={Payments} />
        <Route path="/system" component={System} />
        <Route path="/webhooks" component={Webhooks} />
        <Route>
          <p>{t('common.notFound')}</p>
        </Route>
      </Switch>
    </section>
  );
}
