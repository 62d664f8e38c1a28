// /recordings/{id}: a replay with seeking, its poster and the MP4 download. Private
// recordings come with signed URLs (a playback token the playlist carries on to its segments).
import { useQuery } from '@tanstack/react-query';
import { api, must } from '../../api/client';
import { useI18n } from '../../lib/i18n';
import { ErrorMessage, Loading } from '../../components/Status';
import { Player } from '../player/Player';

export default function RecordingPage({ id }: { id: string }) {
  const { t, dateTime, duration } = useI18n();
  const rec = useQuery({
    queryKey: ['recording', id],
    queryFn: async () => must(await api.GET('/api/v1/recordings/{id}', { params: { path: { id } } })),
  });
  if (rec.isPending) return <Loading />;
  if (rec.isError) return <ErrorMessage error={rec.error} retry={() => void rec.refetch()} />;
  const r = rec.data;
  return (
    <article className="page">
      <h1>{t('replay.title')}</h1>
      <p className="muted">
        {r.started_at && <time dateTime={r.started_at}>{dateTime(r.started_at)}</time>}
        {r.duration_s ? ` · ${t('replay.duration', { time: duration(r.duration_s) })}` : ''}
      </p>
      {r.status === 'ready' && r.hls_url ? (
        <Player src={r.hls_url} live={false} poster={r.poster_url} title={t('replay.title')} />
      ) : (
        <p role="status">{t('replay.notReady')}</p>
      )}
      {r.mp4_url && (
        <p>
          <a className="button button-secondary" href={r.mp4_url} download>
            {t('replay.download')}
          </a>
        </p>
      )}
    </article>
  );
}
