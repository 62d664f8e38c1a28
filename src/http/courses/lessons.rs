//! `/courses/{id}/lessons` and `/lessons/{id}` (with `/end`): a course's lessons, each with
//! its own live stream.

use axum::{extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    LESSON_NOT_FOUND, MaybeUser, Standing, after_streams_deleted, caller, delete_streams,
    lesson_standing, rtmp_server_url, standing,
};
use crate::{
    courses::{
        self, LessonKind, LessonStatus,
        policy::{self, LessonAccess, LessonFacts},
        store::{self, Lesson},
    },
    http::{
        error::{ApiError, Problem},
        extract::{AuthUser, Json, Path},
    },
    live::{
        events::{self as live_events},
        keys::StreamKey,
        model::{LiveStreamId, NewLiveStream, ReconnectWindow, StreamStatus, Title, Visibility},
        store::{self as live_store, Scope, Transition},
    },
    state::AppState,
    users::{InvalidInput, Role},
};

/// A lesson as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct LessonResponse {
    pub id: Uuid,
    pub course_id: Uuid,
    pub title: String,
    pub kind: LessonKind,
    /// UTC.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub starts_at: OffsetDateTime,
    pub duration_minutes: i32,
    /// The IANA zone the lesson was scheduled in (for display).
    pub time_zone: String,
    /// `scheduled` → `live` → `ended`, from the lesson's live stream.
    pub status: LessonStatus,
    pub free_preview: bool,
    /// What the caller may do in this lesson.
    pub access: LessonAccess,
    /// Teachers only: the lesson's live stream (manage it under `/api/v1/live-streams`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_stream_id: Option<Uuid>,
    /// Teachers only: RTMP ingest for OBS or Jibri. With the stream key only in the answer of
    /// lesson creation; elsewhere the server URL (the key is stored hashed; the course owner
    /// can reset it with `POST /api/v1/live-streams/{live_stream_id}/reset-stream-key`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtmp_url: Option<String>,
    /// Only in the answer of lesson creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_key: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

pub(super) fn lesson_response(
    state: &AppState,
    l: Lesson,
    s: &Standing,
    user: Option<&AuthUser>,
    key: Option<&StreamKey>,
) -> LessonResponse {
    let facts = LessonFacts {
        free_preview: l.free_preview,
        ..s.facts
    };
    let access = policy::lesson_access(caller(user), &facts);
    let teacher = s.can_edit(user);
    let rtmp = rtmp_server_url(state);
    LessonResponse {
        id: l.id,
        course_id: l.course_id,
        title: l.title,
        kind: l.kind,
        starts_at: l.starts_at,
        duration_minutes: l.duration_minutes,
        time_zone: l.time_zone,
        status: l.status,
        free_preview: l.free_preview,
        access,
        live_stream_id: teacher.then_some(l.live_stream_id),
        rtmp_url: teacher.then(|| match key {
            Some(k) => format!("{rtmp}/{}", k.expose()),
            None => rtmp,
        }),
        stream_key: key.filter(|_| teacher).map(|k| k.expose().to_string()),
        created_at: l.created_at,
        updated_at: l.updated_at,
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LessonList {
    pub items: Vec<LessonResponse>,
    /// Always null: a course's lessons come in one page (at most 500).
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// The lessons of a course, in schedule order (a bearer token is optional).
#[utoipa::path(get, path = "/courses/{id}/lessons", tag = "courses",
    security((), ("bearer" = [])),
    responses((status = 200, body = LessonList), (status = 404, body = Problem)))]
pub(super) async fn list_lessons(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Path(id): Path<Uuid>,
) -> Result<Json<LessonList>, ApiError> {
    let mut conn = state.db.acquire().await?;
    let s = standing(&mut conn, id, user.as_ref(), false).await?;
    let lessons = store::list_lessons(&mut conn, id).await?;
    Ok(Json(LessonList {
        items: lessons
            .into_iter()
            .map(|l| lesson_response(&state, l, &s, user.as_ref(), None))
            .collect(),
        next_cursor: None,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateLesson {
    title: Option<String>,
    /// `broadcast` or `meeting`.
    kind: Option<String>,
    /// RFC 3339 with an offset; stored in UTC.
    starts_at: Option<String>,
    /// 1 to 1440.
    duration_minutes: Option<i64>,
    /// IANA zone name, default `UTC`.
    time_zone: Option<String>,
    /// Open to everyone while the course is published (default false).
    free_preview: Option<bool>,
}

pub(super) fn parse_starts_at(s: &str) -> Result<OffsetDateTime, InvalidInput> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| t.to_offset(time::UtcOffset::UTC))
        .map_err(|_| InvalidInput {
            field: "starts_at",
            reason: "must be an RFC 3339 timestamp such as 2026-12-01T09:00:00+08:00",
        })
}

/// Add a lesson (the course's owner, co-teachers, admins). Each lesson gets its own private,
/// recorded live stream owned by the course owner; the answer is the only one with its stream
/// key.
#[utoipa::path(post, path = "/courses/{id}/lessons", tag = "courses", request_body = CreateLesson,
    security(("bearer" = ["teacher", "admin"])),
    responses((status = 201, body = LessonResponse), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub(super) async fn create_lesson(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(req): Json<CreateLesson>,
) -> Result<(StatusCode, Json<LessonResponse>), ApiError> {
    user.require_any(&[Role::Teacher, Role::Admin])?;
    let mut tx = state.db.begin().await?;
    let s = standing(&mut tx, id, Some(&user), false).await?;
    if !s.can_edit(Some(&user)) {
        return Err(ApiError::Forbidden(
            "only the course's teachers and admins add lessons".into(),
        ));
    }
    let required = |field| InvalidInput {
        field,
        reason: "is required",
    };
    let title = courses::parse_title(req.title.as_deref().ok_or(required("title"))?)?;
    let kind: LessonKind = req.kind.as_deref().ok_or(required("kind"))?.parse()?;
    let starts_at = parse_starts_at(req.starts_at.as_deref().ok_or(required("starts_at"))?)?;
    let duration_minutes =
        courses::parse_duration_minutes(req.duration_minutes.ok_or(required("duration_minutes"))?)?;
    let time_zone = courses::parse_time_zone(req.time_zone.as_deref().unwrap_or("UTC"))?;
    let key = StreamKey::generate();
    let stream = crate::live::store::create(
        &mut tx,
        &NewLiveStream {
            owner_id: s.course.owner_id,
            title: Title::parse(&title)?,
            record: true,
            reconnect_window: ReconnectWindow::default(),
            visibility: Visibility::Private,
        },
        &key,
    )
    .await?;
    let lesson_id = store::create_lesson(
        &mut tx,
        &store::NewLesson {
            course_id: id,
            title,
            kind,
            starts_at,
            duration_minutes,
            time_zone,
            free_preview: req.free_preview.unwrap_or(false),
            live_stream_id: stream.id.0,
            room_name: crate::meetings::new_room_name(),
        },
    )
    .await?;
    let lesson = store::get_lesson(&mut tx, lesson_id)
        .await?
        .ok_or(LESSON_NOT_FOUND)?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(lesson_response(&state, lesson, &s, Some(&user), Some(&key))),
    ))
}

/// A lesson, with what the caller may do in it (a bearer token is optional).
#[utoipa::path(get, path = "/lessons/{id}", tag = "courses",
    security((), ("bearer" = [])),
    responses((status = 200, body = LessonResponse), (status = 404, body = Problem)))]
pub(super) async fn get_lesson(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Path(id): Path<Uuid>,
) -> Result<Json<LessonResponse>, ApiError> {
    let mut conn = state.db.acquire().await?;
    let (lesson, s) = lesson_standing(&mut conn, id, user.as_ref()).await?;
    Ok(Json(lesson_response(
        &state,
        lesson,
        &s,
        user.as_ref(),
        None,
    )))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateLesson {
    title: Option<String>,
    kind: Option<String>,
    starts_at: Option<String>,
    duration_minutes: Option<i64>,
    time_zone: Option<String>,
    free_preview: Option<bool>,
}

/// Change a lesson (the course's owner, co-teachers, admins).
#[utoipa::path(patch, path = "/lessons/{id}", tag = "courses", request_body = UpdateLesson,
    security(("bearer" = ["teacher", "admin"])),
    responses((status = 200, body = LessonResponse), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub(super) async fn update_lesson(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(req): Json<UpdateLesson>,
) -> Result<Json<LessonResponse>, ApiError> {
    user.require_any(&[Role::Teacher, Role::Admin])?;
    let mut conn = state.db.acquire().await?;
    let (_, s) = lesson_standing(&mut conn, id, Some(&user)).await?;
    if !s.can_edit(Some(&user)) {
        return Err(ApiError::Forbidden(
            "only the course's teachers and admins change lessons".into(),
        ));
    }
    let patch = store::LessonPatch {
        title: req.title.as_deref().map(courses::parse_title).transpose()?,
        kind: req.kind.as_deref().map(str::parse).transpose()?,
        starts_at: req.starts_at.as_deref().map(parse_starts_at).transpose()?,
        duration_minutes: req
            .duration_minutes
            .map(courses::parse_duration_minutes)
            .transpose()?,
        time_zone: req
            .time_zone
            .as_deref()
            .map(courses::parse_time_zone)
            .transpose()?,
        free_preview: req.free_preview,
    };
    store::update_lesson(&mut conn, id, &patch).await?;
    let (lesson, s) = lesson_standing(&mut conn, id, Some(&user)).await?;
    Ok(Json(lesson_response(&state, lesson, &s, Some(&user), None)))
}

/// Delete a lesson (the course's owner, co-teachers, admins). The lesson disappears from the
/// course (the row is kept, marked deleted); its live stream is deleted, so a running session
/// ends now and its key stops working; its recordings stay with the stream's owner under
/// `/api/v1/recordings`. 204; 404 when it does not exist (or no longer).
#[utoipa::path(delete, path = "/lessons/{id}", tag = "courses",
    security(("bearer" = ["teacher", "admin"])),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem)))]
pub(super) async fn delete_lesson(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    user.require_any(&[Role::Teacher, Role::Admin])?;
    let mut tx = state.db.begin().await?;
    let (_, s) = lesson_standing(&mut tx, id, Some(&user)).await?;
    if !s.can_edit(Some(&user)) {
        return Err(ApiError::Forbidden(
            "only the course's teachers and admins delete lessons".into(),
        ));
    }
    let stream = store::delete_lesson(&mut tx, id)
        .await?
        .ok_or(LESSON_NOT_FOUND)?;
    let events = delete_streams(&mut tx, &[stream], user.id).await?;
    tx.commit().await?;
    after_streams_deleted(&state, events).await;
    tracing::info!(lesson_id = %id, user_id = %user.id, "lesson deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// End a lesson (the course's owner, co-teachers, admins): its status becomes `ended`, a
/// running live session is completed now (the playlist ends, the recording is finalized) and
/// the lesson's live stream is disabled, so an encoder that reconnects on its own (OBS does)
/// cannot start it again. To go live again, enable the stream
/// (`POST /api/v1/live-streams/{live_stream_id}/enable`); the lesson then shows `live` while it
/// plays. Idempotent.
#[utoipa::path(post, path = "/lessons/{id}/end", tag = "courses",
    security(("bearer" = ["teacher", "admin"])),
    responses((status = 200, body = LessonResponse), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(super) async fn end_lesson(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<LessonResponse>, ApiError> {
    user.require_any(&[Role::Teacher, Role::Admin])?;
    let mut tx = state.db.begin().await?;
    let (lesson, s) = lesson_standing(&mut tx, id, Some(&user)).await?;
    if !s.can_edit(Some(&user)) {
        return Err(ApiError::Forbidden(
            "only the course's teachers and admins end lessons".into(),
        ));
    }
    if !store::end_lesson(&mut tx, id).await? {
        return Err(LESSON_NOT_FOUND);
    }
    let stream = LiveStreamId(lesson.live_stream_id);
    let event = match live_store::transition(
        &mut tx,
        stream,
        Scope::All,
        &[StreamStatus::Idle, StreamStatus::Active],
        StreamStatus::Disabled,
    )
    .await?
    {
        Transition::Changed(_) => Some(
            live_events::store_event(
                &mut tx,
                stream,
                live_events::EventKind::Disabled,
                serde_json::json!({"actor_id": user.id, "reason": "lesson_ended", "lesson_id": id}),
            )
            .await?,
        ),
        Transition::Unchanged(_) | Transition::NotFound => None,
    };
    tx.commit().await?;
    if let Some(e) = &event {
        live_events::publish_or_log(&state.redis, e).await;
    }
    // Ends the running session now, even when the stream was disabled already.
    state.live.kick(stream.0, "disabled").await;
    tracing::info!(lesson_id = %id, user_id = %user.id, "lesson ended");
    let mut conn = state.db.acquire().await?;
    let (lesson, s) = lesson_standing(&mut conn, id, Some(&user)).await?;
    Ok(Json(lesson_response(&state, lesson, &s, Some(&user), None)))
}
