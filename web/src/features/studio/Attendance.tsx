// A course's attendance (docs/interaction.md, "Attendance"), for its teachers and assistants:
// per student, lessons completed of those held, completion, minutes live and quiz score
// (`GET /courses/{id}/attendance`); per lesson that was held, every student's minutes live,
// replay coverage, completion, quiz score and the times they were in the live room
// (`GET /lessons/{id}/attendance`). Both as CSV files too (`?format=csv`, fetched with the
// bearer token like the earnings' export).
import { useMemo, useState } from 'react';
import { useQuery } from '@tanstack/react-query';
import { api, apiFetch, must, ApiProblem } from '../../api/client';
import { useI18n } from '../../lib/i18n';
import type { MessageKey } from '../../lib/i18n/en';
import { ErrorMessage, Loading } from '../../components/Status';
import { download } from '../../lib/format';
import type { components } from '../../api/schema';

type Lesson = components['schemas']['LessonResponse'];
type AttendanceRow = components['schemas']['AttendanceRow'];
type CourseAttendanceRow = components['schemas']['CourseAttendanceRow'];

const percent = (ratio: number) => Math.round(Math.min(1, Math.max(0, ratio)) * 100);
const minutes = (seconds: number) => Math.round(seconds / 60);
const quiz = (r: { quiz_correct: number; quiz_total: number }) => (r.quiz_total > 0 ? `${r.quiz_correct}/${r.quiz_total}` : '–');

/** The JSON answer of a route that also serves CSV (`?format=csv`): its type says `| string`. */
function json<T extends object>(v: T | string): T {
  if (typeof v === 'string') throw new Error('not JSON');
  return v;
}

/** Download one of the attendance CSV files with the session's token. */
async function downloadCsv(path: string, name: string): Promise<void> {
  const r = await apiFetch(`${path}?format=csv`, { headers: { accept: 'text/csv' } });
  if (!r.ok) {
    const p = (await r.json().catch(() => ({}))) as { code?: string; detail?: string };
    throw new ApiProblem(r.status, p.code, p.detail);
  }
  download(name, await r.blob());
}

function CsvButton({ path, name, testId }: { path: string; name: string; testId: string }) {
  const { t } = useI18n();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const run = async () => {
    setBusy(true);
    setError(null);
    try {
      await downloadCsv(path, name);
    } catch (e) {
      setError(t('attendance.csvFailed', { detail: e instanceof Error ? e.message : String(e) }));
    } finally {
      setBusy(false);
    }
  };
  return (
    <span className="actions">
      <button type="button" className="button button-small button-secondary" data-testid={testId} disabled={busy} onClick={() => void run()}>
        {t('attendance.csv')}
      </button>
      {error && (
        <span className="form-error" role="alert">
          {error}
        </span>
      )}
    </span>
  );
}

/** The student's name, with their enrollment's state when they are no longer active. */
function Who({ row }: { row: { display_name: string; enrollment: string } }) {
  const { t } = useI18n();
  const gone = row.enrollment === 'left' || row.enrollment === 'refunded';
  return (
    <>
      {row.display_name}
      {gone && <span className="badge badge-archived attendance-gone">{t(`studio.roster.${row.enrollment}` as MessageKey)}</span>}
    </>
  );
}

export function Attendance({ courseId }: { courseId: string }) {
  const { t } = useI18n();
  const course = useQuery({
    queryKey: ['attendance', 'course', courseId],
    queryFn: async () => json(must(await api.GET('/api/v1/courses/{id}/attendance', { params: { path: { id: courseId } } }))),
  });
  // The same query as the lessons tab (one cache entry).
  const lessons = useQuery({
    queryKey: ['lessons', courseId],
    queryFn: async () => must(await api.GET('/api/v1/courses/{id}/lessons', { params: { path: { id: courseId } } })),
  });
  const rows = course.data?.students ?? [];
  const held = useMemo(
    () => (lessons.data?.items ?? []).filter((l) => l.status !== 'scheduled').sort((a, b) => b.starts_at.localeCompare(a.starts_at)),
    [lessons.data],
  );
  const heldAny = rows.some((r) => r.lessons_held > 0) || held.length > 0;
  return (
    <div className="attendance">
      <section data-testid="attendance" aria-labelledby="attendance-course-title">
        <div className="toolbar">
          <h2 id="attendance-course-title">{t('attendance.course')}</h2>
          <CsvButton path={`/api/v1/courses/${courseId}/attendance`} name={`course-attendance-${courseId}.csv`} testId="attendance-csv" />
        </div>
        <p className="muted small">{t('attendance.courseHint')}</p>
        {course.isPending && <Loading />}
        {course.isError && <ErrorMessage error={course.error} retry={() => void course.refetch()} />}
        {course.isSuccess && rows.length === 0 && (
          <p className="empty" data-testid="attendance-empty">
            {t('attendance.noStudents')}
          </p>
        )}
        {course.isSuccess && rows.length > 0 && !heldAny && (
          <p className="notice" data-testid="attendance-empty">
            {t('attendance.nothingHeld')}
          </p>
        )}
        {rows.length > 0 && <CourseTable rows={rows} />}
      </section>
      <section data-testid="lesson-attendance-section" aria-labelledby="attendance-lesson-title">
        <h2 id="attendance-lesson-title">{t('attendance.lesson')}</h2>
        {lessons.isPending && <Loading />}
        {lessons.isError && <ErrorMessage error={lessons.error} retry={() => void lessons.refetch()} />}
        {lessons.isSuccess && held.length === 0 && <p className="empty">{t('attendance.noHeldLessons')}</p>}
        {held.length > 0 && <LessonPicker lessons={held} />}
      </section>
    </div>
  );
}

function CourseTable({ rows }: { rows: CourseAttendanceRow[] }) {
  const { t } = useI18n();
  return (
    <div className="table-wrap">
      <table className="attendance-table">
        <caption className="sr-only">{t('attendance.course')}</caption>
        <thead>
          <tr>
            <th scope="col">{t('attendance.student')}</th>
            <th scope="col">{t('attendance.email')}</th>
            <th scope="col" className="num">
              {t('attendance.lessons')}
            </th>
            <th scope="col" className="num">
              {t('attendance.completion')}
            </th>
            <th scope="col" className="num">
              {t('attendance.minutesLive')}
            </th>
            <th scope="col" className="num">
              {t('attendance.quiz')}
            </th>
          </tr>
        </thead>
        <tbody>
          {rows.map((r) => (
            <tr key={r.user_id} data-testid="attendance-row" data-user-id={r.user_id}>
              <th scope="row">
                <Who row={r} />
              </th>
              <td className="attendance-email">{r.email}</td>
              <td className="num">{t('attendance.lessonsOf', { done: r.lessons_completed, held: r.lessons_held })}</td>
              <td className="num">{t('attendance.percent', { n: percent(r.completion) })}</td>
              <td className="num">{minutes(r.live_s)}</td>
              <td className="num">{quiz(r)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function LessonPicker({ lessons }: { lessons: Lesson[] }) {
  const { t, dateTime } = useI18n();
  const [picked, setPicked] = useState<string>(lessons[0]!.id);
  const id = lessons.some((l) => l.id === picked) ? picked : lessons[0]!.id;
  return (
    <>
      <div className="toolbar">
        <label className="attendance-pick">
          {t('attendance.pickLesson')}{' '}
          <select name="attendance_lesson" value={id} onChange={(e) => setPicked(e.target.value)}>
            {lessons.map((l) => (
              <option key={l.id} value={l.id}>
                {`${dateTime(l.starts_at, { dateStyle: 'medium', timeStyle: 'short' })} · ${l.title}`}
              </option>
            ))}
          </select>
        </label>
        <CsvButton path={`/api/v1/lessons/${id}/attendance`} name={`attendance-${id}.csv`} testId="lesson-attendance-csv" />
      </div>
      <LessonTable lessonId={id} />
    </>
  );
}

function LessonTable({ lessonId }: { lessonId: string }) {
  const { t, duration } = useI18n();
  const q = useQuery({
    queryKey: ['attendance', 'lesson', lessonId],
    queryFn: async () => json(must(await api.GET('/api/v1/lessons/{id}/attendance', { params: { path: { id: lessonId } } }))),
  });
  if (q.isPending) return <Loading />;
  if (q.isError) return <ErrorMessage error={q.error} retry={() => void q.refetch()} />;
  const a = q.data;
  const attended = a.students.filter((s) => s.live_s > 0 || s.replay_watched_s > 0 || s.intervals.length > 0);
  return (
    <div data-testid="lesson-attendance" data-lesson-id={lessonId}>
      <p className="muted">
        {t('attendance.lessonFacts', { live: duration(a.live_s), recording: duration(a.recording_s) })}
        {a.students.length > 0 && ` · ${t('attendance.attendedOf', { n: attended.length, total: a.students.length })}`}
      </p>
      {a.students.length === 0 ? (
        <p className="empty" data-testid="lesson-attendance-empty">
          {t('attendance.noStudents')}
        </p>
      ) : attended.length === 0 ? (
        <p className="empty" data-testid="lesson-attendance-empty">
          {t('attendance.nobody')}
        </p>
      ) : (
        <div className="table-wrap">
          <table className="attendance-table">
            <caption className="sr-only">{t('attendance.lesson')}</caption>
            <thead>
              <tr>
                <th scope="col">{t('attendance.student')}</th>
                <th scope="col" className="num">
                  {t('attendance.minutesLive')}
                </th>
                <th scope="col" className="num">
                  {t('attendance.replay')}
                </th>
                <th scope="col">{t('attendance.completed')}</th>
                <th scope="col" className="num">
                  {t('attendance.quiz')}
                </th>
                <th scope="col">{t('attendance.intervals')}</th>
              </tr>
            </thead>
            <tbody>
              {a.students.map((r) => (
                <LessonRow key={r.user_id} row={r} />
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}

function LessonRow({ row: r }: { row: AttendanceRow }) {
  const { t, dateTime } = useI18n();
  const time = (iso: string) => dateTime(iso, { timeStyle: 'short' });
  return (
    <tr data-testid="lesson-attendance-row" data-user-id={r.user_id} data-completed={r.completed}>
      <th scope="row">
        <Who row={r} />
        <span className="muted small attendance-email"> {r.email}</span>
      </th>
      <td className="num">{minutes(r.live_s)}</td>
      <td className="num">{t('attendance.percent', { n: percent(r.replay_coverage) })}</td>
      <td>
        {r.completed ? (
          <span className="attendance-done" title={t('attendance.yes')}>
            <span aria-hidden="true">✓</span>
            <span className="sr-only">{t('attendance.yes')}</span>
          </span>
        ) : (
          <span className="muted" title={t('attendance.no')}>
            <span aria-hidden="true">–</span>
            <span className="sr-only">{t('attendance.no')}</span>
          </span>
        )}
      </td>
      <td className="num">{quiz(r)}</td>
      <td>
        {r.intervals.length === 0 ? (
          <span className="muted">–</span>
        ) : (
          <ul className="intervals">
            {r.intervals.map((i) => (
              <li key={`${i.from}-${i.to}`}>
                <time dateTime={i.from}>{time(i.from)}</time>–<time dateTime={i.to}>{time(i.to)}</time>
              </li>
            ))}
          </ul>
        )}
      </td>
    </tr>
  );
}
