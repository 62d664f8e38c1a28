// The teacher's side of the classroom: go live from the browser (camera or screen share, over
// WHIP with a publish token, never the stream key), or the OBS/ffmpeg settings; stream health
// while live; end the lesson; join the Jitsi meeting.
import { useEffect, useRef, useState } from 'react';
import { useQuery } from '@tanstack/react-query';
import { api, must } from '../../api/client';
import { useI18n } from '../../lib/i18n';
import { formatDuration } from '../../lib/i18n';
import { publish, type WhipSession } from './whip';

type Source = 'camera' | 'screen' | 'encoder';

interface Lesson {
  id: string;
  kind: string;
  live_stream_id?: string | null;
  rtmp_url?: string | null;
}

function useDevices(kind: MediaDeviceKind, ready: boolean) {
  const [list, setList] = useState<MediaDeviceInfo[]>([]);
  useEffect(() => {
    if (!ready) return;
    const load = () =>
      navigator.mediaDevices.enumerateDevices().then((d) => setList(d.filter((x) => x.kind === kind)));
    void load();
    navigator.mediaDevices.addEventListener('devicechange', load);
    return () => navigator.mediaDevices.removeEventListener('devicechange', load);
  }, [kind, ready]);
  return list;
}

export function TeacherPanel({ lesson, onEnded }: { lesson: Lesson; onEnded: () => void }) {
  const { t } = useI18n();
  const [source, setSource] = useState<Source>('camera');
  const [stream, setStream] = useState<MediaStream | null>(null);
  const [camera, setCamera] = useState('');
  const [mic, setMic] = useState('');
  const [whip, setWhip] = useState<WhipSession | null>(null);
  const [phase, setPhase] = useState<'idle' | 'connecting' | 'live'>('idle');
  const [error, setError] = useState<string | null>(null);
  const [key, setKey] = useState<string | null>(null);
  const [showKey, setShowKey] = useState(false);
  const preview = useRef<HTMLVideoElement>(null);
  const cameras = useDevices('videoinput', stream !== null);
  const mics = useDevices('audioinput', stream !== null);
  const streamId = lesson.live_stream_id;

  // The live session, for the capture effect: a capture made while live replaces the tracks
  // being sent (no new session, so the stream, its recording and the viewers carry on).
  const live = useRef<WhipSession | null>(null);
  live.current = whip;

  // Capture for the preview whenever the source or a device changes (not for OBS), also while
  // live: switching camera ↔ screen or another device mid-lesson is the common case.
  useEffect(() => {
    if (source === 'encoder') return;
    let cancelled = false;
    let captured: MediaStream | null = null;
    (async () => {
      try {
        const audio: MediaTrackConstraints | boolean = mic ? { deviceId: { exact: mic } } : true;
        if (source === 'camera') {
          captured = await navigator.mediaDevices.getUserMedia({
            video: camera ? { deviceId: { exact: camera }, width: 1280, height: 720 } : { width: 1280, height: 720 },
            audio,
          });
        } else {
          const screen = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: 30 }, audio: false });
          const voice = await navigator.mediaDevices.getUserMedia({ audio });
          captured = new MediaStream([...screen.getVideoTracks(), ...voice.getAudioTracks()]);
          // "Stop sharing" in the browser's own bar ends the screen track: back to the camera
          // rather than sending a frozen picture.
          screen.getVideoTracks()[0]?.addEventListener('ended', () => setSource('camera'));
        }
        if (cancelled) return captured.getTracks().forEach((tr) => tr.stop());
        if (live.current) await live.current.replace(captured);
        setStream(captured);
        setError(null);
      } catch (e) {
        if (!cancelled) setError(t('teacher.mediaError', { detail: e instanceof Error ? e.message : String(e) }));
      }
    })();
    return () => {
      cancelled = true;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [source, camera, mic]);

  // Stop the previous capture when a new one replaces it, and on leaving the page.
  useEffect(() => {
    if (preview.current) preview.current.srcObject = stream;
    return () => stream?.getTracks().forEach((tr) => tr.stop());
  }, [stream]);
  useEffect(() => () => void whip?.stop(), [whip]);

  const health = useQuery({
    queryKey: ['live-stream', streamId],
    queryFn: async () => must(await api.GET('/api/v1/live-streams/{id}', { params: { path: { id: streamId! } } })),
    enabled: Boolean(streamId),
    refetchInterval: 3000,
  });
  const session = health.data?.active_session ?? null;

  const goLive = async () => {
    if (!stream || !streamId) return;
    setPhase('connecting');
    setError(null);
    try {
      const tok = must(await api.POST('/api/v1/live-streams/{id}/publish-token', { params: { path: { id: streamId } } }));
      const s = await publish(stream, tok.whip_url, tok.token);
      s.pc.addEventListener('connectionstatechange', () => {
        if (s.pc.connectionState === 'failed') {
          setPhase('idle');
          setError('WebRTC connection failed');
        }
      });
      setWhip(s);
      setPhase('live');
    } catch (e) {
      setPhase('idle');
      setError(e instanceof Error ? e.message : String(e));
    }
  };
  const stop = async () => {
    await whip?.stop();
    setWhip(null);
    setPhase('idle');
  };
  const endLesson = async () => {
    if (!confirm(t('teacher.endConfirm'))) return;
    await whip?.stop();
    setWhip(null);
    setPhase('idle');
    must(await api.POST('/api/v1/lessons/{id}/end', { params: { path: { id: lesson.id } } }));
    onEnded();
  };
  const resetKey = async () => {
    if (!streamId || !confirm(t('teacher.resetConfirm'))) return;
    const r = must(await api.POST('/api/v1/live-streams/{id}/reset-stream-key', { params: { path: { id: streamId } } }));
    setKey(r.stream_key ?? null);
    setShowKey(true);
  };
  const joinMeeting = async () => {
    const r = must(await api.GET('/api/v1/lessons/{id}/meeting-token', { params: { path: { id: lesson.id } } }));
    window.open(r.meeting_url, '_blank', 'noopener');
  };
  const uptime = session ? (Date.now() - new Date(session.started_at).getTime()) / 1000 : 0;

  return (
    <section className="teacher" aria-labelledby="teacher-title">
      <h2 id="teacher-title">{t('teacher.title')}</h2>
      <div className="tabs" role="radiogroup" aria-label={t('teacher.source')}>
        {(['camera', 'screen', 'encoder'] as const).map((s) => (
          <label key={s} className={`tab ${source === s ? 'tab-on' : ''}`}>
            <input
              type="radio"
              name="source"
              value={s}
              checked={source === s}
              disabled={phase === 'connecting' || (phase === 'live' && s === 'encoder')}
              onChange={() => setSource(s)}
            />
            {t(`teacher.${s}`)}
          </label>
        ))}
      </div>
      {source !== 'encoder' ? (
        <div className="golive">
          <video ref={preview} className="preview" autoPlay muted playsInline aria-label={t('teacher.preview')} />
          <div className="form">
            {source === 'camera' && (
              <label>
                {t('teacher.cameraDevice')}
                <select value={camera} onChange={(e) => setCamera(e.target.value)} disabled={phase === 'connecting'}>
                  {cameras.map((d, i) => (
                    <option key={d.deviceId || i} value={d.deviceId}>
                      {d.label || `${t('teacher.cameraDevice')} ${i + 1}`}
                    </option>
                  ))}
                </select>
              </label>
            )}
            <label>
              {t('teacher.micDevice')}
              <select value={mic} onChange={(e) => setMic(e.target.value)} disabled={phase === 'connecting'}>
                {mics.map((d, i) => (
                  <option key={d.deviceId || i} value={d.deviceId}>
                    {d.label || `${t('teacher.micDevice')} ${i + 1}`}
                  </option>
                ))}
              </select>
            </label>
            {phase === 'live' ? (
              <button type="button" className="button button-danger" onClick={stop}>
                {t('teacher.stop')}
              </button>
            ) : (
              <button type="button" className="button" onClick={goLive} disabled={!stream || phase !== 'idle'}>
                {phase === 'connecting' ? t('teacher.connecting') : t('teacher.goLive')}
              </button>
            )}
          </div>
        </div>
      ) : (
        <dl className="encoder">
          <dt>{t('teacher.serverUrl')}</dt>
          <dd>
            <code>{lesson.rtmp_url}</code>{' '}
            <button type="button" className="button button-small button-secondary" onClick={() => void navigator.clipboard.writeText(lesson.rtmp_url ?? '')}>
              {t('common.copy')}
            </button>
          </dd>
          <dt>{t('teacher.streamKey')}</dt>
          <dd>
            {key ? (
              <>
                <code data-testid="stream-key">{showKey ? key : '•'.repeat(24)}</code>{' '}
                <button type="button" className="button button-small button-secondary" onClick={() => setShowKey(!showKey)}>
                  {showKey ? t('common.hide') : t('common.show')}
                </button>{' '}
                <button type="button" className="button button-small button-secondary" onClick={() => void navigator.clipboard.writeText(key)}>
                  {t('common.copy')}
                </button>
              </>
            ) : (
              <span className="muted">{t('teacher.keyHidden')}</span>
            )}{' '}
            <button type="button" className="button button-small" onClick={resetKey}>
              {t('teacher.resetKey')}
            </button>
          </dd>
        </dl>
      )}
      {error && (
        <p className="form-error" role="alert">
          {error}
        </p>
      )}
      <div className="health" aria-live="polite">
        <h3>{t('teacher.health')}</h3>
        <dl data-testid="health" data-session={session?.session_id ?? ''}>
          <dt>{t('teacher.health.state')}</dt>
          <dd data-testid="health-state">{session?.publishing ? t('teacher.onAir') : (health.data?.status ?? '…')}</dd>
          {session && (
            <>
              <dt>{t('teacher.health.bitrate')}</dt>
              <dd>{(session.bitrate_bps / 1000).toFixed(0)} kbit/s</dd>
              <dt>{t('teacher.health.fps')}</dt>
              <dd>{session.frame_rate ? session.frame_rate.toFixed(0) : '–'}</dd>
              <dt>{t('teacher.health.resolution')}</dt>
              <dd>{session.width && session.height ? `${session.width}×${session.height}` : '–'}</dd>
              <dt>{t('teacher.health.uptime')}</dt>
              <dd>{formatDuration(uptime)}</dd>
            </>
          )}
        </dl>
      </div>
      <div className="teacher-actions">
        {lesson.kind === 'meeting' && (
          <button type="button" className="button button-secondary" onClick={joinMeeting}>
            {t('teacher.meeting')}
          </button>
        )}
        <button type="button" className="button button-danger" onClick={endLesson}>
          {t('teacher.endLesson')}
        </button>
      </div>
    </section>
  );
}
