// Users: search by email, roles (grant/remove), disable/enable, their devices (sessions: where,
// how, last use; sign one out) and sign out everywhere.
import { Fragment, useState } from 'react';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { api, must, mustOk } from '../../api/client';
import { useI18n } from '../../lib/i18n';
import { ErrorMessage, Loading } from '../../components/Status';
import type { components } from '../../api/schema';

type Role = components['schemas']['Role'];
const ROLES: Role[] = ['student', 'teacher', 'ops', 'admin'];

export function Users() {
  const { t, dateTime } = useI18n();
  const qc = useQueryClient();
  const [q, setQ] = useState('');
  const [email, setEmail] = useState('');
  const [msg, setMsg] = useState<string | null>(null);
  const [open, setOpen] = useState<string | null>(null);
  const users = useQuery({
    queryKey: ['ops-users', email],
    queryFn: async () => must(await api.GET('/api/v1/admin/users', { params: { query: { email: email || undefined, limit: 50 } } })),
  });
  const run = async (f: () => Promise<unknown>, done: string) => {
    setMsg(null);
    try {
      await f();
      setMsg(done);
      await qc.invalidateQueries({ queryKey: ['ops-users'] });
      await qc.invalidateQueries({ queryKey: ['ops-user-sessions'] });
    } catch (e) {
      setMsg(e instanceof Error ? e.message : String(e));
    }
  };
  return (
    <div>
      <h1>{t('ops.users.title')}</h1>
      <form
        className="search"
        role="search"
        onSubmit={(e) => {
          e.preventDefault();
          setEmail(q.trim());
        }}
      >
        <label className="sr-only" htmlFor="user-q">
          {t('ops.users.search')}
        </label>
        <input id="user-q" type="search" placeholder={t('ops.users.search')} value={q} onChange={(e) => setQ(e.target.value)} />
        <button type="submit" className="button">
          {t('catalogue.searchButton')}
        </button>
      </form>
      {msg && <p role="status">{msg}</p>}
      {users.isPending && <Loading />}
      {users.isError && <ErrorMessage error={users.error} retry={() => void users.refetch()} />}
      {users.data && (
        <div className="table-wrap">
          <table data-testid="ops-users">
            <thead>
              <tr>
                <th scope="col">{t('ops.users.user')}</th>
                <th scope="col">{t('ops.users.roles')}</th>
                <th scope="col">{t('ops.users.status')}</th>
                <th scope="col">{t('ops.users.since')}</th>
                <th scope="col">
                  <span className="sr-only">{t('studio.actions')}</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {users.data.items.map((u) => (
                <Fragment key={u.id}>
                <tr>
                  <td>
                    {u.display_name}
                    <br />
                    <span className="muted small">{u.email}</span>
                    {u.two_factor_enabled && <span className="badge">2FA</span>}
                  </td>
                  <td>
                    <fieldset className="roles">
                      <legend className="sr-only">{t('ops.users.rolesOf', { name: u.display_name })}</legend>
                      {ROLES.map((r) => (
                        <label key={r} className="check">
                          <input
                            type="checkbox"
                            checked={u.roles.includes(r)}
                            onChange={(e) =>
                              void run(
                                async () =>
                                  e.target.checked
                                    ? must(await api.POST('/api/v1/admin/users/{id}/roles', { params: { path: { id: u.id } }, body: { role: r } }))
                                    : must(await api.DELETE('/api/v1/admin/users/{id}/roles/{role}', { params: { path: { id: u.id, role: r } } })),
                                t('ops.users.rolesSaved'),
                              )
                            }
                          />
                          {t(`role.${r}`)}
                        </label>
                      ))}
                    </fieldset>
                  </td>
                  <td>{u.status === 'active' ? t('ops.users.active') : t('ops.users.disabled')}</td>
                  <td>
                    <time dateTime={u.created_at}>{dateTime(u.created_at, { dateStyle: 'medium' })}</time>
                  </td>
                  <td className="actions">
                    {u.status === 'active' ? (
                      <button
                        type="button"
                        className="button button-small button-danger"
                        onClick={() => void run(async () => mustOk(await api.POST('/api/v1/admin/users/{id}/disable', { params: { path: { id: u.id } } })), t('ops.users.disabledDone'))}
                      >
                        {t('ops.users.disable')}
                      </button>
                    ) : (
                      <button
                        type="button"
                        className="button button-small"
                        onClick={() => void run(async () => mustOk(await api.POST('/api/v1/admin/users/{id}/enable', { params: { path: { id: u.id } } })), t('ops.users.enabledDone'))}
                      >
                        {t('ops.users.enable')}
                      </button>
                    )}
                    <button
                      type="button"
                      className="button button-small button-secondary"
                      aria-expanded={open === u.id}
                      aria-controls={`sessions-${u.id}`}
                      onClick={() => setOpen(open === u.id ? null : u.id)}
                    >
                      {t('ops.users.devices')}
                    </button>
                    <button
                      type="button"
                      className="button button-small button-secondary"
                      onClick={() =>
                        void run(async () => mustOk(await api.POST('/api/v1/admin/users/{id}/revoke-sessions', { params: { path: { id: u.id } } })), t('ops.users.revoked'))
                      }
                    >
                      {t('ops.users.revoke')}
                    </button>
                    {u.two_factor_enabled && (
                      <button
                        type="button"
                        className="button button-small button-secondary"
                        onClick={() =>
                          window.confirm(t('ops.users.resetTwoFactorConfirm', { email: u.email })) &&
                          void run(
                            async () => mustOk(await api.POST('/api/v1/admin/users/{id}/reset-two-factor', { params: { path: { id: u.id } } })),
                            t('ops.users.twoFactorReset'),
                          )
                        }
                      >
                        {t('ops.users.resetTwoFactor')}
                      </button>
                    )}
                  </td>
                </tr>
                {open === u.id && (
                  <tr id={`sessions-${u.id}`} className="subrow">
                    <td colSpan={5}>
                      <UserSessions id={u.id} name={u.display_name} run={run} />
                    </td>
                  </tr>
                )}
                </Fragment>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}

/** A user's live sessions (devices), each of which the admin can sign out. */
function UserSessions({ id, name, run }: { id: string; name: string; run: (f: () => Promise<unknown>, done: string) => Promise<void> }) {
  const { t, dateTime } = useI18n();
  const list = useQuery({
    queryKey: ['ops-user-sessions', id],
    queryFn: async () => must(await api.GET('/api/v1/admin/users/{id}/sessions', { params: { path: { id } } })),
  });
  if (list.isPending) return <Loading />;
  if (list.isError) return <ErrorMessage error={list.error} retry={() => void list.refetch()} />;
  if (list.data.items.length === 0) return <p className="muted">{t('ops.users.noDevices', { name })}</p>;
  return (
    <table data-testid="user-sessions" aria-label={t('ops.users.devicesOf', { name })}>
      <thead>
        <tr>
          <th scope="col">{t('ops.users.device')}</th>
          <th scope="col">{t('ops.users.ip')}</th>
          <th scope="col">{t('ops.users.method')}</th>
          <th scope="col">{t('ops.users.lastUsed')}</th>
          <th scope="col">{t('ops.users.signedIn')}</th>
          <th scope="col">
            <span className="sr-only">{t('studio.actions')}</span>
          </th>
        </tr>
      </thead>
      <tbody>
        {list.data.items.map((s) => (
          <tr key={s.id} data-session-id={s.id}>
            <td className="small">{s.user_agent || '—'}</td>
            <td>{s.ip || '—'}</td>
            <td>{s.auth_method}</td>
            <td>
              <time dateTime={s.last_used_at}>{dateTime(s.last_used_at)}</time>
            </td>
            <td>
              <time dateTime={s.created_at}>{dateTime(s.created_at)}</time>
            </td>
            <td className="actions">
              <button
                type="button"
                className="button button-small button-danger"
                onClick={() =>
                  void run(
                    async () => mustOk(await api.DELETE('/api/v1/admin/users/{id}/sessions/{session_id}', { params: { path: { id, session_id: s.id } } })),
                    t('ops.users.deviceSignedOut'),
                  )
                }
              >
                {t('ops.users.signOutDevice')}
              </button>
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
