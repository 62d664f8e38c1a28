// Routes compose the features; features do not import each other (style.md, "The web app").
import { lazy, Suspense } from 'react';
import { Redirect, Route, Switch } from 'wouter';
import { Layout } from './Layout';
import { useI18n } from '../lib/i18n';
import { Loading } from '../components/Status';
import { LoginPage } from '../features/auth/LoginPage';
import { RegisterPage } from '../features/auth/RegisterPage';
import { VerifyEmailPage, ResetPasswordPage } from '../features/auth/EmailLinkPages';
import { SetupPage } from '../features/auth/SetupPage';
import { CataloguePage } from '../features/catalogue/CataloguePage';
import { CoursePage } from '../features/catalogue/CoursePage';
import { RequireSession } from './RequireSession';
import { RequireRole } from './RequireRole';

// The classroom (player, chat, WHIP) and the account pages load when first visited.
const ClassroomPage = lazy(() => import('../features/classroom/ClassroomPage'));
const RecordingPage = lazy(() => import('../features/replay/RecordingPage'));
const MePage = lazy(() => import('../features/account/MePage'));
const WalletPage = lazy(() => import('../features/account/WalletPage'));
const OrdersPage = lazy(() => import('../features/account/OrdersPage'));
const StudioPage = lazy(() => import('../features/studio/StudioPage'));
const OpsPage = lazy(() => import('../features/ops/OpsPage'));

function NotFound() {
  const { t } = useI18n();
  return (
    <section className="page narrow">
      <h1>{t('common.notFound')}</h1>
      <a href="/courses">{t('common.backHome')}</a>
    </section>
  );
}

export function App() {
  return (
    <Layout>
      <Suspense fallback={<Loading />}>
        <Switch>
          <Route path="/">
            <Redirect to="/courses" replace />
          </Route>
          <Route path="/login" component={LoginPage} />
          <Route path="/register" component={RegisterPage} />
          <Route path="/setup" component={SetupPage} />
          <Route path="/verify-email" component={VerifyEmailPage} />
          <Route path="/reset-password" component={ResetPasswordPage} />
          <Route path="/courses" component={CataloguePage} />
          <Route path="/courses/:id">{(p) => <CoursePage id={p.id} />}</Route>
          <Route path="/lessons/:id">
            {(p) => (
              <RequireSession>
                <ClassroomPage id={p.id} />
              </RequireSession>
            )}
          </Route>
          <Route path="/recordings/:id">
            {(p) => (
              <RequireSession>
                <RecordingPage id={p.id} />
              </RequireSession>
            )}
          </Route>
          <Route path="/me">
            <RequireSession>
              <MePage />
            </RequireSession>
          </Route>
          <Route path="/me/wallet">
            <RequireSession>
              <WalletPage />
            </RequireSession>
          </Route>
          <Route path="/me/orders">
            <RequireSession>
              <OrdersPage />
            </RequireSession>
          </Route>
          <Route path="/studio" nest>
            <RequireSession>
              <RequireRole roles={['teacher', 'admin']} denied="access.studio">
                <StudioPage />
              </RequireRole>
            </RequireSession>
          </Route>
          <Route path="/ops" nest>
            <RequireSession>
              <RequireRole roles={['ops', 'admin']} denied="access.ops">
                <OpsPage />
              </RequireRole>
            </RequireSession>
          </Route>
          <Route component={NotFound} />
        </Switch>
      </Suspense>
    </Layout>
  );
}
