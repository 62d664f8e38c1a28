//! `/api/v1/auth/oidc/*` and `/api/v1/me/oidc/*`: sign in with an OpenID Connect provider
//! (see [`crate::oidc`] for the protocol), and link a provider to the logged-in account.
//!
//! Which account a provider's user signs in to, in order:
//! 1. the account already linked to that issuer and subject;
//! 2. when the sign-in was started by a logged-in user (`POST /me/oidc/{provider}/link`): link it
//!    to them (409 `identity_linked` when it belongs to someone else);
//! 3. when the provider vouches for the email (`email_verified`) and `link_by_email` is on: the
//!    account with that email — only if that account verified its email too, so nobody can
//!    pre-register someone's address with a password and wait for them to sign in;
//! 4. otherwise a new student account with the verified email.
//!
//! A linked account with two-factor still gets the two-factor challenge.

use axum::{
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    auth::{LoginResponse, complete_login},
    error::{ApiError, Problem},
    extract::{AuthUser, Client, Json, Path, Query},
};
use crate::{
    audit::{self, Event},
    auth,
    oidc::{Identity, OidcError},
    state::AppState,
    users::{self, CreateUserError, DisplayName, Email, Locale, Role},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_providers))
        .routes(routes!(start_login))
        .routes(routes!(callback))
        .routes(routes!(start_link))
}

impl From<OidcError> for ApiError {
    fn from(e: OidcError) -> Self {
        match e {
            OidcError::UnknownProvider(_) => ApiError::NotFound("OpenID provider"),
            OidcError::Rejected(reason) => {
                tracing::info!(%reason, "OpenID sign-in rejected");
                ApiError::Unauthorized("the sign-in could not be verified".into())
            }
            OidcError::Unavailable(reason) => {
                tracing::warn!(%reason, "OpenID provider unavailable");
                ApiError::Unavailable("OpenID provider")
            }
            OidcError::Internal(e) => ApiError::Internal(e),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ProviderList {
    /// Provider names, for `/auth/oidc/{provider}/login`.
    items: Vec<String>,
}

/// The configured OpenID providers.
#[utoipa::path(get, path = "/auth/oidc", tag = "auth", security(()),
    responses((status = 200, body = ProviderList)))]
async fn list_providers(State(state): State<AppState>) -> Json<ProviderList> {
    Json(ProviderList {
        items: state.oidc.names(),
    })
}

/// Start signing in with a provider: a redirect (302) to its authorization endpoint.
#[utoipa::path(get, path = "/auth/oidc/{provider}/login", tag = "auth", security(()),
    params(("provider" = String, Path)),
    responses((status = 302, description = "to the provider; `Location` names it"),
              (status = 404, body = Problem), (status = 503, body = Problem)))]
async fn start_login(
    State(state): State<AppState>,
    Path(provider): Path<String>,
) -> Result<Response, ApiError> {
    let url = state.oidc.begin(&provider, None).await?;
    let location =
        HeaderValue::from_str(&url).map_err(|e| ApiError::Internal(anyhow::anyhow!("{e}")))?;
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
    )
        .into_response())
}

#[derive(Serialize, ToSchema)]
pub struct AuthorizationUrl {
    /// Send the browser here; the provider comes back to the callback.
    authorization_url: String,
}

/// Start linking a provider to the logged-in account.
#[utoipa::path(post, path = "/me/oidc/{provider}/link", tag = "me", security(("bearer" = [])),
    params(("provider" = String, Path)),
    responses((status = 200, body = AuthorizationUrl), (status = 401, body = Problem),
              (status = 404, body = Problem)))]
async fn start_link(
    State(state): State<AppState>,
    user: AuthUser,
    Path(provider): Path<String>,
) -> Result<Json<AuthorizationUrl>, ApiError> {
    user.session()?;
    Ok(Json(AuthorizationUrl {
        authorization_url: state.oidc.begin(&provider, Some(user.id)).await?,
    }))
}

#[derive(Deserialize, IntoParams)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    /// Set by the provider when the user refused or it failed.
    error: Option<String>,
}

/// What the callback of a link answers.
#[derive(Serialize, ToSchema)]
pub struct Linked {
    /// Always true.
    linked: bool,
    provider: String,
}

/// The answer of the callback: a login, or a link.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum CallbackResponse {
    Login(LoginResponse),
    Link(Linked),
}

/// Where the provider sends the browser back (`code`, `state`): answers tokens (or a two-factor
/// challenge), or the link made.
#[utoipa::path(get, path = "/auth/oidc/{provider}/callback", tag = "auth", security(()),
    params(("provider" = String, Path), CallbackQuery),
    responses((status = 200, body = CallbackResponse),
              (status = 401, body = Problem, description = "the state, code or ID token did not verify"),
              (status = 409, body = Problem, description = "account_exists (sign in with the password and link), identity_linked"),
              (status = 422, body = Problem, description = "email_not_verified")))]
async fn callback(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    Path(provider): Path<String>,
    Query(q): Query<CallbackQuery>,
) -> Result<Response, ApiError> {
    let answer = finish_callback(&state, &client, provider, q).await;
    // A browser navigation (the web app's provider buttons) comes back into the app: the
    // session as cookies (browser mode), a two-factor challenge or an error in the login page.
    let navigation = headers
        .get("sec-fetch-mode")
        .is_some_and(|v| v.as_bytes() == b"navigate");
    if !navigation {
        return answer.map(|a| Json(a).into_response());
    }
    let mut out = HeaderMap::new();
    let to = match answer {
        Ok(CallbackResponse::Login(LoginResponse::Tokens(t))) => {
            t.into_cookies(&state, &mut out);
            "/courses".to_string()
        }
        Ok(CallbackResponse::Login(LoginResponse::Mfa(m))) => {
            format!("/login?mfa={}", m.challenge_token())
        }
        Ok(CallbackResponse::Link(l)) => format!("/me?linked={}", l.provider),
        Err(e) => format!("/login?oidc_error={}", e.code()),
    };
    out.insert(
        header::LOCATION,
        HeaderValue::from_str(&to).map_err(anyhow::Error::from)?,
    );
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok((StatusCode::SEE_OTHER, out).into_response())
}

async fn finish_callback(
    state: &AppState,
    client: &Client,
    provider: String,
    q: CallbackQuery,
) -> Result<CallbackResponse, ApiError> {
    if let Some(error) = q.error {
        return Err(ApiError::Unauthorized(format!(
            "the provider refused the sign-in: {}",
            error.chars().take(100).collect::<String>()
        )));
    }
    let (Some(code), Some(st)) = (q.code, q.state) else {
        return Err(ApiError::BadRequest("code and state are required".into()));
    };
    let identity = state.oidc.finish(&provider, &code, &st).await?;
    let mut tx = state.db.begin().await?;
    let linked = sqlx::query_scalar!(
        "UPDATE user_identities SET last_login_at = now() WHERE issuer = $1 AND subject = $2 RETURNING user_id",
        identity.issuer,
        identity.subject
    )
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(link_to) = identity.link_to {
        match linked {
            Some(owner) if owner != link_to => {
                return Err(ApiError::Conflict(
                    "identity_linked",
                    "this provider account is linked to another account".into(),
                ));
            }
            Some(_) => {}
            None => link(&mut tx, &identity, link_to, Some(link_to)).await?,
        }
        tx.commit().await?;
        return Ok(CallbackResponse::Link(Linked {
            linked: true,
            provider,
        }));
    }
    let user_id = match linked {
        Some(id) => id,
        None => account_for(&state, &mut tx, &identity, &client).await?,
    };
    // Commit the account and link first: the session row refers to the user.
    tx.commit().await?;
    let mut conn = state.db.acquire().await?;
    let found = users::find_with_hash(&mut conn, user_id)
        .await?
        .filter(|u| u.user.status == "active")
        .ok_or(ApiError::InvalidCredentials)?;
    let method = format!("oidc:{provider}");
    let answer = complete_login(&state, &mut conn, found, &method, &client).await?;
    Ok(CallbackResponse::Login(answer))
}

async fn link(
    conn: &mut sqlx::PgConnection,
    identity: &Identity,
    user_id: Uuid,
    actor: Option<Uuid>,
) -> Result<(), ApiError> {
    sqlx::query!(
        r#"INSERT INTO user_identities (issuer, subject, user_id, provider, email, last_login_at)
           VALUES ($1, $2, $3, $4, $5, now())"#,
        identity.issuer,
        identity.subject,
        user_id,
        identity.provider,
        identity.email,
    )
    .execute(&mut *conn)
    .await?;
    audit::record(
        conn,
        Event {
            action: "user.identity_linked",
            actor_id: actor,
            subject_user_id: Some(user_id),
            ip: None,
            detail: json!({"provider": identity.provider, "issuer": identity.issuer,
                           "explicit": actor.is_some()}),
        },
    )
    .await?;
    Ok(())
}

/// Steps 3 and 4 of the module doc: an existing account by verified email, or a new one.
async fn account_for(
    state: &AppState,
    conn: &mut sqlx::PgConnection,
    identity: &Identity,
    client: &Client,
) -> Result<Uuid, ApiError> {
    let email = match (&identity.email, identity.email_verified) {
        (Some(e), true) => Email::parse(e)?,
        _ => {
            return Err(ApiError::Validation(users::InvalidInput {
                field: "email",
                reason: "the provider did not give a verified email address",
            }));
        }
    };
    if let Some(existing) = users::find_by_email(conn, email.as_str()).await? {
        if !(existing.user.email_verified && state.oidc.link_by_email(&identity.provider)) {
            return Err(ApiError::Conflict(
                "account_exists",
                "an account with this email exists: sign in with its password, then link the provider".into(),
            ));
        }
        link(conn, identity, existing.user.id, None).await?;
        return Ok(existing.user.id);
    }
    let name = identity
        .name
        .as_deref()
        .and_then(|n| DisplayName::parse(n).ok())
        .or_else(|| DisplayName::parse(email.as_str().split('@').next().unwrap_or("user")).ok())
        .ok_or(ApiError::Internal(anyhow::anyhow!("no display name")))?;
    // No password: the hash of a random one nobody knows (a reset mail can set a real one).
    let hash = auth::hash_password(hex::encode(auth::random_bytes(32))).await?;
    let user =
        users::create_user_with_locale(conn, &email, &name, &hash, &[Role::Student], Locale::En)
            .await
            .map_err(|e| match e {
                CreateUserError::EmailTaken => ApiError::Conflict("account_exists", e.to_string()),
                CreateUserError::Db(db) => db.into(),
            })?;
    sqlx::query!(
        "UPDATE users SET email_verified_at = now() WHERE id = $1",
        user.id
    )
    .execute(&mut *conn)
    .await?;
    audit::record(
        conn,
        Event::by(user.id, "user.registered")
            .ip(client.0.ip.as_deref())
            .detail(json!({"provider": identity.provider})),
    )
    .await?;
    link(conn, identity, user.id, None).await?;
    Ok(user.id)
}
