//! Recordings: `/api/v1/recordings` (list, get, delete, playback token), storage administration
//! for ops (`/api/v1/admin/storage/...`), and replay at `/hls/vod/{id}/...`.
//!
//! Access: a teacher sees their own recordings; admins and ops see all (others 403). A
//! recording outside the caller's reach answers 404. Replay is public for recordings of public
//! streams; recordings of private streams need a signed `?token=` (resource `recording/<id>`)
//! on the playlist, carried on into every segment URL, and on the MP4 and poster.

use axum::{
    Router,
    extract::{RawQuery, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    error::{ApiError, Problem},
    extract::{AuthUser, Json, Path, Query},
    range::parse_range,
};
use crate::{
    live::{model::PageLimit, store::Scope},
    playback::TokenCheck,
    recordings::{
        recorder::object_key,
        retention,
        scan::Choice,
        store::{self, ListFilter, RecordingRow},
    },
    state::AppState,
    users::{InvalidInput, Role},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_recordings))
        .routes(routes!(get_recording, delete_recording, update_recording))
        .routes(routes!(playback_token))
        .routes(routes!(storage_usage))
        .routes(routes!(storage_history))
        .routes(routes!(run_retention))
        .routes(routes!(retention_preview))
        .routes(routes!(storage_scan))
        .routes(routes!(storage_repair))
        .routes(routes!(storage_repair_selected))
}

/// Replay routes (outside `/api/v1`).
pub fn replay_router() -> Router<AppState> {
    Router::new()
        .route("/hls/vod/{id}/index.m3u8", get(vod_playlist))
        .route("/hls/vod/{id}/{file}", get(vod_file))
}

const NOT_FOUND: ApiError = ApiError::NotFound("recording");

fn scope_of(user: &AuthUser) -> Result<Scope, ApiError> {
    user.require_any(&[Role::Teacher, Role::Admin, Role::Ops])?;
    Ok(if user.has_role(Role::Admin) || user.has_role(Role::Ops) {
        Scope::All
    } else {
        Scope::OwnedBy(user.id)
    })
}

fn recording_resource(id: Uuid) -> String {
    format!("recording/{id}")
}

/// A recording as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordingResponse {
    pub id: Uuid,
    pub live_stream_id: Uuid,
    pub owner_id: Uuid,
    /// `recording` (the lesson is live) → `processing` → `ready`, or `failed`.
    pub status: String,
    #[schema(required = true)]
    pub failure_reason: Option<String>,
    pub visibility: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    pub ended_at: Option<OffsetDateTime>,
    pub duration_s: f64,
    pub size_bytes: i64,
    pub segment_count: i32,
    #[schema(required = true)]
    pub video_codec: Option<String>,
    #[schema(required = true)]
    pub audio_codec: Option<String>,
    #[schema(required = true)]
    pub width: Option<i32>,
    #[schema(required = true)]
    pub height: Option<i32>,
    /// The replay playlist (private recordings need `?token=`).
    pub hls_url: String,
    /// The MP4 download (Range requests supported); null until it is made.
    #[schema(required = true)]
    pub mp4_url: Option<String>,
    /// The MP4: `pending` (recording, or being made), `ready` (`mp4_url`), or `failed` (the
    /// replay still plays as HLS; the MP4 is tried again 2 and 4 minutes later and at the next
    /// start, up to 3 times in all).
    #[schema(value_type = String, example = "ready")]
    pub mp4_status: &'static str,
    #[schema(required = true)]
    pub poster_url: Option<String>,
    /// When retention deletes it: its end plus the stream's `recording_retention_days`, else
    /// `recordings.retention_days`; null when kept for ever (or still recording).
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    pub expires_at: Option<OffsetDateTime>,
    /// The live stream's title.
    pub stream_title: String,
    /// The stream owner's display name.
    pub owner_name: String,
    /// The lesson whose stream it is, and its course; null for a stream outside a course.
    #[schema(required = true)]
    pub lesson_id: Option<Uuid>,
    #[schema(required = true)]
    pub lesson_title: Option<String>,
    #[schema(required = true)]
    pub course_id: Option<Uuid>,
    #[schema(required = true)]
    pub course_title: Option<String>,
}

/// Responses for `rows`, each with when retention deletes it and the names of its stream,
/// lesson, course and owner (one query for their streams).
async fn respond_all(
    state: &AppState,
    conn: &mut sqlx::PgConnection,
    rows: Vec<RecordingRow>,
) -> Result<Vec<RecordingResponse>, ApiError> {
    let streams: Vec<Uuid> = rows.iter().map(|r| r.live_stream_id).collect();
    let info = store::stream_info(conn, &streams).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let i = info.get(&r.live_stream_id).cloned().unwrap_or_default();
            respond(state, r, i)
        })
        .collect())
}

async fn respond_one(
    state: &AppState,
    conn: &mut sqlx::PgConnection,
    r: RecordingRow,
) -> Result<RecordingResponse, ApiError> {
    let mut all = respond_all(state, conn, vec![r]).await?;
    Ok(all.pop().expect("one row in, one response out"))
}

fn respond(state: &AppState, r: RecordingRow, stream: store::StreamInfo) -> RecordingResponse {
    // The rule of retention's own query (store::expired): finished recordings, from their end.
    let default_days = state.settings.recordings.retention_days;
    let days = stream
        .retention_days
        .or((default_days > 0).then_some(default_days as i32));
    let expires_at = match (r.status.as_str(), days) {
        ("ready" | "failed", Some(d)) => {
            Some(r.ended_at.unwrap_or(r.started_at) + time::Duration::days(i64::from(d)))
        }
        _ => None,
    };
    let base = crate::http::origin::public_base(&state.settings.http);
    let vod = format!("{base}/hls/vod/{}", r.id);
    let mp4_status = match (r.mp4_size_bytes, r.mp4_failed_at, r.status.as_str()) {
        (Some(_), _, _) => "ready",
        (None, Some(_), _) | (None, None, "failed") => "failed",
        (None, None, _) => "pending",
    };
    RecordingResponse {
        id: r.id,
        live_stream_id: r.live_stream_id,
        owner_id: r.owner_id,
        status: r.status,
        failure_reason: r.failure_reason,
        visibility: r.visibility,
        started_at: r.started_at,
        ended_at: r.ended_at,
        duration_s: r.duration_ms as f64 / 1000.0,
        size_bytes: r.size_bytes,
        segment_count: r.segment_count,
        video_codec: r.video_codec,
        audio_codec: r.audio_codec,
        width: r.width,
        height: r.height,
        hls_url: format!("{vod}/index.m3u8"),
        mp4_url: r.mp4_size_bytes.map(|_| format!("{vod}/recording.mp4")),
        mp4_status,
        poster_url: r.has_poster.then(|| format!("{vod}/poster.jpg")),
        expires_at,
        stream_title: stream.title,
        owner_name: stream.owner_name,
        lesson_id: stream.lesson.as_ref().map(|l| l.0),
        lesson_title: stream.lesson.map(|l| l.1),
        course_id: stream.course.as_ref().map(|c| c.0),
        course_title: stream.course.map(|c| c.1),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    live_stream_id: Option<Uuid>,
    /// Admins and ops only (teachers always see their own).
    owner_id: Option<Uuid>,
    /// `recording`, `processing`, `ready` or `failed`.
    status: Option<String>,
    /// Started at or after (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    #[serde(default, with = "time::serde::rfc3339::option")]
    started_after: Option<OffsetDateTime>,
    /// Started before (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    #[serde(default, with = "time::serde::rfc3339::option")]
    started_before: Option<OffsetDateTime>,
    min_size_bytes: Option<i64>,
    max_size_bytes: Option<i64>,
    /// Recordings of this course's lessons.
    course_id: Option<Uuid>,
    cursor: Option<Uuid>,
    /// 1 to 100 (default 20).
    limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecordingList {
    pub items: Vec<RecordingResponse>,
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// Recordings, newest first, filtered.
#[utoipa::path(get, path = "/recordings", tag = "recordings", params(ListParams),
    security(("bearer" = ["teacher", "admin", "ops"])),
    responses((status = 200, body = RecordingList), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn list_recordings(
    State(state): State<AppState>,
    user: AuthUser,
    Query(q): Query<ListParams>,
) -> Result<Json<RecordingList>, ApiError> {
    let scope = scope_of(&user)?;
    let limit = PageLimit::parse(q.limit)?;
    if let Some(s) = &q.status {
        if !["recording", "processing", "ready", "failed"].contains(&s.as_str()) {
            return Err(InvalidInput {
                field: "status",
                reason: "must be recording, processing, ready or failed",
            }
            .into());
        }
    }
    let filter = ListFilter {
        live_stream_id: q.live_stream_id,
        owner_id: q.owner_id,
        status: q.status,
        started_after: q.started_after,
        started_before: q.started_before,
        min_size_bytes: q.min_size_bytes,
        max_size_bytes: q.max_size_bytes,
        course_id: q.course_id,
    };
    let mut conn = state.db.acquire().await?;
    let page = store::list(&mut conn, scope, &filter, q.cursor, limit).await?;
    let items = respond_all(&state, &mut conn, page.items).await?;
    drop(conn);
    Ok(Json(RecordingList {
        items,
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}

#[utoipa::path(get, path = "/recordings/{id}", tag = "recordings",
    params(("id" = Uuid, Path, description = "recording id")), security(("bearer" = ["teacher", "admin", "ops"])),
    responses((status = 200, body = RecordingResponse), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn get_recording(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<RecordingResponse>, ApiError> {
    let scope = scope_of(&user)?;
    let mut conn = state.db.acquire().await?;
    let r = store::get(&mut conn, scope, id).await?.ok_or(NOT_FOUND)?;
    Ok(Json(respond_one(&state, &mut conn, r).await?))
}

/// Delete a recording and every object of it. Idempotent: 204 again for a recording already
/// deleted; 404 for one that never existed (or is not the caller's). A recording still being
/// recorded or processed cannot be deleted (409): complete the stream first.
#[utoipa::path(delete, path = "/recordings/{id}", tag = "recordings",
    params(("id" = Uuid, Path, description = "recording id")), security(("bearer" = ["teacher", "admin", "ops"])),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn delete_recording(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    let scope = scope_of(&user)?;
    let mut conn = state.db.acquire().await?;
    match store::exists_in_scope(&mut conn, scope, id).await? {
        None => return Err(NOT_FOUND),
        Some(true) => return Ok(StatusCode::NO_CONTENT),
        Some(false) => {}
    }
    let r = store::get(&mut conn, scope, id).await?.ok_or(NOT_FOUND)?;
    drop(conn);
    if r.status == "recording" || r.status == "processing" {
        return Err(ApiError::Conflict(
            "recording_in_progress",
            "the recording is still in progress; complete its live stream first".into(),
        ));
    }
    retention::delete_recording(&state.db, &state.redis, &state.storage, id, "api").await?;
    tracing::info!(recording_id = %id, user_id = %user.id, "recording deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRecording {
    /// `public` (replay open to anyone with the URL) or `private` (signed `?token=` needed).
    /// Optional in the schema so that the caller's role is checked before the body.
    visibility: Option<String>,
}

/// Change a recording's visibility (the owner, admins and ops). A private recording's replay,
/// MP4 and poster need a signed token from then on; a public one plays without.
#[utoipa::path(patch, path = "/recordings/{id}", tag = "recordings", request_body = UpdateRecording,
    params(("id" = Uuid, Path, description = "recording id")), security(("bearer" = ["teacher", "admin", "ops"])),
    responses((status = 200, body = RecordingResponse), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn update_recording(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(req): Json<UpdateRecording>,
) -> Result<Json<RecordingResponse>, ApiError> {
    let scope = scope_of(&user)?;
    let visibility = match req.visibility.as_deref() {
        Some(v @ ("public" | "private")) => v,
        _ => {
            return Err(InvalidInput {
                field: "visibility",
                reason: "must be public or private",
            }
            .into());
        }
    };
    let mut conn = state.db.acquire().await?;
    let r = store::set_visibility(&mut conn, scope, id, visibility)
        .await?
        .ok_or(NOT_FOUND)?;
    tracing::info!(recording_id = %id, user_id = %user.id, visibility = %r.visibility, "recording visibility changed");
    Ok(Json(respond_one(&state, &mut conn, r).await?))
}

/// A signed, expiring playback token for a recording.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordingTokenResponse {
    pub token: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    pub hls_url: String,
    #[schema(required = true)]
    pub mp4_url: Option<String>,
}

/// A playback token for the recording's replay (required for private recordings). Until
/// courses land, owners, admins and ops hand these out.
#[utoipa::path(post, path = "/recordings/{id}/playback-token", tag = "recordings", operation_id = "recording_playback_token",
    params(("id" = Uuid, Path, description = "recording id")), security(("bearer" = ["teacher", "admin", "ops"])),
    responses((status = 200, body = RecordingTokenResponse), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn playback_token(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<RecordingTokenResponse>, ApiError> {
    let scope = scope_of(&user)?;
    let mut conn = state.db.acquire().await?;
    let r = store::get(&mut conn, scope, id).await?.ok_or(NOT_FOUND)?;
    drop(conn);
    let expires_at = OffsetDateTime::now_utc()
        + time::Duration::seconds(state.settings.playback.token_ttl_s as i64);
    let token = state.playback.sign(&recording_resource(id), expires_at);
    // Only its URLs are used here.
    let shown = respond(&state, r, store::StreamInfo::default());
    Ok(Json(RecordingTokenResponse {
        hls_url: format!("{}?token={token}", shown.hls_url),
        mp4_url: shown.mp4_url.map(|u| format!("{u}?token={token}")),
        token,
        expires_at,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageParams {
    /// `owner`, `stream`, `course` or `day` (default `owner`).
    group_by: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageRow {
    /// Owner id, stream id, course id (`none` for streams outside a course), or the day
    /// (YYYY-MM-DD, by start) — per `group_by`.
    pub key: String,
    /// What people call it: the owner's display name, the stream's or course's title, the day.
    pub label: String,
    pub recordings: i64,
    pub bytes: i64,
    pub hours: f64,
}

/// The bytes a recording `r` holds in storage: `size_bytes` (HLS, MP4, poster) once ready, its
/// closed segments' bytes before (while recorded, or when it failed). The history's rule too
/// (`store::usage_history`).
const HELD_BYTES: &str = "CASE WHEN r.ready_at IS NOT NULL THEN r.size_bytes
     ELSE (SELECT coalesce(sum(g.size_bytes), 0) FROM recording_segments g
           WHERE g.recording_id = r.id) END";

#[derive(Debug, Serialize, ToSchema)]
pub struct StorageUsage {
    pub group_by: String,
    pub total: UsageRow,
    pub groups: Vec<UsageRow>,
}

/// Recording storage in use (recordings not deleted, those being recorded included): bytes
/// and hours, by owner, stream, course or day, and in total; the 1,000 largest groups. Admins
/// and ops.
#[utoipa::path(get, path = "/admin/storage/usage", tag = "storage administration",
    params(UsageParams), security(("bearer" = ["admin", "ops"])),
    responses((status = 200, body = StorageUsage), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn storage_usage(
    State(state): State<AppState>,
    user: AuthUser,
    Query(q): Query<UsageParams>,
) -> Result<Json<StorageUsage>, ApiError> {
    user.require_any(&[Role::Admin, Role::Ops])?;
    let group_by = q.group_by.unwrap_or_else(|| "owner".into());
    let (key_sql, label_sql) = match group_by.as_str() {
        "owner" => ("r.owner_id::text", "coalesce(u.display_name, '')"),
        "stream" => ("r.live_stream_id::text", "coalesce(s.title, '')"),
        "course" => (
            "coalesce(l.course_id::text, 'none')",
            "coalesce(c.title, '')",
        ),
        "day" => {
            let day = "to_char(r.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')";
            (day, day)
        }
        _ => {
            return Err(InvalidInput {
                field: "group_by",
                reason: "must be owner, stream, course or day",
            }
            .into());
        }
    };
    // `key_sql` and `label_sql` are constants above, never user text. A stream is at most one
    // lesson's (lessons.live_stream_id is unique): the joins add no rows.
    let rows: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {key_sql} AS key, {label_sql} AS label, count(*),
                    coalesce(sum({HELD_BYTES}), 0)::bigint, coalesce(sum(r.duration_ms), 0)::bigint
             FROM recordings r
             LEFT JOIN users u ON u.id = r.owner_id
             LEFT JOIN live_streams s ON s.id = r.live_stream_id
             LEFT JOIN lessons l ON l.live_stream_id = r.live_stream_id
             LEFT JOIN courses c ON c.id = l.course_id
             WHERE r.deleted_at IS NULL GROUP BY 1, 2 ORDER BY 4 DESC, 1 LIMIT 1000"
    )))
    .fetch_all(&state.db)
    .await?;
    let groups: Vec<UsageRow> = rows
        .into_iter()
        .map(|(key, label, n, bytes, ms)| UsageRow {
            key,
            label,
            recordings: n,
            bytes,
            hours: ms as f64 / 3_600_000.0,
        })
        .collect();
    let (n, bytes, ms): (i64, i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT count(*), coalesce(sum({HELD_BYTES}), 0)::bigint,
                coalesce(sum(r.duration_ms), 0)::bigint
         FROM recordings r WHERE r.deleted_at IS NULL"
    )))
    .fetch_one(&state.db)
    .await?;
    Ok(Json(StorageUsage {
        group_by,
        total: UsageRow {
            key: "total".into(),
            label: String::new(),
            recordings: n,
            bytes,
            hours: ms as f64 / 3_600_000.0,
        },
        groups,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// How many days back, today included: 1 to 366 (default 30).
    days: Option<u16>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StorageHistory {
    /// Oldest first, one entry per UTC day, today last.
    pub days: Vec<store::UsageDay>,
}

/// Recording storage over time: at the end of each UTC day (today: now), the bytes held and the
/// recordings kept. Rebuilt from the recordings and their segments (deleted recordings are
/// kept as rows), so it needs no sampling job and covers the time before it was asked.
/// Admins and ops.
#[utoipa::path(get, path = "/admin/storage/history", tag = "storage administration",
    params(HistoryParams), security(("bearer" = ["admin", "ops"])),
    responses((status = 200, body = StorageHistory), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn storage_history(
    State(state): State<AppState>,
    user: AuthUser,
    Query(q): Query<HistoryParams>,
) -> Result<Json<StorageHistory>, ApiError> {
    user.require_any(&[Role::Admin, Role::Ops])?;
    let days = q.days.unwrap_or(30);
    if !(1..=366).contains(&days) {
        return Err(InvalidInput {
            field: "days",
            reason: "must be 1 to 366",
        }
        .into());
    }
    let mut conn = state.db.acquire().await?;
    let days = store::usage_history(&mut conn, i32::from(days)).await?;
    Ok(Json(StorageHistory { days }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RetentionRun {
    pub deleted: u64,
}

/// Run the retention job now (it also runs every `recordings.retention_interval_s`). Admins
/// and ops.
#[utoipa::path(post, path = "/admin/storage/retention/run", tag = "storage administration",
    security(("bearer" = ["admin", "ops"])),
    responses((status = 200, body = RetentionRun), (status = 401, body = Problem),
              (status = 403, body = Problem)))]
async fn run_retention(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<RetentionRun>, ApiError> {
    user.require_any(&[Role::Admin, Role::Ops])?;
    let deleted = retention::run_once(
        &state.db,
        &state.redis,
        &state.storage,
        state.settings.recordings.retention_days,
    )
    .await?;
    tracing::info!(user_id = %user.id, deleted, "retention run by request");
    Ok(Json(RetentionRun { deleted }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RetentionPreview {
    /// `recordings.retention_days` (0 = keep forever unless a stream sets its own).
    pub default_days: u32,
    /// How often the job runs (`recordings.retention_interval_s`).
    pub interval_s: u64,
    /// How many recordings the next run deletes (at most 1000 are counted).
    pub count: usize,
    /// Their bytes in total.
    pub bytes: i64,
    /// The first 100 of them, oldest id first.
    pub items: Vec<RecordingResponse>,
}

/// What the next retention run deletes: recordings past their retention now. Admins and ops.
#[utoipa::path(get, path = "/admin/storage/retention/preview", tag = "storage administration",
    security(("bearer" = ["admin", "ops"])),
    responses((status = 200, body = RetentionPreview), (status = 401, body = Problem),
              (status = 403, body = Problem)))]
async fn retention_preview(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<RetentionPreview>, ApiError> {
    user.require_any(&[Role::Admin, Role::Ops])?;
    let settings = &state.settings.recordings;
    let ids = store::expired(&state.db, settings.retention_days as i32, 1000).await?;
    let bytes: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(size_bytes), 0)::bigint FROM recordings WHERE id = ANY($1)",
    )
    .bind(&ids)
    .fetch_one(&state.db)
    .await?;
    let mut conn = state.db.acquire().await?;
    let mut rows = Vec::new();
    for id in ids.iter().take(100) {
        if let Some(r) = store::get(&mut conn, Scope::All, *id).await? {
            rows.push(r);
        }
    }
    let items = respond_all(&state, &mut conn, rows).await?;
    Ok(Json(RetentionPreview {
        default_days: settings.retention_days,
        interval_s: settings.retention_interval_s,
        count: ids.len(),
        bytes,
        items,
    }))
}

/// Compare object storage with the recordings table: orphan objects (no recording, or a
/// deleted one) and ready recordings with missing objects. Reports only (at most 1000 of each).
/// Admins and ops.
#[utoipa::path(post, path = "/admin/storage/scan", tag = "storage administration",
    security(("bearer" = ["admin", "ops"])),
    responses((status = 200, body = crate::recordings::scan::ScanReport),
              (status = 401, body = Problem), (status = 403, body = Problem)))]
async fn storage_scan(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<crate::recordings::scan::ScanReport>, ApiError> {
    user.require_any(&[Role::Admin, Role::Ops])?;
    let report = crate::recordings::scan::scan(&state.db, &state.storage, 1000).await?;
    Ok(Json(report))
}

/// Scan, then repair: delete orphan objects; recordings with missing objects are corrected
/// to what storage holds (missing segments left out, playlist rewritten; nothing left →
/// `failed`). Admins and ops.
#[utoipa::path(post, path = "/admin/storage/repair", tag = "storage administration",
    security(("bearer" = ["admin", "ops"])),
    responses((status = 200, body = crate::recordings::scan::ScanReport),
              (status = 401, body = Problem), (status = 403, body = Problem)))]
async fn storage_repair(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<crate::recordings::scan::ScanReport>, ApiError> {
    user.require_any(&[Role::Admin, Role::Ops])?;
    let target_ns = state.settings.live.segment_limits().max.as_nanos() as u64;
    let report =
        crate::recordings::scan::repair(&state.db, &state.storage, target_ns, &Choice::All).await?;
    tracing::info!(user_id = %user.id, deleted = report.deleted_objects,
        repaired = report.repaired_recordings, "storage repair");
    Ok(Json(report))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RepairSelection {
    /// Orphan object keys to delete (from a scan's `orphan_objects`), at most 1,000.
    #[serde(default)]
    objects: Vec<String>,
    /// Recordings to correct (from a scan's `recordings_with_missing_objects`), at most 1,000.
    #[serde(default)]
    recordings: Vec<Uuid>,
}

/// Repair only what the operator chose from a scan: scan again, then delete the chosen keys
/// that are still orphans and correct the chosen recordings that still miss objects (a key
/// that is not an orphan now is never deleted). The report lists what was acted on. Admins
/// and ops.
#[utoipa::path(post, path = "/admin/storage/repair/selected", tag = "storage administration",
    request_body = RepairSelection, security(("bearer" = ["admin", "ops"])),
    responses((status = 200, body = crate::recordings::scan::ScanReport),
              (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 422, body = Problem)))]
async fn storage_repair_selected(
    State(state): State<AppState>,
    user: AuthUser,
    Json(sel): Json<RepairSelection>,
) -> Result<Json<crate::recordings::scan::ScanReport>, ApiError> {
    user.require_any(&[Role::Admin, Role::Ops])?;
    if sel.objects.len() > 1000 || sel.recordings.len() > 1000 {
        return Err(InvalidInput {
            field: "objects",
            reason: "at most 1000 objects and 1000 recordings at once",
        }
        .into());
    }
    let choice = Choice::Only {
        objects: sel.objects.into_iter().collect(),
        recordings: sel.recordings.into_iter().collect(),
    };
    let target_ns = state.settings.live.segment_limits().max.as_nanos() as u64;
    let report =
        crate::recordings::scan::repair(&state.db, &state.storage, target_ns, &choice).await?;
    tracing::info!(user_id = %user.id, deleted = report.deleted_objects,
        repaired = report.repaired_recordings, "storage repair of chosen findings");
    Ok(Json(report))
}

/// The `token` query parameter (bounded in size), as the live routes read it.
fn token_param(query: Option<&str>) -> Option<String> {
    super::hls::token_param(query).filter(|t| t.len() <= 2048)
}

/// The recording if it may be played with this token.
async fn playable(
    state: &AppState,
    id: Uuid,
    token: Option<&str>,
) -> Result<RecordingRow, ApiError> {
    let mut conn = state.db.acquire().await?;
    let r = store::get(&mut conn, Scope::All, id)
        .await?
        .ok_or(NOT_FOUND)?;
    drop(conn);
    if r.visibility == "private" {
        match state
            .playback
            .verify(&recording_resource(id), token, OffsetDateTime::now_utc())
        {
            TokenCheck::Valid => {}
            TokenCheck::Missing => {
                return Err(ApiError::Unauthorized(
                    "this recording is private: a playback token (?token=) is required".into(),
                ));
            }
            TokenCheck::Invalid => {
                return Err(ApiError::Forbidden("the playback token is invalid".into()));
            }
            TokenCheck::Expired => {
                return Err(ApiError::Forbidden("the playback token has expired".into()));
            }
        }
    }
    Ok(r)
}

async fn vod_playlist(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let token = token_param(query.as_deref());
    let r = playable(&state, id, token.as_deref()).await?;
    let segments = store::segments(&state.db, id).await?;
    let token_query = token.map(|t| {
        format!(
            "token={}",
            url::form_urlencoded::byte_serialize(t.as_bytes()).collect::<String>()
        )
    });
    let done = r.status == "ready";
    if segments.iter().all(|s| !s.uploaded) {
        return Err(ApiError::NotFound(
            "recording playlist (nothing stored yet)",
        ));
    }
    let target_ns = state.settings.live.segment_limits().max.as_nanos() as u64;
    let body =
        crate::recordings::render_playlist(&segments, token_query.as_deref(), done, target_ns);
    let private = r.visibility == "private";
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/vnd.apple.mpegurl"),
            ),
            (
                header::CACHE_CONTROL,
                // A finished list changes only when the recording is repaired or deleted;
                // private ones stay out of shared caches (the token is in the query).
                HeaderValue::from_static(match (done, private) {
                    (true, false) => "public, max-age=60",
                    (true, true) => "private, max-age=60",
                    (false, private) => super::hls::playlist_cache(private),
                }),
            ),
        ],
        body,
    )
        .into_response())
}

fn valid_file(name: &str) -> bool {
    if name == "recording.mp4" || name == "poster.jpg" {
        return true;
    }
    name.strip_prefix("segment-")
        .and_then(|r| r.strip_suffix(".ts"))
        .is_some_and(|d| (8..=20).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}

async fn vod_file(
    State(state): State<AppState>,
    Path((id, name)): Path<(Uuid, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !valid_file(&name) {
        return Err(ApiError::NotFound("recording file"));
    }
    let token = token_param(query.as_deref());
    let recording = playable(&state, id, token.as_deref()).await?;
    let private = recording.visibility == "private";
    let key = object_key(id, &name);
    if state.settings.recordings.replay_redirect {
        // Access was checked above; the presigned URL is short-lived and names one object.
        let ttl = std::time::Duration::from_secs(state.settings.recordings.replay_redirect_ttl_s);
        let url = state
            .storage
            .presign(crate::storage::PresignMethod::Get, &key, ttl)
            .await?;
        return Ok((
            StatusCode::FOUND,
            [
                (
                    header::LOCATION,
                    HeaderValue::from_str(url.as_str()).map_err(anyhow::Error::from)?,
                ),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("private, no-store"),
                ),
            ],
        )
            .into_response());
    }
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let range =
        parse_range(range).map_err(|()| ApiError::BadRequest("malformed Range header".into()))?;
    let object = state.storage.get(&key, range).await?;
    super::objects::object_response(object, Some(super::hls::immutable_cache(private)))
}
