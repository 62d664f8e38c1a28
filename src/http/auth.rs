//! `/api/v1/auth/*` and `/api/v1/me`: the foundation's minimal account routes (register,
//! password login, refresh with rotation, logout, who am I). The identity work adds two-factor,
//! OAuth2, rate limits and audit on these same routes.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    error::{ApiError, Problem},
    extract::{AuthUser, Json},
};
use crate::{
    auth,
    state::AppState,
    users::{self, CreateUserError, DisplayName, Email, Password, Role, User},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(me))
}

#[derive(Deserialize, ToSchema)]
pub struct RegisterRequest {
    email: String,
    password: String,
    display_name: String,
}

/// Create a student account.
#[utoipa::path(post, path = "/auth/register", tag = "auth", request_body = RegisterRequest,
    responses((status = 201, body = User), (status = 409, body = Problem, description = "email_taken"),
              (status = 422, body = Problem, description = "validation_failed")))]
async fn register(
    axum::extract::State(state): axum::extract::State<AppState>,
    Json(req): Json<RegisterRequest>,
) -> Result<(axum::http::StatusCode, Json<User>), ApiError> {
    let email = Email::parse(&req.email)?;
    let name = DisplayName::parse(&req.display_name)?;
    let password = Password::parse(req.password)?;
    let hash = auth::hash_password(password.expose().to_string()).await?;
    let mut conn = state.db.acquire().await?;
    let user = users::create_user(&mut conn, &email, &name, &hash, &[Role::Student])
        .await
        .map_err(|e| match e {
            CreateUserError::EmailTaken => ApiError::Conflict("email_taken", e.to_string()),
            CreateUserError::Db(db) => db.into(),
        })?;
    tracing::info!(user_id = %user.id, "user registered");
    Ok((axum::http::StatusCode::CREATED, Json(user)))
}

#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    email: String,
    password: String,
}

#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    access_token: String,
    refresh_token: String,
    /// Always `Bearer`.
    token_type: &'static str,
    /// Seconds until the access token expires.
    expires_in: u64,
}

impl From<auth::IssuedTokens> for TokenResponse {
    fn from(t: auth::IssuedTokens) -> Self {
        TokenResponse {
            access_token: t.access_token,
            refresh_token: t.refresh_token,
            token_type: "Bearer",
            expires_in: t.expires_in,
        }
    }
}

/// Log in with email and password.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = TokenResponse), (status = 401, body = Problem, description = "invalid_credentials")))]
async fn login(
    axum::extract::State(state): axum::extract::State<AppState>,
    Json(req): Json<LoginRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    // Bound the work an attacker can make argon2 do before any check.
    if req.password.len() > 4 * Password::MAX_CHARS || req.email.len() > 254 {
        return Err(ApiError::InvalidCredentials);
    }
    let mut conn = state.db.acquire().await?;
    let found = users::find_by_email(&mut conn, &req.email).await?;
    drop(conn);
    // Unknown emails are verified against a dummy hash: same answer, similar time.
    let ok = auth::verify_password(
        req.password,
        found.as_ref().map(|u| u.password_hash.clone()),
    )
    .await;
    let user = match found {
        Some(u) if ok && u.user.status == "active" => u.user,
        _ => {
            tracing::info!("login failed");
            return Err(ApiError::InvalidCredentials);
        }
    };
    let tokens = state.tokens.issue(user.id, user.roles.clone()).await?;
    tracing::info!(user_id = %user.id, "login");
    Ok(Json(tokens.into()))
}

#[derive(Deserialize, ToSchema)]
pub struct RefreshRequest {
    refresh_token: String,
}

/// Exchange a refresh token for a new pair; the old refresh token stops working.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = TokenResponse), (status = 401, body = Problem)))]
async fn refresh(
    axum::extract::State(state): axum::extract::State<AppState>,
    Json(req): Json<RefreshRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    if req.refresh_token.len() > 256 {
        return Err(ApiError::Unauthorized("invalid refresh token".into()));
    }
    match state.tokens.refresh(&req.refresh_token).await? {
        Some(tokens) => Ok(Json(tokens.into())),
        None => Err(ApiError::Unauthorized(
            "refresh token is unknown, used or expired".into(),
        )),
    }
}

#[derive(Deserialize, ToSchema, Default)]
pub struct LogoutRequest {
    refresh_token: Option<String>,
}

/// End the caller's session: its access and refresh tokens stop working on every node.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", request_body(content = LogoutRequest, description = "optional"),
    security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem)))]
async fn logout(
    axum::extract::State(state): axum::extract::State<AppState>,
    user: AuthUser,
    body: axum::body::Bytes,
) -> Result<axum::http::StatusCode, ApiError> {
    // The body is optional: an empty one just ends the session.
    let req: LogoutRequest = if body.iter().all(u8::is_ascii_whitespace) {
        LogoutRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::MalformedJson(e.to_string()))?
    };
    state
        .tokens
        .revoke_session(user.session_id, req.refresh_token.as_deref())
        .await?;
    tracing::info!(user_id = %user.id, "logout");
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// The authenticated user.
#[utoipa::path(get, path = "/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = User), (status = 401, body = Problem)))]
async fn me(
    axum::extract::State(state): axum::extract::State<AppState>,
    user: AuthUser,
) -> Result<Json<User>, ApiError> {
    let mut conn = state.db.acquire().await?;
    let found = users::find_by_id(&mut conn, user.id).await?;
    found.map(Json).ok_or(ApiError::Unauthorized(
        "the account no longer exists".into(),
    ))
}
