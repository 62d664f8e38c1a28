//! `/api/v1/auth/*`: registration (the same answer whether or not the address has an account),
//! email verification, login (password, then a two-factor code
//! when the account has one), refresh with rotation and reuse detection, logout, and password
//! reset by email. Account management of a logged-in user is in [`super::me`].
//!
//! Every answer to a login is the same for an unknown email and a wrong password, and costs the
//! same argon2 work; failures are counted per account and per IP ([`crate::ratelimit`]).
//!
//! Size: the eight unauthenticated flows (register, verify, login with its two-factor step,
//! refresh, logout, reset) share the login and cookie helpers kept here; password reset and email
//! verification are the next split.

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    error::{ApiError, Problem},
    extract::{AuthUser, Client, Json},
    session_cookie::{self, CookieRefresh},
};
use crate::{
    audit::{self, Event},
    auth::{self, IssuedTokens, RefreshOutcome, mfa, token_hash},
    email::MailKind,
    ratelimit::RetryAfter,
    state::AppState,
    users::{
        self, CreateUserError, DisplayName, Email, InvalidInput, Locale, Password, Role, User,
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(verify_email))
        .routes(routes!(login))
        .routes(routes!(login_mfa))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(request_password_reset))
        .routes(routes!(confirm_password_reset))
}

/// 429 when a limiter said no.
pub(crate) fn limited(r: anyhow::Result<Result<(), RetryAfter>>) -> Result<(), ApiError> {
    match r? {
        Ok(()) => Ok(()),
        Err(RetryAfter(d)) => Err(ApiError::TooManyRequests(d)),
    }
}

/// A second factor as a request gives it: a TOTP code, else a recovery code, else none.
#[derive(Clone, Copy)]
pub(crate) enum SecondFactor<'a> {
    Totp(&'a str),
    RecoveryCode(&'a str),
    Missing,
}

impl<'a> SecondFactor<'a> {
    pub(crate) fn of(code: &'a Option<String>, recovery_code: &'a Option<String>) -> Self {
        match (code, recovery_code) {
            (Some(c), _) => SecondFactor::Totp(c),
            (None, Some(r)) => SecondFactor::RecoveryCode(r),
            (None, None) => SecondFactor::Missing,
        }
    }

    fn method(self) -> &'static str {
        match self {
            SecondFactor::Totp(_) => "totp",
            SecondFactor::RecoveryCode(_) => "recovery_code",
            SecondFactor::Missing => "none",
        }
    }
}

/// Check `factor` for `user_id` (whose TOTP secret is `secret`) on behalf of route `context`,
/// under the two-factor failure limits: 429 while the account or the IP is held back (before
/// the code is even looked at, so the right one fails too); a wrong code is counted, audited
/// (`auth.mfa_failed`) and, when it starts holding the account back, alerts its owner. A
/// missing code is not a guess and counts for nothing. Every route that checks a code goes
/// through here. Audit entries are written on `conn`: a caller in a transaction commits it on
/// failure too.
pub(crate) async fn check_second_factor(
    state: &AppState,
    conn: &mut sqlx::PgConnection,
    user_id: Uuid,
    secret: &str,
    factor: SecondFactor<'_>,
    client: &Client,
    context: &'static str,
) -> Result<bool, ApiError> {
    let account = user_id.to_string();
    limited(state.limiter.mfa_allowed(&account, client.ip()).await)?;
    let ok = match factor {
        SecondFactor::Totp(code) => mfa::accept_code(conn, user_id, secret, code).await?,
        SecondFactor::RecoveryCode(code) => mfa::use_recovery_code(conn, user_id, code).await?,
        SecondFactor::Missing => return Ok(false),
    };
    if ok {
        state.limiter.mfa_succeeded(&account).await?;
        return Ok(true);
    }
    let failure = state.limiter.mfa_failed(&account, client.ip()).await?;
    audit::record(
        conn,
        Event::by(user_id, "auth.mfa_failed")
            .ip(client.0.ip.as_deref())
            .detail(json!({"context": context, "method": factor.method(),
                           "failures_this_hour": failure.count})),
    )
    .await?;
    if failure.held_back {
        tracing::warn!(%user_id, failures = failure.count, "two-factor failures: account held back");
        security_alert(state, user_id, "two_factor_failures");
    }
    Ok(false)
}

#[derive(Deserialize, ToSchema)]
pub struct RegisterRequest {
    email: String,
    /// 8 to 128 characters; the most common passwords are refused.
    password: String,
    display_name: String,
    /// `en` (default) or `zh-CN`: the language of mail.
    locale: Option<String>,
}

/// What registration answers: the same whether or not the address already had an account.
#[derive(Serialize, ToSchema)]
pub struct RegistrationAccepted {
    /// The address as given (trimmed).
    email: String,
    /// Logins wait for the mailed link to be followed (`auth.require_verified_email`).
    verification_required: bool,
}

/// Register a student account. The answer is the same whether or not the address already has
/// an account, so that it tells nobody which addresses do: a new address gets its account and
/// a verification link; an address with an account gets a mail telling its owner (log in, or
/// reset the password) and nothing else changes.
#[utoipa::path(post, path = "/auth/register", tag = "auth", security(()), request_body = RegisterRequest,
    responses((status = 202, body = RegistrationAccepted, description = "a mail is on its way to the address"),
              (status = 422, body = Problem, description = "validation_failed"),
              (status = 429, body = Problem, description = "rate_limited")))]
async fn register(
    State(state): State<AppState>,
    client: Client,
    Json(req): Json<RegisterRequest>,
) -> Result<(StatusCode, Json<RegistrationAccepted>), ApiError> {
    let email = Email::parse(&req.email)?;
    let name = DisplayName::parse(&req.display_name)?;
    let password = Password::parse(req.password)?;
    let locale: Locale = req
        .locale
        .as_deref()
        .map(str::parse)
        .transpose()?
        .unwrap_or_default();
    limited(
        state
            .limiter
            .hit(
                "register-ip",
                client.ip(),
                state.limiter.limits().registrations_per_ip_hour,
            )
            .await,
    )?;
    // Hashed in both cases: the argon2 work would otherwise tell a taken address by its speed.
    let hash = auth::hash_password(password.expose().to_string()).await?;
    let mut tx = state.db.begin().await?;
    match users::create_user_with_locale(&mut tx, &email, &name, &hash, &[Role::Student], locale)
        .await
    {
        Ok(user) => {
            queue_verification(&state, &mut tx, &user).await?;
            audit::record(
                &mut tx,
                Event::by(user.id, "user.registered").ip(client.0.ip.as_deref()),
            )
            .await?;
            tx.commit().await?;
            tracing::info!(user_id = %user.id, "user registered");
        }
        Err(CreateUserError::EmailTaken) => {
            // The failed insert ended the transaction.
            tx.rollback().await?;
            tell_owner_of_registration(&state, &client, email.as_str()).await?;
        }
        Err(CreateUserError::Db(db)) => return Err(db.into()),
    }
    state.mailer.wake();
    Ok((
        StatusCode::ACCEPTED,
        Json(RegistrationAccepted {
            email: email.as_str().to_string(),
            verification_required: state.settings.auth.require_verified_email,
        }),
    ))
}

/// Someone registered an address that has an account: mail its owner (at most
/// `auth.limits.mails_per_address_hour`; past it nothing is sent, silently, since a 429 here
/// would tell the caller what the answer hides) and audit `user.registration_repeated`.
async fn tell_owner_of_registration(
    state: &AppState,
    client: &Client,
    email: &str,
) -> Result<(), ApiError> {
    let limits = state.limiter.limits();
    let mail = state
        .limiter
        .hit(
            "mail-addr",
            &email.to_lowercase(),
            limits.mails_per_address_hour,
        )
        .await?
        .is_ok();
    let mut tx = state.db.begin().await?;
    let Some(found) = users::find_by_email(&mut tx, email).await? else {
        return Ok(());
    };
    let owner = found.user;
    if mail {
        state
            .mailer
            .queue(
                &mut tx,
                &owner.email,
                MailKind::AccountExists,
                owner.locale,
                json!({"name": owner.display_name, "login_link": state.mailer.page("login"),
                       "reset_link": state.mailer.page("reset-password")}),
            )
            .await?;
    }
    audit::record(
        &mut tx,
        Event {
            action: "user.registration_repeated",
            actor_id: None,
            subject_user_id: Some(owner.id),
            ip: client.0.ip.as_deref(),
            detail: json!({"mailed": mail}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Store a one-time token for `user` and queue the mail carrying its link.
pub(crate) async fn queue_verification(
    state: &AppState,
    conn: &mut sqlx::PgConnection,
    user: &User,
) -> Result<(), ApiError> {
    let ttl = state.settings.auth.email_verification_ttl_s;
    let token = new_user_token(conn, user.id, "verify_email", ttl).await?;
    state
        .mailer
        .queue(
            conn,
            &user.email,
            MailKind::VerifyEmail,
            user.locale,
            json!({"name": user.display_name, "link": state.mailer.link("verify-email", &token),
                   "hours": ttl / 3600}),
        )
        .await?;
    Ok(())
}

async fn new_user_token(
    conn: &mut sqlx::PgConnection,
    user_id: Uuid,
    purpose: &str,
    ttl_s: u64,
) -> Result<String, sqlx::Error> {
    let token = auth::random_token("");
    sqlx::query!(
        r#"INSERT INTO user_tokens (token_hash, user_id, purpose, expires_at)
           VALUES ($1, $2, $3, now() + make_interval(secs => $4))"#,
        token_hash(&token),
        user_id,
        purpose,
        ttl_s as f64,
    )
    .execute(conn)
    .await?;
    Ok(token)
}

fn invalid_link() -> ApiError {
    ApiError::Validation(InvalidInput {
        field: "token",
        reason: "is invalid, used or expired",
    })
}

#[derive(Deserialize, ToSchema)]
pub struct TokenRequest {
    /// The `token` of the link in the mail.
    token: String,
}

/// Confirm an email address with the token of the mailed link (once).
#[utoipa::path(post, path = "/auth/verify-email", tag = "auth", security(()), request_body = TokenRequest,
    responses((status = 204), (status = 422, body = Problem, description = "the token is invalid, used or expired")))]
async fn verify_email(
    State(state): State<AppState>,
    Json(req): Json<TokenRequest>,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.db.begin().await?;
    let user_id = sqlx::query_scalar!(
        r#"UPDATE user_tokens SET used_at = now()
           WHERE token_hash = $1 AND purpose = 'verify_email' AND used_at IS NULL AND expires_at > now()
           RETURNING user_id"#,
        token_hash(req.token.trim()),
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(invalid_link)?;
    sqlx::query!(
        "UPDATE users SET email_verified_at = coalesce(email_verified_at, now()) WHERE id = $1",
        user_id
    )
    .execute(&mut *tx)
    .await?;
    audit::record(&mut tx, Event::by(user_id, "user.email_verified")).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    email: String,
    password: String,
    /// Browser mode: the refresh token is set as an `HttpOnly` cookie (with a CSRF cookie)
    /// instead of being returned; see docs/identity.md.
    #[serde(default)]
    cookie: bool,
}

#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    access_token: String,
    /// Absent in browser mode (`cookie: true`): it is in the `wm_refresh` cookie instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    /// Always `Bearer`.
    token_type: &'static str,
    /// Seconds until the access token expires.
    expires_in: u64,
}

impl From<IssuedTokens> for TokenResponse {
    fn from(t: IssuedTokens) -> Self {
        TokenResponse {
            access_token: t.access_token,
            refresh_token: Some(t.refresh_token),
            token_type: "Bearer",
            expires_in: t.expires_in,
        }
    }
}

impl TokenResponse {
    /// Browser mode: move the refresh token out of the body into the session cookies.
    pub(crate) fn into_cookies(mut self, state: &AppState, headers: &mut HeaderMap) -> Self {
        if let Some(rt) = self.refresh_token.take() {
            let csrf = auth::random_token("");
            let ttl = state.settings.auth.session_absolute_ttl_s;
            session_cookie::append(headers, session_cookie::set(&rt, &csrf, ttl));
        }
        self
    }
}

/// The password was right and the account has two-factor on: send a code to `/auth/login/mfa`.
#[derive(Serialize, ToSchema)]
pub struct MfaChallenge {
    /// Always true.
    mfa_required: bool,
    challenge_token: String,
    /// `["totp", "recovery_code"]`.
    methods: Vec<&'static str>,
    /// Seconds the challenge stays valid.
    expires_in: u64,
}

/// Tokens, or a two-factor challenge.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum LoginResponse {
    Tokens(TokenResponse),
    Mfa(MfaChallenge),
}

impl MfaChallenge {
    pub(crate) fn challenge_token(&self) -> &str {
        &self.challenge_token
    }
}

const MFA_PREFIX: &str = "wm:auth:mfa:";
const MFA_MAX_TRIES: u64 = 5;

/// Log in with email and password. Answers tokens, or a two-factor challenge.
#[utoipa::path(post, path = "/auth/login", tag = "auth", security(()), request_body = LoginRequest,
    responses((status = 200, body = LoginResponse),
              (status = 401, body = Problem, description = "invalid_credentials"),
              (status = 403, body = Problem, description = "totp_required: the account's role needs two-factor, which is off; email_unverified: auth.require_verified_email is on and the address is not confirmed yet"),
              (status = 429, body = Problem, description = "rate_limited, with Retry-After")))]
async fn login(
    State(state): State<AppState>,
    client: Client,
    Json(req): Json<LoginRequest>,
) -> Result<(HeaderMap, Json<LoginResponse>), ApiError> {
    // Bound the work an attacker can make argon2 do before any check.
    if req.password.len() > 4 * Password::MAX_CHARS || req.email.len() > 254 {
        return Err(ApiError::InvalidCredentials);
    }
    let account = req.email.trim().to_lowercase();
    limited(state.limiter.login_allowed(&account, client.ip()).await)?;
    let found = users::find_by_email(&mut *state.db.acquire().await?, &account).await?;
    // Unknown emails are verified against a dummy hash: same answer, similar time. No database
    // connection is held meanwhile: a burst of logins waiting for argon2 would take the whole
    // pool from every other request.
    let ok = auth::verify_password(
        req.password,
        found.as_ref().map(|u| u.password_hash.clone()),
    )
    .await;
    let mut conn = state.db.acquire().await?;
    let found = match found {
        Some(u) if ok && u.user.status == "active" => u,
        other => {
            state.limiter.login_failed(&account, client.ip()).await?;
            audit::record(
                &mut conn,
                Event {
                    action: "auth.login_failed",
                    actor_id: None,
                    subject_user_id: other.map(|u| u.user.id),
                    ip: client.0.ip.as_deref(),
                    detail: json!({"email": account}),
                },
            )
            .await?;
            return Err(ApiError::InvalidCredentials);
        }
    };
    state.limiter.login_succeeded(&account).await?;
    if state.settings.auth.require_verified_email && !found.user.email_verified {
        // Mail the link again (within the per-address limit): a lost mail is no dead end.
        let again = state
            .limiter
            .hit(
                "mail-addr",
                &account,
                state.limiter.limits().mails_per_address_hour,
            )
            .await?
            .is_ok();
        if again {
            let mut tx = state.db.begin().await?;
            queue_verification(&state, &mut tx, &found.user).await?;
            tx.commit().await?;
            state.mailer.wake();
        }
        return Err(ApiError::ForbiddenCode(
            "email_unverified",
            "confirm your address first with the link mailed to it; logging in mails a new one (a few an hour at most)".into(),
        ));
    }
    let mut headers = HeaderMap::new();
    let answer = match complete_login(&state, &mut conn, found, "password", &client).await? {
        LoginResponse::Tokens(t) if req.cookie => {
            LoginResponse::Tokens(t.into_cookies(&state, &mut headers))
        }
        other => other,
    };
    Ok((headers, Json(answer)))
}

/// After the first factor (a password, an OpenID provider): a two-factor challenge when the
/// account has two-factor, a refusal when its role requires two-factor and it is off, else a
/// session.
pub(crate) async fn complete_login(
    state: &AppState,
    conn: &mut sqlx::PgConnection,
    found: users::UserWithHash,
    method: &str,
    client: &Client,
) -> Result<LoginResponse, ApiError> {
    let user = found.user;
    if found.totp_secret.is_some() {
        let challenge = auth::random_token("");
        let ttl = state.settings.auth.mfa_challenge_ttl_s;
        let mut redis = state.redis.conn();
        let _: () = redis
            .set_ex(
                format!("{MFA_PREFIX}{}", hex::encode(token_hash(&challenge))),
                user.id.to_string(),
                ttl,
            )
            .await
            .map_err(anyhow::Error::from)?;
        return Ok(LoginResponse::Mfa(MfaChallenge {
            mfa_required: true,
            challenge_token: challenge,
            methods: vec!["totp", "recovery_code"],
            expires_in: ttl,
        }));
    }
    if user
        .roles
        .iter()
        .any(|r| state.settings.auth.require_totp_for.contains(r))
    {
        return Err(ApiError::ForbiddenCode(
            "totp_required",
            "this account's role requires two-factor authentication; ask an admin".into(),
        ));
    }
    let tokens = start_session(state, conn, user.id, method, client).await?;
    Ok(LoginResponse::Tokens(tokens.into()))
}

async fn start_session(
    state: &AppState,
    conn: &mut sqlx::PgConnection,
    user_id: Uuid,
    method: &str,
    client: &Client,
) -> Result<IssuedTokens, ApiError> {
    let tokens = state.sessions.start(user_id, method, &client.0).await?;
    audit::record(
        conn,
        Event::by(user_id, "auth.login")
            .ip(client.0.ip.as_deref())
            .detail(json!({"session_id": tokens.session_id, "method": method})),
    )
    .await?;
    tracing::info!(%user_id, method, "login");
    state.notifier.new_login(user_id, tokens.session_id);
    Ok(tokens)
}

#[derive(Deserialize, ToSchema)]
pub struct MfaLoginRequest {
    challenge_token: String,
    /// The 6-digit code of the authenticator app...
    code: Option<String>,
    /// ... or one of the recovery codes.
    recovery_code: Option<String>,
    /// Browser mode, as in `/auth/login`.
    #[serde(default)]
    cookie: bool,
}

/// Second login step: the challenge of `/auth/login` and a TOTP or recovery code.
#[utoipa::path(post, path = "/auth/login/mfa", tag = "auth", security(()), request_body = MfaLoginRequest,
    responses((status = 200, body = TokenResponse),
              (status = 401, body = Problem, description = "invalid_credentials: wrong code, or the challenge is unknown, used or expired"),
              (status = 429, body = Problem, description = "rate_limited: too many wrong codes for this account or from this address (across challenges), with Retry-After")))]
async fn login_mfa(
    State(state): State<AppState>,
    client: Client,
    Json(req): Json<MfaLoginRequest>,
) -> Result<(HeaderMap, Json<TokenResponse>), ApiError> {
    if req.challenge_token.len() > 64 {
        return Err(ApiError::InvalidCredentials);
    }
    let key = format!(
        "{MFA_PREFIX}{}",
        hex::encode(token_hash(&req.challenge_token))
    );
    let mut redis = state.redis.conn();
    let user_id: Option<String> = redis.get(&key).await.map_err(anyhow::Error::from)?;
    let user_id: Uuid = user_id
        .and_then(|s| s.parse().ok())
        .ok_or(ApiError::InvalidCredentials)?;
    let mut conn = state.db.acquire().await?;
    let found = users::find_with_hash(&mut conn, user_id)
        .await?
        .filter(|u| u.user.status == "active")
        .ok_or(ApiError::InvalidCredentials)?;
    let secret = found.totp_secret.ok_or(ApiError::InvalidCredentials)?;
    let factor = SecondFactor::of(&req.code, &req.recovery_code);
    let ok = check_second_factor(
        &state, &mut conn, user_id, &secret, factor, &client, "login",
    )
    .await?;
    if !ok {
        // A challenge allows a few tries, then it is gone and the password step starts again.
        let tries: u64 = redis
            .incr(format!("{key}:tries"), 1u64)
            .await
            .map_err(anyhow::Error::from)?;
        let _: () = redis
            .expire(
                format!("{key}:tries"),
                state.settings.auth.mfa_challenge_ttl_s as i64,
            )
            .await
            .map_err(anyhow::Error::from)?;
        if tries >= MFA_MAX_TRIES {
            let _: () = redis.del(&key).await.map_err(anyhow::Error::from)?;
        }
        return Err(ApiError::InvalidCredentials);
    }
    let method = match factor {
        SecondFactor::RecoveryCode(_) => "password+recovery_code",
        _ => "password+totp",
    };
    // Single use: only the request that deletes the challenge gets a session.
    let deleted: u64 = redis.del(&key).await.map_err(anyhow::Error::from)?;
    if deleted != 1 {
        return Err(ApiError::InvalidCredentials);
    }
    let tokens = start_session(&state, &mut conn, user_id, method, &client).await?;
    let mut headers = HeaderMap::new();
    let mut answer = TokenResponse::from(tokens);
    if req.cookie {
        answer = answer.into_cookies(&state, &mut headers);
    }
    Ok((headers, Json(answer)))
}

#[derive(Deserialize, ToSchema)]
pub struct RefreshRequest {
    /// The refresh token; leave it out in browser mode, where it comes from the `wm_refresh`
    /// cookie and the `X-CSRF-Token` header must repeat the `wm_csrf` cookie.
    refresh_token: Option<String>,
}

/// Exchange a refresh token for a new pair; the old one stops working. Presenting a used
/// refresh token again revokes its whole session. In browser mode the new refresh token is set
/// as a cookie again, and a refused refresh clears the cookies.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", security(()), request_body = RefreshRequest,
    responses((status = 200, body = TokenResponse), (status = 400, body = Problem, description = "no refresh token in the body nor a cookie"),
              (status = 401, body = Problem),
              (status = 403, body = Problem, description = "csrf_failed: a cookie refresh without the matching X-CSRF-Token header")))]
async fn refresh(
    State(state): State<AppState>,
    client: Client,
    request_headers: HeaderMap,
    Json(req): Json<RefreshRequest>,
) -> Result<Response, ApiError> {
    let mut headers = HeaderMap::new();
    let (token, cookie_mode) = match req.refresh_token.as_deref() {
        Some(t) => (t, false),
        None => match session_cookie::refresh_token(&request_headers) {
            CookieRefresh::Token(t) => (t, true),
            // Neither mode: a malformed request (not an anonymous caller of a private route).
            CookieRefresh::NoCookie => {
                return Err(ApiError::BadRequest(
                    "refresh_token is required (or, in browser mode, the wm_refresh cookie)".into(),
                ));
            }
            CookieRefresh::CsrfMismatch => {
                return Err(ApiError::ForbiddenCode(
                    "csrf_failed",
                    "a cookie refresh needs the X-CSRF-Token header matching the wm_csrf cookie"
                        .into(),
                ));
            }
        },
    };
    match refresh_tokens(&state, &client, token).await {
        Ok(tokens) if cookie_mode => {
            let answer = TokenResponse::from(tokens).into_cookies(&state, &mut headers);
            Ok((headers, Json(answer)).into_response())
        }
        Ok(tokens) => Ok(Json(TokenResponse::from(tokens)).into_response()),
        // A refused cookie is cleared, so the page stops trying it on every load.
        Err(e @ ApiError::Unauthorized(_)) if cookie_mode => {
            let mut resp = e.into_response();
            session_cookie::append(resp.headers_mut(), session_cookie::clear());
            Ok(resp)
        }
        Err(e) => Err(e),
    }
}

async fn refresh_tokens(
    state: &AppState,
    client: &Client,
    refresh_token: &str,
) -> Result<IssuedTokens, ApiError> {
    if refresh_token.len() > 256 {
        return Err(ApiError::Unauthorized("invalid refresh token".into()));
    }
    match state.sessions.refresh(refresh_token).await? {
        RefreshOutcome::Rotated(tokens) => Ok(tokens),
        RefreshOutcome::Refused => Err(ApiError::Unauthorized(
            "refresh token is unknown, used or expired".into(),
        )),
        RefreshOutcome::Reused {
            user_id,
            session_id,
        } => {
            tracing::warn!(%user_id, %session_id, "refresh token reused: session revoked");
            let mut conn = state.db.acquire().await?;
            audit::record(
                &mut conn,
                Event {
                    action: "auth.refresh_reuse",
                    actor_id: None,
                    subject_user_id: Some(user_id),
                    ip: client.0.ip.as_deref(),
                    detail: json!({"session_id": session_id}),
                },
            )
            .await?;
            Err(ApiError::Unauthorized(
                "refresh token is unknown, used or expired".into(),
            ))
        }
    }
}

/// End the caller's session: its access and refresh tokens stop working on every node. A body
/// (`{"refresh_token": ...}`) is accepted and ignored: the session ends with all its tokens.
#[utoipa::path(post, path = "/auth/logout", tag = "auth",
    security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem)))]
async fn logout(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<(StatusCode, HeaderMap), ApiError> {
    let sid = user.session()?;
    if state.sessions.revoke(user.id, sid, "logout").await? {
        let mut conn = state.db.acquire().await?;
        audit::record(
            &mut conn,
            Event::by(user.id, "session.revoked")
                .detail(json!({"session_id": sid, "reason": "logout"})),
        )
        .await?;
    }
    tracing::info!(user_id = %user.id, "logout");
    // Browser mode: the cookies go with the session.
    let mut headers = HeaderMap::new();
    session_cookie::append(&mut headers, session_cookie::clear());
    Ok((StatusCode::NO_CONTENT, headers))
}

#[derive(Deserialize, ToSchema)]
pub struct PasswordResetRequest {
    email: String,
}

/// Ask for a password reset link. Always 202, whether the address has an account or not.
#[utoipa::path(post, path = "/auth/password-reset", tag = "auth", security(()), request_body = PasswordResetRequest,
    responses((status = 202), (status = 429, body = Problem, description = "rate_limited")))]
async fn request_password_reset(
    State(state): State<AppState>,
    client: Client,
    Json(req): Json<PasswordResetRequest>,
) -> Result<StatusCode, ApiError> {
    let account = req.email.trim().to_lowercase();
    if account.len() > 254 {
        return Ok(StatusCode::ACCEPTED);
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
            .hit("mail-addr", &account, limits.mails_per_address_hour)
            .await,
    )?;
    let mut tx = state.db.begin().await?;
    if let Some(found) = users::find_by_email(&mut tx, &account).await?
        && found.user.status == "active"
    {
        let user = found.user;
        let ttl = state.settings.auth.password_reset_ttl_s;
        let token = new_user_token(&mut tx, user.id, "reset_password", ttl).await?;
        state
            .mailer
            .queue(
                &mut tx,
                &user.email,
                MailKind::PasswordReset,
                user.locale,
                json!({"name": user.display_name, "link": state.mailer.link("reset-password", &token),
                       "minutes": ttl / 60}),
            )
            .await?;
        audit::record(
            &mut tx,
            Event {
                action: "user.password_reset_requested",
                actor_id: None,
                subject_user_id: Some(user.id),
                ip: client.0.ip.as_deref(),
                detail: json!({}),
            },
        )
        .await?;
    }
    tx.commit().await?;
    state.mailer.wake();
    Ok(StatusCode::ACCEPTED)
}

#[derive(Deserialize, ToSchema)]
pub struct PasswordResetConfirm {
    token: String,
    new_password: String,
    /// Required when the account has two-factor on: a TOTP code...
    code: Option<String>,
    /// ... or a recovery code.
    recovery_code: Option<String>,
}

/// Set a new password with the token of the mailed link (once, within 30 minutes). Accounts with
/// two-factor also give a code. Every session of the account is revoked.
#[utoipa::path(post, path = "/auth/password-reset/confirm", tag = "auth", security(()), request_body = PasswordResetConfirm,
    responses((status = 204),
              (status = 403, body = Problem, description = "mfa_required: the account has two-factor; give a valid code"),
              (status = 422, body = Problem, description = "validation_failed: the token, or the new password"),
              (status = 429, body = Problem, description = "rate_limited: too many wrong two-factor codes, with Retry-After")))]
async fn confirm_password_reset(
    State(state): State<AppState>,
    client: Client,
    Json(req): Json<PasswordResetConfirm>,
) -> Result<StatusCode, ApiError> {
    let password = Password::parse(req.new_password)?;
    let token = token_hash(req.token.trim());
    // argon2 takes tens of milliseconds: not while a transaction holds the token's row lock
    // and a pooled connection. A link that is not valid now gets no hashing at all; the
    // transaction below checks it again under the lock (it may be used meanwhile).
    sqlx::query_scalar!(
        r#"SELECT user_id FROM user_tokens
           WHERE token_hash = $1 AND purpose = 'reset_password' AND used_at IS NULL AND expires_at > now()"#,
        token,
    )
    .fetch_optional(&state.db)
    .await?
    .ok_or_else(invalid_link)?;
    let hash = auth::hash_password(password.expose().to_string()).await?;
    let mut tx = state.db.begin().await?;
    let user_id = sqlx::query_scalar!(
        r#"SELECT user_id FROM user_tokens
           WHERE token_hash = $1 AND purpose = 'reset_password' AND used_at IS NULL AND expires_at > now()
           FOR UPDATE"#,
        token,
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(invalid_link)?;
    let found = users::find_with_hash(&mut tx, user_id)
        .await?
        .ok_or_else(invalid_link)?;
    if let Some(secret) = &found.totp_secret {
        let factor = SecondFactor::of(&req.code, &req.recovery_code);
        let ok = check_second_factor(
            &state,
            &mut tx,
            user_id,
            secret,
            factor,
            &client,
            "password_reset",
        )
        .await?;
        if !ok {
            // Commit what was consumed (a recovery code, a TOTP step) but not the link.
            tx.commit().await?;
            return Err(ApiError::ForbiddenCode(
                "mfa_required",
                "this account has two-factor on: give a valid code or recovery code".into(),
            ));
        }
    }
    sqlx::query!(
        "UPDATE user_tokens SET used_at = now() WHERE user_id = $1 AND purpose = 'reset_password' AND used_at IS NULL",
        user_id
    )
    .execute(&mut *tx)
    .await?;
    users::set_password(&mut tx, user_id, &hash).await?;
    // Following the link proves the mailbox too.
    sqlx::query!(
        "UPDATE users SET email_verified_at = coalesce(email_verified_at, now()) WHERE id = $1",
        user_id
    )
    .execute(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        Event::by(user_id, "user.password_reset").ip(client.0.ip.as_deref()),
    )
    .await?;
    tx.commit().await?;
    security_alert(&state, found.user.id, "password_reset");
    state.sessions.revoke_all(user_id, "password_reset").await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A security alert (password changed, two-factor on/off, new API token ...): a notice or a
/// mail per the user's choice (`notifications`), sent after the change committed and never
/// failing it. `what` is one of `notifications::Event::Security`'s.
pub(crate) fn security_alert(state: &AppState, user: Uuid, what: &'static str) {
    state.notifier.spawn(
        user,
        crate::notifications::Event::Security {
            what,
            occurrence: Uuid::now_v7(),
        },
    );
}
