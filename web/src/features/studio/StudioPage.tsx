// /studio: the teacher's studio. Nested routes (wouter `nest`, so links here are relative to
// /studio and `~/...` leaves it): the course list and a new course, one course's editor with
// its lessons, roster, attendance and recordings, and the earnings with payouts.
import { Link, Route, Switch, useLocation } from 'wouter';
import { useI18n } from '../../lib/i18n';
import { CourseList } from './CourseList';
import { CourseEditor } from './CourseEditor';
import { Earnings } from './Earnings';

export default function StudioPage() {
  const { t } = useI18n();
  const [loc] = useLocation();
  const tab = (href: string, label: string, active: boolean) => (
    <Link href={href} className={active ? 'subnav-on' : undefined} aria-current={active ? 'page' : undefined}>
      {label}
    </Link>
  );
  return (
    <section className="page studio">
      <nav className="subnav" aria-label={t('studio.title')}>
        {tab('/', t('studio.courses'), loc === '/' || loc.startsWith('/courses'))}
        {tab('/earnings', t('studio.earnings'), loc.startsWith('/earnings'))}
      </nav>
      <Switch>
        <Route path="/" component={CourseList} />
        <Route path="/courses/:id/:tab?">{(p) => <CourseEditor id={p.id} tab={p.tab ?? 'details'} />}</Route>
        <Route path="/earnings" component={Earnings} />
        <Route>
          <p>{t('common.notFound')}</p>
        </Route>
      </Switch>
    </section>
  );
}
