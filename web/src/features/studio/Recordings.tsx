// A course's recordings (one per lesson session): duration, size, state, poster; play with a
// signed token (private recordings need one), switch visibility, delete, and when retention
// removes each.
import { useState } from 'react';
import { useQueries, useQuery, useQueryClient } from '@tanstack/react-query';
import { api, apiFetch, must, ApiProblem } from '../../api/client';
import { useI18n } from '../../lib/i18n';
import { formatBytes } from '../../lib/format';
import { ErrorMessage, Loading } from '../../components/Status';
import { Player } from '../player/Player';
import type { components } from '../../api/schema';

type Rec = components['schemas']['RecordingResponse'];

export function Recordings({ courseId }: { courseId: string }) {
  const { t } = useI18n();
  const lessons = useQuery({
    queryKey: ['lessons', courseId],
    queryFn: async () => must(await api.GET('/api/v1/courses/{id}/lessons', { params: { path: { id: courseId } } })),
  });
  const withStream = (lessons.data?.items ?? []).filter((l) => l.live_stream_id);
  const recs = useQueries({
    queries: withStream.map((l) => ({
      queryKey: ['recordings', 'stream', l.live_stream_id],
      queryFn: async () =>
        must(await api.GET('/api/v1/recordings', { params: { query: { live_stream_id: l.live_stream_id!, limit: 100 } } })),
      refetchInterval: (q: { state: { data?: { items: Rec[] } } }) =>
        q.state.data?.items.some((r) => r.status === 'recording' || r.status === 'processing' || (r.status === 'ready' && r.mp4_status === 'pending'))
          ? 3000
          : false,
    })),
  });
  if (lessons.isPending) return <Loading />;
  if (lessons.isError) return <ErrorMessage error={lessons.error} retry={() => void lessons.refetch()} />;
  const rows = withStream.flatMap((l, i) =>
    (recs[i]?.data?.items ?? []).map((r) => ({ lesson: l.title, r })),
  );
  if (recs.some((q) => q.isPending)) return <Loading />;
  if (rows.length === 0) return <p>{t('studio.rec.empty')}</p>;
  return (
    <ul className="recordings" data-testid="studio-recordings">
      {rows.map(({ lesson, r }) => (
        <RecordingRow key={r.id} lesson={lesson} r={r} />
      ))}
    </ul>
  );
}

function RecordingRow({ lesson, r }: { lesson: string; r: Rec }) {
  const { t, dateTime, duration, locale } = useI18n();
  const qc = useQueryClient();
  const [playing, setPlaying] = useState<{ hls: string; poster: string | null } | null>(null);
  const [error, setError] = useState<string | null>(null);
  const refresh = () => qc.invalidateQueries({ queryKey: ['recordings'] });
  const signed = async () =>
    must(await api.POST('/api/v1/recordings/{id}/playback-token', { params: { path: { id: r.id } } }));
  const play = async () => {
    setError(null);
    try {
      const tok = await signed();
      setPlaying({ hls: tok.hls_url, poster: r.poster_url ? `${r.poster_url}?token=${tok.token}` : null });
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    }
  };
  const setVisibility = async (visibility: 'public' | 'private') => {
    setError(null);
    try {
      must(await api.PATCH('/api/v1/recordings/{id}', { params: { path: { id: r.id } }, body: { visibility } }));
      await refresh();
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    }
  };
  const remove = async () => {
    if (!window.confirm(t('studio.rec.deleteConfirm', { size: formatBytes(r.size_bytes, locale) }))) return;
    const res = await apiFetch(`/api/v1/recordings/${r.id}`, { method: 'DELETE' });
    if (!res.ok) {
      const p = (await res.json().catch(() => ({}))) as { code?: string; detail?: string };
      setError(new ApiProblem(res.status, p.code, p.detail).message);
      return;
    }
    await refresh();
  };
  // The server's own rule: the stream's retention, else the platform's (null: kept).
  const removeAt = r.expires_at;
  return (
    <li className="recording" data-recording-id={r.id} data-status={r.status}>
      <div className="recording-facts">
        <Poster r={r} />
        <div>
          <strong>{lesson}</strong>
          <p className="muted">
            <time dateTime={r.started_at}>{dateTime(r.started_at)}</time> · {duration(r.duration_s)} ·{' '}
            <span data-testid="rec-size">{formatBytes(r.size_bytes, locale)}</span>
          </p>
          <p>
            <span className={`badge badge-${r.status}`}>{t(`studio.rec.status.${r.status as 'ready'}`)}</span>{' '}
            <span className="badge" data-testid="rec-visibility">
              {r.visibility === 'private' ? t('studio.rec.private') : t('studio.rec.public')}
            </span>
          </p>
          <p className="muted small">{removeAt ? t('studio.rec.removedOn', { date: dateTime(removeAt, { dateStyle: 'medium' }) }) : t('studio.rec.keptForever')}</p>
        </div>
      </div>
      <div className="actions">
        <button type="button" className="button button-small" onClick={() => void play()} disabled={r.status !== 'ready'}>
          {t('player.play')}
        </button>
        <button
          type="button"
          className="button button-small button-secondary"
          onClick={() => void setVisibility(r.visibility === 'private' ? 'public' : 'private')}
        >
          {r.visibility === 'private' ? t('studio.rec.makePublic') : t('studio.rec.makePrivate')}
        </button>
        <button type="button" className="button button-small button-danger" onClick={() => void remove()} disabled={r.status === 'recording' || r.status === 'processing'}>
          {t('studio.delete')}
        </button>
      </div>
      {error && (
        <p className="form-error" role="alert">
          {error}
        </p>
      )}
      {playing && (
        <div className="recording-player">
          <Player src={playing.hls} live={false} poster={playing.poster} title={lesson} />
        </div>
      )}
    </li>
  );
}

/** The poster (a signed URL for private recordings), or a plain box. */
function Poster({ r }: { r: Rec }) {
  const { t } = useI18n();
  const tok = useQuery({
    queryKey: ['recording-token', r.id],
    enabled: !!r.poster_url && r.visibility === 'private',
    staleTime: 60_000,
    queryFn: async () => must(await api.POST('/api/v1/recordings/{id}/playback-token', { params: { path: { id: r.id } } })),
  });
  if (!r.poster_url) return <div className="poster poster-empty" aria-hidden="true" />;
  const src = r.visibility === 'private' ? (tok.data ? `${r.poster_url}?token=${tok.data.token}` : null) : r.poster_url;
  return src ? <img className="poster" src={src} alt={t('studio.rec.poster')} width={160} height={90} /> : <div className="poster poster-empty" aria-hidden="true" />;
}
