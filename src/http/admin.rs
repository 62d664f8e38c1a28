//! `/api/v1/admin/*` (admins only): users and their roles, disabling accounts, revoking
//! sessions, and the audit log.

use axum::{extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    error::{ApiError, Problem},
    extract::{AdminOnly, Authorized, Client, Json, Path, Query},
    me::{SessionList, present},
};
use crate::{
    audit::{self, Entry, Event},
    state::AppState,
    users::{self, InvalidInput, Role, User},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users))
        .routes(routes!(grant_role))
        .routes(routes!(remove_role))
        .routes(routes!(disable_user))
        .routes(routes!(enable_user))
        .routes(routes!(revoke_user_sessions))
        .routes(routes!(user_sessions))
        .routes(routes!(revoke_user_session))
        .routes(routes!(reset_two_factor))
        .routes(routes!(audit_log))
}

fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit.unwrap_or(50) {
        n @ 1..=200 => Ok(n),
        _ => Err(InvalidInput {
            field: "limit",
            reason: "must be between 1 and 200",
        }
        .into()),
    }
}

#[derive(Deserialize, IntoParams)]
pub struct UserQuery {
    /// Part of the email address (case-insensitive).
    email: Option<String>,
    cursor: Option<Uuid>,
    limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct UserList {
    items: Vec<User>,
    #[schema(required = true)]
    next_cursor: Option<String>,
}

/// Users, newest first.
#[utoipa::path(get, path = "/admin/users", tag = "admin", security(("bearer" = ["admin"])),
    params(UserQuery),
    responses((status = 200, body = UserList), (status = 401, body = Problem), (status = 403, body = Problem)))]
async fn list_users(
    Authorized(_admin, ..): Authorized<AdminOnly>,
    State(state): State<AppState>,
    Query(q): Query<UserQuery>,
) -> Result<Json<UserList>, ApiError> {
    let limit = page_limit(q.limit)?;
    let mut conn = state.db.acquire().await?;
    let items = users::list(&mut conn, q.email.as_deref(), q.cursor, limit).await?;
    let next_cursor = (items.len() as i64 == limit)
        .then(|| items.last().map(|u| u.id.to_string()))
        .flatten();
    Ok(Json(UserList { items, next_cursor }))
}

#[derive(Deserialize, ToSchema)]
pub struct RoleRequest {
    role: Role,
}

async fn change_roles(
    state: &AppState,
    admin: Uuid,
    user_id: Uuid,
    ip: Option<&str>,
    change: impl FnOnce(&mut Vec<Role>) -> Result<(), ApiError>,
) -> Result<User, ApiError> {
    let mut tx = state.db.begin().await?;
    let user = users::find_by_id(&mut tx, user_id)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    let before = user.roles.clone();
    let mut roles = before.clone();
    change(&mut roles)?;
    roles.sort();
    roles.dedup();
    if roles != before {
        users::set_roles(&mut tx, user_id, &roles).await?;
        audit::record(
            &mut tx,
            Event {
                action: "user.roles_changed",
                actor_id: Some(admin),
                subject_user_id: Some(user_id),
                ip,
                detail: json!({"before": before, "after": roles}),
            },
        )
        .await?;
    }
    let user = users::find_by_id(&mut tx, user_id)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    tx.commit().await?;
    Ok(present(state, user).await)
}

/// Grant a role (idempotent). Takes effect at the user's next request.
#[utoipa::path(post, path = "/admin/users/{id}/roles", tag = "admin", security(("bearer" = ["admin"])),
    params(("id" = Uuid, Path)), request_body = RoleRequest,
    responses((status = 200, body = User), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem)))]
async fn grant_role(
    Authorized(admin, ..): Authorized<AdminOnly>,
    State(state): State<AppState>,
    client: Client,
    Path(id): Path<Uuid>,
    Json(req): Json<RoleRequest>,
) -> Result<Json<User>, ApiError> {
    let user = change_roles(&state, admin.id, id, client.0.ip.as_deref(), |roles| {
        roles.push(req.role);
        Ok(())
    })
    .await?;
    Ok(Json(user))
}

/// Remove a role (idempotent); a user keeps at least one role.
#[utoipa::path(delete, path = "/admin/users/{id}/roles/{role}", tag = "admin", security(("bearer" = ["admin"])),
    params(("id" = Uuid, Path), ("role" = Role, Path)),
    responses((status = 200, body = User), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem),
              (status = 409, body = Problem, description = "last_role; cannot_demote_self: an admin's own admin role")))]
async fn remove_role(
    Authorized(admin, ..): Authorized<AdminOnly>,
    State(state): State<AppState>,
    client: Client,
    Path((id, role)): Path<(Uuid, Role)>,
) -> Result<Json<User>, ApiError> {
    // The last admin would leave nobody able to give the role back.
    if id == admin.id && role == Role::Admin {
        return Err(ApiError::Conflict(
            "cannot_demote_self",
            "an admin cannot remove their own admin role; another admin can".into(),
        ));
    }
    let user = change_roles(&state, admin.id, id, client.0.ip.as_deref(), |roles| {
        roles.retain(|r| *r != role);
        if roles.is_empty() {
            return Err(ApiError::Conflict(
                "last_role",
                "a user keeps at least one role".into(),
            ));
        }
        Ok(())
    })
    .await?;
    Ok(Json(user))
}

async fn set_status(
    state: &AppState,
    admin: Uuid,
    id: Uuid,
    active: bool,
    ip: Option<&str>,
) -> Result<(), ApiError> {
    let mut tx = state.db.begin().await?;
    if !users::set_status(&mut tx, id, active).await? {
        return Err(ApiError::NotFound("user"));
    }
    audit::record(
        &mut tx,
        Event {
            action: if active {
                "user.enabled"
            } else {
                "user.disabled"
            },
            actor_id: Some(admin),
            subject_user_id: Some(id),
            ip,
            detail: json!({}),
        },
    )
    .await?;
    tx.commit().await?;
    if !active {
        state.sessions.revoke_all(id, "user_disabled").await?;
    }
    Ok(())
}

/// Disable an account: it cannot log in, and all its sessions are revoked at once. Not one's
/// own (409 `cannot_disable_self`): the last admin would lock everyone out of the console.
#[utoipa::path(post, path = "/admin/users/{id}/disable", tag = "admin", security(("bearer" = ["admin"])),
    params(("id" = Uuid, Path)),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 409, body = Problem, description = "cannot_disable_self: the caller's own account")))]
async fn disable_user(
    Authorized(admin, ..): Authorized<AdminOnly>,
    State(state): State<AppState>,
    client: Client,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    if id == admin.id {
        return Err(ApiError::Conflict(
            "cannot_disable_self",
            "an admin cannot disable their own account; another admin can".into(),
        ));
    }
    set_status(&state, admin.id, id, false, client.0.ip.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Enable a disabled account again.
#[utoipa::path(post, path = "/admin/users/{id}/enable", tag = "admin", security(("bearer" = ["admin"])),
    params(("id" = Uuid, Path)),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn enable_user(
    Authorized(admin, ..): Authorized<AdminOnly>,
    State(state): State<AppState>,
    client: Client,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    set_status(&state, admin.id, id, true, client.0.ip.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revoke every session of a user (they must log in again).
#[utoipa::path(post, path = "/admin/users/{id}/revoke-sessions", tag = "admin", security(("bearer" = ["admin"])),
    params(("id" = Uuid, Path)),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem)))]
async fn revoke_user_sessions(
    Authorized(admin, ..): Authorized<AdminOnly>,
    State(state): State<AppState>,
    client: Client,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    let sids = state.sessions.revoke_all(id, "admin").await?;
    let mut conn = state.db.acquire().await?;
    audit::record(
        &mut conn,
        Event {
            action: "session.revoked_all",
            actor_id: Some(admin.id),
            subject_user_id: Some(id),
            ip: client.0.ip.as_deref(),
            detail: json!({"sessions": sids.len(), "reason": "admin"}),
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A user's live sessions (devices: how they logged in, from where, last use), newest first.
#[utoipa::path(get, path = "/admin/users/{id}/sessions", tag = "admin", security(("bearer" = ["admin"])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = SessionList), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem)))]
async fn user_sessions(
    Authorized(_admin, ..): Authorized<AdminOnly>,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Json<SessionList>, ApiError> {
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)")
        .bind(id)
        .fetch_one(&state.db)
        .await?;
    if !exists {
        return Err(ApiError::NotFound("user"));
    }
    Ok(Json(SessionList {
        // No session of the admin's is in the list: none is `current`.
        items: state.sessions.list(id, Uuid::nil()).await?,
        next_cursor: None,
    }))
}

/// Revoke one session of a user (a lost or stolen device); its tokens stop working on every
/// node at once.
#[utoipa::path(delete, path = "/admin/users/{id}/sessions/{session_id}", tag = "admin", security(("bearer" = ["admin"])),
    params(("id" = Uuid, Path), ("session_id" = Uuid, Path)),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem)))]
async fn revoke_user_session(
    Authorized(admin, ..): Authorized<AdminOnly>,
    State(state): State<AppState>,
    client: Client,
    Path((id, sid)): Path<(Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    if !state.sessions.revoke(id, sid, "admin").await? {
        return Err(ApiError::NotFound("session"));
    }
    let mut conn = state.db.acquire().await?;
    audit::record(
        &mut conn,
        Event {
            action: "session.revoked",
            actor_id: Some(admin.id),
            subject_user_id: Some(id),
            ip: client.0.ip.as_deref(),
            detail: json!({"session_id": sid, "reason": "admin"}),
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Reset a user's two-factor (a lost phone and lost recovery codes): it is turned off, the
/// recovery codes deleted and every session revoked; the user is told (security alert) and can
/// turn it on again after the next login. Not one's own (409 `cannot_reset_self`: the account
/// settings do that, with a code).
#[utoipa::path(post, path = "/admin/users/{id}/reset-two-factor", tag = "admin", security(("bearer" = ["admin"])),
    params(("id" = Uuid, Path)),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 409, body = Problem, description = "cannot_reset_self: the caller's own account")))]
async fn reset_two_factor(
    Authorized(admin, ..): Authorized<AdminOnly>,
    State(state): State<AppState>,
    client: Client,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    if id == admin.id {
        return Err(ApiError::Conflict(
            "cannot_reset_self",
            "turn your own two-factor off in your account settings".into(),
        ));
    }
    let mut tx = state.db.begin().await?;
    // The previous state, for the audit entry (a reset of an account without two-factor is a
    // no-op that is still recorded: someone asked for it).
    let had: Option<bool> =
        sqlx::query_scalar("SELECT totp_secret IS NOT NULL FROM users WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(had) = had else {
        return Err(ApiError::NotFound("user"));
    };
    crate::auth::mfa::turn_off(&mut tx, id).await?;
    audit::record(
        &mut tx,
        Event {
            action: "user.two_factor_reset",
            actor_id: Some(admin.id),
            subject_user_id: Some(id),
            ip: client.0.ip.as_deref(),
            detail: json!({"had_two_factor": had}),
        },
    )
    .await?;
    tx.commit().await?;
    state.sessions.revoke_all(id, "two_factor_reset").await?;
    if had {
        super::auth::security_alert(&state, id, "two_factor_disabled");
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, IntoParams)]
pub struct AuditQuery {
    /// Entries about this user.
    user_id: Option<Uuid>,
    /// Entries done by this user.
    actor_id: Option<Uuid>,
    /// An action (`auth.login`) or a prefix ending in a dot (`auth.`).
    action: Option<String>,
    /// RFC 3339; entries at or after.
    #[param(value_type = Option<String>, format = DateTime)]
    #[serde(default, with = "time::serde::rfc3339::option")]
    since: Option<OffsetDateTime>,
    /// RFC 3339; entries before.
    #[param(value_type = Option<String>, format = DateTime)]
    #[serde(default, with = "time::serde::rfc3339::option")]
    until: Option<OffsetDateTime>,
    cursor: Option<Uuid>,
    limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    items: Vec<Entry>,
    #[schema(required = true)]
    next_cursor: Option<String>,
}

/// The audit log, newest first, with filters.
#[utoipa::path(get, path = "/admin/audit-log", tag = "admin", security(("bearer" = ["admin"])),
    params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 401, body = Problem), (status = 403, body = Problem)))]
async fn audit_log(
    Authorized(_admin, ..): Authorized<AdminOnly>,
    State(state): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let limit = page_limit(q.limit)?;
    let mut conn = state.db.acquire().await?;
    let items = audit::query(
        &mut conn,
        &audit::Filter {
            user_id: q.user_id,
            actor_id: q.actor_id,
            action: q.action,
            since: q.since,
            until: q.until,
            before: q.cursor,
            limit,
        },
    )
    .await?;
    let next_cursor = (items.len() as i64 == limit)
        .then(|| items.last().map(|e| e.id.to_string()))
        .flatten();
    Ok(Json(AuditPage { items, next_cursor }))
}
