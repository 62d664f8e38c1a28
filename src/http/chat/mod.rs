//! Chat over HTTP: the WebSocket endpoint `GET /api/v1/ws` (protocol in docs/chat.md), and the
//! REST side of the same channels — joined channels with unread counts, history pages, read
//! markers, removing a message, and moderation (room mute and slow mode, muting a user,
//! banning from a course's chat).
//!
//! Channel names travel in paths as clients write them (`lesson:<id>`, `dm:<user id>`, ...).
//! Every route decides access with `chat::access` (the course policy for rooms): a caller who
//! may not read a channel gets 404, so channel ids cannot be probed.
//!
//! Layout: this file holds the socket, history, read markers and uploads; `moderation` the
//! moderators' side (rooms, mutes, bans, removing messages, and the lists of who is muted or
//! banned).

mod moderation;

use std::time::Duration;

use axum::{
    extract::State,
    http::{StatusCode, request::Parts},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    error::{ApiError, Problem},
    extract::{AuthUser, Json, Path, Query},
};
use crate::{
    chat::{
        self, ChannelName, MessageView,
        access::{self, ChannelAccess},
        hub::Wire,
        store::{self, Anchor, ChannelSummary},
    },
    courses::policy::Caller,
    domain::{ChannelId, UserId},
    state::AppState,
    users::{InvalidInput, Role},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(websocket))
        .routes(routes!(list_channels))
        .routes(routes!(history))
        .routes(routes!(mark_read))
        .merge(moderation::router())
        .routes(routes!(create_upload))
        .routes(routes!(get_attachment))
        .routes(routes!(get_thumbnail))
        .routes(routes!(emoji_manifest))
        .routes(routes!(emoji_sticker))
}

/// Static assets change only with a release: a day in caches.
const ASSET_CACHE: &str = "public, max-age=86400";
/// Initial read and write buffer of a chat socket, each (a chat frame is a few hundred bytes).
const SOCKET_BUFFER: usize = 1024;

/// The emoji and sticker set: `emoji` (the reactions allowed) and `stickers` (files under
/// `/api/v1/chat/emoji/`). Public, cacheable.
#[utoipa::path(get, path = "/chat/emoji", tag = "chat", security(()),
    responses((status = 200, content_type = "application/json", description = "the manifest")))]
async fn emoji_manifest() -> Response {
    (
        [
            (axum::http::header::CONTENT_TYPE, "application/json"),
            (axum::http::header::CACHE_CONTROL, ASSET_CACHE),
        ],
        chat::emoji::MANIFEST,
    )
        .into_response()
}

/// A sticker image (SVG) of the set. Public, cacheable.
#[utoipa::path(get, path = "/chat/emoji/stickers/{file}", tag = "chat", security(()),
    params(("file" = String, Path, description = "a file named by the manifest")),
    responses((status = 200, content_type = "image/svg+xml"), (status = 404, body = Problem)))]
async fn emoji_sticker(Path(file): Path<String>) -> Result<Response, ApiError> {
    let svg = chat::emoji::sticker(&file).ok_or(ApiError::NotFound("sticker"))?;
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "image/svg+xml"),
            (axum::http::header::CACHE_CONTROL, ASSET_CACHE),
            // SVG can carry script: never run it in our origin.
            (
                axum::http::header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
        ],
        svg,
    )
        .into_response())
}

fn caller(user: &AuthUser) -> Caller {
    Caller {
        id: user.id,
        is_admin: user.has_role(Role::Admin),
    }
}

const NOT_FOUND: ApiError = ApiError::NotFound("channel");

/// Parse the channel and decide the caller's access; 404 unless they may read it.
async fn open(
    state: &AppState,
    user: &AuthUser,
    channel: &str,
) -> Result<(ChannelName, ChannelAccess), ApiError> {
    let name = ChannelName::parse(channel)?;
    let mut db = state.db.acquire().await?;
    let a = access::decide(&mut db, caller(user), name).await?;
    if !a.read {
        return Err(NOT_FOUND);
    }
    Ok((name, a))
}

#[derive(Debug, Deserialize, IntoParams)]
struct WsParams {
    /// The access token, for clients that cannot set headers (browsers).
    #[allow(dead_code)]
    token: Option<String>,
    /// Protocol version the client speaks (1).
    v: Option<u32>,
}

/// The chat WebSocket. Authenticate with `Authorization: Bearer <access token>` or
/// `?token=<access token>`; `?v=1` names the protocol version. Frames are JSON text, described
/// in docs/chat.md; permessage-deflate is negotiated when the client offers it.
#[utoipa::path(get, path = "/ws", tag = "chat", params(WsParams),
    security(("bearer" = [])),
    responses((status = 101, description = "Switching protocols"),
              (status = 400, body = Problem), (status = 401, body = Problem)))]
async fn websocket(State(state): State<AppState>, parts: Parts) -> Result<Response, ApiError> {
    let mut parts = parts;
    let query: WsParams = serde_urlencoded_query(parts.uri.query())
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if let Some(v) = query.v
        && v != chat::PROTOCOL_VERSION
    {
        return Err(ApiError::BadRequestCode(
            "unsupported_protocol",
            format!(
                "this server speaks chat protocol {}",
                chat::PROTOCOL_VERSION
            ),
        ));
    }
    // `?token=` stands in for the header (browsers cannot set headers on WebSockets); the query
    // never reaches the logs (they name the route template only).
    if parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .is_none()
        && let Some(token) = token_param(parts.uri.query())
        && let Ok(v) = axum::http::HeaderValue::from_str(&format!("Bearer {token}"))
    {
        parts.headers.insert(axum::http::header::AUTHORIZATION, v);
    }
    let user = <AuthUser as axum::extract::FromRequestParts<AppState>>::from_request_parts(
        &mut parts, &state,
    )
    .await?;
    let upgrade =
        <yawc::IncomingUpgrade as axum::extract::FromRequestParts<AppState>>::from_request_parts(
            &mut parts, &state,
        )
        .await
        .map_err(|_| {
            ApiError::BadRequestCode(
                "websocket_required",
                "this route speaks WebSocket: send an upgrade request".into(),
            )
        })?;
    let s = &state.settings.chat;
    let mut options = yawc::Options::default();
    if s.compression {
        options = options.with_balanced_compression();
    }
    let options = options
        .with_max_payload_read(s.max_frame_bytes)
        .with_max_read_buffer(s.max_frame_bytes)
        // Most sockets sit idle: start both buffers small (yawc's default is 8 KiB each); they
        // grow for a burst and the write buffer shrinks back after it.
        .with_read_buffer_capacity(SOCKET_BUFFER)
        .with_write_buffer_capacity(SOCKET_BUFFER)
        .with_utf8();
    let (response, fut) = upgrade
        .upgrade(options)
        .map_err(|e| ApiError::BadRequest(format!("WebSocket upgrade failed: {e}")))?;
    let shutdown = state.chat_shutdown.clone();
    let who = caller(&user);
    tokio::spawn(async move {
        match fut.await {
            Ok(ws) => chat::conn::serve(ws, state, who, shutdown).await,
            Err(e) => tracing::debug!(error = %e, "chat: upgrade did not complete"),
        }
    });
    Ok(response.map(axum::body::Body::new).into_response())
}

fn serde_urlencoded_query(q: Option<&str>) -> Result<WsParams, String> {
    let mut out = WsParams {
        token: None,
        v: None,
    };
    for (k, v) in url::form_urlencoded::parse(q.unwrap_or("").as_bytes()) {
        match &*k {
            "token" => out.token = Some(v.into_owned()),
            "v" => out.v = Some(v.parse().map_err(|_| "v must be a number".to_string())?),
            _ => {}
        }
    }
    Ok(out)
}

fn token_param(q: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(q?.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .filter(|t| !t.is_empty() && t.len() < 4096)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelList {
    pub items: Vec<ChannelSummary>,
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// The caller's channels (every channel they subscribed to or wrote in), most active first,
/// with unread counts.
#[utoipa::path(get, path = "/chat/channels", tag = "chat",
    security(("bearer" = [])),
    responses((status = 200, body = ChannelList), (status = 401, body = Problem)))]
async fn list_channels(
    user: AuthUser,
    State(state): State<AppState>,
) -> Result<Json<ChannelList>, ApiError> {
    let mut db = state.db.acquire().await?;
    let items = store::joined(&mut db, UserId(user.id)).await?;
    Ok(Json(ChannelList {
        items,
        next_cursor: None,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
struct HistoryParams {
    /// Messages older than this message id.
    before: Option<Uuid>,
    /// Messages newer than this message id.
    after: Option<Uuid>,
    /// Messages around this message id (it included).
    around: Option<Uuid>,
    /// 1 to 100 (default 50).
    limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessagePage {
    /// Oldest first.
    pub items: Vec<MessageView>,
    /// The id to pass as `before` (or `after`, for an `after` page) for the next page; null at
    /// the end.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// A page of a channel's history, oldest first: the newest messages, or `before`, `after` or
/// `around` a message id.
#[utoipa::path(get, path = "/chat/channels/{channel}/messages", tag = "chat",
    params(("channel" = String, Path, description = "lesson:<id>, course:<id>, dm:<user id> or user:<own id>"), HistoryParams),
    security(("bearer" = [])),
    responses((status = 200, body = MessagePage), (status = 401, body = Problem),
              (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn history(
    user: AuthUser,
    State(state): State<AppState>,
    Path(channel): Path<String>,
    Query(p): Query<HistoryParams>,
) -> Result<Json<MessagePage>, ApiError> {
    let limit = p.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(InvalidInput {
            field: "limit",
            reason: "must be 1 to 100",
        }
        .into());
    }
    let anchors = [p.before, p.after, p.around].iter().flatten().count();
    if anchors > 1 {
        return Err(InvalidInput {
            field: "before",
            reason: "give at most one of before, after and around",
        }
        .into());
    }
    let (name, _) = open(&state, &user, &channel).await?;
    let mut db = state.db.acquire().await?;
    let Some(ch) = store::channel_by_name(&mut db, &name.canonical(user.id)).await? else {
        return Ok(Json(MessagePage {
            items: vec![],
            next_cursor: None,
        }));
    };
    let seq_of = async |db: &mut sqlx::PgConnection, id: Uuid| -> Result<i64, ApiError> {
        match store::message(db, id).await? {
            Some((cid, _, m)) if cid == ch.id => Ok(m.seq),
            _ => Err(ApiError::NotFound("message")),
        }
    };
    let (anchor, forward) = if let Some(id) = p.before {
        (Anchor::Before(seq_of(&mut db, id).await?), false)
    } else if let Some(id) = p.after {
        (Anchor::After(seq_of(&mut db, id).await?), true)
    } else if let Some(id) = p.around {
        (Anchor::Around(seq_of(&mut db, id).await?), false)
    } else {
        (Anchor::Latest, false)
    };
    let (mut items, more) = store::history(&mut db, ch.id, anchor, limit).await?;
    store::with_reactions(&mut db, &mut items, user.id).await?;
    let next_cursor = match (more, forward) {
        (false, _) => None,
        (true, true) => items.last().map(|m| m.id.to_string()),
        (true, false) => items.first().map(|m| m.id.to_string()),
    };
    Ok(Json(MessagePage { items, next_cursor }))
}

#[derive(Debug, Deserialize, ToSchema)]
struct ReadBody {
    /// Read up to this sequence number (markers never move back).
    seq: i64,
}

#[derive(Debug, Serialize, ToSchema)]
struct ReadMarker {
    read_seq: i64,
}

/// Move the caller's "read up to" marker in a channel.
#[utoipa::path(post, path = "/chat/channels/{channel}/read", tag = "chat",
    params(("channel" = String, Path)), request_body = ReadBody,
    security(("bearer" = [])),
    responses((status = 200, body = ReadMarker), (status = 401, body = Problem),
              (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn mark_read(
    user: AuthUser,
    State(state): State<AppState>,
    Path(channel): Path<String>,
    Json(body): Json<ReadBody>,
) -> Result<Json<ReadMarker>, ApiError> {
    let (name, a) = open(&state, &user, &channel).await?;
    let mut db = state.db.acquire().await?;
    let ch = store::ensure_channel(&mut db, name, user.id, a.course_id, a.lesson_id).await?;
    let read_seq = store::mark_read(&mut db, UserId(user.id), ChannelId(ch.id), body.seq).await?;
    let _ = chat::hub::publish(
        &state.redis,
        &state.settings.chat.keys(),
        &Wire::Read {
            channel: ch.name.0,
            user_id: user.id,
            seq: read_seq,
        },
    )
    .await;
    Ok(Json(ReadMarker { read_seq }))
}

#[derive(Debug, Deserialize, ToSchema)]
struct NewUpload {
    /// The file's name as shown (no path).
    name: String,
    /// One of `chat.attachment_types`.
    content_type: String,
    /// Exact size in bytes, at most `chat.attachment_max_bytes`.
    size_bytes: i64,
}

#[derive(Debug, Serialize, ToSchema)]
struct Upload {
    /// Pass as `attachment_id` in a `send` frame once the file is uploaded.
    id: Uuid,
    /// PUT the bytes here (with the same `Content-Type`) before `expires_at`.
    upload_url: String,
    method: &'static str,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    expires_at: OffsetDateTime,
}

/// Start an attachment: a presigned upload URL into object storage. The upload is unused until
/// a `send` frame names it; after `chat.attachment_ttl_s` it is deleted.
#[utoipa::path(post, path = "/chat/uploads", tag = "chat", security(("bearer" = [])),
    request_body = NewUpload,
    responses((status = 201, body = Upload), (status = 401, body = Problem),
              (status = 413, body = Problem), (status = 422, body = Problem)))]
async fn create_upload(
    user: AuthUser,
    State(state): State<AppState>,
    Json(req): Json<NewUpload>,
) -> Result<(StatusCode, Json<Upload>), ApiError> {
    let s = &state.settings.chat;
    let name = chat::attachments::parse_name(&req.name)?;
    if !s.attachment_types.iter().any(|t| *t == req.content_type)
        || chat::attachments::extension(&req.content_type).is_none()
    {
        return Err(InvalidInput {
            field: "content_type",
            reason: "is not a type chat attachments may have",
        }
        .into());
    }
    if req.size_bytes <= 0 {
        return Err(InvalidInput {
            field: "size_bytes",
            reason: "must be positive",
        }
        .into());
    }
    if req.size_bytes as u64 > s.attachment_max_bytes {
        return Err(ApiError::PayloadTooLarge);
    }
    let ttl = Duration::from_secs(s.attachment_ttl_s);
    let mut db = state.db.acquire().await?;
    let a = chat::attachments::create(
        &mut db,
        user.id,
        &name,
        &req.content_type,
        req.size_bytes,
        ttl,
    )
    .await?;
    let url = state
        .storage
        .presign(
            crate::storage::PresignMethod::Put,
            &chat::attachments::object_key(a.id, &a.content_type),
            ttl,
        )
        .await
        .map_err(anyhow::Error::from)?;
    Ok((
        StatusCode::CREATED,
        Json(Upload {
            id: a.id,
            upload_url: url.to_string(),
            method: "PUT",
            expires_at: a.expires_at,
        }),
    ))
}

/// An attachment's object, for readers of the channel its message is in: a redirect (307) to
/// a presigned GET valid for 5 minutes. 404 for anyone else, and for unclaimed uploads.
#[utoipa::path(get, path = "/chat/attachments/{id}", tag = "chat", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 307), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn get_attachment(
    user: AuthUser,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    attachment_redirect(&state, &user, id, false).await
}

/// An image attachment's thumbnail (JPEG), on the same terms.
#[utoipa::path(get, path = "/chat/attachments/{id}/thumbnail", tag = "chat", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 307), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn get_thumbnail(
    user: AuthUser,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    attachment_redirect(&state, &user, id, true).await
}

async fn attachment_redirect(
    state: &AppState,
    user: &AuthUser,
    id: Uuid,
    thumbnail: bool,
) -> Result<Response, ApiError> {
    const GONE: ApiError = ApiError::NotFound("attachment");
    let mut db = state.db.acquire().await?;
    let a = chat::attachments::get(&mut db, id).await?.ok_or(GONE)?;
    let channel = a.channel.clone().ok_or(GONE)?;
    let name = chat::conn::channel_of(&chat::Canonical(channel), user.id).ok_or(GONE)?;
    if !access::decide(&mut db, caller(user), name).await?.read {
        return Err(GONE);
    }
    if thumbnail && !a.has_thumbnail {
        return Err(GONE);
    }
    let key = if thumbnail {
        chat::attachments::thumb_key(a.id)
    } else {
        chat::attachments::object_key(a.id, &a.content_type)
    };
    let url = state
        .storage
        .presign(
            crate::storage::PresignMethod::Get,
            &key,
            Duration::from_secs(300),
        )
        .await
        .map_err(anyhow::Error::from)?;
    Ok((
        StatusCode::TEMPORARY_REDIRECT,
        [
            (axum::http::header::LOCATION, url.to_string()),
            (
                axum::http::header::CACHE_CONTROL,
                "private, no-store".into(),
            ),
        ],
    )
        .into_response())
}
