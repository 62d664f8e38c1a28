//! The REST side of the live tools and learning records (docs/interaction.md): the lesson's
//! interaction snapshot, attendance (JSON or CSV), replay progress, the replay's timeline and
//! chapters, viewing-quality reports and their aggregates. Live actions go over the chat
//! socket (`chat::conn::interact`).
//!
//! Access is the course policy's: students read their own records, moderators (teachers,
//! assistants, admins) the class's; a lesson or recording the caller may not see is 404.

use axum::{
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    courses::{caller, lesson_standing, standing},
    error::{ApiError, Problem},
    extract::{AuthUser, Json, Path, Query},
};
use crate::{
    courses::policy,
    domain::{InvalidInput, Role},
    interaction::{
        PollResults, PollView, QuestionView, RaisedHand,
        records::{self, PlayedRanges, QualityReport},
        store,
    },
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(interaction_snapshot))
        .routes(routes!(lesson_attendance))
        .routes(routes!(my_lesson_attendance))
        .routes(routes!(course_attendance))
        .routes(routes!(my_course_attendance))
        .routes(routes!(recording_progress))
        .routes(routes!(recording_timeline))
        .routes(routes!(recording_chapters))
        .routes(routes!(playback_reports))
        .routes(routes!(lesson_quality))
        .routes(routes!(quality_overview))
}

const LESSON_NOT_FOUND: ApiError = ApiError::NotFound("lesson");
const RECORDING_NOT_FOUND: ApiError = ApiError::NotFound("recording");

/// The caller's access to a lesson: 404 when they may not see it at all.
async fn lesson_access(
    state: &AppState,
    id: Uuid,
    user: &AuthUser,
) -> Result<policy::LessonAccess, ApiError> {
    let mut conn = state.db.acquire().await?;
    let (_, s) = lesson_standing(&mut conn, id, Some(user)).await?;
    Ok(policy::lesson_access(caller(Some(user)), &s.facts))
}

/// Moderators of the lesson's course only (403 for others who may see it).
async fn require_moderator(state: &AppState, id: Uuid, user: &AuthUser) -> Result<(), ApiError> {
    if lesson_access(state, id, user).await?.moderate {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "only the course's teachers and assistants see the class's records".into(),
        ))
    }
}

/// A poll with the reader's answer and the results they may see.
#[derive(Debug, Serialize, ToSchema)]
pub struct PollState {
    #[serde(flatten)]
    pub poll: PollView,
    pub my_choices: Option<Vec<i16>>,
    /// Moderators always; students once the results are shown.
    pub results: Option<PollResults>,
}

/// The live tools' state of a lesson, as the reader may see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct InteractionSnapshot {
    pub lesson_id: Uuid,
    /// Oldest first (clients sort the queue: pinned, open by votes, answered, dismissed).
    pub questions: Vec<QuestionView>,
    pub polls: Vec<PollState>,
    /// The raised hands (moderators; empty for students).
    pub hands: Vec<RaisedHand>,
    pub my_hand: bool,
    pub moderator: bool,
}

/// The lesson's questions, polls and raised hands — what a client loads when it joins (and
/// after a reconnect) before following the room's frames.
#[utoipa::path(get, path = "/lessons/{id}/interaction", tag = "interaction",
    params(("id" = Uuid, Path, description = "lesson id")), security(("bearer" = [])),
    responses((status = 200, body = InteractionSnapshot), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn interaction_snapshot(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<InteractionSnapshot>, ApiError> {
    let access = lesson_access(&state, id, &user).await?;
    if !access.chat {
        return Err(ApiError::Forbidden(
            "enroll in the course to take part in the lesson".into(),
        ));
    }
    let staff = access.moderate;
    let mut conn = state.db.acquire().await?;
    let (questions, voted) = store::questions(&mut conn, id, user.id).await?;
    let polls = store::polls(&mut conn, id).await?;
    let mine = store::my_answers(&mut conn, id, user.id).await?;
    let mut poll_states = Vec::with_capacity(polls.len());
    for p in polls {
        let results = if staff || p.results_shown {
            Some(store::tally(&mut conn, p.id, p.options.len()).await?)
        } else {
            None
        };
        poll_states.push(PollState {
            my_choices: mine
                .iter()
                .find(|(id, _)| *id == p.id)
                .map(|(_, c)| c.clone()),
            poll: p.view(staff),
            results,
        });
    }
    drop(conn);
    let keys = state.settings.chat.keys();
    let all_hands = crate::chat::conn::hands(&state.redis, &keys, id)
        .await
        .map_err(|e| ApiError::Internal(e.context("raised hands")))?;
    let my_hand = all_hands.iter().any(|h| h.user_id == user.id);
    Ok(Json(InteractionSnapshot {
        lesson_id: id,
        questions: questions
            .iter()
            .map(|q| q.view(staff, Some(user.id), voted.contains(&q.id)))
            .collect(),
        polls: poll_states,
        hands: if staff { all_hands } else { Vec::new() },
        my_hand,
        moderator: staff,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct FormatParams {
    /// `csv` for a CSV file instead of JSON.
    pub format: Option<String>,
}

impl FormatParams {
    fn csv(&self) -> Result<bool, ApiError> {
        match self.format.as_deref() {
            None | Some("json") => Ok(false),
            Some("csv") => Ok(true),
            Some(_) => Err(InvalidInput {
                field: "format",
                reason: "must be json or csv",
            }
            .into()),
        }
    }
}

fn csv_response(name: &str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.csv\""),
            ),
        ],
        body,
    )
        .into_response()
}

/// The class's attendance of a lesson: every student of the course with their intervals in
/// the live room, minutes live, replay coverage, completion and quiz score (moderators).
#[utoipa::path(get, path = "/lessons/{id}/attendance", tag = "interaction", params(("id" = Uuid, Path, description = "lesson id"), FormatParams),
    security(("bearer" = [])),
    responses((status = 200, description = "JSON, or CSV with `?format=csv`",
               content((records::LessonAttendance = "application/json"), (String = "text/csv"))),
              (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn lesson_attendance(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Query(q): Query<FormatParams>,
) -> Result<Response, ApiError> {
    let csv = q.csv()?;
    require_moderator(&state, id, &user).await?;
    let mut conn = state.db.acquire().await?;
    let a = records::lesson_attendance(&mut conn, id, None).await?;
    Ok(if csv {
        csv_response(&format!("attendance-{id}"), records::lesson_csv(&a))
    } else {
        Json(a).into_response()
    })
}

/// The caller's own attendance of a lesson.
#[utoipa::path(get, path = "/lessons/{id}/attendance/me", tag = "interaction",
    params(("id" = Uuid, Path, description = "lesson id")), security(("bearer" = [])),
    responses((status = 200, body = records::AttendanceRow), (status = 401, body = Problem),
              (status = 404, body = Problem)))]
async fn my_lesson_attendance(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<records::AttendanceRow>, ApiError> {
    lesson_access(&state, id, &user).await?;
    let mut conn = state.db.acquire().await?;
    let a = records::lesson_attendance(&mut conn, id, Some(user.id)).await?;
    a.students
        .into_iter()
        .next()
        .map(Json)
        .ok_or(ApiError::NotFound("enrollment"))
}

/// Moderators of a course, or 403 (404 when the course is not visible).
async fn course_moderator(state: &AppState, id: Uuid, user: &AuthUser) -> Result<bool, ApiError> {
    let mut conn = state.db.acquire().await?;
    let s = standing(&mut conn, id, Some(user), false).await?;
    Ok(policy::lesson_access(caller(Some(user)), &s.facts).moderate)
}

/// The class's record of a course: per student, lessons completed of those held, minutes
/// live and quiz score (moderators).
#[utoipa::path(get, path = "/courses/{id}/attendance", tag = "interaction", params(("id" = Uuid, Path, description = "course id"), FormatParams),
    security(("bearer" = [])),
    responses((status = 200, description = "JSON, or CSV with `?format=csv`",
               content((records::CourseAttendance = "application/json"), (String = "text/csv"))),
              (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn course_attendance(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Query(q): Query<FormatParams>,
) -> Result<Response, ApiError> {
    let csv = q.csv()?;
    if !course_moderator(&state, id, &user).await? {
        return Err(ApiError::Forbidden(
            "only the course's teachers and assistants see the class's records".into(),
        ));
    }
    let mut conn = state.db.acquire().await?;
    let a = records::course_attendance(&mut conn, id, None).await?;
    Ok(if csv {
        csv_response(&format!("course-attendance-{id}"), records::course_csv(&a))
    } else {
        Json(a).into_response()
    })
}

/// The caller's own record of a course.
#[utoipa::path(get, path = "/courses/{id}/attendance/me", tag = "interaction",
    params(("id" = Uuid, Path, description = "course id")), security(("bearer" = [])),
    responses((status = 200, body = records::CourseAttendanceRow), (status = 401, body = Problem),
              (status = 404, body = Problem)))]
async fn my_course_attendance(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<records::CourseAttendanceRow>, ApiError> {
    course_moderator(&state, id, &user).await?;
    let mut conn = state.db.acquire().await?;
    let a = records::course_attendance(&mut conn, id, Some(user.id)).await?;
    a.students
        .into_iter()
        .next()
        .map(Json)
        .ok_or(ApiError::NotFound("enrollment"))
}

/// A recording as the caller may use it.
struct RecordingAccess {
    duration_s: f64,
    /// May see the class's view (authors of anonymous questions, set chapters).
    staff: bool,
}

/// Whoever may watch the replay: the lesson's students and moderators (course policy), or,
/// for a recording of no lesson, its owner, admins and ops.
async fn recording_access(
    state: &AppState,
    id: Uuid,
    user: &AuthUser,
) -> Result<RecordingAccess, ApiError> {
    let mut conn = state.db.acquire().await?;
    let r = sqlx::query!(
        r#"SELECT r.duration_ms, r.owner_id, l.id AS "lesson_id?"
           FROM recordings r
           LEFT JOIN lessons l ON l.live_stream_id = r.live_stream_id AND l.deleted_at IS NULL
           WHERE r.id = $1 AND r.deleted_at IS NULL"#,
        id
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(RECORDING_NOT_FOUND)?;
    let duration_s = r.duration_ms as f64 / 1000.0;
    let operator = user.has_role(Role::Admin) || user.has_role(Role::Ops);
    let staff = match r.lesson_id {
        Some(lesson) => {
            let (_, s) = lesson_standing(&mut conn, lesson, Some(user))
                .await
                .map_err(|_| RECORDING_NOT_FOUND)?;
            let a = policy::lesson_access(caller(Some(user)), &s.facts);
            if !(a.watch_replay || a.moderate || operator) {
                return Err(RECORDING_NOT_FOUND);
            }
            a.moderate || operator
        }
        None if r.owner_id == user.id || operator => true,
        None => return Err(RECORDING_NOT_FOUND),
    };
    Ok(RecordingAccess { duration_s, staff })
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ProgressRequest {
    /// Seconds played, `[from, to]`, 1 to 50 ranges.
    pub ranges: Vec<[f64; 2]>,
}

/// Add the seconds of the replay the caller played; the merged set of seconds watched back
/// (overlapping and repeated plays count once).
#[utoipa::path(post, path = "/recordings/{id}/progress", tag = "interaction",
    params(("id" = Uuid, Path, description = "recording id")), security(("bearer" = [])),
    request_body = ProgressRequest,
    responses((status = 200, body = records::Progress), (status = 400, body = Problem),
              (status = 401, body = Problem), (status = 404, body = Problem),
              (status = 415, body = Problem), (status = 422, body = Problem)))]
async fn recording_progress(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(body): Json<ProgressRequest>,
) -> Result<Json<records::Progress>, ApiError> {
    let r = recording_access(&state, id, &user).await?;
    let played = PlayedRanges::parse(&body.ranges, r.duration_s)?;
    let mut conn = state.db.acquire().await?;
    Ok(Json(
        records::add_progress(&mut conn, id, user.id, r.duration_s, &played).await?,
    ))
}

/// The replay enriched by its live lesson: chapters, the confusion heat strip, the chat and
/// questions as they happened, and the reader's bookmarks (times from the recording's start).
#[utoipa::path(get, path = "/recordings/{id}/timeline", tag = "interaction",
    params(("id" = Uuid, Path, description = "recording id")), security(("bearer" = [])),
    responses((status = 200, body = records::Timeline), (status = 401, body = Problem),
              (status = 404, body = Problem)))]
async fn recording_timeline(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let r = recording_access(&state, id, &user).await?;
    let mut conn = state.db.acquire().await?;
    let t = records::timeline(&mut conn, id, user.id, r.staff)
        .await?
        .ok_or(RECORDING_NOT_FOUND)?;
    let mut resp = Json(t).into_response();
    // Per reader (their bookmarks, authors they may see): never shared by caches.
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("private, max-age=10"),
    );
    Ok(resp)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChapterInput {
    /// Seconds from the recording's start.
    pub t: f64,
    pub title: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChaptersRequest {
    /// At most 100; replaces the chapters set by hand (pinned questions stay chapters).
    pub chapters: Vec<ChapterInput>,
}

/// Set a replay's chapters by hand (moderators of its lesson, its owner, admins).
#[utoipa::path(put, path = "/recordings/{id}/chapters", tag = "interaction",
    params(("id" = Uuid, Path, description = "recording id")), security(("bearer" = [])),
    request_body = ChaptersRequest,
    responses((status = 204), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 415, body = Problem), (status = 422, body = Problem)))]
async fn recording_chapters(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(body): Json<ChaptersRequest>,
) -> Result<StatusCode, ApiError> {
    let r = recording_access(&state, id, &user).await?;
    if !r.staff {
        return Err(ApiError::Forbidden(
            "only the course's teachers set chapters".into(),
        ));
    }
    if body.chapters.len() > 100 {
        return Err(InvalidInput {
            field: "chapters",
            reason: "at most 100 chapters",
        }
        .into());
    }
    let mut chapters = Vec::with_capacity(body.chapters.len());
    for c in &body.chapters {
        if !c.t.is_finite() || c.t < 0.0 || c.t > r.duration_s + 5.0 {
            return Err(InvalidInput {
                field: "t",
                reason: "must be within the recording",
            }
            .into());
        }
        let title = crate::chat::ChatText::parse(&c.title, 200).map_err(|_| InvalidInput {
            field: "title",
            reason: "must be 1 to 200 characters without control characters",
        })?;
        chapters.push((
            (c.t * 1000.0).round() as i64,
            title.as_str().replace('\n', " "),
        ));
    }
    let mut conn = state.db.acquire().await?;
    records::set_chapters(&mut conn, id, &chapters).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ReportsRequest {
    /// 1 to 20 reports, each a playback session's running totals.
    pub reports: Vec<QualityReport>,
}

/// What viewers experience: the player's running totals per playback session (startup,
/// rebuffering, errors, latency, mode). Accepted only from viewers the policy lets watch.
#[utoipa::path(post, path = "/playback/reports", tag = "interaction",
    security(("bearer" = [])), request_body = ReportsRequest,
    responses((status = 202), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 404, body = Problem), (status = 413, body = Problem),
              (status = 415, body = Problem), (status = 422, body = Problem)))]
async fn playback_reports(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<ReportsRequest>,
) -> Result<StatusCode, ApiError> {
    if body.reports.is_empty() || body.reports.len() > 20 {
        return Err(InvalidInput {
            field: "reports",
            reason: "must hold 1 to 20 reports",
        }
        .into());
    }
    for r in &body.reports {
        r.check()?;
        match (r.lesson_id, r.recording_id) {
            (Some(lesson), _) => {
                let a = lesson_access(&state, lesson, &user).await?;
                if !(a.watch_live || a.watch_replay || a.moderate) {
                    return Err(LESSON_NOT_FOUND);
                }
            }
            (None, Some(rec)) => {
                recording_access(&state, rec, &user).await?;
            }
            (None, None) => unreachable!("checked"),
        }
    }
    let mut conn = state.db.acquire().await?;
    for r in &body.reports {
        records::store_report(&mut conn, user.id, r).await?;
    }
    metrics::counter!("playback_reports_total").increment(body.reports.len() as u64);
    Ok(StatusCode::ACCEPTED)
}

/// Viewing quality of a lesson's live playback: viewers now and at peak, startup and latency
/// percentiles, rebuffering ratio, errors, sessions per transport (moderators, ops, admins).
#[utoipa::path(get, path = "/lessons/{id}/quality", tag = "interaction",
    params(("id" = Uuid, Path, description = "lesson id")), security(("bearer" = [])),
    responses((status = 200, body = records::Quality), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn lesson_quality(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<records::Quality>, ApiError> {
    if !user.has_role(Role::Ops) {
        require_moderator(&state, id, &user).await?;
    } else {
        let mut conn = state.db.acquire().await?;
        crate::courses::store::get_lesson(&mut conn, id)
            .await?
            .ok_or(LESSON_NOT_FOUND)?;
    }
    let mut conn = state.db.acquire().await?;
    Ok(Json(records::quality(&mut conn, id).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OverviewParams {
    /// Lessons with reports in the last this many minutes (1 to 1440, default 60).
    pub minutes: Option<i64>,
    /// At most this many lessons (1 to 100, default 50).
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QualityOverview {
    pub items: Vec<records::LessonQuality>,
}

/// Viewing quality of the lessons watched lately, most viewers first (ops and admins): the
/// console's view of what viewers experience across the platform.
#[utoipa::path(get, path = "/admin/playback-quality", tag = "interaction", params(OverviewParams),
    security(("bearer" = ["admin", "ops"])),
    responses((status = 200, body = QualityOverview), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn quality_overview(
    State(state): State<AppState>,
    user: AuthUser,
    Query(q): Query<OverviewParams>,
) -> Result<Json<QualityOverview>, ApiError> {
    user.require_any(&[Role::Admin, Role::Ops])?;
    let minutes = q.minutes.unwrap_or(60);
    if !(1..=1440).contains(&minutes) {
        return Err(InvalidInput {
            field: "minutes",
            reason: "must be 1 to 1440",
        }
        .into());
    }
    let limit = q.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(InvalidInput {
            field: "limit",
            reason: "must be 1 to 100",
        }
        .into());
    }
    let mut conn = state.db.acquire().await?;
    Ok(Json(QualityOverview {
        items: records::quality_overview(&mut conn, minutes, limit).await?,
    }))
}
