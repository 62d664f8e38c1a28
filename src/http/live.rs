//! `/api/v1/live-streams`: the live stream resource a teacher's app manages (modelled on Mux and
//! Cloudflare Stream live inputs).
//!
//! Access: teachers and admins only (others 403). A teacher sees and acts on their own streams;
//! an admin on every stream. Ops see every stream and may end (complete) or disable one, for the
//! console's "live now"; they change nothing else (403). A stream outside the caller's reach
//! answers 404, as if it did not exist, so ids do not leak.
//!
//! The stream key is stored only as a hash, so it appears in exactly two answers: `POST
//! /live-streams` and `POST /live-streams/{id}/reset-stream-key` (both only ever to the owner or
//! an admin). Elsewhere `stream_key` is null and `rtmp_url` is the server URL without the key;
//! `stream_key_prefix` tells keys apart. A lost key is replaced with reset-stream-key.
//!
//! Handlers change state and store the event in one transaction, publish the event after the
//! commit, then tell the live runtime (kick, complete).

use axum::{
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    error::{ApiError, Problem},
    extract::{AuthUser, Json, Path, Query},
};
use crate::{
    config::Settings,
    live::{
        events::{self, EventKind, LiveStreamEvent},
        keys::StreamKey,
        model::{
            LiveStream, LiveStreamId, LiveStreamPatch, NewLiveStream, PageLimit, ReconnectWindow,
            StreamStatus, Title, Visibility,
        },
        runtime::ActiveSession,
        store::{self, Deleted, Scope, Transition},
    },
    state::AppState,
    users::{InvalidInput, Role},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_stream, list_streams))
        .routes(routes!(get_stream, update_stream, delete_stream))
        .routes(routes!(reset_stream_key))
        .routes(routes!(publish_token))
        .routes(routes!(disable_stream))
        .routes(routes!(enable_stream))
        .routes(routes!(complete_stream))
        .routes(routes!(playback_token))
        .routes(routes!(list_stream_events))
}

/// The streams the caller may reach; 403 unless teacher or admin (declared on every route as
/// `security(("bearer" = ["teacher", "admin"]))`, checked by the route-walk test).
fn scope_of(user: &AuthUser) -> Result<Scope, ApiError> {
    user.require_any(&[Role::Teacher, Role::Admin])?;
    Ok(if user.has_role(Role::Admin) {
        Scope::All
    } else {
        Scope::OwnedBy(user.id)
    })
}

/// For looking and stopping (list, get, complete, disable): `scope_of`, and ops see everything.
fn watch_scope_of(user: &AuthUser) -> Result<Scope, ApiError> {
    if user.has_role(Role::Ops) {
        return Ok(Scope::All);
    }
    scope_of(user)
}

const NOT_FOUND: ApiError = ApiError::NotFound("live stream");

/// A live stream as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct LiveStreamResponse {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub title: String,
    pub status: StreamStatus,
    /// The secret publishing key (`wmk_` + 43 letters and digits). Only in the answers of
    /// create and reset-stream-key; null everywhere else (it is stored hashed).
    #[schema(required = true)]
    pub stream_key: Option<String>,
    /// The first characters of the current key, to tell keys apart.
    pub stream_key_prefix: String,
    /// `rtmp://<host>:<port>/live/<stream_key>` when the key is shown, else the server URL
    /// `rtmp://<host>:<port>/live` (OBS: "Server"; the key goes in "Stream Key").
    pub rtmp_url: String,
    /// WHIP endpoint (RFC 9725); the stream key is the bearer token.
    pub whip_url: String,
    /// Live HLS playlist. Private streams need a signed `?token=` to play.
    pub hls_url: String,
    /// Low-Latency HLS playlist of the same session (absent when LL-HLS is off).
    pub ll_hls_url: Option<String>,
    /// WHEP endpoint (WebRTC playback) of the same session (absent when WHEP is off).
    /// Private streams need the playback token as a bearer token or `?token=`.
    pub whep_url: Option<String>,
    pub record: bool,
    pub reconnect_window_s: u16,
    pub visibility: Visibility,
    /// Days its recordings are kept before retention deletes them; null: the server default
    /// (`recordings.retention_days`).
    #[schema(required = true)]
    pub recording_retention_days: Option<u16>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
    /// The running session on this server, while live (publishing or in the reconnect window).
    #[schema(required = true)]
    pub active_session: Option<ActiveSession>,
}

fn public_base(settings: &Settings) -> String {
    crate::http::origin::public_base(&settings.http)
}

/// `rtmp://<host of http.public_url>:<port of rtmp.listen>/live`.
fn rtmp_server_url(settings: &Settings) -> String {
    let url = crate::http::origin::public_url(&settings.http);
    let host = url.host_str().unwrap_or("localhost");
    format!("rtmp://{host}:{}/live", settings.rtmp.listen.port())
}

fn respond(
    settings: &Settings,
    s: LiveStream,
    key: Option<&StreamKey>,
    active_session: Option<ActiveSession>,
) -> LiveStreamResponse {
    let base = public_base(settings);
    let rtmp = rtmp_server_url(settings);
    LiveStreamResponse {
        id: s.id.0,
        owner_id: s.owner_id,
        title: s.title,
        status: s.status,
        stream_key: key.map(|k| k.expose().to_string()),
        stream_key_prefix: s.stream_key_prefix,
        rtmp_url: match key {
            Some(k) => format!("{rtmp}/{}", k.expose()),
            None => rtmp,
        },
        whip_url: format!("{base}/whip/{}", s.id),
        hls_url: format!("{base}/hls/live/{}/index.m3u8", s.id),
        ll_hls_url: settings
            .live
            .ll()
            .map(|_| format!("{base}/hls/live/{}/ll.m3u8", s.id)),
        whep_url: settings
            .whep
            .enabled
            .then(|| format!("{base}/whep/{}", s.id)),
        record: s.record,
        reconnect_window_s: s.reconnect_window.seconds(),
        recording_retention_days: s.recording_retention_days,
        visibility: s.visibility,
        created_at: s.created_at,
        updated_at: s.updated_at,
        active_session,
    }
}

/// The response for a stream, with its running session asked of the live runtime.
async fn respond_live(
    state: &AppState,
    s: LiveStream,
    key: Option<&StreamKey>,
) -> LiveStreamResponse {
    let session = match state.live.status(s.id.0).await {
        Some(here) => Some(here),
        // Live on another node (behind a load balancer): as that node last published it.
        None if s.status == StreamStatus::Active => state.live.status_elsewhere(s.id.0).await,
        None => None,
    };
    respond(&state.settings, s, key, session)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateLiveStream {
    /// 1 to 200 characters.
    title: Option<String>,
    /// Record sessions (default true).
    record: Option<bool>,
    /// Seconds a session waits for its publisher to come back, 0 to 3600 (default 60).
    reconnect_window_s: Option<i64>,
    /// `public` (default) or `private`.
    visibility: Option<String>,
}

/// Create a live stream (teachers and admins). The answer is the only one besides
/// reset-stream-key that shows the stream key.
#[utoipa::path(post, path = "/live-streams", tag = "live streams", request_body = CreateLiveStream,
    security(("bearer" = ["teacher", "admin"])),
    responses((status = 201, body = LiveStreamResponse, description = "created; `Location` names it"),
              (status = 401, body = Problem), (status = 403, body = Problem, description = "not a teacher or admin"),
              (status = 422, body = Problem, description = "validation_failed, naming the field")))]
async fn create_stream(
    State(state): State<AppState>,
    user: AuthUser,
    Json(req): Json<CreateLiveStream>,
) -> Result<(StatusCode, HeaderMap, Json<LiveStreamResponse>), ApiError> {
    scope_of(&user)?;
    let title = req.title.as_deref().ok_or(InvalidInput {
        field: "title",
        reason: "is required",
    })?;
    let new = NewLiveStream {
        owner_id: user.id,
        title: Title::parse(title)?,
        record: req.record.unwrap_or(true),
        reconnect_window: req
            .reconnect_window_s
            .map(ReconnectWindow::parse)
            .transpose()?
            .unwrap_or_default(),
        visibility: req
            .visibility
            .as_deref()
            .map(str::parse)
            .transpose()?
            .unwrap_or(Visibility::Public),
    };
    let key = StreamKey::generate();
    let mut tx = state.db.begin().await?;
    let stream = store::create(&mut tx, &new, &key).await?;
    let event = events::store_event(
        &mut tx,
        stream.id,
        EventKind::Created,
        json!({"actor_id": user.id}),
    )
    .await?;
    tx.commit().await?;
    events::publish_or_log(&state.redis, &event).await;
    tracing::info!(live_stream_id = %stream.id, user_id = %user.id, "live stream created");
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/live-streams/{}", stream.id)) {
        headers.insert(header::LOCATION, v);
    }
    let body = respond(&state.settings, stream, Some(&key), None);
    Ok((StatusCode::CREATED, headers, Json(body)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// `next_cursor` of the previous page.
    cursor: Option<Uuid>,
    /// Page size, 1 to 100 (default 20).
    limit: Option<i64>,
    /// Only streams with this status: `idle`, `active` or `disabled`.
    status: Option<String>,
}

/// A page of live streams, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct LiveStreamList {
    pub items: Vec<LiveStreamResponse>,
    /// Pass as `?cursor=` for the next page; null on the last one.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// List live streams: a teacher's own, or every stream for an admin. Newest first.
#[utoipa::path(get, path = "/live-streams", tag = "live streams", params(ListParams),
    security(("bearer" = ["teacher", "admin", "ops"])),
    responses((status = 200, body = LiveStreamList),
              (status = 400, body = Problem, description = "a cursor that is not a UUID, a limit that is not a number"),
              (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 422, body = Problem, description = "limit out of 1..=100, unknown status")))]
async fn list_streams(
    State(state): State<AppState>,
    user: AuthUser,
    Query(params): Query<ListParams>,
) -> Result<Json<LiveStreamList>, ApiError> {
    let scope = watch_scope_of(&user)?;
    let limit = PageLimit::parse(params.limit)?;
    let status: Option<StreamStatus> = params.status.as_deref().map(str::parse).transpose()?;
    let mut conn = state.db.acquire().await?;
    let page = store::list(&mut conn, scope, status, params.cursor, limit).await?;
    drop(conn);
    let items = futures::future::join_all(
        page.items
            .into_iter()
            .map(|s| respond_live(&state, s, None)),
    )
    .await;
    Ok(Json(LiveStreamList {
        items,
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}

/// A live stream, with its running session while live.
#[utoipa::path(get, path = "/live-streams/{id}", tag = "live streams",
    params(("id" = Uuid, Path, description = "live stream id")),
    security(("bearer" = ["teacher", "admin", "ops"])),
    responses((status = 200, body = LiveStreamResponse),
              (status = 400, body = Problem, description = "the id is not a UUID"),
              (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem, description = "no such stream, or not the caller's")))]
async fn get_stream(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<LiveStreamResponse>, ApiError> {
    let scope = watch_scope_of(&user)?;
    let mut conn = state.db.acquire().await?;
    let stream = store::get(&mut conn, LiveStreamId(id), scope)
        .await?
        .ok_or(NOT_FOUND)?;
    drop(conn);
    Ok(Json(respond_live(&state, stream, None).await))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateLiveStream {
    /// 1 to 200 characters.
    title: Option<String>,
    record: Option<bool>,
    /// 0 to 3600. Applies to sessions that start after the change.
    reconnect_window_s: Option<i64>,
    /// `public` or `private`.
    visibility: Option<String>,
    /// 1 to 36500 days, or null to fall back to the server default.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    recording_retention_days: Option<Option<i64>>,
}

/// A field that may be absent (`None`), null (`Some(None)`) or a value.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Change a stream's settings; absent fields stay as they are.
#[utoipa::path(patch, path = "/live-streams/{id}", tag = "live streams", request_body = UpdateLiveStream,
    params(("id" = Uuid, Path, description = "live stream id")),
    security(("bearer" = ["teacher", "admin"])),
    responses((status = 200, body = LiveStreamResponse),
              (status = 400, body = Problem, description = "bad id, or a body with unknown fields or wrong types"),
              (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 422, body = Problem, description = "validation_failed, naming the field")))]
async fn update_stream(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(req): Json<UpdateLiveStream>,
) -> Result<Json<LiveStreamResponse>, ApiError> {
    let scope = scope_of(&user)?;
    let patch = LiveStreamPatch {
        title: req.title.as_deref().map(Title::parse).transpose()?,
        record: req.record,
        reconnect_window: req
            .reconnect_window_s
            .map(ReconnectWindow::parse)
            .transpose()?,
        visibility: req.visibility.as_deref().map(str::parse).transpose()?,
        recording_retention_days: match req.recording_retention_days {
            None => None,
            Some(None) => Some(None),
            Some(Some(d)) => Some(Some(crate::live::model::parse_retention_days(d)?)),
        },
    };
    let id = LiveStreamId(id);
    let mut tx = state.db.begin().await?;
    if patch.is_empty() {
        let stream = store::get(&mut tx, id, scope).await?.ok_or(NOT_FOUND)?;
        tx.commit().await?;
        return Ok(Json(respond_live(&state, stream, None).await));
    }
    let stream = store::update(&mut tx, id, scope, &patch)
        .await?
        .ok_or(NOT_FOUND)?;
    let mut changed = serde_json::Map::new();
    if patch.title.is_some() {
        changed.insert("title".into(), json!(stream.title));
    }
    if let Some(r) = patch.record {
        changed.insert("record".into(), json!(r));
    }
    if let Some(w) = patch.reconnect_window {
        changed.insert("reconnect_window_s".into(), json!(w.seconds()));
    }
    if let Some(v) = patch.visibility {
        changed.insert("visibility".into(), json!(v.as_str()));
    }
    if let Some(d) = patch.recording_retention_days {
        changed.insert("recording_retention_days".into(), json!(d));
    }
    let event = events::store_event(
        &mut tx,
        id,
        EventKind::Updated,
        json!({"actor_id": user.id, "changed": changed}),
    )
    .await?;
    tx.commit().await?;
    events::publish_or_log(&state.redis, &event).await;
    Ok(Json(respond_live(&state, stream, None).await))
}

/// Delete a stream (soft: its recordings and events stay). A live publisher is kicked and the
/// key stops working. Idempotent: deleting a stream of yours that is already deleted answers
/// 204 again; an id that never was yours (or never existed) answers 404.
#[utoipa::path(delete, path = "/live-streams/{id}", tag = "live streams",
    params(("id" = Uuid, Path, description = "live stream id")),
    security(("bearer" = ["teacher", "admin"])),
    responses((status = 204, description = "deleted now or before"),
              (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem, description = "no such stream, or not the caller's")))]
async fn delete_stream(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    let scope = scope_of(&user)?;
    let id = LiveStreamId(id);
    let mut tx = state.db.begin().await?;
    match store::delete(&mut tx, id, scope).await? {
        Deleted::Now(_) => {
            let event = events::store_event(
                &mut tx,
                id,
                EventKind::Deleted,
                json!({"actor_id": user.id}),
            )
            .await?;
            tx.commit().await?;
            events::publish_or_log(&state.redis, &event).await;
            state.live.kick(id.0, "deleted").await;
            tracing::info!(live_stream_id = %id, user_id = %user.id, "live stream deleted");
            Ok(StatusCode::NO_CONTENT)
        }
        Deleted::Already => Ok(StatusCode::NO_CONTENT),
        Deleted::NotFound => Err(NOT_FOUND),
    }
}

/// Replace the stream key. The answer shows the new key (the only time it is shown); the old
/// one stops working and a publisher using it is kicked.
#[utoipa::path(post, path = "/live-streams/{id}/reset-stream-key", tag = "live streams",
    params(("id" = Uuid, Path, description = "live stream id")),
    security(("bearer" = ["teacher", "admin"])),
    responses((status = 200, body = LiveStreamResponse, description = "with the new `stream_key`"),
              (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem)))]
async fn reset_stream_key(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<LiveStreamResponse>, ApiError> {
    let scope = scope_of(&user)?;
    let id = LiveStreamId(id);
    let key = StreamKey::generate();
    let mut tx = state.db.begin().await?;
    let stream = store::reset_key(&mut tx, id, scope, &key)
        .await?
        .ok_or(NOT_FOUND)?;
    let event = events::store_event(
        &mut tx,
        id,
        EventKind::StreamKeyReset,
        json!({"actor_id": user.id, "stream_key_prefix": key.display_prefix()}),
    )
    .await?;
    tx.commit().await?;
    events::publish_or_log(&state.redis, &event).await;
    state.live.kick(id.0, "stream_key_reset").await;
    tracing::info!(live_stream_id = %id, user_id = %user.id, "stream key reset");
    Ok(Json(respond_live(&state, stream, Some(&key)).await))
}

/// Disable a stream: publishers are refused, and a live one is kicked. Idempotent.
#[utoipa::path(post, path = "/live-streams/{id}/disable", tag = "live streams",
    params(("id" = Uuid, Path, description = "live stream id")),
    security(("bearer" = ["teacher", "admin", "ops"])),
    responses((status = 200, body = LiveStreamResponse, description = "status `disabled`"),
              (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem)))]
async fn disable_stream(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<LiveStreamResponse>, ApiError> {
    let scope = watch_scope_of(&user)?;
    let id = LiveStreamId(id);
    let from = [StreamStatus::Idle, StreamStatus::Active];
    let stream = transition_with_event(
        &state,
        &user,
        id,
        scope,
        &from,
        StreamStatus::Disabled,
        EventKind::Disabled,
    )
    .await?;
    // Kick even when it was disabled already: a publisher that authenticated just before the
    // change must not stay.
    state.live.kick(id.0, "disabled").await;
    Ok(Json(respond_live(&state, stream, None).await))
}

/// Move the status (compare-and-set) and, when it really changed, store the event in the same
/// transaction and publish it after the commit.
async fn transition_with_event(
    state: &AppState,
    user: &AuthUser,
    id: LiveStreamId,
    scope: Scope,
    from: &[StreamStatus],
    to: StreamStatus,
    kind: EventKind,
) -> Result<LiveStream, ApiError> {
    let mut tx = state.db.begin().await?;
    match store::transition(&mut tx, id, scope, from, to).await? {
        Transition::Changed(s) => {
            let event =
                events::store_event(&mut tx, id, kind, json!({"actor_id": user.id})).await?;
            tx.commit().await?;
            events::publish_or_log(&state.redis, &event).await;
            tracing::info!(live_stream_id = %id, user_id = %user.id, kind = kind.as_str(), "live stream status changed");
            Ok(s)
        }
        Transition::Unchanged(s) => {
            tx.commit().await?;
            Ok(s)
        }
        Transition::NotFound => Err(NOT_FOUND),
    }
}

/// Enable a disabled stream (back to `idle`). Idempotent; a stream that is not disabled is
/// left as it is.
#[utoipa::path(post, path = "/live-streams/{id}/enable", tag = "live streams",
    params(("id" = Uuid, Path, description = "live stream id")),
    security(("bearer" = ["teacher", "admin"])),
    responses((status = 200, body = LiveStreamResponse),
              (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem)))]
async fn enable_stream(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<LiveStreamResponse>, ApiError> {
    let scope = scope_of(&user)?;
    let id = LiveStreamId(id);
    let from = [StreamStatus::Disabled];
    let stream = transition_with_event(
        &state,
        &user,
        id,
        scope,
        &from,
        StreamStatus::Idle,
        EventKind::Enabled,
    )
    .await?;
    Ok(Json(respond_live(&state, stream, None).await))
}

/// End the stream's live session now instead of waiting for the reconnect window: the
/// playlist gets its ENDLIST and the stream goes back to `idle`. Answers 200 with the state the
/// call leads to (`idle`, no `active_session`) whether or not a session was running; the
/// publisher's connection is closed and the recording finalized in the background.
#[utoipa::path(post, path = "/live-streams/{id}/complete", tag = "live streams",
    params(("id" = Uuid, Path, description = "live stream id")),
    security(("bearer" = ["teacher", "admin", "ops"])),
    responses((status = 200, body = LiveStreamResponse),
              (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem)))]
async fn complete_stream(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<LiveStreamResponse>, ApiError> {
    let scope = watch_scope_of(&user)?;
    let id = LiveStreamId(id);
    let mut conn = state.db.acquire().await?;
    store::get(&mut conn, id, scope).await?.ok_or(NOT_FOUND)?;
    let was_live = state.live.complete(id.0).await;
    tracing::info!(live_stream_id = %id, user_id = %user.id, was_live, "live stream completed");
    let mut stream = store::get(&mut conn, id, scope).await?.ok_or(NOT_FOUND)?;
    drop(conn);
    // The session ends once its publisher has drained, and the status is written after that:
    // answer the state the call leads to, not the moment in between.
    if stream.status == StreamStatus::Active {
        stream.status = StreamStatus::Idle;
    }
    Ok(Json(respond(&state.settings, stream, None, None)))
}

/// A short-lived credential to publish to one stream without its key.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublishTokenResponse {
    /// Present it as a WHIP bearer token (or as the RTMP stream name) instead of the stream
    /// key; it opens only this stream.
    pub token: String,
    /// Start publishing before this; a publish already running is not cut at expiry.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    /// The WHIP endpoint to POST the SDP offer to.
    pub whip_url: String,
}

/// The stream `id` if the caller may manage it (404 otherwise, as if it did not exist).
async fn managed_stream(
    state: &AppState,
    user: &AuthUser,
    id: Uuid,
) -> Result<LiveStreamId, ApiError> {
    let scope = scope_of(user)?;
    let id = LiveStreamId(id);
    let mut conn = state.db.acquire().await?;
    store::get(&mut conn, id, scope).await?.ok_or(NOT_FOUND)?;
    Ok(id)
}

/// How long a publish token may wait before its publish starts.
const PUBLISH_TOKEN_TTL: time::Duration = time::Duration::minutes(10);

/// A publish token: lets the owner (or an admin) go live from the browser without seeing or
/// replacing the stream key their encoder keeps using (docs/live.md, "Publish tokens").
#[utoipa::path(post, path = "/live-streams/{id}/publish-token", tag = "live streams",
    params(("id" = Uuid, Path, description = "live stream id")),
    security(("bearer" = ["teacher", "admin"])),
    responses((status = 200, body = PublishTokenResponse),
              (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem)))]
async fn publish_token(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<PublishTokenResponse>, ApiError> {
    let id = managed_stream(&state, &user, id).await?;
    let expires_at = OffsetDateTime::now_utc() + PUBLISH_TOKEN_TTL;
    let token = crate::live::publish_token::sign(&state.playback, id.0, expires_at);
    let base = public_base(&state.settings);
    tracing::info!(live_stream_id = %id, user_id = %user.id, "publish token issued");
    Ok(Json(PublishTokenResponse {
        token,
        expires_at,
        whip_url: format!("{base}/whip/{}", id.0),
    }))
}

/// A signed, expiring playback token for a stream's live HLS.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlaybackTokenResponse {
    /// Pass as `?token=` on the playlist; the playlist carries it on into every segment URL.
    pub token: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    /// `hls_url` with the token.
    pub hls_url: String,
    /// The Low-Latency HLS playlist with the token; absent when LL-HLS is off.
    pub ll_hls_url: Option<String>,
    /// The WHEP endpoint with the token; absent when WHEP is off.
    pub whep_url: Option<String>,
}

/// A playback token for the stream's live HLS (needed when the stream is `private`; accepted
/// and ignored when it is public). Valid for `playback.token_ttl_s`. Until courses and
/// enrollment land, owners and admins hand these to their viewers.
#[utoipa::path(post, path = "/live-streams/{id}/playback-token", tag = "live streams",
    params(("id" = Uuid, Path, description = "live stream id")),
    security(("bearer" = ["teacher", "admin"])),
    responses((status = 200, body = PlaybackTokenResponse),
              (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem)))]
async fn playback_token(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<PlaybackTokenResponse>, ApiError> {
    let id = managed_stream(&state, &user, id).await?;
    let expires_at = OffsetDateTime::now_utc()
        + time::Duration::seconds(state.settings.playback.token_ttl_s as i64);
    let token = state
        .playback
        .sign(&crate::playback::live_resource(id.0), expires_at);
    let base = public_base(&state.settings);
    let hls_url = format!("{base}/hls/live/{}/index.m3u8?token={}", id.0, token);
    let ll_hls_url = state
        .settings
        .live
        .ll()
        .map(|_| format!("{base}/hls/live/{}/ll.m3u8?token={}", id.0, token));
    let whep_url = state
        .settings
        .whep
        .enabled
        .then(|| format!("{base}/whep/{}?token={}", id.0, token));
    Ok(Json(PlaybackTokenResponse {
        token,
        expires_at,
        hls_url,
        ll_hls_url,
        whep_url,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventListParams {
    /// `next_cursor` of the previous page.
    cursor: Option<Uuid>,
    /// Page size, 1 to 100 (default 20).
    limit: Option<i64>,
}

/// A page of a stream's events, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct LiveStreamEventList {
    pub items: Vec<LiveStreamEvent>,
    /// Pass as `?cursor=` for the next page; null on the last one.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// The stream's events (`live_stream.created`, `.connected`, `.active`, `.disconnected`,
/// `.idle`, `.disabled`, `.enabled`, `.updated`, `.stream_key_reset`), newest first. The same
/// JSON is published on the Redis channel `wm:events:live_stream`.
#[utoipa::path(get, path = "/live-streams/{id}/events", tag = "live streams",
    params(("id" = Uuid, Path, description = "live stream id"), EventListParams),
    security(("bearer" = ["teacher", "admin"])),
    responses((status = 200, body = LiveStreamEventList),
              (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 422, body = Problem, description = "limit out of 1..=100")))]
async fn list_stream_events(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Query(params): Query<EventListParams>,
) -> Result<Json<LiveStreamEventList>, ApiError> {
    let scope = scope_of(&user)?;
    let limit = PageLimit::parse(params.limit)?;
    let id = LiveStreamId(id);
    let mut conn = state.db.acquire().await?;
    store::get(&mut conn, id, scope).await?.ok_or(NOT_FOUND)?;
    let page = events::list_events(&mut conn, id, params.cursor, limit).await?;
    Ok(Json(LiveStreamEventList {
        items: page.items,
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}
