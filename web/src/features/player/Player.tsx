// The video player: hls.js (loaded on demand, so the catalogue does not pay for it) or the
// browser's own HLS, driven through the state machine in machine.ts. A live lesson with a WHEP
// URL plays over WebRTC first (well under a second behind the teacher) and falls back to HLS
// when WebRTC cannot connect or drops (UDP blocked, the server full, the lesson ended).
// Controls are real buttons with labels; the state is exposed as data-state (and the transport
// as data-mode) for tests and styling.
//
// Pages may follow the position (`onTime`) and move it (`seekRef`). With a lesson or recording
// id the player reports what the viewer experiences (quality.ts) every 30 s and when the page
// is hidden, one random session id per playback.
import { useCallback, useEffect, useReducer, useRef, useState } from 'react';
import type Hls from 'hls.js';
import { useI18n } from '../../lib/i18n';
import { postPlaybackReports } from '../interaction/api';
import { initial, reduce, shouldAutoRetry } from './machine';
import { newSessionId, QualityMeter } from './quality';
import { startWhep, type WhepSession } from './whep';
import { reportPeriodically } from '../../lib/reporting';

/** Viewing-quality reports: every this long while the player is on the page. */
const REPORT_EVERY_MS = 30_000;
const clock = () => performance.now();

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
  /** The position in seconds at every time update, and when a seek starts (`seeking`). */
  onTime?: (t: number, info: { seeking: boolean }) => void;
  /** The player puts here a function that moves the playhead to `t` seconds. */
  seekRef?: { current: ((t: number) => void) | null };
  /** Viewing-quality reports for this live lesson … */
  lessonId?: string;
  /** … or this recording (a replay). Without either the player reports nothing. */
  recordingId?: string;
}

interface Level {
  index: number;
  height: number;
}

export function Player({ src, whep, live, poster, title, onEnded, onTime, seekRef, lessonId, recordingId }: PlayerProps) {
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
  const onTimeRef = useRef(onTime);
  onTimeRef.current = onTime;
  const [mode, setMode] = useState<'webrtc' | 'hls'>(live && whep ? 'webrtc' : 'hls');
  const meter = useRef<QualityMeter | null>(null);
  const fatal = useCallback((detail: string) => {
    meter.current?.error();
    dispatch({ type: 'fatal', detail });
  }, []);

  // One quality session per source; its totals go out every 30 s, when the page is hidden,
  // and when the player leaves the page.
  useEffect(() => {
    const m = new QualityMeter({
      session_id: newSessionId(),
      live,
      mode: live && whep ? 'webrtc' : 'hls',
      ...(lessonId ? { lesson_id: lessonId } : {}),
      ...(recordingId ? { recording_id: recordingId } : {}),
    });
    m.load(clock());
    meter.current = m;
    if (!lessonId && !recordingId) return;
    // The rendition and latency are sampled at each time update (onTimeUpdate): when the
    // player leaves the page, the video and hls.js are gone before this last report.
    const send = (keepalive: boolean) => {
      if (m.started) void postPlaybackReports([m.report(clock())], keepalive).catch(() => undefined);
    };
    const stop = reportPeriodically(REPORT_EVERY_MS, send);
    return () => {
      stop();
      if (meter.current === m) meter.current = null;
    };
    // The session is the source's: `whep` is the live session's, part of the same playback.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [src, live, lessonId, recordingId]);
  useEffect(() => {
    if (mode === 'hls') meter.current?.setMode('hls');
  }, [mode]);

  useEffect(() => {
    if (!seekRef) return;
    seekRef.current = (t: number) => {
      const v = video.current;
      if (v && Number.isFinite(t)) v.currentTime = Math.max(0, t);
    };
    return () => {
      seekRef.current = null;
    };
  }, [seekRef]);

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
          // Parts: Low-Latency HLS.
          if (data.details.live && data.details.partTarget > 0) meter.current?.setMode('ll-hls');
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
          if (data.fatal) fatal(data.details);
        });
        hls.loadSource(src);
        hls.attachMedia(v);
      } else if (v.canPlayType('application/vnd.apple.mpegurl')) {
        meter.current?.setMode('native');
        v.src = src;
      } else {
        fatal('HLS is not supported by this browser');
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
  }, [src, live, attempt, mode, fatal]);

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
    onTimeRef.current?.(v.currentTime, { seeking: v.seeking });
    const hls = hlsRef.current;
    const m = meter.current;
    if (m) {
      const level = hls && hls.currentLevel >= 0 ? hls.levels[hls.currentLevel] : undefined;
      // A media playlist without a master has levels of height 0: the picture's own height then.
      m.setRendition(level?.height || v.videoHeight);
      m.setLatency(hls ? hls.latency : null);
    }
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
        onPlaying={() => {
          meter.current?.playing(clock());
          dispatch({ type: 'playing' });
        }}
        onPause={() => {
          meter.current?.pause(clock());
          dispatch({ type: 'pause' });
        }}
        onWaiting={(e) => {
          meter.current?.waiting(clock(), e.currentTarget.seeking);
          dispatch({ type: 'waiting', at: Date.now() });
        }}
        onEnded={() => {
          meter.current?.ended(clock());
          dispatch({ type: 'ended' });
        }}
        onSeeking={(e) => onTimeRef.current?.(e.currentTarget.currentTime, { seeking: true })}
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
