// Webhooks (admins): subscribe an integrator's URL to events, see the secret once, send a test,
// follow deliveries with each try, replay one, rotate the secret, disable or delete an endpoint.
import { Fragment, useState } from 'react';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { api, must, mustOk } from '../../api/client';
import { useI18n } from '../../lib/i18n';
import { ErrorMessage, Loading } from '../../components/Status';
import type { components } from '../../api/schema';

type EventType = components['schemas']['WebhookEventType'];
type Endpoint = components['schemas']['WebhookEndpoint'];
type Run = (f: () => Promise<unknown>, done: string) => Promise<void>;

export function Webhooks() {
  const { t } = useI18n();
  const qc = useQueryClient();
  const [msg, setMsg] = useState<string | null>(null);
  const [secret, setSecret] = useState<{ url: string; secret: string } | null>(null);
  const [open, setOpen] = useState<string | null>(null);
  const list = useQuery({
    queryKey: ['ops-webhooks'],
    queryFn: async () => must(await api.GET('/api/v1/admin/webhooks')),
  });
  const run: Run = async (f, done) => {
    setMsg(null);
    try {
      await f();
      setMsg(done);
    } catch (e) {
      setMsg(e instanceof Error ? e.message : String(e));
    }
    await qc.invalidateQueries({ queryKey: ['ops-webhooks'] });
    await qc.invalidateQueries({ queryKey: ['ops-webhook-deliveries'] });
  };
  return (
    <div>
      <h1>{t('ops.hooks.title')}</h1>
      <p className="muted">{t('ops.hooks.intro')}</p>
      {secret && (
        <div className="notice" role="status" data-testid="webhook-secret">
          <p>{t('ops.hooks.secretOnce', { url: secret.url })}</p>
          <code className="secret">{secret.secret}</code>
          <button type="button" className="button button-small button-secondary" onClick={() => setSecret(null)}>
            {t('ops.hooks.secretSaved')}
          </button>
        </div>
      )}
      {msg && <p role="status">{msg}</p>}
      {list.isPending && <Loading />}
      {list.isError && <ErrorMessage error={list.error} retry={() => void list.refetch()} />}
      {list.data && list.data.items.length === 0 && <p>{t('ops.hooks.none')}</p>}
      {list.data && list.data.items.length > 0 && (
        <div className="table-wrap">
          <table data-testid="ops-webhooks">
            <thead>
              <tr>
                <th scope="col">{t('ops.hooks.url')}</th>
                <th scope="col">{t('ops.hooks.events')}</th>
                <th scope="col">{t('ops.hooks.state')}</th>
                <th scope="col">{t('ops.hooks.pending')}</th>
                <th scope="col">{t('ops.hooks.failed')}</th>
                <th scope="col">
                  <span className="sr-only">{t('studio.actions')}</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {list.data.items.map((e) => (
                <Fragment key={e.id}>
                  <EndpointRow e={e} run={run} open={open === e.id} toggle={() => setOpen(open === e.id ? null : e.id)} secretShown={(s) => setSecret({ url: e.url, secret: s })} />
                  {open === e.id && (
                    <tr id={`deliveries-${e.id}`} className="subrow">
                      <td colSpan={6}>
                        <Deliveries endpoint={e} run={run} />
                      </td>
                    </tr>
                  )}
                </Fragment>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {list.data && (
        <NewEndpoint
          types={list.data.event_types}
          created={(url, s) => {
            setSecret({ url, secret: s });
            void qc.invalidateQueries({ queryKey: ['ops-webhooks'] });
          }}
        />
      )}
    </div>
  );
}

function NewEndpoint({ types, created }: { types: EventType[]; created: (url: string, secret: string) => void }) {
  const { t } = useI18n();
  const [url, setUrl] = useState('');
  const [description, setDescription] = useState('');
  const [events, setEvents] = useState<EventType[]>([]);
  const [error, setError] = useState<string | null>(null);
  const submit = async () => {
    setError(null);
    try {
      const r = must(await api.POST('/api/v1/admin/webhooks', { body: { url: url.trim(), description, events } }));
      created(r.url, r.secret);
      setUrl('');
      setDescription('');
      setEvents([]);
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    }
  };
  return (
    <form
      className="card form webhook-form"
      aria-label={t('ops.hooks.new')}
      onSubmit={(e) => {
        e.preventDefault();
        void submit();
      }}
    >
      <h2>{t('ops.hooks.new')}</h2>
      <label>
        {t('ops.hooks.url')}
        <input name="url" type="url" required placeholder="https://lms.example.edu/hooks/wemaster" value={url} onChange={(e) => setUrl(e.target.value)} />
      </label>
      <label>
        {t('ops.hooks.description')}
        <input name="description" maxLength={500} value={description} onChange={(e) => setDescription(e.target.value)} />
      </label>
      <fieldset className="roles">
        <legend>{t('ops.hooks.events')}</legend>
        {types.map((ty) => (
          <label key={ty} className="check">
            <input
              type="checkbox"
              name="event"
              value={ty}
              checked={events.includes(ty)}
              onChange={(e) => setEvents(e.target.checked ? [...events, ty] : events.filter((x) => x !== ty))}
            />
            <span>
              {t(`ops.hooks.type.${ty}`)} <code className="small">{ty}</code>
            </span>
          </label>
        ))}
      </fieldset>
      {error && (
        <p role="alert" className='form-error'>
          {error}
        </p>
      )}
      <button type="submit" className="button" disabled={events.length === 0 || !url.trim()}>
        {t('ops.hooks.create')}
      </button>
    </form>
  );
}

function EndpointRow({ e, run, open, toggle, secretShown }: { e: Endpoint; run: Run; open: boolean; toggle: () => void; secretShown: (s: string) => void }) {
  const { t } = useI18n();
  const path = { params: { path: { id: e.id } } };
  return (
    <tr data-endpoint-id={e.id}>
      <td>
        <span className="url">{e.url}</span>
        {e.description && (
          <>
            <br />
            <span className="muted small">{e.description}</span>
          </>
        )}
        <br />
        <span className="muted small">{t('ops.hooks.secretHint', { hint: e.secret_hint })}</span>
      </td>
      <td className="small">{e.events.join(', ')}</td>
      <td>{e.enabled ? t('ops.hooks.enabled') : t('ops.hooks.disabled')}</td>
      <td>{e.pending}</td>
      <td className={e.failed > 0 ? 'form-error' : undefined}>{e.failed}</td>
      <td className="actions">
        <button type="button" className="button button-small" onClick={() => void run(async () => must(await api.POST('/api/v1/admin/webhooks/{id}/test', path)), t('ops.hooks.testSent'))}>
          {t('ops.hooks.test')}
        </button>
        <button type="button" className="button button-small button-secondary" aria-expanded={open} aria-controls={`deliveries-${e.id}`} onClick={toggle}>
          {t('ops.hooks.deliveries')}
        </button>
        <button
          type="button"
          className="button button-small button-secondary"
          onClick={() =>
            void run(async () => must(await api.PATCH('/api/v1/admin/webhooks/{id}', { ...path, body: { enabled: !e.enabled } })), e.enabled ? t('ops.hooks.disabledDone') : t('ops.hooks.enabledDone'))
          }
        >
          {e.enabled ? t('ops.hooks.disable') : t('ops.hooks.enable')}
        </button>
        <button
          type="button"
          className="button button-small button-secondary"
          onClick={() =>
            window.confirm(t('ops.hooks.rotateConfirm')) &&
            void run(async () => secretShown(must(await api.POST('/api/v1/admin/webhooks/{id}/secret', path)).secret), t('ops.hooks.rotated'))
          }
        >
          {t('ops.hooks.rotate')}
        </button>
        <button
          type="button"
          className="button button-small button-danger"
          onClick={() => window.confirm(t('ops.hooks.deleteConfirm', { url: e.url })) && void run(async () => mustOk(await api.DELETE('/api/v1/admin/webhooks/{id}', path)), t('ops.hooks.deleted'))}
        >
          {t('ops.hooks.delete')}
        </button>
      </td>
    </tr>
  );
}

function Deliveries({ endpoint, run }: { endpoint: Endpoint; run: Run }) {
  const { t, dateTime } = useI18n();
  const qc = useQueryClient();
  const [shown, setShown] = useState<string | null>(null);
  const list = useQuery({
    queryKey: ['ops-webhook-deliveries', endpoint.id],
    queryFn: async () => {
      const page = must(await api.GET('/api/v1/admin/webhooks/{id}/deliveries', { params: { path: { id: endpoint.id }, query: { limit: 50 } } }));
      // The endpoint's waiting/failed counts move with its deliveries.
      void qc.invalidateQueries({ queryKey: ['ops-webhooks'] });
      return page;
    },
    // Pending ones change by themselves (retries): follow them while the list is open.
    refetchInterval: (q) => (q.state.data?.items.some((d) => d.status === 'pending') ? 2000 : false),
  });
  if (list.isPending) return <Loading />;
  if (list.isError) return <ErrorMessage error={list.error} retry={() => void list.refetch()} />;
  if (list.data.items.length === 0) return <p className="muted">{t('ops.hooks.noDeliveries')}</p>;
  return (
    <table data-testid="webhook-deliveries" aria-label={t('ops.hooks.deliveriesOf', { url: endpoint.url })}>
      <thead>
        <tr>
          <th scope="col">{t('ops.hooks.when')}</th>
          <th scope="col">{t('ops.hooks.event')}</th>
          <th scope="col">{t('ops.hooks.state')}</th>
          <th scope="col">{t('ops.hooks.tries')}</th>
          <th scope="col">{t('ops.hooks.last')}</th>
          <th scope="col">
            <span className="sr-only">{t('studio.actions')}</span>
          </th>
        </tr>
      </thead>
      <tbody>
        {list.data.items.map((d) => (
          <Fragment key={d.id}>
            <tr data-delivery-id={d.id} data-status={d.status}>
              <td>
                <time dateTime={d.created_at}>{dateTime(d.created_at)}</time>
              </td>
              <td>
                <code className="small">{d.event_type}</code>
              </td>
              <td className={d.status === 'failed' ? 'form-error' : undefined}>{t(`ops.hooks.status.${d.status}` as 'ops.hooks.status.pending')}</td>
              <td>{d.attempts}</td>
              <td className="small">{[d.last_status, d.last_error].filter((x) => x != null && x !== '').join(' · ') || '—'}</td>
              <td className="actions">
                <button type="button" className="button button-small button-secondary" aria-expanded={shown === d.id} onClick={() => setShown(shown === d.id ? null : d.id)}>
                  {t('ops.hooks.details')}
                </button>
                <button
                  type="button"
                  className="button button-small"
                  onClick={() => void run(async () => must(await api.POST('/api/v1/admin/webhooks/deliveries/{id}/replay', { params: { path: { id: d.id } } })), t('ops.hooks.replayed'))}
                >
                  {t('ops.hooks.replay')}
                </button>
              </td>
            </tr>
            {shown === d.id && (
              <tr className="subrow">
                <td colSpan={6}>
                  <DeliveryDetail id={d.id} />
                </td>
              </tr>
            )}
          </Fragment>
        ))}
      </tbody>
    </table>
  );
}

function DeliveryDetail({ id }: { id: string }) {
  const { t, dateTime } = useI18n();
  const d = useQuery({
    queryKey: ['ops-webhook-deliveries', 'one', id],
    queryFn: async () => must(await api.GET('/api/v1/admin/webhooks/deliveries/{id}', { params: { path: { id } } })),
  });
  if (d.isPending) return <Loading />;
  if (d.isError) return <ErrorMessage error={d.error} retry={() => void d.refetch()} />;
  return (
    <div className="delivery-detail">
      <p className="small">
        {t('ops.hooks.eventId')} <code>{d.data.event_id}</code>
      </p>
      <pre className="small">{JSON.stringify(d.data.data, null, 2)}</pre>
      {d.data.tries.length === 0 ? (
        <p className="muted">{t('ops.hooks.noTries')}</p>
      ) : (
        <ol data-testid="webhook-tries">
          {d.data.tries.map((a) => (
            <li key={a.at}>
              <time dateTime={a.at}>{dateTime(a.at)}</time> — {a.status ?? '—'} {a.error && `· ${a.error}`} · {a.duration_ms} ms
              {a.response && <pre className="small">{a.response}</pre>}
            </li>
          ))}
        </ol>
      )}
    </div>
  );
}
