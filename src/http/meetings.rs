//! Jitsi meetings of lessons: `/api/v1/lessons/{id}/meeting-token`, and the RS256 public key
//! Jitsi's `asap_key_server` fetches (outside `/api/v1`). Tokens are made by
//! [`crate::meetings`]; who may join is the course policy's answer.

use axum::{extract::State, routing::get};
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    courses::{caller, lesson_standing, rtmp_server_url},
    error::{ApiError, Problem},
    extract::{AuthUser, Json, Path},
};
use crate::{
    courses::{LessonKind, policy},
    state::AppState,
};
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(meeting_token))
}

/// The RS256 public key for Jitsi's `asap_key_server`, at `jitsi.asap_key_path` (outside
/// `/api/v1`, public: it is a public key).
pub fn asap_router(path: &str) -> axum::Router<AppState> {
    axum::Router::new().route(&format!("{path}/{{file}}"), get(asap_key))
}

async fn asap_key(
    State(state): State<AppState>,
    Path(file): Path<String>,
) -> Result<([(axum::http::HeaderName, &'static str); 1], String), ApiError> {
    state
        .jitsi
        .public_key_for(&file)
        .map(|pem| {
            (
                [(axum::http::header::CONTENT_TYPE, "application/x-pem-file")],
                pem.to_string(),
            )
        })
        .ok_or(ApiError::NotFound("key"))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MeetingTokenResponse {
    /// The JWT for Jitsi's prosody token authentication.
    pub token: String,
    /// `<jitsi.base_url>/<room>?jwt=<token>`.
    pub meeting_url: String,
    pub room: String,
    /// `owner` (teachers: moderator, recording and livestreaming) or `member`.
    pub affiliation: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    /// Teachers only: the RTMP server URL to give Jitsi's "Start live stream" (Jibri), with the
    /// lesson's stream key appended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtmp_url: Option<String>,
}

/// A Jitsi meeting token for a lesson of kind `meeting`, for callers the access policy lets
/// join (403 for others; 409 `not_a_meeting` for broadcast lessons).
#[utoipa::path(get, path = "/lessons/{id}/meeting-token", tag = "courses",
    security(("bearer" = [])),
    responses((status = 200, body = MeetingTokenResponse), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn meeting_token(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<MeetingTokenResponse>, ApiError> {
    let mut conn = state.db.acquire().await?;
    let (lesson, s) = lesson_standing(&mut conn, id, Some(&user)).await?;
    let access = policy::lesson_access(caller(Some(&user)), &s.facts);
    if !access.join_meeting {
        return Err(ApiError::Forbidden(
            "enroll in the course to join this meeting".into(),
        ));
    }
    if lesson.kind != LessonKind::Meeting {
        return Err(ApiError::Conflict(
            "not_a_meeting",
            "this lesson is a broadcast, not a meeting".into(),
        ));
    }
    let profile = crate::users::find_by_id(&mut conn, user.id)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    let teacher = access.moderate;
    let affiliation = if teacher { "owner" } else { "member" }.to_string();
    let avatar = profile.avatar_url.clone().unwrap_or_default();
    let issued = state.jitsi.token(
        &lesson.room_name,
        crate::meetings::MeetingUser {
            id: profile.id.to_string(),
            name: profile.display_name,
            email: profile.email,
            avatar,
            affiliation: affiliation.clone(),
        },
        OffsetDateTime::now_utc(),
    )?;
    Ok(Json(MeetingTokenResponse {
        token: issued.jwt,
        meeting_url: issued.meeting_url,
        room: lesson.room_name,
        affiliation,
        expires_at: issued.expires_at,
        rtmp_url: teacher.then(|| rtmp_server_url(&state)),
    }))
}
