// The video player: hls.js (loaded on demand, so the catalogue does not pay for it) or the
// browser's own HLS, driven through the state machine in machine.ts. A live lesson with a WHEP
// URL plays over WebRTC first (well under a second behind the teacher) and falls back to HLS
// when WebRTC cannot connect or drops (UDP blocked, the server full, the lesson ended).
// Controls are real buttons with labels; the state is exposed as data-state (and the transport
// as data-mode) for tests and styling.
import { useCallback, useEffect, useReducer, useRef, useState } from 'react';
import type Hls from 'hls.js';
import { useI18n } from '../../lib/i18n';
import { initial, reduce, shouldAutoRetry } from './machine';
import { startWhep, type WhepSession } from './whep';

/** WebRTC that shows no picture within this long gives way to HLS. */
const WHEP_FIRST_FRAME_MS = 8000;

export interface PlayerProps {
  src: string;
  /** WHEP endpoint of the live session (tried before `src`). */
  whep?: string | null;
  live: boolean;
  poster?: string | null;
  title: string;
  /** Called when a live playlist ends (the teacher stopped). */
  onEnded?: () => void;
}

interface Level {
  index: number;
  height: number;
}

export function Player({ src, whep, live, poster, title, onEnded }: PlayerProps) {
  const { t, duration } = useI18n();
  const video = useRef<HTMLVideoElement>(null);
  const box = useRef<HTMLDivElement>(null);
  const hlsRef = useRef<Hls | null>(null);
  const [state, dispatch] = useReducer(reduce, initial);
  const [muted, setMuted] = useState(true);
  const [volume, setVolume] = useState(1);
  const [time, setTime] = useState({ current: 0, total: 0 });
  const [levels, setLevels] = useState<Level[]>([]);
  const [level, setLevel] = useState(-1);
  const onEndedRef = useRef(onEnded);
  onEndedRef.current = onEnded;
  const [mode, setMode] = useState<'webrtc' | 'hls'>(live && whep ? 'webrtc' : 'hls');

  // (Re)attach the source; a retry bumps `attempt` and attaches again. (Not derived from the
  // state: leaving `loading` must not tear hls.js down.)
  const [attempt, setAttempt] = useState(0);
  const retry = useCallback(() => {
    dispatch({ type: 'retry' });
    setAttempt((a) => a + 1);
  }, []);
  useEffect(() => {
    dispatch({ type: 'load', src, live });
  }, [src, live]);

  // WebRTC: attach the received stream; any failure (no answer, no picture in time, the
  // connection lost) switches to HLS for good.
  useEffect(() => {
    const v = video.current;
    if (!v || mode !== 'webrtc' || !whep) return;
    let cancelled = false;
    let session: WhepSession | null = null;
    const fallback = (why: string) => {
      if (cancelled) return;
      console.info('WebRTC playback unavailable, using HLS:', why);
      setMode('hls');
    };
    const timer = setTimeout(() => fallback('no picture in time'), WHEP_FIRST_FRAME_MS);
    const onPlaying = () => clearTimeout(timer);
    v.addEventListener('playing', onPlaying);
    startWhep(whep).then(
      (s) => {
        if (cancelled) return s.stop();
        session = s;
        s.pc.addEventListener('connectionstatechange', () => {
          const st = s.pc.connectionState;
          if (st === 'failed' || st === 'closed' || st === 'disconnected') fallback(`connection ${st}`);
        });
        v.srcObject = s.stream;
        v.muted = true;
        v.play().catch(() => dispatch({ type: 'pause' }));
      },
      (e: unknown) => fallback(String(e)),
    );
    return () => {
      cancelled = true;
      clearTimeout(timer);
      v.removeEventListener('playing', onPlaying);
      session?.stop();
      v.srcObject = null;
    };
  }, [mode, whep, attempt]);

  useEffect(() => {
    const v = video.current;
    if (!v || mode !== 'hls') return;
    let cancelled = false;
    let hls: Hls | null = null;
    (async () => {
      const { default: HlsCtor } = await import('hls.js');
      if (cancelled) return;
      if (HlsCtor.isSupported()) {
        hls = new HlsCtor({
          lowLatencyMode: true,
          backBufferLength: live ? 30 : 90,
          // Catch up (at most 1.25x) when behind the target latency set below.
          maxLiveSyncPlaybackRate: live ? 1.25 : 1,
        });
        hlsRef.current = hls;
        const player = hls;
        let latencySet = false;
        player.on(HlsCtor.Events.LEVEL_LOADED, (_e, data) => {
          // Hold back three segments. The server announces its maximum segment length (twice
          // the usual one, so that it never has to change) as EXT-X-TARGETDURATION, and hls.js
          // would otherwise hold back three of those: twice as far behind the teacher.
          // An LL-HLS playlist (parts) says its own hold-back (PART-HOLD-BACK): keep it.
          const average = data.details.averagetargetduration;
          if (!latencySet && data.details.live && average && !data.details.partHoldBack) {
            latencySet = true;
            player.targetLatency = 3 * average;
          }
        });
        hls.on(HlsCtor.Events.MANIFEST_PARSED, (_e, data) => {
          setLevels(data.levels.map((l, index) => ({ index, height: l.height })));
        });
        hls.on(HlsCtor.Events.ERROR, (_e, data) => {
          if (data.fatal) dispatch({ type: 'fatal', detail: data.details });
        });
        hls.loadSource(src);
        hls.attachMedia(v);
      } else if (v.canPlayType('application/vnd.apple.mpegurl')) {
        v.src = src;
      } else {
        dispatch({ type: 'fatal', detail: 'HLS is not supported by this browser' });
        return;
      }
      // Autoplay is allowed muted; the viewer unmutes with one click.
      v.muted = true;
      v.play().catch(() => dispatch({ type: 'pause' }));
    })();
    return () => {
      cancelled = true;
      hls?.destroy();
      if (hlsRef.current === hls) hlsRef.current = null;
    };
  }, [src, live, attempt, mode]);

  // Fatal errors recover by themselves a few times (a live edge not there yet, a blip).
  useEffect(() => {
    if (!shouldAutoRetry(state)) return;
    const id = setTimeout(retry, 1500);
    return () => clearTimeout(id);
  }, [state, retry]);

  useEffect(() => {
    if (state.kind === 'ended') onEndedRef.current?.();
  }, [state.kind]);

  const onTimeUpdate = useCallback(() => {
    const v = video.current;
    if (!v) return;
    setTime({ current: v.currentTime, total: Number.isFinite(v.duration) ? v.duration : 0 });
    const hls = hlsRef.current;
    // How far behind the teacher the picture is, by the clock: the playhead's
    // EXT-X-PROGRAM-DATE-TIME against now (tests and support read it from data-latency).
    const at = hls?.playingDate;
    if (box.current && at) box.current.dataset.latency = ((Date.now() - at.getTime()) / 1000).toFixed(2);
    const target = hls?.levels?.[hls.currentLevel]?.details?.targetduration ?? 2;
    dispatch({
      type: 'timeupdate',
      latency: hls ? hls.latency : null,
      targetLatency: hls?.targetLatency ?? 3 * target,
      targetDuration: target,
    });
  }, []);

  const v = video.current;
  const playing = state.kind === 'playing' && !state.paused;
  const toggle = () => {
    if (!v) return;
    if (v.paused) void v.play();
    else v.pause();
  };
  const goLive = () => {
    const hls = hlsRef.current;
    if (v && hls?.liveSyncPosition) v.currentTime = hls.liveSyncPosition;
    void v?.play();
  };
  const fullscreen = () => {
    if (document.fullscreenElement) void document.exitFullscreen();
    else void box.current?.requestFullscreen?.();
  };
  const pip = () => {
    if (!v) return;
    if (document.pictureInPictureElement) void document.exitPictureInPicture();
    else void v.requestPictureInPicture?.();
  };

  return (
    <div className="player" ref={box} data-state={state.kind} data-mode={mode}>
      <video
        ref={video}
        className="player-video"
        poster={poster ?? undefined}
        playsInline
        aria-label={title}
        onCanPlay={() => dispatch({ type: 'canplay' })}
        onPlaying={() => dispatch({ type: 'playing' })}
        onPause={() => dispatch({ type: 'pause' })}
        onWaiting={() => dispatch({ type: 'waiting', at: Date.now() })}
        onEnded={() => dispatch({ type: 'ended' })}
        onTimeUpdate={onTimeUpdate}
        onVolumeChange={(e) => {
          setMuted(e.currentTarget.muted);
          setVolume(e.currentTarget.volume);
        }}
        onClick={toggle}
      />
      {live && state.kind !== 'ended' && (
        <div className="player-badges">
          <span className="badge badge-live">{t('classroom.live')}</span>
          {mode === 'webrtc' && state.kind === 'playing' && (
            <span className="badge badge-realtime" title={t('player.realtimeHint')}>
              {t('player.realtime')}
            </span>
          )}
        </div>
      )}
      {state.kind === 'stalled' && <div className="player-overlay" role="status">{t('player.stalled')}</div>}
      {state.kind === 'error' && (
        <div className="player-overlay" role="alert">
          <p>{t('player.error', { detail: state.detail })}</p>
          <button type="button" onClick={retry}>
            {t('common.retry')}
          </button>
        </div>
      )}
      <div className="player-controls">
        <button type="button" onClick={toggle} aria-label={playing ? t('player.pause') : t('player.play')}>
          {playing ? '❚❚' : '▶'}
        </button>
        <button
          type="button"
          onClick={() => v && (v.muted = !v.muted)}
          aria-label={muted ? t('player.unmute') : t('player.mute')}
        >
          {muted ? '🔇' : '🔊'}
        </button>
        <input
          type="range"
          min={0}
          max={1}
          step={0.05}
          value={muted ? 0 : volume}
          aria-label={t('player.volume')}
          onChange={(e) => {
            if (!v) return;
            v.volume = Number(e.target.value);
            v.muted = v.volume === 0;
          }}
          className="player-volume"
        />
        {!live && time.total > 0 && (
          <input
            type="range"
            className="player-seek"
            min={0}
            max={time.total}
            step={0.1}
            value={time.current}
            aria-label={t('player.seek')}
            aria-valuetext={`${duration(time.current)} / ${duration(time.total)}`}
            onChange={(e) => v && (v.currentTime = Number(e.target.value))}
          />
        )}
        <span className="player-time" aria-hidden="true">
          {live ? '' : `${duration(time.current)} / ${duration(time.total)}`}
        </span>
        {live && state.kind === 'playing' && state.behindLive && (
          <button type="button" className="player-golive" onClick={goLive}>
            {t('classroom.goToLive')}
          </button>
        )}
        {levels.length > 1 && (
          <select
            aria-label={t('player.quality')}
            value={level}
            onChange={(e) => {
              const n = Number(e.target.value);
              setLevel(n);
              if (hlsRef.current) hlsRef.current.currentLevel = n;
            }}
          >
            <option value={-1}>{t('player.auto')}</option>
            {levels.map((l) => (
              <option key={l.index} value={l.index}>
                {l.height}p
              </option>
            ))}
          </select>
        )}
        <button type="button" onClick={pip} aria-label={t('player.pip')}>
          <svg viewBox="0 0 24 24" width="20" height="20" aria-hidden="true" fill="none" stroke="currentColor" strokeWidth="2">
            <rect x="3" y="5" width="18" height="14" rx="2" />
            <rect x="12" y="11" width="7" height="6" fill="currentColor" />
          </svg>
        </button>
        <button type="button" onClick={fullscreen} aria-label={t('player.fullscreen')}>
          <svg viewBox="0 0 24 24" width="20" height="20" aria-hidden="true" fill="none" stroke="currentColor" strokeWidth="2">
            <path d="M4 9V4h5M20 9V4h-5M4 15v5h5M20 15v5h-5" />
          </svg>
        </button>
      </div>
    </div>
  );
}
