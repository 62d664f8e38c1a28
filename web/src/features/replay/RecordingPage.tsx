// /recordings/{id}: a replay with seeking, its poster and the MP4 download. Private
// recordings come with signed URLs (a playback token the playlist carries on to its segments).
// Under the player, the lesson's timeline (ReplayStage): chapters, heat strip, chat replay.
// Only the recording's owner, admins and ops read a recording here, and they may set its
// chapters (the server says 403 to anyone else).
import { useQuery } from '@tanstack/react-query';
import { api, must } from '../../api/client';
import { useI18n } from '../../lib/i18n';
import { ErrorMessage, Loading } from '../../components/Status';
import { ReplayStage } from './ReplayStage';

export default function RecordingPage({ id }: { id: string }) {
  const { t, dateTime, duration } = useI18n();
  const rec = useQuery({
    queryKey: ['recording', id],
    queryFn: async () => must(await api.GET('/api/v1/recordings/{id}', { params: { path: { id } } })),
  });
  // A private recording plays with signed URLs: a playback token for the playlist (carried on
  // to its segments), the poster and the MP4.
  const isPrivate = rec.data?.visibility === 'private';
  const signed = useQuery({
    queryKey: ['recording-token', id],
    enabled: isPrivate,
    staleTime: 60_000,
    queryFn: async () => must(await api.POST('/api/v1/recordings/{id}/playback-token', { params: { path: { id } } })),
  });
  if (rec.isPending || (isPrivate && signed.isPending)) return <Loading />;
  if (rec.isError) return <ErrorMessage error={rec.error} retry={() => void rec.refetch()} />;
  if (signed.isError) return <ErrorMessage error={signed.error} retry={() => void signed.refetch()} />;
  const r = rec.data;
  const token = isPrivate ? signed.data?.token : undefined;
  const withToken = (url: string) => (token ? `${url}?token=${encodeURIComponent(token)}` : url);
  return (
    <article className="page">
      <h1>{t('replay.title')}</h1>
      <p className="muted">
        {r.started_at && <time dateTime={r.started_at}>{dateTime(r.started_at)}</time>}
        {r.duration_s ? ` · ${t('replay.duration', { time: duration(r.duration_s) })}` : ''}
      </p>
      {r.status === 'ready' && r.hls_url ? (
        <ReplayStage
          recordingId={r.id}
          src={withToken(r.hls_url)}
          poster={r.poster_url ? withToken(r.poster_url) : null}
          title={t('replay.title')}
          canEditChapters
        />
      ) : (
        <p role="status">{t('replay.notReady')}</p>
      )}
      {r.mp4_url && (
        <p>
          <a className="button button-secondary" href={withToken(r.mp4_url)} download>
            {t('replay.download')}
          </a>
        </p>
      )}
    </article>
  );
}
