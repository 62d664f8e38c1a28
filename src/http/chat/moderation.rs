//! Moderating a chat channel: the room's settings (mute, slow mode), muting a user in a
//! channel, banning a user from a course's chat, removing a message, and the lists a moderator
//! works from (who is muted here, who is banned from the course).
//!
//! Only moderators of the channel (the course's teachers and assistants, admins) pass
//! [`moderated`]; callers who cannot even read the channel get 404 from `open`, as on every chat
//! route.

use std::time::Duration;

use axum::{extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{caller, open};
use crate::{
    chat::{
        self, ChannelName, ClientId, MessageView,
        access::{self, ChannelAccess},
        hub::{Waiter, Wire},
        persist::{self, Entry, Op},
        store,
    },
    domain::{ChannelId, CourseId, UserId},
    http::{
        error::{ApiError, Problem},
        extract::{AuthUser, Json, Path},
    },
    state::AppState,
    users::InvalidInput,
};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(moderation))
        .routes(routes!(remove_message))
        .routes(routes!(update_room))
        .routes(routes!(mute_user, unmute_user))
        .routes(routes!(ban_user, unban_user))
}

/// Open `channel` for a moderator of it: 404 when the caller cannot read it, 403 when they can
/// but do not moderate it.
async fn moderated(
    state: &AppState,
    user: &AuthUser,
    channel: &str,
) -> Result<(ChannelName, ChannelAccess, store::Channel), ApiError> {
    let (name, a) = open(state, user, channel).await?;
    if !a.moderate {
        return Err(ApiError::Forbidden(
            "only the course's teachers, assistants and admins moderate its chat".into(),
        ));
    }
    let mut db = state.db.acquire().await?;
    let ch = store::ensure_channel(&mut db, name, user.id, a.course_id, a.lesson_id).await?;
    Ok((name, a, ch))
}

/// Remove a message: its sender within the recall window, or a moderator of the room at any
/// time. Every subscriber gets the tombstone; history keeps the message's place, emptied.
#[utoipa::path(delete, path = "/chat/messages/{id}", tag = "chat",
    params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = MessageView, description = "The tombstone event"),
              (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn remove_message(
    user: AuthUser,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Json<MessageView>, ApiError> {
    let mut db = state.db.acquire().await?;
    let found = store::message(&mut db, id).await?;
    drop(db);
    let Some((_, canonical, m)) = found else {
        return Err(ApiError::NotFound("message"));
    };
    let name = chat::conn::channel_of(&canonical, user.id).ok_or(ApiError::NotFound("message"))?;
    let mut db = state.db.acquire().await?;
    let a = access::decide(&mut db, caller(&user), name).await?;
    drop(db);
    if !a.read || m.deleted || m.kind != "text" {
        return Err(ApiError::NotFound("message"));
    }
    if !a.moderate {
        if m.sender_id != Some(user.id) {
            return Err(ApiError::Forbidden(
                "only the sender or a moderator can remove a message".into(),
            ));
        }
        let window = time::Duration::seconds(state.settings.chat.recall_window_s as i64);
        if OffsetDateTime::now_utc() - m.created_at > window {
            return Err(ApiError::Unprocessable(
                "recall_expired",
                "the recall window is over".into(),
            ));
        }
    }
    let client_id = ClientId::parse(&format!("rm-{}", Uuid::new_v4().simple()))?;
    let entry = Entry {
        op: Op::Remove,
        channel: canonical.0.clone(),
        sender: Some(user.id),
        client_id: client_id.as_str().to_owned(),
        kind: None,
        body: String::new(),
        html: String::new(),
        data: None,
        message: Some(id),
    };
    let wire = write_and_wait(&state, user.id, entry).await?;
    match &*wire {
        Wire::Stored { message, .. } | Wire::Duplicate { message, .. } => Ok(Json(message.clone())),
        _ => Err(ApiError::NotFound("message")),
    }
}

/// Queue a write and wait for the persister's outcome.
async fn write_and_wait(
    state: &AppState,
    user: Uuid,
    entry: Entry,
) -> Result<std::sync::Arc<Wire>, ApiError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    state
        .chat
        .expect(user, entry.client_id.clone(), Waiter::Once(tx))
        .await;
    persist::enqueue(&state.redis, &state.settings.chat.keys(), &entry)
        .await
        .map_err(|_| ApiError::Unavailable("redis"))?;
    let wait = Duration::from_secs(state.settings.chat.ack_timeout_s);
    match tokio::time::timeout(wait, rx).await {
        Ok(Ok(w)) => Ok(w),
        _ => {
            state.chat.forget(user, entry.client_id.clone()).await;
            Err(ApiError::Unavailable("chat persister"))
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
struct RoomPatch {
    /// Only moderators may post while the room is muted.
    muted: Option<bool>,
    /// Minimum seconds between two messages of one (non-moderator) user; 0 turns it off.
    slow_mode_s: Option<i32>,
}

#[derive(Debug, Serialize, ToSchema)]
struct RoomSettings {
    channel: String,
    muted: bool,
    slow_mode_s: i32,
}

/// Mute a whole room or set slow mode (moderators of lesson rooms and course channels).
#[utoipa::path(patch, path = "/chat/channels/{channel}/room", tag = "chat",
    params(("channel" = String, Path)), request_body = RoomPatch,
    security(("bearer" = [])),
    responses((status = 200, body = RoomSettings), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 422, body = Problem)))]
async fn update_room(
    user: AuthUser,
    State(state): State<AppState>,
    Path(channel): Path<String>,
    Json(patch): Json<RoomPatch>,
) -> Result<Json<RoomSettings>, ApiError> {
    if patch.slow_mode_s.is_some_and(|s| !(0..=3600).contains(&s)) {
        return Err(InvalidInput {
            field: "slow_mode_s",
            reason: "must be 0 to 3600",
        }
        .into());
    }
    let (_, _, ch) = moderated(&state, &user, &channel).await?;
    let mut db = state.db.acquire().await?;
    let (muted, slow_mode_s) =
        store::set_room(&mut db, ch.id, patch.muted, patch.slow_mode_s).await?;
    let _ = chat::hub::publish(
        &state.redis,
        &state.settings.chat.keys(),
        &Wire::Room {
            channel: ch.name.0.clone(),
            muted,
            slow_mode_s,
        },
    )
    .await;
    Ok(Json(RoomSettings {
        channel,
        muted,
        slow_mode_s,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
struct MuteBody {
    /// Muted for this many seconds; absent: until unmuted.
    duration_s: Option<i64>,
}

/// Mute a user in a channel (moderators).
#[utoipa::path(put, path = "/chat/channels/{channel}/mutes/{user_id}", tag = "chat",
    params(("channel" = String, Path), ("user_id" = Uuid, Path)), request_body = MuteBody,
    security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn mute_user(
    user: AuthUser,
    State(state): State<AppState>,
    Path((channel, target)): Path<(String, Uuid)>,
    Json(body): Json<MuteBody>,
) -> Result<StatusCode, ApiError> {
    if body
        .duration_s
        .is_some_and(|d| !(1..=31_536_000).contains(&d))
    {
        return Err(InvalidInput {
            field: "duration_s",
            reason: "must be 1 to 31536000",
        }
        .into());
    }
    let (_, _, ch) = moderated(&state, &user, &channel).await?;
    let until = body
        .duration_s
        .map(|d| OffsetDateTime::now_utc() + time::Duration::seconds(d));
    let mut db = state.db.acquire().await?;
    store::mute(
        &mut db,
        ChannelId(ch.id),
        UserId(target),
        until,
        UserId(user.id),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Unmute a user in a channel (moderators).
#[utoipa::path(delete, path = "/chat/channels/{channel}/mutes/{user_id}", tag = "chat",
    params(("channel" = String, Path), ("user_id" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn unmute_user(
    user: AuthUser,
    State(state): State<AppState>,
    Path((channel, target)): Path<(String, Uuid)>,
) -> Result<StatusCode, ApiError> {
    let (_, _, ch) = moderated(&state, &user, &channel).await?;
    let mut db = state.db.acquire().await?;
    store::unmute(&mut db, ChannelId(ch.id), UserId(target)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize, ToSchema)]
struct BanBody {
    #[serde(default)]
    reason: String,
}

/// Ban a user from a course's chat: its channel and every lesson room (moderators of a room of
/// the course). Their open subscriptions end at once.
#[utoipa::path(put, path = "/chat/channels/{channel}/bans/{user_id}", tag = "chat",
    params(("channel" = String, Path), ("user_id" = Uuid, Path)), request_body = BanBody,
    security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn ban_user(
    user: AuthUser,
    State(state): State<AppState>,
    Path((channel, target)): Path<(String, Uuid)>,
    Json(body): Json<BanBody>,
) -> Result<StatusCode, ApiError> {
    if body.reason.chars().count() > 500 {
        return Err(InvalidInput {
            field: "reason",
            reason: "at most 500 characters",
        }
        .into());
    }
    let (_, a, _) = moderated(&state, &user, &channel).await?;
    let course = a.course_id.ok_or(ApiError::Unprocessable(
        "not_a_course_channel",
        "bans apply to course channels and lesson rooms".into(),
    ))?;
    if target == user.id {
        return Err(ApiError::Unprocessable(
            "cannot_ban_self",
            "moderators cannot ban themselves".into(),
        ));
    }
    let mut db = state.db.acquire().await?;
    store::ban(
        &mut db,
        CourseId(course),
        UserId(target),
        UserId(user.id),
        &body.reason,
    )
    .await?;
    let keys = state.settings.chat.keys();
    chat::revoke_course(&mut db, &state.redis, &keys, course, target, "banned").await;
    Ok(StatusCode::NO_CONTENT)
}

/// Lift a ban from a course's chat (moderators).
#[utoipa::path(delete, path = "/chat/channels/{channel}/bans/{user_id}", tag = "chat",
    params(("channel" = String, Path), ("user_id" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn unban_user(
    user: AuthUser,
    State(state): State<AppState>,
    Path((channel, target)): Path<(String, Uuid)>,
) -> Result<StatusCode, ApiError> {
    let (_, a, _) = moderated(&state, &user, &channel).await?;
    let course = a.course_id.ok_or(ApiError::Unprocessable(
        "not_a_course_channel",
        "bans apply to course channels and lesson rooms".into(),
    ))?;
    let mut db = state.db.acquire().await?;
    store::unban(&mut db, CourseId(course), UserId(target)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who is muted in a channel now, and who is banned from its course's chat.
#[derive(Debug, Serialize, ToSchema)]
struct Moderation {
    channel: String,
    /// Only moderators may post (the room's own mute).
    muted: bool,
    slow_mode_s: i32,
    /// Muted in this channel now (mutes that have run out are left out), newest first.
    mutes: Vec<store::ChatMute>,
    /// Banned from the course's chat, newest first; empty for channels outside a course.
    bans: Vec<store::ChatBan>,
}

/// The moderation state of a channel: its room settings, who is muted in it, who is banned from
/// its course (moderators; at most 1,000 of each).
#[utoipa::path(get, path = "/chat/channels/{channel}/moderation", tag = "chat",
    params(("channel" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = Moderation), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 422, body = Problem)))]
async fn moderation(
    user: AuthUser,
    State(state): State<AppState>,
    Path(channel): Path<String>,
) -> Result<Json<Moderation>, ApiError> {
    let (_, a, ch) = moderated(&state, &user, &channel).await?;
    let mut db = state.db.acquire().await?;
    let mutes = store::mutes(&mut db, ChannelId(ch.id)).await?;
    let bans = match a.course_id {
        Some(course) => store::bans(&mut db, CourseId(course)).await?,
        None => Vec::new(),
    };
    Ok(Json(Moderation {
        channel,
        muted: ch.muted,
        slow_mode_s: ch.slow_mode_s,
        mutes,
        bans,
    }))
}
