//! What outlives the lesson (docs/interaction.md): attendance, replay coverage, quiz scores,
//! the replay's timeline and viewing quality — computed in PostgreSQL from the stored facts
//! (intervals, ranges, answers), so every node answers the same.
//!
//! Time sets are ranges: a student's intervals — socket subscriptions to the lesson room and the
//! player's live playback sessions — are a `tstzmultirange` (two tabs count once),
//! intersected with the lesson's live periods (`live_stream.active` → next `live_stream.idle`);
//! replay seconds are an `int4multirange` that absorbs every new play.
//!
//! Size: attendance, replay coverage, quiz scores, the timeline, chapters and viewing quality,
//! each a query and its shaping around the shared live-period CTE; viewing quality is the next
//! split.

use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::InvalidInput;

/// A lesson counts as completed at this share of its live time or of its recording.
pub const COMPLETION_SHARE: f64 = 0.8;

/// One student's record of one lesson.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AttendanceRow {
    pub user_id: Uuid,
    pub display_name: String,
    pub email: String,
    /// `active`, `left` or `refunded`.
    pub enrollment: String,
    /// When they were in the live room: merged intervals `[from, to]`.
    pub intervals: Vec<Interval>,
    /// Seconds attended while the lesson was live.
    pub live_s: f64,
    /// Seconds of the lesson's recordings played at least once.
    pub replay_watched_s: f64,
    /// `replay_watched_s` / the recordings' duration (0 when nothing was recorded).
    pub replay_coverage: f64,
    pub completed: bool,
    pub quiz_correct: i64,
    pub quiz_total: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Interval {
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub from: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub to: OffsetDateTime,
}

/// A lesson's attendance table (or one student's row).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LessonAttendance {
    pub lesson_id: Uuid,
    /// How long the lesson was live, in seconds.
    pub live_s: f64,
    /// Duration of its ready recordings, in seconds.
    pub recording_s: f64,
    pub students: Vec<AttendanceRow>,
}

/// The attendance of a lesson's students (every enrollment of the course, or only `only`).
pub async fn lesson_attendance(
    conn: &mut PgConnection,
    lesson: Uuid,
    only: Option<Uuid>,
) -> Result<LessonAttendance, sqlx::Error> {
    let head = sqlx::query!(
        r#"WITH ev AS (
               SELECT e.created_at AS at, e.kind FROM live_stream_events e
               JOIN lessons l ON l.live_stream_id = e.live_stream_id
               WHERE l.id = $1 AND e.kind IN ('live_stream.active', 'live_stream.idle')),
           live AS (
               SELECT range_agg(tstzrange(a.at, coalesce(
                   (SELECT min(i.at) FROM ev i WHERE i.kind = 'live_stream.idle' AND i.at > a.at),
                   now()))) AS r
               FROM ev a WHERE a.kind = 'live_stream.active')
           SELECT coalesce((SELECT sum(extract(epoch FROM upper(x) - lower(x)))
                            FROM live, unnest(live.r) x), 0)::float8 AS "live_s!",
                  coalesce((SELECT sum(r.duration_ms) FROM recordings r
                            JOIN lessons l ON l.live_stream_id = r.live_stream_id
                            WHERE l.id = $1 AND r.deleted_at IS NULL AND r.status = 'ready'), 0)::float8
                      / 1000.0 AS "recording_s!""#,
        lesson
    )
    .fetch_one(&mut *conn)
    .await?;
    let rows = sqlx::query!(
        r#"WITH lesson AS (SELECT id, course_id, live_stream_id FROM lessons WHERE id = $1),
           ev AS (
               SELECT e.created_at AS at, e.kind FROM live_stream_events e, lesson
               WHERE e.live_stream_id = lesson.live_stream_id
                 AND e.kind IN ('live_stream.active', 'live_stream.idle')),
           live AS (
               SELECT coalesce(range_agg(tstzrange(a.at, coalesce(
                   (SELECT min(i.at) FROM ev i WHERE i.kind = 'live_stream.idle' AND i.at > a.at),
                   now()))), '{}'::tstzmultirange) AS r
               FROM ev a WHERE a.kind = 'live_stream.active'),
           students AS (
               SELECT e.user_id, e.status FROM enrollments e, lesson
               WHERE e.course_id = lesson.course_id AND ($2::uuid IS NULL OR e.user_id = $2)),
           intervals AS (
               SELECT a.user_id, a.started_at AS f,
                      greatest(a.started_at, coalesce(a.ended_at, a.last_seen_at)) AS t
               FROM lesson_attendance a WHERE a.lesson_id = $1
               -- The player's live sessions too (first to last report): a student whose
               -- socket is down but whose video plays is there.
               UNION ALL
               SELECT p.user_id, p.started_at, greatest(p.started_at, p.updated_at)
               FROM playback_reports p
               WHERE p.lesson_id = $1 AND p.live AND p.user_id IS NOT NULL),
           present AS (
               SELECT user_id, range_agg(tstzrange(f, t)) AS r
               FROM intervals GROUP BY user_id),
           recs AS (
               SELECT r.id, r.duration_ms FROM recordings r, lesson
               WHERE r.live_stream_id = lesson.live_stream_id AND r.deleted_at IS NULL
                 AND r.status = 'ready'),
           watched AS (
               SELECT p.user_id,
                      sum((SELECT coalesce(sum(upper(x) - lower(x)), 0) FROM unnest(p.watched) x)) AS s
               FROM recording_progress p JOIN recs ON recs.id = p.recording_id
               GROUP BY p.user_id),
           quiz AS (
               SELECT a.user_id,
                      count(*) FILTER (WHERE a.choices @> p.correct AND a.choices <@ p.correct) AS correct
               FROM lesson_polls p JOIN lesson_poll_answers a ON a.poll_id = p.id
               WHERE p.lesson_id = $1 AND p.correct IS NOT NULL
               GROUP BY a.user_id)
           SELECT s.user_id AS "user_id!", u.display_name AS "display_name!", u.email::text AS "email!",
                  s.status AS "enrollment!",
                  coalesce((SELECT array_agg(lower(x) ORDER BY lower(x)) FROM unnest(pr.r) x), '{}') AS "from!: Vec<OffsetDateTime>",
                  coalesce((SELECT array_agg(upper(x) ORDER BY lower(x)) FROM unnest(pr.r) x), '{}') AS "to!: Vec<OffsetDateTime>",
                  coalesce((SELECT sum(extract(epoch FROM upper(x) - lower(x)))
                            FROM live, unnest(pr.r * live.r) x), 0)::float8 AS "live_s!",
                  coalesce(w.s, 0)::float8 AS "watched_s!",
                  coalesce(q.correct, 0) AS "quiz_correct!",
                  (SELECT count(*) FROM lesson_polls p WHERE p.lesson_id = $1
                                                         AND p.correct IS NOT NULL) AS "quiz_total!"
           FROM students s JOIN users u ON u.id = s.user_id
           LEFT JOIN present pr ON pr.user_id = s.user_id
           LEFT JOIN watched w ON w.user_id = s.user_id
           LEFT JOIN quiz q ON q.user_id = s.user_id
           ORDER BY u.display_name, s.user_id
           LIMIT 10000"#,
        lesson,
        only
    )
    .fetch_all(conn)
    .await?;
    let students = rows
        .into_iter()
        .map(|r| {
            let coverage = if head.recording_s > 0.0 {
                (r.watched_s / head.recording_s).min(1.0)
            } else {
                0.0
            };
            let live_share = if head.live_s > 0.0 {
                r.live_s / head.live_s
            } else {
                0.0
            };
            AttendanceRow {
                user_id: r.user_id,
                display_name: r.display_name,
                email: r.email,
                enrollment: r.enrollment,
                intervals: r
                    .from
                    .into_iter()
                    .zip(r.to)
                    .map(|(from, to)| Interval { from, to })
                    .collect(),
                live_s: round1(r.live_s),
                replay_watched_s: r.watched_s,
                replay_coverage: round3(coverage),
                completed: live_share >= COMPLETION_SHARE || coverage >= COMPLETION_SHARE,
                quiz_correct: r.quiz_correct,
                quiz_total: r.quiz_total,
            }
        })
        .collect();
    Ok(LessonAttendance {
        lesson_id: lesson,
        live_s: round1(head.live_s),
        recording_s: head.recording_s,
        students,
    })
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// One student's record of a course: lessons completed of those that ended.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CourseAttendanceRow {
    pub user_id: Uuid,
    pub display_name: String,
    pub email: String,
    pub enrollment: String,
    pub lessons_completed: i64,
    /// Lessons that were live or have a recording.
    pub lessons_held: i64,
    pub completion: f64,
    pub live_s: f64,
    pub quiz_correct: i64,
    pub quiz_total: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CourseAttendance {
    pub course_id: Uuid,
    pub students: Vec<CourseAttendanceRow>,
}

/// The course's record per student: each held lesson's attendance, added up.
pub async fn course_attendance(
    conn: &mut PgConnection,
    course: Uuid,
    only: Option<Uuid>,
) -> Result<CourseAttendance, sqlx::Error> {
    let lessons = sqlx::query_scalar!(
        r#"SELECT l.id FROM lessons l
           WHERE l.course_id = $1 AND l.deleted_at IS NULL
             AND (EXISTS (SELECT 1 FROM live_stream_events e WHERE e.live_stream_id = l.live_stream_id
                                                         AND e.kind = 'live_stream.active')
                  OR EXISTS (SELECT 1 FROM recordings r WHERE r.live_stream_id = l.live_stream_id
                                                      AND r.deleted_at IS NULL AND r.status = 'ready'))
           ORDER BY l.starts_at, l.id
           LIMIT 500"#,
        course
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut by_user: std::collections::BTreeMap<Uuid, CourseAttendanceRow> = Default::default();
    if lessons.is_empty() {
        // Nobody attended anything yet: still list the students.
        let rows = sqlx::query!(
            r#"SELECT e.user_id, u.display_name, u.email::text AS "email!", e.status
               FROM enrollments e JOIN users u ON u.id = e.user_id
               WHERE e.course_id = $1 AND ($2::uuid IS NULL OR e.user_id = $2)
               LIMIT 10000"#,
            course,
            only
        )
        .fetch_all(&mut *conn)
        .await?;
        for r in rows {
            by_user.insert(
                r.user_id,
                CourseAttendanceRow {
                    user_id: r.user_id,
                    display_name: r.display_name,
                    email: r.email,
                    enrollment: r.status,
                    lessons_completed: 0,
                    lessons_held: 0,
                    completion: 0.0,
                    live_s: 0.0,
                    quiz_correct: 0,
                    quiz_total: 0,
                },
            );
        }
    }
    for lesson in &lessons {
        let a = lesson_attendance(conn, *lesson, only).await?;
        for s in a.students {
            let e = by_user
                .entry(s.user_id)
                .or_insert_with(|| CourseAttendanceRow {
                    user_id: s.user_id,
                    display_name: s.display_name.clone(),
                    email: s.email.clone(),
                    enrollment: s.enrollment.clone(),
                    lessons_completed: 0,
                    lessons_held: 0,
                    completion: 0.0,
                    live_s: 0.0,
                    quiz_correct: 0,
                    quiz_total: 0,
                });
            e.lessons_held += 1;
            e.lessons_completed += i64::from(s.completed);
            e.live_s = round1(e.live_s + s.live_s);
            e.quiz_correct += s.quiz_correct;
            e.quiz_total += s.quiz_total;
        }
    }
    let mut students: Vec<CourseAttendanceRow> = by_user.into_values().collect();
    for s in &mut students {
        s.completion = if s.lessons_held > 0 {
            round3(s.lessons_completed as f64 / s.lessons_held as f64)
        } else {
            0.0
        };
    }
    students.sort_by(|a, b| a.display_name.cmp(&b.display_name));
    Ok(CourseAttendance {
        course_id: course,
        students,
    })
}

/// CSV of a lesson's attendance (RFC 4180; cells that a spreadsheet would run as a formula are
/// prefixed with `'`).
pub fn lesson_csv(a: &LessonAttendance) -> String {
    let mut out = String::from(
        "user_id,name,email,enrollment,live_minutes,replay_coverage,completed,quiz_correct,quiz_total,intervals\r\n",
    );
    for s in &a.students {
        let intervals = s
            .intervals
            .iter()
            .map(|i| format!("{}/{}", rfc3339(i.from), rfc3339(i.to)))
            .collect::<Vec<_>>()
            .join(" ");
        let cells = [
            s.user_id.to_string(),
            s.display_name.clone(),
            s.email.clone(),
            s.enrollment.clone(),
            format!("{:.1}", s.live_s / 60.0),
            format!("{:.3}", s.replay_coverage),
            s.completed.to_string(),
            s.quiz_correct.to_string(),
            s.quiz_total.to_string(),
            intervals,
        ];
        push_row(&mut out, &cells);
    }
    out
}

pub fn course_csv(a: &CourseAttendance) -> String {
    let mut out = String::from(
        "user_id,name,email,enrollment,lessons_completed,lessons_held,completion,live_minutes,quiz_correct,quiz_total\r\n",
    );
    for s in &a.students {
        let cells = [
            s.user_id.to_string(),
            s.display_name.clone(),
            s.email.clone(),
            s.enrollment.clone(),
            s.lessons_completed.to_string(),
            s.lessons_held.to_string(),
            format!("{:.3}", s.completion),
            format!("{:.1}", s.live_s / 60.0),
            s.quiz_correct.to_string(),
            s.quiz_total.to_string(),
        ];
        push_row(&mut out, &cells);
    }
    out
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn push_row(out: &mut String, cells: &[String]) {
    let row: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
    out.push_str(&row.join(","));
    out.push_str("\r\n");
}

fn csv_cell(c: &str) -> String {
    let c = if c.starts_with(['=', '+', '-', '@']) {
        format!("'{c}")
    } else {
        c.to_owned()
    };
    if c.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", c.replace('"', "\"\""))
    } else {
        c
    }
}

/// Ranges of a recording played, in whole seconds `[from, to)`.
#[derive(Debug, Clone, PartialEq, Deserialize, utoipa::ToSchema)]
pub struct PlayedRanges(pub Vec<(i32, i32)>);

impl PlayedRanges {
    /// 1 to 50 ranges within `0 ≤ from < to ≤ duration + 5`; fractions round outwards.
    pub fn parse(raw: &[[f64; 2]], duration_s: f64) -> Result<PlayedRanges, InvalidInput> {
        const BAD: InvalidInput = InvalidInput {
            field: "ranges",
            reason: "must hold 1 to 50 ranges [from, to] with 0 <= from < to <= the recording's duration",
        };
        if raw.is_empty() || raw.len() > 50 {
            return Err(BAD);
        }
        let max = duration_s + 5.0;
        raw.iter()
            .map(|&[a, b]| {
                if !(a.is_finite() && b.is_finite()) || a < 0.0 || b <= a || b > max {
                    return Err(BAD);
                }
                Ok((a.floor() as i32, b.ceil() as i32))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(PlayedRanges)
    }
}

/// What a viewer has played of a recording, merged.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Progress {
    pub watched_s: i64,
    pub duration_s: f64,
    pub coverage: f64,
    /// The merged set of seconds played, `[from, to)`.
    pub ranges: Vec<[i32; 2]>,
}

/// Add played ranges to `user`'s set for the recording; the merged set back.
pub async fn add_progress(
    conn: &mut PgConnection,
    recording: Uuid,
    user: Uuid,
    duration_s: f64,
    played: &PlayedRanges,
) -> Result<Progress, sqlx::Error> {
    let from: Vec<i32> = played.0.iter().map(|r| r.0).collect();
    let to: Vec<i32> = played.0.iter().map(|r| r.1).collect();
    let r = sqlx::query!(
        r#"WITH new AS (
               SELECT range_agg(int4range(f, t)) AS r FROM unnest($3::int[], $4::int[]) AS x(f, t)),
           up AS (
               INSERT INTO recording_progress (recording_id, user_id, watched)
               SELECT $1, $2, new.r FROM new
               ON CONFLICT (recording_id, user_id) DO UPDATE
                   SET watched = recording_progress.watched + EXCLUDED.watched, updated_at = now()
               RETURNING watched)
           SELECT coalesce((SELECT array_agg(lower(x) ORDER BY lower(x)) FROM up, unnest(up.watched) x), '{}') AS "from!: Vec<i32>",
                  coalesce((SELECT array_agg(upper(x) ORDER BY lower(x)) FROM up, unnest(up.watched) x), '{}') AS "to!: Vec<i32>""#,
        recording,
        user,
        &from,
        &to
    )
    .fetch_one(conn)
    .await?;
    let ranges: Vec<[i32; 2]> = r.from.into_iter().zip(r.to).map(|(a, b)| [a, b]).collect();
    let watched_s: i64 = ranges.iter().map(|[a, b]| i64::from(b - a)).sum();
    let coverage = if duration_s > 0.0 {
        round3((watched_s as f64 / duration_s).min(1.0))
    } else {
        0.0
    };
    Ok(Progress {
        watched_s,
        duration_s,
        coverage,
        ranges,
    })
}

/// A chapter of a replay (`t`: seconds from the recording's start).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Chapter {
    pub t: f64,
    pub title: String,
    /// `manual` (set by a teacher) or `pin` (a pinned question); ignored on input.
    #[serde(default)]
    pub source: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Heat {
    pub bucket_s: i32,
    /// Confused markers and "I'm lost" reactions per bucket, from the recording's start.
    pub confused: Vec<i64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TimelineMessage {
    pub t: f64,
    pub id: Uuid,
    pub sender_id: Option<Uuid>,
    pub kind: String,
    pub html: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TimelineQuestion {
    pub t: f64,
    pub id: Uuid,
    pub body: String,
    pub author_id: Option<Uuid>,
    pub votes: i32,
    pub state: String,
    pub answered_t: Option<f64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Bookmark {
    pub t: f64,
    pub kind: String,
}

/// A recording enriched by its live lesson.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Timeline {
    pub recording_id: Uuid,
    pub lesson_id: Option<Uuid>,
    pub duration_s: f64,
    pub chapters: Vec<Chapter>,
    pub heat: Heat,
    pub chat: Vec<TimelineMessage>,
    pub questions: Vec<TimelineQuestion>,
    pub bookmarks: Vec<Bookmark>,
}

/// Heat buckets (seconds).
pub const HEAT_BUCKET_S: i32 = 10;
/// Chat messages a timeline carries at most.
pub const TIMELINE_MESSAGES: i64 = 5000;

/// The timeline of a recording for `reader` (`staff` see authors of anonymous questions).
pub async fn timeline(
    conn: &mut PgConnection,
    recording: Uuid,
    reader: Uuid,
    staff: bool,
) -> Result<Option<Timeline>, sqlx::Error> {
    let Some(rec) = sqlx::query!(
        r#"SELECT r.started_at, r.duration_ms, l.id AS "lesson_id?"
           FROM recordings r LEFT JOIN lessons l ON l.live_stream_id = r.live_stream_id
           WHERE r.id = $1 AND r.deleted_at IS NULL"#,
        recording
    )
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let duration_s = rec.duration_ms as f64 / 1000.0;
    let start = rec.started_at;
    let end = start + time::Duration::milliseconds(rec.duration_ms);
    let rel = |t: OffsetDateTime| round1(((t - start).as_seconds_f64()).max(0.0));
    let mut chapters: Vec<Chapter> = sqlx::query!(
        "SELECT t_ms, title FROM recording_chapters WHERE recording_id = $1 ORDER BY t_ms",
        recording
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|r| Chapter {
        t: r.t_ms as f64 / 1000.0,
        title: r.title,
        source: "manual".into(),
    })
    .collect();
    let buckets = (duration_s / HEAT_BUCKET_S as f64).ceil().max(0.0) as usize;
    let mut heat = vec![0i64; buckets];
    let (mut chat, mut questions, mut bookmarks) = (Vec::new(), Vec::new(), Vec::new());
    if let Some(lesson) = rec.lesson_id {
        let channel = format!("lesson:{lesson}");
        chat = sqlx::query!(
            r#"SELECT m.id, m.sender_id, m.kind, m.html, m.created_at
               FROM chat_messages m JOIN chat_channels c ON c.id = m.channel_id
               WHERE c.name = $1 AND m.created_at >= $2 AND m.created_at <= $3
                 AND m.kind = 'text' AND m.deleted_at IS NULL
               ORDER BY m.seq LIMIT $4"#,
            channel,
            start,
            end,
            TIMELINE_MESSAGES
        )
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|m| TimelineMessage {
            t: rel(m.created_at),
            id: m.id,
            sender_id: m.sender_id,
            kind: m.kind,
            html: m.html,
        })
        .collect();
        let qs = sqlx::query!(
            r#"SELECT id, author_id, anonymous, body, votes, state, created_at, answered_at, pinned_at
               FROM lesson_questions
               WHERE lesson_id = $1 AND created_at >= $2 AND created_at <= $3 AND state <> 'dismissed'
               ORDER BY created_at LIMIT 1000"#,
            lesson,
            start,
            end
        )
        .fetch_all(&mut *conn)
        .await?;
        for q in qs {
            if let Some(p) = q.pinned_at
                && p <= end
            {
                chapters.push(Chapter {
                    t: rel(p),
                    title: q.body.chars().take(80).collect(),
                    source: "pin".into(),
                });
            }
            questions.push(TimelineQuestion {
                t: rel(q.created_at),
                id: q.id,
                body: q.body,
                author_id: (staff || !q.anonymous || q.author_id == reader).then_some(q.author_id),
                votes: q.votes,
                state: q.state,
                answered_t: q.answered_at.filter(|a| *a <= end).map(rel),
            });
        }
        let marks = sqlx::query!(
            r#"SELECT at, kind, user_id FROM lesson_markers
               WHERE lesson_id = $1 AND at >= $2 AND at <= $3"#,
            lesson,
            start,
            end
        )
        .fetch_all(&mut *conn)
        .await?;
        for m in marks {
            let t = rel(m.at);
            if m.kind == "confused"
                && let Some(b) = heat.get_mut((t / HEAT_BUCKET_S as f64) as usize)
            {
                *b += 1;
            }
            if m.user_id == reader {
                bookmarks.push(Bookmark { t, kind: m.kind });
            }
        }
        let lost = sqlx::query!(
            r#"SELECT bucket, count FROM lesson_reaction_buckets
               WHERE lesson_id = $1 AND kind = 'lost' AND bucket >= $2::timestamptz - interval '10 seconds'
                 AND bucket <= $3"#,
            lesson,
            start,
            end
        )
        .fetch_all(&mut *conn)
        .await?;
        for l in lost {
            if let Some(b) = heat.get_mut((rel(l.bucket) / HEAT_BUCKET_S as f64) as usize) {
                *b += i64::from(l.count);
            }
        }
    }
    chapters.sort_by(|a, b| a.t.total_cmp(&b.t));
    Ok(Some(Timeline {
        recording_id: recording,
        lesson_id: rec.lesson_id,
        duration_s,
        chapters,
        heat: Heat {
            bucket_s: HEAT_BUCKET_S,
            confused: heat,
        },
        chat,
        questions,
        bookmarks,
    }))
}

/// Replace a recording's hand-set chapters.
pub async fn set_chapters(
    conn: &mut PgConnection,
    recording: Uuid,
    chapters: &[(i64, String)],
) -> Result<(), sqlx::Error> {
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    sqlx::query!(
        "DELETE FROM recording_chapters WHERE recording_id = $1",
        recording
    )
    .execute(&mut *tx)
    .await?;
    let ts: Vec<i64> = chapters.iter().map(|c| c.0).collect();
    let titles: Vec<String> = chapters.iter().map(|c| c.1.clone()).collect();
    sqlx::query!(
        r#"INSERT INTO recording_chapters (recording_id, t_ms, title)
           SELECT $1, t, title FROM unnest($2::bigint[], $3::text[]) AS x(t, title)
           ON CONFLICT (recording_id, t_ms) DO UPDATE SET title = EXCLUDED.title"#,
        recording,
        &ts,
        &titles
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// One playback session's running totals, checked.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct QualityReport {
    pub session_id: Uuid,
    pub lesson_id: Option<Uuid>,
    pub recording_id: Option<Uuid>,
    pub live: bool,
    /// `webrtc`, `ll-hls`, `hls` or `native`.
    pub mode: String,
    pub rendition: Option<String>,
    pub startup_ms: Option<i64>,
    pub rebuffer_count: i64,
    pub rebuffer_ms: i64,
    pub played_ms: i64,
    pub errors: i64,
    pub latency_ms: Option<i64>,
}

impl QualityReport {
    /// Bounded values: a day of playback per session, no negative counts.
    pub fn check(&self) -> Result<(), InvalidInput> {
        const DAY_MS: i64 = 86_400_000;
        let bad = |field: &'static str, reason: &'static str| Err(InvalidInput { field, reason });
        if self.lesson_id.is_none() && self.recording_id.is_none() {
            return bad("lesson_id", "a report names a lesson_id or a recording_id");
        }
        if !["webrtc", "ll-hls", "hls", "native"].contains(&self.mode.as_str()) {
            return bad("mode", "must be webrtc, ll-hls, hls or native");
        }
        if self.rendition.as_ref().is_some_and(|r| {
            r.is_empty() || r.len() > 16 || !r.chars().all(|c| c.is_ascii_alphanumeric())
        }) {
            return bad("rendition", "must be 1 to 16 letters or digits, e.g. 720p");
        }
        let ms = [
            self.startup_ms.unwrap_or(0),
            self.rebuffer_ms,
            self.played_ms,
            self.latency_ms.unwrap_or(0),
        ];
        if ms.iter().any(|v| !(0..=DAY_MS).contains(v)) {
            return bad(
                "played_ms",
                "times must be between 0 and a day in milliseconds",
            );
        }
        if !(0..=100_000).contains(&self.rebuffer_count) || !(0..=100_000).contains(&self.errors) {
            return bad("rebuffer_count", "counts must be between 0 and 100000");
        }
        Ok(())
    }
}

/// Store a report (replacing the session's previous totals; a session is one viewer's).
pub async fn store_report(
    conn: &mut PgConnection,
    user: Uuid,
    r: &QualityReport,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        r#"INSERT INTO playback_reports (session_id, user_id, lesson_id, recording_id, live, mode,
                                         rendition, startup_ms, rebuffer_count, rebuffer_ms,
                                         played_ms, errors, latency_ms)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
           ON CONFLICT (session_id) DO UPDATE
               SET mode = EXCLUDED.mode, rendition = EXCLUDED.rendition,
                   startup_ms = EXCLUDED.startup_ms, rebuffer_count = EXCLUDED.rebuffer_count,
                   rebuffer_ms = EXCLUDED.rebuffer_ms, played_ms = EXCLUDED.played_ms,
                   errors = EXCLUDED.errors, latency_ms = EXCLUDED.latency_ms, updated_at = now()
               WHERE playback_reports.user_id = EXCLUDED.user_id"#,
        r.session_id,
        user,
        r.lesson_id,
        r.recording_id,
        r.live,
        r.mode,
        r.rendition,
        r.startup_ms.map(|v| v as i32),
        r.rebuffer_count as i32,
        r.rebuffer_ms,
        r.played_ms,
        r.errors as i32,
        r.latency_ms.map(|v| v as i32),
    )
    .execute(conn)
    .await?;
    // A session id of another viewer is not theirs to overwrite.
    Ok(done.rows_affected() > 0)
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Percentiles {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ModeCount {
    pub mode: String,
    pub sessions: i64,
}

/// Viewing quality of a lesson's live playback.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Quality {
    pub lesson_id: Uuid,
    /// Sessions that reported in the last 60 s.
    pub viewers_now: i64,
    /// Most sessions playing at once (from their first to their last report).
    pub viewers_peak: i64,
    pub sessions: i64,
    pub startup_ms: Percentiles,
    /// Rebuffering time / playing time.
    pub rebuffer_ratio: f64,
    pub rebuffer_count: i64,
    pub latency_ms: Percentiles,
    pub errors: i64,
    pub by_mode: Vec<ModeCount>,
}

pub async fn quality(conn: &mut PgConnection, lesson: Uuid) -> Result<Quality, sqlx::Error> {
    let r = sqlx::query!(
        r#"WITH s AS (SELECT * FROM playback_reports WHERE lesson_id = $1 AND live),
           edges AS (
               SELECT started_at AS at, 1 AS d FROM s
               UNION ALL SELECT updated_at + interval '1 millisecond', -1 FROM s),
           running AS (SELECT sum(d) OVER (ORDER BY at, d) AS n FROM edges)
           SELECT (SELECT count(*) FROM s WHERE updated_at > now() - interval '60 seconds') AS "now!",
                  coalesce((SELECT max(n) FROM running), 0)::bigint AS "peak!",
                  (SELECT count(*) FROM s) AS "sessions!",
                  (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY startup_ms) FROM s) AS startup_p50,
                  (SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY startup_ms) FROM s) AS startup_p95,
                  (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) FROM s) AS latency_p50,
                  (SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) FROM s) AS latency_p95,
                  coalesce((SELECT sum(rebuffer_ms) FROM s), 0)::float8 AS "rebuffer_ms!",
                  coalesce((SELECT sum(played_ms) FROM s), 0)::float8 AS "played_ms!",
                  coalesce((SELECT sum(rebuffer_count) FROM s), 0)::bigint AS "rebuffer_count!",
                  coalesce((SELECT sum(errors) FROM s), 0)::bigint AS "errors!""#,
        lesson
    )
    .fetch_one(&mut *conn)
    .await?;
    let by_mode = sqlx::query!(
        r#"SELECT mode, count(*) AS "n!" FROM playback_reports WHERE lesson_id = $1 AND live
           GROUP BY mode ORDER BY mode"#,
        lesson
    )
    .fetch_all(conn)
    .await?
    .into_iter()
    .map(|m| ModeCount {
        mode: m.mode,
        sessions: m.n,
    })
    .collect();
    let watched = r.played_ms + r.rebuffer_ms;
    Ok(Quality {
        lesson_id: lesson,
        viewers_now: r.now,
        viewers_peak: r.peak,
        sessions: r.sessions,
        startup_ms: Percentiles {
            p50: r.startup_p50,
            p95: r.startup_p95,
        },
        rebuffer_ratio: if watched > 0.0 {
            round3(r.rebuffer_ms / watched)
        } else {
            0.0
        },
        rebuffer_count: r.rebuffer_count,
        latency_ms: Percentiles {
            p50: r.latency_p50,
            p95: r.latency_p95,
        },
        errors: r.errors,
        by_mode,
    })
}

/// One lesson's viewing quality in the ops overview.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LessonQuality {
    pub lesson_id: Uuid,
    pub title: String,
    pub course_id: Uuid,
    pub live_stream_id: Uuid,
    pub quality: Quality,
}

/// Lessons whose viewers reported within the last `minutes` (most viewers now first, at most
/// `limit`), each with its aggregates: the ops console's view of what viewers experience.
pub async fn quality_overview(
    conn: &mut PgConnection,
    minutes: i64,
    limit: i64,
) -> Result<Vec<LessonQuality>, sqlx::Error> {
    let lessons = sqlx::query!(
        r#"SELECT l.id, l.title, l.course_id, l.live_stream_id
           FROM lessons l
           JOIN (SELECT lesson_id, count(*) FILTER (WHERE updated_at > now() - interval '60 seconds') AS now_n,
                        max(updated_at) AS last
                 FROM playback_reports
                 WHERE lesson_id IS NOT NULL AND live
                   AND updated_at > now() - make_interval(mins => $1::int)
                 GROUP BY lesson_id) r ON r.lesson_id = l.id
           ORDER BY r.now_n DESC, r.last DESC
           LIMIT $2"#,
        minutes as i32,
        limit
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(lessons.len());
    for l in lessons {
        out.push(LessonQuality {
            quality: quality(conn, l.id).await?,
            lesson_id: l.id,
            title: l.title,
            course_id: l.course_id,
            live_stream_id: l.live_stream_id,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn played_ranges_are_bounded_by_the_recording() {
        let ok = PlayedRanges::parse(&[[0.0, 10.4], [12.7, 20.0]], 30.0).unwrap();
        assert_eq!(ok.0, vec![(0, 11), (12, 20)]);
        assert!(PlayedRanges::parse(&[], 30.0).is_err());
        assert!(PlayedRanges::parse(&[[5.0, 5.0]], 30.0).is_err());
        assert!(PlayedRanges::parse(&[[-1.0, 5.0]], 30.0).is_err());
        assert!(PlayedRanges::parse(&[[0.0, 36.0]], 30.0).is_err());
        assert!(PlayedRanges::parse(&[[0.0, f64::NAN]], 30.0).is_err());
        assert!(PlayedRanges::parse(&vec![[0.0, 1.0]; 51], 30.0).is_err());
    }

    #[test]
    fn csv_cells_are_quoted_and_formulas_defused() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=HYPERLINK(1)"), "'=HYPERLINK(1)");
    }
}
