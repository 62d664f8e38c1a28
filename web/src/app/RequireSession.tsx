import type { ReactNode } from 'react';
import { Redirect } from 'wouter';
import { useSession } from '../lib/useSession';
import { Loading } from '../components/Status';

/** Pages for signed-in users: wait for the session to come back, else go to /login and back. */
export function RequireSession({ children }: { children: ReactNode }) {
  const s = useSession();
  if (s.status === 'unknown') return <Loading />;
  if (s.status === 'anonymous') {
    const next = encodeURIComponent(location.pathname + location.search);
    return <Redirect to={`/login?next=${next}${s.reason === 'expired' ? '&expired=1' : ''}`} replace />;
  }
  return <>{children}</>;
}
