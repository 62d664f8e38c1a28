//! `/courses/{id}/members/{user_id}`: co-teachers and assistants.

use axum::{extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::standing;
use crate::{
    courses::{
        MemberRole,
        store::{self},
    },
    http::{
        error::{ApiError, Problem},
        extract::{AuthUser, Json, Path},
    },
    state::AppState,
    users::{InvalidInput, Role},
};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutMember {
    /// `co_teacher` or `assistant`.
    role: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberResponse {
    pub course_id: Uuid,
    pub user_id: Uuid,
    pub role: MemberRole,
}

/// Add a co-teacher or assistant, or change their role (the owner and admins).
#[utoipa::path(put, path = "/courses/{id}/members/{user_id}", tag = "courses", request_body = PutMember,
    security(("bearer" = ["teacher", "admin"])),
    responses((status = 200, body = MemberResponse), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub(super) async fn put_member(
    State(state): State<AppState>,
    user: AuthUser,
    Path((id, member)): Path<(Uuid, Uuid)>,
    Json(req): Json<PutMember>,
) -> Result<Json<MemberResponse>, ApiError> {
    user.require_any(&[Role::Teacher, Role::Admin])?;
    let mut conn = state.db.acquire().await?;
    let s = standing(&mut conn, id, Some(&user), false).await?;
    if !user.owns(s.course.owner_id) {
        return Err(ApiError::Forbidden(
            "only the course owner and admins manage members".into(),
        ));
    }
    let role: MemberRole = req
        .role
        .as_deref()
        .ok_or(InvalidInput {
            field: "role",
            reason: "is required",
        })?
        .parse()?;
    if member == s.course.owner_id {
        return Err(InvalidInput {
            field: "user_id",
            reason: "the owner is not a member",
        }
        .into());
    }
    crate::users::find_by_id(&mut conn, member)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    store::put_member(&mut conn, id, member, role).await?;
    Ok(Json(MemberResponse {
        course_id: id,
        user_id: member,
        role,
    }))
}

/// Remove a member (204, also when they were not one).
#[utoipa::path(delete, path = "/courses/{id}/members/{user_id}", tag = "courses",
    security(("bearer" = ["teacher", "admin"])),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(super) async fn delete_member(
    State(state): State<AppState>,
    user: AuthUser,
    Path((id, member)): Path<(Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    user.require_any(&[Role::Teacher, Role::Admin])?;
    let mut conn = state.db.acquire().await?;
    let s = standing(&mut conn, id, Some(&user), false).await?;
    if !user.owns(s.course.owner_id) {
        return Err(ApiError::Forbidden(
            "only the course owner and admins manage members".into(),
        ));
    }
    store::remove_member(&mut conn, id, member).await?;
    // Their moderator rights in the course's chat end now (they may still read it as a student).
    let keys = state.settings.chat.keys();
    crate::chat::revoke_course(&mut conn, &state.redis, &keys, id, member, "access_revoked").await;
    Ok(StatusCode::NO_CONTENT)
}
