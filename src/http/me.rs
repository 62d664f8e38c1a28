//! `/api/v1/me/*`: the caller's own account — profile, avatar, password, email verification,
//! sessions, two-factor and API tokens. Routes that change credentials re-authenticate with the
//! password and need a login session (not an API token).

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    auth::{SecondFactor, check_second_factor, limited, queue_verification, security_alert},
    error::{ApiError, Problem},
    extract::{AuthUser, Client, Json, Path},
};
use crate::{
    api_tokens::{self, ApiToken},
    audit::{self, Event},
    auth::{self, SessionInfo, mfa},
    notifications,
    state::AppState,
    storage::{ObjectKey, PresignMethod, PutOptions},
    users::{self, DisplayName, InvalidInput, Locale, Password, Role, TimeZone, User},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(me, update_me))
        .routes(routes!(upload_avatar))
        .routes(routes!(change_password))
        .routes(routes!(resend_verification))
        .routes(routes!(list_sessions, revoke_all_sessions))
        .routes(routes!(revoke_session))
        .routes(routes!(enrol_totp))
        .routes(routes!(confirm_totp))
        .routes(routes!(disable_totp))
        .routes(routes!(list_api_tokens, create_api_token))
        .routes(routes!(revoke_api_token))
        .routes(routes!(
            get_notification_preferences,
            put_notification_preferences
        ))
}

/// Fill `avatar_url` (a presigned GET, a week long).
pub(crate) async fn present(state: &AppState, mut user: User) -> User {
    if let Some(key) = user
        .avatar_key
        .as_deref()
        .and_then(|k| ObjectKey::parse(k).ok())
    {
        user.avatar_url = state
            .storage
            .presign(
                PresignMethod::Get,
                &key,
                std::time::Duration::from_secs(7 * 86_400),
            )
            .await
            .ok()
            .map(|u| u.to_string());
    }
    user
}

async fn load(state: &AppState, id: Uuid) -> Result<User, ApiError> {
    let mut conn = state.db.acquire().await?;
    let user = users::find_by_id(&mut conn, id)
        .await?
        .ok_or(ApiError::Unauthorized(
            "the account no longer exists".into(),
        ))?;
    Ok(present(state, user).await)
}

/// The authenticated user.
#[utoipa::path(get, path = "/me", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = User), (status = 401, body = Problem)))]
async fn me(State(state): State<AppState>, user: AuthUser) -> Result<Json<User>, ApiError> {
    Ok(Json(load(&state, user.id).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfilePatch {
    display_name: Option<String>,
    /// `en` or `zh-CN`.
    locale: Option<String>,
    /// An IANA time zone (`Asia/Shanghai`) the studio's schedule uses; null: the browser's.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    time_zone: Option<Option<String>>,
}

/// Absent stays `None`; `null` becomes `Some(None)` (clear it).
fn double_option<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// Change the display name, locale or time zone.
#[utoipa::path(patch, path = "/me", tag = "me", security(("bearer" = [])), request_body = ProfilePatch,
    responses((status = 200, body = User), (status = 401, body = Problem), (status = 422, body = Problem)))]
async fn update_me(
    State(state): State<AppState>,
    user: AuthUser,
    Json(req): Json<ProfilePatch>,
) -> Result<Json<User>, ApiError> {
    let name = req
        .display_name
        .as_deref()
        .map(DisplayName::parse)
        .transpose()?;
    let locale: Option<Locale> = req.locale.as_deref().map(str::parse).transpose()?;
    let time_zone: Option<Option<TimeZone>> = req
        .time_zone
        .map(|tz| tz.as_deref().map(TimeZone::parse).transpose())
        .transpose()?;
    let mut conn = state.db.acquire().await?;
    if let Some(Some(tz)) = &time_zone
        && !users::known_time_zone(&mut conn, tz).await?
    {
        return Err(InvalidInput {
            field: "time_zone",
            reason: "is not a time zone this server knows",
        }
        .into());
    }
    let tz = time_zone.as_ref().map(Option::as_ref);
    users::update_profile(&mut conn, user.id, name.as_ref(), locale, tz).await?;
    drop(conn);
    Ok(Json(load(&state, user.id).await?))
}

const AVATAR_MAX_BYTES: usize = 2 * 1024 * 1024;

/// Upload an avatar: the image as the body (PNG, JPEG or WebP, at most 2 MiB).
#[utoipa::path(put, path = "/me/avatar", tag = "me", security(("bearer" = [])),
    request_body(content = Vec<u8>, content_type = "image/png"),
    responses((status = 200, body = User), (status = 401, body = Problem),
              (status = 413, body = Problem), (status = 415, body = Problem, description = "not a PNG, JPEG or WebP image")))]
async fn upload_avatar(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Json<User>, ApiError> {
    // Read up to the avatar cap (not the smaller JSON body limit), 413 problem+json beyond.
    let body = super::upload::read_capped(&headers, body, AVATAR_MAX_BYTES).await?;
    // Trust the bytes, not the header: the content type stored is the one the magic says.
    let Some((content_type, ext)) = super::upload::sniff_image(&body) else {
        return Err(ApiError::UnsupportedMediaType(
            "an avatar is a PNG, JPEG or WebP image".into(),
        ));
    };
    let key = ObjectKey::parse(format!(
        "avatars/{}/{}.{ext}",
        user.id,
        hex::encode(auth::random_bytes(8))
    ))
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("avatar key: {e}")))?;
    state
        .storage
        .put_bytes(
            &key,
            body,
            &PutOptions {
                content_type: Some(content_type.into()),
                cache_control: Some("private, max-age=604800".into()),
            },
        )
        .await?;
    let mut conn = state.db.acquire().await?;
    let old = users::set_avatar(&mut conn, user.id, key.as_str()).await?;
    drop(conn);
    if let Some(old) = old.and_then(|k| ObjectKey::parse(k).ok()) {
        // Best effort: a leftover object costs storage, not correctness.
        if let Err(e) = state.storage.delete(&old).await {
            tracing::warn!(error = %e, "old avatar not deleted");
        }
    }
    Ok(Json(load(&state, user.id).await?))
}

/// Check the caller's password again (re-authentication before a sensitive change).
async fn reauthenticate(
    state: &AppState,
    user_id: Uuid,
    password: String,
) -> Result<users::UserWithHash, ApiError> {
    let found = users::find_with_hash(&mut *state.db.acquire().await?, user_id)
        .await?
        .ok_or(ApiError::InvalidCredentials)?;
    // No connection held while argon2 runs (see the login handler).
    if password.len() > 4 * Password::MAX_CHARS
        || !auth::verify_password(password, Some(found.password_hash.clone())).await
    {
        let mut conn = state.db.acquire().await?;
        audit::record(&mut conn, Event::by(user_id, "auth.reauth_failed")).await?;
        return Err(ApiError::ForbiddenCode(
            "reauthentication_failed",
            "the current password is incorrect".into(),
        ));
    }
    Ok(found)
}

#[derive(Deserialize, ToSchema)]
pub struct ChangePassword {
    current_password: String,
    new_password: String,
}

/// Change the password (re-authenticating with the current one). Every session of the account,
/// this one included, is revoked: log in again with the new password.
#[utoipa::path(post, path = "/me/password", tag = "me", security(("bearer" = [])), request_body = ChangePassword,
    responses((status = 204), (status = 401, body = Problem),
              (status = 403, body = Problem, description = "reauthentication_failed"),
              (status = 422, body = Problem)))]
async fn change_password(
    State(state): State<AppState>,
    user: AuthUser,
    client: Client,
    Json(req): Json<ChangePassword>,
) -> Result<StatusCode, ApiError> {
    user.session()?;
    let new = Password::parse(req.new_password)?;
    let found = reauthenticate(&state, user.id, req.current_password).await?;
    let hash = auth::hash_password(new.expose().to_string()).await?;
    let mut tx = state.db.begin().await?;
    users::set_password(&mut tx, user.id, &hash).await?;
    audit::record(
        &mut tx,
        Event::by(user.id, "user.password_changed").ip(client.0.ip.as_deref()),
    )
    .await?;
    tx.commit().await?;
    security_alert(&state, found.user.id, "password_changed");
    state
        .sessions
        .revoke_all(user.id, "password_change")
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Mail a new verification link (rate limited).
#[utoipa::path(post, path = "/me/verify-email", tag = "me", security(("bearer" = [])),
    responses((status = 202), (status = 401, body = Problem),
              (status = 409, body = Problem, description = "already_verified"),
              (status = 429, body = Problem)))]
async fn resend_verification(
    State(state): State<AppState>,
    user: AuthUser,
    client: Client,
) -> Result<StatusCode, ApiError> {
    let u = load(&state, user.id).await?;
    if u.email_verified {
        return Err(ApiError::Conflict(
            "already_verified",
            "the email address is already verified".into(),
        ));
    }
    let limits = state.limiter.limits();
    limited(
        state
            .limiter
            .hit("mail-ip", client.ip(), limits.mails_per_ip_hour)
            .await,
    )?;
    limited(
        state
            .limiter
            .hit(
                "mail-addr",
                &u.email.to_lowercase(),
                limits.mails_per_address_hour,
            )
            .await,
    )?;
    let mut tx = state.db.begin().await?;
    queue_verification(&state, &mut tx, &u).await?;
    tx.commit().await?;
    state.mailer.wake();
    Ok(StatusCode::ACCEPTED)
}

#[derive(Serialize, ToSchema)]
pub struct SessionList {
    pub(super) items: Vec<SessionInfo>,
    /// Always null: every live session is listed.
    #[schema(required = true)]
    pub(super) next_cursor: Option<String>,
}

/// The caller's live sessions (devices), newest first.
#[utoipa::path(get, path = "/me/sessions", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = SessionList), (status = 401, body = Problem)))]
async fn list_sessions(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<SessionList>, ApiError> {
    let current = match user.credential {
        super::extract::Credential::Session(s) => s,
        super::extract::Credential::ApiToken(_) => Uuid::nil(),
    };
    Ok(Json(SessionList {
        items: state.sessions.list(user.id, current).await?,
        next_cursor: None,
    }))
}

/// Sign out everywhere: revoke every session of the caller, this one included.
#[utoipa::path(delete, path = "/me/sessions", tag = "me", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem)))]
async fn revoke_all_sessions(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<StatusCode, ApiError> {
    let ended = state.sessions.revoke_all(user.id, "user").await?;
    let mut conn = state.db.acquire().await?;
    audit::record(
        &mut conn,
        Event::by(user.id, "session.revoked_all").detail(json!({"sessions": ended.len()})),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revoke one of the caller's sessions; its tokens stop working on every node at once.
#[utoipa::path(delete, path = "/me/sessions/{id}", tag = "me", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 204), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn revoke_session(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    if !state.sessions.revoke(user.id, id, "user").await? {
        return Err(ApiError::NotFound("session"));
    }
    let mut conn = state.db.acquire().await?;
    audit::record(
        &mut conn,
        Event::by(user.id, "session.revoked").detail(json!({"session_id": id, "reason": "user"})),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
pub struct PasswordConfirmation {
    password: String,
}

#[derive(Serialize, ToSchema)]
pub struct TotpEnrolment {
    /// The shared secret (base32), for typing into an app.
    secret: String,
    /// `otpauth://totp/WeMaster:<email>?secret=...&issuer=WeMaster`.
    otpauth_uri: String,
    /// The same URI as a QR code: `data:image/png;base64,...`.
    qr_png: String,
}

/// Start two-factor enrolment (re-authenticating): a new secret, its `otpauth://` URI and QR code.
/// Two-factor is on only once a first code confirms it.
#[utoipa::path(post, path = "/me/two-factor", tag = "me", security(("bearer" = [])), request_body = PasswordConfirmation,
    responses((status = 200, body = TotpEnrolment), (status = 401, body = Problem),
              (status = 403, body = Problem, description = "reauthentication_failed"),
              (status = 409, body = Problem, description = "two_factor_enabled: disable it first")))]
async fn enrol_totp(
    State(state): State<AppState>,
    user: AuthUser,
    Json(req): Json<PasswordConfirmation>,
) -> Result<Json<TotpEnrolment>, ApiError> {
    user.session()?;
    let found = reauthenticate(&state, user.id, req.password).await?;
    if found.totp_secret.is_some() {
        return Err(ApiError::Conflict(
            "two_factor_enabled",
            "two-factor is already on".into(),
        ));
    }
    let e = mfa::new_enrolment(&found.user.email)?;
    let mut conn = state.db.acquire().await?;
    sqlx::query!(
        "UPDATE users SET totp_secret = $2, totp_enabled_at = NULL, totp_last_step = NULL WHERE id = $1",
        user.id,
        e.secret_base32
    )
    .execute(&mut *conn)
    .await?;
    Ok(Json(TotpEnrolment {
        qr_png: mfa::png_data_url(&e.qr_png),
        secret: e.secret_base32,
        otpauth_uri: e.otpauth_uri,
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct TotpCode {
    /// The 6-digit code the app shows now.
    code: String,
}

#[derive(Serialize, ToSchema)]
pub struct RecoveryCodes {
    /// Ten single-use codes, shown this once.
    recovery_codes: Vec<String>,
}

/// Confirm enrolment with a first code: two-factor is on; answers the ten recovery codes.
#[utoipa::path(post, path = "/me/two-factor/confirm", tag = "me", security(("bearer" = [])), request_body = TotpCode,
    responses((status = 200, body = RecoveryCodes), (status = 401, body = Problem),
              (status = 409, body = Problem, description = "no enrolment pending, or already on"),
              (status = 422, body = Problem, description = "the code is wrong"),
              (status = 429, body = Problem, description = "rate_limited: too many wrong codes, with Retry-After")))]
async fn confirm_totp(
    State(state): State<AppState>,
    user: AuthUser,
    client: Client,
    Json(req): Json<TotpCode>,
) -> Result<Json<RecoveryCodes>, ApiError> {
    user.session()?;
    let mut tx = state.db.begin().await?;
    let row = sqlx::query!(
        "SELECT totp_secret, totp_enabled_at FROM users WHERE id = $1 FOR UPDATE",
        user.id
    )
    .fetch_one(&mut *tx)
    .await?;
    let (Some(secret), None) = (row.totp_secret, row.totp_enabled_at) else {
        return Err(ApiError::Conflict(
            "no_enrolment",
            "no two-factor enrolment is pending".into(),
        ));
    };
    let code = SecondFactor::Totp(&req.code);
    if !check_second_factor(
        &state,
        &mut tx,
        user.id,
        &secret,
        code,
        &client,
        "enrolment",
    )
    .await?
    {
        // Keep the audit entry of the failure.
        tx.commit().await?;
        return Err(InvalidInput {
            field: "code",
            reason: "is not the current code",
        }
        .into());
    }
    sqlx::query!(
        "UPDATE users SET totp_enabled_at = now() WHERE id = $1",
        user.id
    )
    .execute(&mut *tx)
    .await?;
    let codes = mfa::new_recovery_codes(&mut tx, user.id).await?;
    audit::record(
        &mut tx,
        Event::by(user.id, "user.two_factor_enabled").ip(client.0.ip.as_deref()),
    )
    .await?;
    tx.commit().await?;
    security_alert(&state, user.id, "two_factor_enabled");
    Ok(Json(RecoveryCodes {
        recovery_codes: codes,
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct DisableTotp {
    password: String,
    /// A current code...
    code: Option<String>,
    /// ... or a recovery code.
    recovery_code: Option<String>,
}

/// Turn two-factor off (password and a code or recovery code).
#[utoipa::path(post, path = "/me/two-factor/disable", tag = "me", security(("bearer" = [])), request_body = DisableTotp,
    responses((status = 204), (status = 401, body = Problem),
              (status = 403, body = Problem, description = "reauthentication_failed or mfa_required"),
              (status = 429, body = Problem, description = "rate_limited: too many wrong two-factor codes for this account or from this address, with Retry-After")))]
async fn disable_totp(
    State(state): State<AppState>,
    user: AuthUser,
    client: Client,
    Json(req): Json<DisableTotp>,
) -> Result<StatusCode, ApiError> {
    user.session()?;
    let found = reauthenticate(&state, user.id, req.password).await?;
    let Some(secret) = found.totp_secret else {
        return Ok(StatusCode::NO_CONTENT);
    };
    let mut tx = state.db.begin().await?;
    let factor = SecondFactor::of(&req.code, &req.recovery_code);
    let ok = check_second_factor(
        &state,
        &mut tx,
        user.id,
        &secret,
        factor,
        &client,
        "disable_two_factor",
    )
    .await?;
    if !ok {
        tx.commit().await?;
        return Err(ApiError::ForbiddenCode(
            "mfa_required",
            "give a valid code or recovery code".into(),
        ));
    }
    mfa::turn_off(&mut tx, user.id).await?;
    audit::record(
        &mut tx,
        Event::by(user.id, "user.two_factor_disabled").ip(client.0.ip.as_deref()),
    )
    .await?;
    tx.commit().await?;
    security_alert(&state, found.user.id, "two_factor_disabled");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct ApiTokenList {
    items: Vec<ApiToken>,
    #[schema(required = true)]
    next_cursor: Option<String>,
}

/// The caller's live API tokens (never their secrets).
#[utoipa::path(get, path = "/me/api-tokens", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = ApiTokenList), (status = 401, body = Problem)))]
async fn list_api_tokens(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<ApiTokenList>, ApiError> {
    let mut conn = state.db.acquire().await?;
    Ok(Json(ApiTokenList {
        items: api_tokens::list(&mut conn, user.id).await?,
        next_cursor: None,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiToken {
    /// 1 to 100 characters, e.g. "CI uploads".
    name: String,
    /// Roles the token acts with; each must be one the caller holds.
    scopes: Vec<Role>,
    /// Days until it expires (1 to 365); none means it lasts until revoked.
    expires_in_days: Option<u16>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedApiToken {
    #[serde(flatten)]
    token: ApiToken,
    /// The secret (`wmt_...`), shown this once: send it as `Authorization: Bearer <token>`.
    secret: String,
}

/// Create an API token for automation; the answer is the only one that shows its secret.
#[utoipa::path(post, path = "/me/api-tokens", tag = "me", security(("bearer" = [])), request_body = NewApiToken,
    responses((status = 201, body = CreatedApiToken), (status = 401, body = Problem),
              (status = 403, body = Problem, description = "session_required"),
              (status = 422, body = Problem)))]
async fn create_api_token(
    State(state): State<AppState>,
    user: AuthUser,
    Json(req): Json<NewApiToken>,
) -> Result<(StatusCode, Json<CreatedApiToken>), ApiError> {
    user.session()?;
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(InvalidInput {
            field: "name",
            reason: "must be 1 to 100 characters",
        }
        .into());
    }
    if req.scopes.is_empty() || !req.scopes.iter().all(|s| user.has_role(*s)) {
        return Err(InvalidInput {
            field: "scopes",
            reason: "must be one or more roles you hold",
        }
        .into());
    }
    let expires_at = match req.expires_in_days {
        None => None,
        Some(d @ 1..=365) => Some(OffsetDateTime::now_utc() + time::Duration::days(d.into())),
        Some(_) => {
            return Err(InvalidInput {
                field: "expires_in_days",
                reason: "must be between 1 and 365",
            }
            .into());
        }
    };
    let mut tx = state.db.begin().await?;
    let (token, secret) =
        api_tokens::create(&mut tx, user.id, name, &req.scopes, expires_at).await?;
    audit::record(
        &mut tx,
        Event::by(user.id, "api_token.created")
            .detail(json!({"token_id": token.id, "name": token.name, "scopes": token.scopes})),
    )
    .await?;
    tx.commit().await?;
    security_alert(&state, user.id, "api_token_created");
    Ok((StatusCode::CREATED, Json(CreatedApiToken { token, secret })))
}

/// Revoke an API token; it stops working at once.
#[utoipa::path(delete, path = "/me/api-tokens/{id}", tag = "me", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 204), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn revoke_api_token(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.db.begin().await?;
    if !api_tokens::revoke(&mut tx, user.id, id).await? {
        return Err(ApiError::NotFound("API token"));
    }
    audit::record(
        &mut tx,
        Event::by(user.id, "api_token.revoked").detail(json!({"token_id": id})),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct NotificationPreferences {
    /// One entry per kind (`lesson_starting`, `live_now`, `replay_ready`, `payment_confirmed`,
    /// `security`). In a PUT, kinds left out keep their choice.
    items: Vec<notifications::Preference>,
}

/// Which notifications the caller gets, per kind: in the chat channel `user:<id>` (`in_app`)
/// and/or by email when not connected.
#[utoipa::path(get, path = "/me/notification-preferences", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = NotificationPreferences), (status = 401, body = Problem)))]
async fn get_notification_preferences(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<NotificationPreferences>, ApiError> {
    let mut conn = state.db.acquire().await?;
    Ok(Json(NotificationPreferences {
        items: notifications::preferences(&mut conn, user.id).await?,
    }))
}

/// Choose channels per kind. Security alerts cannot be turned off entirely: `security` with
/// both `in_app` and `email` false is refused (422).
#[utoipa::path(put, path = "/me/notification-preferences", tag = "me", security(("bearer" = [])),
    request_body = NotificationPreferences,
    responses((status = 200, body = NotificationPreferences), (status = 401, body = Problem),
              (status = 422, body = Problem)))]
async fn put_notification_preferences(
    State(state): State<AppState>,
    user: AuthUser,
    Json(req): Json<NotificationPreferences>,
) -> Result<Json<NotificationPreferences>, ApiError> {
    let mut tx = state.db.begin().await?;
    notifications::set_preferences(&mut tx, user.id, &req.items)
        .await
        .map_err(|e| match e {
            notifications::SetError::SecurityOff => {
                ApiError::from(notifications::SECURITY_NEEDS_A_CHANNEL)
            }
            notifications::SetError::Db(e) => e.into(),
        })?;
    let items = notifications::preferences(&mut tx, user.id).await?;
    tx.commit().await?;
    Ok(Json(NotificationPreferences { items }))
}
