// Live now: active sessions with protocol, bitrate, frame rate, resolution, time live and
// viewers; end (complete) or disable a stream.
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { api, must } from '../../api/client';
import { useI18n } from '../../lib/i18n';
import { ErrorMessage, Loading } from '../../components/Status';

export function LiveNow() {
  const { t, duration } = useI18n();
  const qc = useQueryClient();
  const live = useQuery({
    queryKey: ['ops-live'],
    queryFn: async () => must(await api.GET('/api/v1/live-streams', { params: { query: { status: 'active', limit: 100 } } })),
    refetchInterval: 5000,
  });
  if (live.isPending) return <Loading />;
  if (live.isError) return <ErrorMessage error={live.error} retry={() => void live.refetch()} />;
  const act = async (id: string, verb: 'complete' | 'disable') => {
    if (!window.confirm(t(verb === 'complete' ? 'ops.live.endConfirm' : 'ops.live.disableConfirm'))) return;
    if (verb === 'complete') must(await api.POST('/api/v1/live-streams/{id}/complete', { params: { path: { id } } }));
    else must(await api.POST('/api/v1/live-streams/{id}/disable', { params: { path: { id } } }));
    await qc.invalidateQueries({ queryKey: ['ops-live'] });
  };
  const items = live.data.items;
  return (
    <div>
      <h1>{t('ops.live.title')}</h1>
      {items.length === 0 && <p>{t('ops.live.none')}</p>}
      {items.length > 0 && (
        <div className="table-wrap">
          <table data-testid="ops-live">
            <thead>
              <tr>
                <th scope="col">{t('ops.live.stream')}</th>
                <th scope="col">{t('ops.live.protocol')}</th>
                <th scope="col">{t('teacher.health.bitrate')}</th>
                <th scope="col">{t('teacher.health.fps')}</th>
                <th scope="col">{t('teacher.health.resolution')}</th>
                <th scope="col">{t('teacher.health.uptime')}</th>
                <th scope="col">{t('ops.live.viewers')}</th>
                <th scope="col">
                  <span className="sr-only">{t('studio.actions')}</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {items.map((s) => {
                const a = s.active_session;
                return (
                  <tr key={s.id}>
                    <td>{s.title}</td>
                    <td>{a?.protocol.toUpperCase() ?? '—'}</td>
                    <td className="num">{a ? `${(a.bitrate_bps / 1000).toFixed(0)} kb/s` : '—'}</td>
                    <td className="num">{a?.frame_rate ? a.frame_rate.toFixed(0) : '—'}</td>
                    <td>{a?.width && a.height ? `${a.width}×${a.height}` : '—'}</td>
                    <td className="num">{a ? duration((Date.now() - Date.parse(a.started_at)) / 1000) : '—'}</td>
                    <td className="num">{a?.viewers ?? '—'}</td>
                    <td className="actions">
                      <button type="button" className="button button-small button-secondary" onClick={() => void act(s.id, 'complete')}>
                        {t('ops.live.end')}
                      </button>
                      <button type="button" className="button button-small button-danger" onClick={() => void act(s.id, 'disable')}>
                        {t('ops.live.disable')}
                      </button>
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}
