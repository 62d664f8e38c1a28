//! `/api/v1/setup`: the first admin without a shell (crate::identity::setup). `GET` says
//! whether anything is left to set up (the web app's `/setup` page asks); `POST` creates the
//! first admin with the token the server printed at start. Once an admin exists, `POST`
//! answers 409 `setup_done` and the page sends people to the login.

use axum::{extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    auth::limited,
    error::{ApiError, Problem},
    extract::{Client, Json},
};
use crate::{
    audit::{self, Event},
    auth,
    identity::setup::{self, SetupError},
    state::AppState,
    users::{DisplayName, Email, Password},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(status, create_first_admin))
}

/// Tries of the setup token per client address and hour.
const TRIES_PER_IP_HOUR: u64 = 20;

#[derive(Serialize, ToSchema)]
struct SetupStatus {
    /// No admin account exists yet: the setup link the server printed at start works.
    needed: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct FirstAdminRequest {
    /// The token of the setup link the server printed (`wms_…`).
    token: String,
    email: String,
    password: String,
    /// Default: the email's local part.
    display_name: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct FirstAdmin {
    id: Uuid,
    email: String,
}

/// Whether the first admin is still to be created.
#[utoipa::path(get, path = "/setup", tag = "setup", security(()),
    responses((status = 200, body = SetupStatus)))]
async fn status(State(state): State<AppState>) -> Result<Json<SetupStatus>, ApiError> {
    let needed = !setup::admin_exists(&state.db).await?;
    Ok(Json(SetupStatus { needed }))
}

/// Create the first admin with the setup token the server printed at start.
#[utoipa::path(post, path = "/setup", tag = "setup", security(()), request_body = FirstAdminRequest,
    responses((status = 201, body = FirstAdmin),
              (status = 403, body = Problem, description = "setup_token_invalid: wrong or expired (a start prints a new one)"),
              (status = 409, body = Problem, description = "setup_done: an admin exists; email_taken"),
              (status = 422, body = Problem, description = "validation_failed"),
              (status = 429, body = Problem, description = "rate_limited")))]
async fn create_first_admin(
    State(state): State<AppState>,
    client: Client,
    Json(req): Json<FirstAdminRequest>,
) -> Result<(StatusCode, Json<FirstAdmin>), ApiError> {
    limited(
        state
            .limiter
            .hit("setup-ip", client.ip(), TRIES_PER_IP_HOUR)
            .await,
    )?;
    let email = Email::parse(&req.email)?;
    let password = Password::parse(req.password)?;
    let name = DisplayName::parse(
        req.display_name
            .as_deref()
            .unwrap_or_else(|| email.as_str().split('@').next().unwrap_or("admin")),
    )?;
    if setup::admin_exists(&state.db).await? {
        return Err(done());
    }
    let hash = auth::hash_password(password.expose().to_string()).await?;
    let user = match setup::create_first_admin(
        &state.db,
        &state.redis,
        &setup::token_key(state.limiter.limits()),
        &req.token,
        &email,
        &name,
        &hash,
    )
    .await
    {
        Ok(user) => user,
        Err(SetupError::Done) => return Err(done()),
        Err(SetupError::BadToken) => {
            return Err(ApiError::ForbiddenCode(
                "setup_token_invalid",
                SetupError::BadToken.to_string(),
            ));
        }
        Err(SetupError::EmailTaken) => {
            return Err(ApiError::Conflict(
                "email_taken",
                "an account with this email exists".into(),
            ));
        }
        Err(SetupError::Db(e)) => return Err(e.into()),
        Err(SetupError::Redis(e)) => return Err(anyhow::Error::from(e).into()),
    };
    let mut conn = state.db.acquire().await?;
    audit::record(
        &mut conn,
        Event::by(user.id, "user.first_admin_created").ip(client.0.ip.as_deref()),
    )
    .await?;
    tracing::info!(user_id = %user.id, "first admin created through the setup link");
    Ok((
        StatusCode::CREATED,
        Json(FirstAdmin {
            id: user.id,
            email: email.as_str().to_string(),
        }),
    ))
}

fn done() -> ApiError {
    ApiError::Conflict(
        "setup_done",
        "an admin account exists: sign in, or ask an admin".into(),
    )
}
