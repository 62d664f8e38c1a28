// A course's lessons as a schedule in the teacher's time zone (their profile's, else the
// browser's): the list view grouped by day, or a week grid of seven day columns (Monday first),
// with the form to add or edit one, whose times are wall-clock times of that zone. Whether a lesson is
// recorded, and for how long recordings are kept, belong to its live stream. The stream key
// for OBS/ffmpeg is in the API's answers only when a lesson is created or its key is reset
// (it is stored hashed): it is shown once then, with a copy button; otherwise the server URL
// and the key's first characters.
import { useId, useMemo, useState } from 'react';
import { Link } from 'wouter';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { api, must, mustOk } from '../../api/client';
import { useI18n } from '../../lib/i18n';
import { ErrorMessage, Loading } from '../../components/Status';
import { addDays, isoToZonedInput, mondayOf, planningTimeZone, zonedDay, zonedInputToIso } from '../../lib/format';
import { useSession } from '../../lib/useSession';
import type { components } from '../../api/schema';

type Lesson = components['schemas']['LessonResponse'];

/** A key just made (lesson creation or reset), held in memory until dismissed. */
interface FreshKey {
  title: string;
  key: string;
  rtmpUrl: string | null;
}

/** The RTMP server URL without the key (the creation answer's `rtmp_url` ends with it). */
function serverUrl(rtmpUrl: string | null | undefined, key: string): string {
  if (!rtmpUrl) return '';
  return rtmpUrl.endsWith(`/${key}`) ? rtmpUrl.slice(0, -(key.length + 1)) : rtmpUrl;
}

interface Draft {
  title: string;
  kind: 'broadcast' | 'meeting';
  starts: string;
  duration: string;
  record: boolean;
  retention: string;
}

/** Tomorrow at the next full hour, on the wall clocks of `tz`. */
const emptyDraft = (tz: string): Draft => {
  const starts = `${isoToZonedInput(new Date(Date.now() + 24 * 3600 * 1000).toISOString(), tz).slice(0, 13)}:00`;
  return { title: '', kind: 'broadcast', starts, duration: '60', record: true, retention: '' };
};

/** The zone the signed-in user plans in. */
function usePlanningZone(): string {
  const s = useSession();
  return planningTimeZone(s.status === 'authenticated' ? s.user.time_zone : null);
}

export function Lessons({ courseId }: { courseId: string }) {
  const { t, dateTime, locale } = useI18n();
  const qc = useQueryClient();
  const tz = usePlanningZone();
  const [view, setView] = useState<'list' | 'week'>('list');
  const [weekStart, setWeekStart] = useState(() => mondayOf(zonedDay(Date.now(), tz)));
  const [editing, setEditing] = useState<Lesson | 'new' | null>(null);
  const [fresh, setFresh] = useState<FreshKey | null>(null);
  const [deleteError, setDeleteError] = useState<string | null>(null);
  const lessons = useQuery({
    queryKey: ['lessons', courseId],
    queryFn: async () =>
      must(await api.GET('/api/v1/courses/{id}/lessons', { params: { path: { id: courseId } } })),
  });
  // Lessons by their day in the zone (YYYY-MM-DD), in time order.
  const byDay = useMemo(() => {
    const items = [...(lessons.data?.items ?? [])].sort((a, b) => a.starts_at.localeCompare(b.starts_at));
    const groups = new Map<string, Lesson[]>();
    for (const l of items) {
      const k = zonedDay(l.starts_at, tz);
      groups.set(k, [...(groups.get(k) ?? []), l]);
    }
    return groups;
  }, [lessons.data, tz]);
  const [dayTitle, dayShort] = useMemo(() => {
    // A calendar day named in the reader's language (noon UTC: the same date in every zone);
    // short in the week grid's narrow columns.
    const full = new Intl.DateTimeFormat(locale, { dateStyle: 'full', timeZone: 'UTC' });
    const short = new Intl.DateTimeFormat(locale, { weekday: 'short', month: 'short', day: 'numeric', timeZone: 'UTC' });
    const at = (day: string) => new Date(`${day}T12:00:00Z`);
    return [(day: string) => full.format(at(day)), (day: string) => short.format(at(day))];
  }, [locale]);
  const weekDays = Array.from({ length: 7 }, (_, i) => addDays(weekStart, i));
  if (lessons.isPending) return <Loading />;
  if (lessons.isError) return <ErrorMessage error={lessons.error} retry={() => void lessons.refetch()} />;
  const done = async () => {
    setEditing(null);
    await qc.invalidateQueries({ queryKey: ['lessons', courseId] });
    await qc.invalidateQueries({ queryKey: ['course', courseId] });
  };
  return (
    <div>
      <div className="toolbar">
        <div className="tabs" role="group" aria-label={t('studio.lessons.view')}>
          <button type="button" className={`tab${view === 'list' ? ' tab-on' : ''}`} aria-pressed={view === 'list'} onClick={() => setView('list')}>
            {t('studio.lessons.list')}
          </button>
          <button type="button" className={`tab${view === 'week' ? ' tab-on' : ''}`} aria-pressed={view === 'week'} onClick={() => setView('week')}>
            {t('studio.lessons.week')}
          </button>
        </div>
        {view === 'week' && (
          <div className="actions">
            <button type="button" className="button button-small button-secondary" onClick={() => setWeekStart(addDays(weekStart, -7))}>
              ← {t('studio.lessons.prevWeek')}
            </button>
            <span data-testid="week-of">{t('studio.lessons.weekOf', { day: dateTime(new Date(`${weekStart}T12:00:00Z`), { dateStyle: 'medium', timeZone: 'UTC' }) })}</span>
            <button type="button" className="button button-small button-secondary" onClick={() => setWeekStart(addDays(weekStart, 7))}>
              {t('studio.lessons.nextWeek')} →
            </button>
          </div>
        )}
        <button type="button" className="button" onClick={() => setEditing('new')}>
          {t('studio.lessons.add')}
        </button>
      </div>
      <p className="muted" data-testid="schedule-zone">
        {t('studio.lessons.timeZone', { tz })}{' '}
        <Link href="~/me">{t('studio.lessons.changeZone')}</Link>
      </p>
      {editing && (
        <LessonForm
          courseId={courseId}
          lesson={editing === 'new' ? null : editing}
          onDone={done}
          onCancel={() => setEditing(null)}
          onKey={(saved) => {
            if (saved.stream_key) setFresh({ title: saved.title, key: saved.stream_key, rtmpUrl: saved.rtmp_url ?? null });
          }}
        />
      )}
      {fresh && <OnceKey fresh={fresh} onDismiss={() => setFresh(null)} />}
      {deleteError && (
        <p className="form-error" role="alert" data-testid="lesson-delete-error">
          {deleteError}
        </p>
      )}
      {view === 'list' && byDay.size === 0 && <p>{t('course.noLessons')}</p>}
      {view === 'list' &&
        [...byDay.entries()].map(([day, ls]) => (
          <section key={day} className="schedule-day">
            <h2>{dayTitle(day)}</h2>
            <ul className="lessons" data-testid="studio-lessons">
              {ls.map((l) => (
                <LessonRow key={l.id} lesson={l} tz={tz} onEdit={() => setEditing(l)} onDeleted={done} onDeleteError={setDeleteError} />
              ))}
            </ul>
          </section>
        ))}
      {view === 'week' && (
        <div className="week-grid" data-testid="week-grid">
          {weekDays.map((day) => (
            <section key={day} className="week-day" aria-label={dayTitle(day)} data-day={day}>
              <h3>{dayShort(day)}</h3>
              {(byDay.get(day) ?? []).length === 0 ? (
                <p className="muted small">{t('studio.lessons.freeDay')}</p>
              ) : (
                <ul className="lessons" data-testid="studio-lessons">
                  {(byDay.get(day) ?? []).map((l) => (
                    <LessonRow key={l.id} lesson={l} tz={tz} compact onEdit={() => setEditing(l)} onDeleted={done} onDeleteError={setDeleteError} />
                  ))}
                </ul>
              )}
            </section>
          ))}
        </div>
      )}
    </div>
  );
}

/** One lesson of the schedule: its time in the zone, state, stream facts and actions. */
function LessonRow({
  lesson: l,
  tz,
  compact = false,
  onEdit,
  onDeleted,
  onDeleteError,
}: {
  lesson: Lesson;
  tz: string;
  compact?: boolean;
  onEdit: () => void;
  onDeleted: () => Promise<void>;
  onDeleteError: (e: string | null) => void;
}) {
  const { t, dateTime } = useI18n();
  return (
    <li className="lesson-row studio-lesson" data-lesson-id={l.id}>
      <div>
        <strong>{l.title}</strong> <span className={`badge badge-${l.status}`}>{t(`course.status.${l.status}`)}</span>
        <p className="muted">
          <time dateTime={l.starts_at} data-testid="lesson-time">
            {dateTime(l.starts_at, { timeStyle: 'short', timeZone: tz })}
          </time>{' '}
          · {t('course.minutes', { n: l.duration_minutes })} · {t(`studio.kind.${l.kind}`)}
        </p>
        {!compact && l.live_stream_id && <StreamFacts streamId={l.live_stream_id} lesson={l} />}
      </div>
      <div className="actions">
        <Link href={`~/lessons/${l.id}`} className="button button-small">
          {t('studio.lessons.classroom')}
        </Link>
        <button type="button" className="button button-small button-secondary" onClick={onEdit}>
          {t('studio.edit')}
        </button>
        <button
          type="button"
          className="button button-small button-danger"
          onClick={async () => {
            if (!window.confirm(t('studio.lessons.deleteConfirm', { title: l.title }))) return;
            onDeleteError(null);
            try {
              mustOk(await api.DELETE('/api/v1/lessons/{id}', { params: { path: { id: l.id } } }));
            } catch (e) {
              onDeleteError(t('studio.lessons.deleteFailed', { title: l.title, detail: e instanceof Error ? e.message : String(e) }));
              return;
            }
            await onDeleted();
          }}
        >
          {t('studio.delete')}
        </button>
      </div>
    </li>
  );
}

/** A button that copies `value`, saying so (or that the browser refused). */
function CopyButton({ value, label }: { value: string; label: string }) {
  const { t } = useI18n();
  const [state, setState] = useState<'idle' | 'copied' | 'failed'>('idle');
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(value);
      setState('copied');
    } catch {
      setState('failed');
    }
    setTimeout(() => setState('idle'), 2500);
  };
  return (
    <>
      <button type="button" className="button button-small button-secondary" aria-label={label} onClick={() => void copy()}>
        {t('common.copy')}
      </button>
      <span role="status" className="muted small">
        {state === 'copied' ? ` ${t('common.copied')}` : state === 'failed' ? ` ${t('studio.key.copyFailed')}` : ''}
      </span>
    </>
  );
}

/** A stream key shown this once, with the server URL and a warning; gone when dismissed. */
function OnceKey({ fresh, onDismiss, level = 2 }: { fresh: FreshKey; onDismiss: () => void; level?: 2 | 3 }) {
  const { t } = useI18n();
  const id = useId();
  const server = serverUrl(fresh.rtmpUrl, fresh.key);
  const Heading = level === 2 ? 'h2' : 'h3';
  return (
    <section className="panel once-key" aria-labelledby={id} data-testid="stream-key-once">
      <Heading id={id}>{t('studio.key.title', { title: fresh.title })}</Heading>
      <p className="once-key-warning">
        <strong>{t('studio.key.once')}</strong>
      </p>
      <dl className="encoder">
        {server && (
          <>
            <dt>{t('teacher.serverUrl')}</dt>
            <dd>
              <code className="key-inline">{server}</code> <CopyButton value={server} label={t('studio.key.copyServer')} />
            </dd>
          </>
        )}
        <dt>{t('teacher.streamKey')}</dt>
        <dd>
          <code className="key-inline" data-testid="stream-key">
            {fresh.key}
          </code>{' '}
          <CopyButton value={fresh.key} label={t('studio.key.copyKey')} />
        </dd>
      </dl>
      <button type="button" className="button button-small" onClick={onDismiss}>
        {t('studio.key.dismiss')}
      </button>
    </section>
  );
}

/** Recording facts of a lesson's live stream, its RTMP server and key prefix, and a new key
 * on demand (shown once). */
function StreamFacts({ streamId, lesson }: { streamId: string; lesson: Lesson }) {
  const { t } = useI18n();
  const qc = useQueryClient();
  const [fresh, setFresh] = useState<FreshKey | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const stream = useQuery({
    queryKey: ['live-stream', streamId],
    queryFn: async () => must(await api.GET('/api/v1/live-streams/{id}', { params: { path: { id: streamId } } })),
  });
  if (!stream.data) return null;
  const s = stream.data;
  const reset = async () => {
    if (!window.confirm(t('teacher.resetConfirm'))) return;
    setBusy(true);
    setError(null);
    try {
      const r = must(await api.POST('/api/v1/live-streams/{id}/reset-stream-key', { params: { path: { id: streamId } } }));
      if (r.stream_key) setFresh({ title: lesson.title, key: r.stream_key, rtmpUrl: r.rtmp_url });
      await qc.invalidateQueries({ queryKey: ['live-stream', streamId] });
    } catch (e) {
      setError(t('studio.key.resetFailed', { detail: e instanceof Error ? e.message : String(e) }));
    } finally {
      setBusy(false);
    }
  };
  // Outside the answers of create and reset, `rtmp_url` is the server URL without a key.
  const server = s.rtmp_url || lesson.rtmp_url;
  return (
    <div className="muted small stream-facts" data-testid="stream-facts">
      <p>
        {s.record ? t('studio.lessons.recorded') : t('studio.lessons.notRecorded')}
        {s.record && s.recording_retention_days ? ` · ${t('studio.lessons.keptDays', { n: s.recording_retention_days })}` : ''}
      </p>
      <p>
        {server && (
          <>
            {t('teacher.serverUrl')}: <code className="key-inline">{server}</code>
          </>
        )}
        {s.stream_key_prefix && (
          <>
            {server && ' · '}
            {t('studio.key.prefix')}: <code data-testid="stream-key-prefix">{`${s.stream_key_prefix}…`}</code>
          </>
        )}{' '}
        <button type="button" className="link-button" disabled={busy} onClick={() => void reset()} data-testid="reset-stream-key">
          {t('teacher.resetKey')}
        </button>
      </p>
      {error && (
        <p className="form-error" role="alert">
          {error}
        </p>
      )}
      {fresh && <OnceKey fresh={fresh} onDismiss={() => setFresh(null)} level={3} />}
    </div>
  );
}

function LessonForm({
  courseId,
  lesson,
  onDone,
  onCancel,
  onKey,
}: {
  courseId: string;
  lesson: Lesson | null;
  onDone: () => Promise<void>;
  onCancel: () => void;
  /** The lesson was created: its answer carries the stream key, this once. */
  onKey: (created: Lesson) => void;
}) {
  const { t } = useI18n();
  const qc = useQueryClient();
  const tz = usePlanningZone();
  const stream = useQuery({
    queryKey: ['live-stream', lesson?.live_stream_id],
    enabled: !!lesson?.live_stream_id,
    queryFn: async () => must(await api.GET('/api/v1/live-streams/{id}', { params: { path: { id: lesson!.live_stream_id! } } })),
  });
  const [d, setD] = useState<Draft>(() =>
    lesson
      ? { title: lesson.title, kind: lesson.kind, starts: isoToZonedInput(lesson.starts_at, tz), duration: String(lesson.duration_minutes), record: true, retention: '' }
      : emptyDraft(tz),
  );
  const [loadedStream, setLoadedStream] = useState(false);
  if (stream.data && !loadedStream) {
    setLoadedStream(true);
    setD({ ...d, record: stream.data.record, retention: stream.data.recording_retention_days ? String(stream.data.recording_retention_days) : '' });
  }
  const [error, setError] = useState<string | null>(null);
  const [created, setCreated] = useState<Lesson | null>(null);
  const submit = async (e: React.FormEvent) => {
    e.preventDefault();
    setError(null);
    const starts_at = zonedInputToIso(d.starts, tz);
    if (!starts_at) return;
    const body = { title: d.title, kind: d.kind, starts_at, duration_minutes: Number(d.duration), time_zone: tz };
    try {
      // Once created, a second submit (after the stream settings failed) changes that lesson.
      const target = lesson ?? created;
      let saved: Lesson;
      if (target) {
        saved = must(await api.PATCH('/api/v1/lessons/{id}', { params: { path: { id: target.id } }, body }));
      } else {
        saved = must(await api.POST('/api/v1/courses/{id}/lessons', { params: { path: { id: courseId } }, body }));
        setCreated(saved);
        onKey(saved); // shown now: a failure below must not lose the only answer with the key
      }
      if (saved.live_stream_id) {
        must(
          await api.PATCH('/api/v1/live-streams/{id}', {
            params: { path: { id: saved.live_stream_id } },
            body: { record: d.record, recording_retention_days: d.retention ? Number(d.retention) : null },
          }),
        );
        await qc.invalidateQueries({ queryKey: ['live-stream', saved.live_stream_id] });
      }
      await onDone();
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    }
  };
  return (
    <form className="form panel" onSubmit={submit} data-testid="lesson-form">
      <h2>{lesson ? t('studio.lessons.edit') : t('studio.lessons.add')}</h2>
      <label>
        {t('studio.lessons.title')}
        <input name="lesson_title" required maxLength={200} value={d.title} onChange={(e) => setD({ ...d, title: e.target.value })} />
      </label>
      <div className="row">
        <label>
          {t('studio.lessons.startsIn', { tz })}
          <input name="starts_at" type="datetime-local" required value={d.starts} onChange={(e) => setD({ ...d, starts: e.target.value })} />
        </label>
        <label>
          {t('studio.lessons.duration')}
          <input name="duration" type="number" min="5" max="600" required value={d.duration} onChange={(e) => setD({ ...d, duration: e.target.value })} />
        </label>
        <label>
          {t('studio.lessons.kind')}
          <select name="kind" value={d.kind} onChange={(e) => setD({ ...d, kind: e.target.value as Draft['kind'] })}>
            <option value="broadcast">{t('studio.kind.broadcast')}</option>
            <option value="meeting">{t('studio.kind.meeting')}</option>
          </select>
        </label>
      </div>
      {d.kind === 'broadcast' && (
        <div className="row">
          <label className="check">
            <input name="record" type="checkbox" checked={d.record} onChange={(e) => setD({ ...d, record: e.target.checked })} />
            {t('studio.lessons.record')}
          </label>
          <label>
            {t('studio.lessons.retention')}
            <input name="retention" type="number" min="1" max="3650" value={d.retention} onChange={(e) => setD({ ...d, retention: e.target.value })} />
            <small>{t('studio.lessons.retentionHint')}</small>
          </label>
        </div>
      )}
      <div className="actions">
        <button type="submit" className="button">
          {t('common.save')}
        </button>
        <button type="button" className="button button-secondary" onClick={onCancel}>
          {t('common.cancel')}
        </button>
      </div>
      {error && (
        <p className="form-error" role="alert">
          {error}
        </p>
      )}
    </form>
  );
}
