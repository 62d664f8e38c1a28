//! `GET /api/v1/users/profiles?ids=…`: the public face of users (display name) for what the web
//! app shows next to ids — chat senders, teachers. Any signed-in user may ask; nothing private
//! (no email, no roles) is answered, and ids are UUIDv7 (74 random bits): not enumerable.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    error::{ApiError, Problem},
    extract::{AuthUser, Json, Query},
};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(profiles))
}

/// At most this many ids per request.
const MAX_IDS: usize = 100;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProfilesQuery {
    /// Comma-separated user ids, at most 100.
    ids: String,
}

#[derive(Serialize, ToSchema)]
pub struct Profile {
    id: Uuid,
    display_name: String,
}

#[derive(Serialize, ToSchema)]
pub struct ProfileList {
    /// The users found, in no particular order (unknown ids are left out).
    items: Vec<Profile>,
}

/// Display names of users, by id.
#[utoipa::path(get, path = "/users/profiles", tag = "me", security(("bearer" = [])),
    params(ProfilesQuery),
    responses((status = 200, body = ProfileList), (status = 400, body = Problem), (status = 401, body = Problem)))]
async fn profiles(
    State(state): State<AppState>,
    _user: AuthUser,
    Query(q): Query<ProfilesQuery>,
) -> Result<Json<ProfileList>, ApiError> {
    let ids = q
        .ids
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| Uuid::try_parse(s.trim()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| ApiError::BadRequest("ids: comma-separated UUIDs".into()))?;
    if ids.len() > MAX_IDS {
        return Err(ApiError::BadRequest(format!("ids: at most {MAX_IDS}")));
    }
    let mut conn = state.db.acquire().await?;
    let items = sqlx::query_as!(
        Profile,
        "SELECT id, display_name FROM users WHERE id = ANY($1)",
        &ids
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(Json(ProfileList { items }))
}
