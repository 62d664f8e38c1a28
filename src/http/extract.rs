//! Extractors whose rejections are problem+json, and the one way to authenticate and authorize:
//! [`AuthUser`] (any authenticated caller) and [`Authorized<P>`] (a caller holding one of the
//! roles of policy `P`). Ownership is [`AuthUser::owns`]: the owner, or an admin.
//!
//! Authorization extractors come first in a handler's arguments, so an unauthorized caller is
//! refused (401/403) before its path or body is even parsed. Every route declares its policy in
//! its OpenAPI `security` (`("bearer" = ["teacher", "admin"])`), and a test walks every route
//! of the document to check the two agree.

use std::marker::PhantomData;

use axum::{
    body::Bytes,
    extract::{ConnectInfo, FromRequest, FromRequestParts, Request},
    http::{HeaderMap, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use uuid::Uuid;

use super::error::ApiError;
use crate::{auth::sessions::ClientInfo, domain::json_has_nul, state::AppState, users::Role};

/// A JSON body with problem+json rejections: 415 without a JSON `Content-Type` or in another
/// charset than UTF-8, 413 past the route's body limit, 408 when it stalls, 400 `bad_request`
/// when a string holds a NUL character (see [`json_has_nul`]), 400 `malformed_json` when it is
/// not JSON or not the JSON of `T`.
pub struct Json<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match json_content_type(req.headers()) {
            JsonContentType::Utf8 => {}
            JsonContentType::NotJson => {
                return Err(ApiError::UnsupportedMediaType(
                    "expected Content-Type: application/json".into(),
                ));
            }
            JsonContentType::OtherCharset => {
                return Err(ApiError::UnsupportedMediaType(
                    "JSON must be UTF-8 (RFC 8259): drop the charset parameter or make it utf-8"
                        .into(),
                ));
            }
        }
        let RawBody(body) = RawBody::from_request(req, state).await?;
        if json_has_nul(&body) {
            return Err(nul_refused("a string of the JSON body"));
        }
        let axum::Json(value) = axum::Json::<T>::from_bytes(&body)?;
        Ok(Json(value))
    }
}

/// The body as bytes, with problem+json rejections: 413 past the route's body limit, 408 when
/// it stalls, 400 when the connection fails mid-body (axum's `Bytes` answers these in plain
/// text).
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(|r| {
                if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else if caused_by::<tower_http::timeout::TimeoutError>(&r) {
                    ApiError::RequestTimeout
                } else {
                    ApiError::BadRequest(r.body_text())
                }
            })
    }
}

/// What a request's `Content-Type` says of a JSON body.
#[derive(Debug, PartialEq, Eq)]
enum JsonContentType {
    /// `application/json` or `application/*+json` (as `axum::Json` accepts), without a charset
    /// or with `charset=utf-8`.
    Utf8,
    /// A JSON type in another charset: the bytes would be read as UTF-8 and mean something
    /// else than the client meant (a UTF-16 body is not even valid UTF-8), so it is refused.
    OtherCharset,
    NotJson,
}

fn json_content_type(headers: &HeaderMap) -> JsonContentType {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return JsonContentType::NotJson;
    };
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or("").trim();
    let Some((kind, sub)) = essence.split_once('/') else {
        return JsonContentType::NotJson;
    };
    let json = kind.eq_ignore_ascii_case("application")
        && (sub.eq_ignore_ascii_case("json")
            || sub.len() > 5 && sub.to_ascii_lowercase().ends_with("+json"));
    if !json {
        return JsonContentType::NotJson;
    }
    for param in parts {
        let Some((name, v)) = param.split_once('=') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("charset") {
            let v = v.trim().trim_matches('"');
            if !(v.eq_ignore_ascii_case("utf-8") || v.eq_ignore_ascii_case("utf8")) {
                return JsonContentType::OtherCharset;
            }
        }
    }
    JsonContentType::Utf8
}

/// Is `E` somewhere in the chain of `err`'s causes?
fn caused_by<E: std::error::Error + 'static>(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if e.is::<E>() {
            return true;
        }
        cause = e.source();
    }
    false
}

fn nul_refused(where_: &str) -> ApiError {
    ApiError::BadRequest(format!(
        "{where_} contains a NUL character (U+0000), which no text may hold"
    ))
}

/// The 400 `bad_request` for a request whose path or query holds a NUL character
/// (`%00`), before any route parses it — every path and query parameter of every route, the
/// ones read with `RawQuery` included. A raw NUL cannot reach here (the HTTP parser refuses it)
/// and one round of percent-decoding is all axum does, so `%00` is exactly the NULs a handler
/// would see (`%2500` is the text `%00`, not a NUL).
pub fn nul_in_uri(req: &Request) -> Option<ApiError> {
    let uri = req.uri();
    if uri.path().contains("%00") {
        return Some(nul_refused("the path"));
    }
    if uri.query().is_some_and(|q| q.contains("%00")) {
        return Some(nul_refused("the query"));
    }
    None
}

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Path` with problem+json rejections.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// `axum::extract::Query` with problem+json rejections.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// How the caller authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// An access token of a login session.
    Session(Uuid),
    /// An API token (automation); it acts with its scopes only, and cannot manage the account.
    ApiToken(Uuid),
}

/// The caller, authenticated by a bearer access token (checked for key, algorithm, signature,
/// issuer, audience, expiry, not-before, and that its session exists and is live) or an API
/// token. Roles are read from the
/// database at each request, so a role removed or an account disabled takes effect at once.
/// Rejects with 401 and `WWW-Authenticate`.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub id: Uuid,
    pub credential: Credential,
    pub roles: Vec<Role>,
}

impl AuthUser {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// 403 unless the caller holds one of `roles`.
    pub fn require_any(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.iter().any(|r| self.has_role(*r)) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "requires the role {}",
                roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(" or ")
            )))
        }
    }

    /// May the caller act on something owned by `owner`? The owner may, and so may an admin.
    pub fn owns(&self, owner: Uuid) -> bool {
        self.id == owner || self.has_role(Role::Admin)
    }

    /// The login session, for routes that manage the account (403 `session_required` for API
    /// tokens: automation must not change passwords or mint more tokens).
    pub fn session(&self) -> Result<Uuid, ApiError> {
        match self.credential {
            Credential::Session(sid) => Ok(sid),
            Credential::ApiToken(_) => Err(ApiError::ForbiddenCode(
                "session_required",
                "this route needs a login session, not an API token".into(),
            )),
        }
    }
}

/// The bearer token of a request, if any.
pub fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(user) = parts.extensions.get::<AuthUser>() {
            return Ok(user.clone());
        }
        let token = bearer_token(parts)
            .ok_or_else(|| ApiError::Unauthorized("missing bearer access token".into()))?;
        let user = if let Some(api) = token.strip_prefix(crate::api_tokens::API_TOKEN_PREFIX) {
            let found = crate::api_tokens::authenticate(&state.db, api)
                .await?
                .ok_or_else(|| {
                    ApiError::InvalidToken(crate::auth::TokenError::Invalid(
                        "unknown, expired or revoked API token".into(),
                    ))
                })?;
            AuthUser {
                id: found.user_id,
                credential: Credential::ApiToken(found.token_id),
                roles: found.roles,
            }
        } else {
            let claims = state.tokens.verify(token).await?;
            let mut conn = state.db.acquire().await?;
            let standing = crate::users::standing(&mut conn, claims.sub, claims.sid)
                .await?
                .filter(|s| s.active && s.session_live)
                .ok_or(ApiError::InvalidToken(crate::auth::TokenError::Revoked))?;
            AuthUser {
                id: claims.sub,
                credential: Credential::Session(claims.sid),
                roles: standing.roles,
            }
        };
        parts.extensions.insert(user.clone());
        Ok(user)
    }
}

/// A set of roles a route requires (any one of them).
pub trait Policy {
    const ROLES: &'static [Role];
}

/// Admins only.
pub struct AdminOnly;
impl Policy for AdminOnly {
    const ROLES: &'static [Role] = &[Role::Admin];
}

/// Teachers and admins.
pub struct TeacherOrAdmin;
impl Policy for TeacherOrAdmin {
    const ROLES: &'static [Role] = &[Role::Teacher, Role::Admin];
}

/// An authenticated caller holding one of `P::ROLES` (401, then 403).
pub struct Authorized<P>(pub AuthUser, pub PhantomData<P>);

impl<P: Policy + Send + Sync> FromRequestParts<AppState> for Authorized<P> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let user = AuthUser::from_request_parts(parts, state).await?;
        user.require_any(P::ROLES)?;
        Ok(Authorized(user, PhantomData))
    }
}

/// Where the request came from: the client's address (the TCP peer, or what trusted proxies
/// say, see [`client_ip`]) and the `User-Agent`.
#[derive(Debug, Clone)]
pub struct Client(pub ClientInfo);

impl Client {
    pub fn ip(&self) -> &str {
        self.0.ip.as_deref().unwrap_or("unknown")
    }
}

/// The client's address behind `trusted` reverse proxies: when the peer is one of them, the
/// `X-Forwarded-For` hops are read from the right (each proxy appends the address it got the
/// request from) and the first one that is not a trusted proxy is the client. Everything left
/// of it was written by the client and is not believed. A malformed hop stops the walk at the
/// last trusted address; a request from an untrusted peer is that peer, whatever it claims.
pub fn client_ip(
    peer: std::net::IpAddr,
    forwarded_for: &[&str],
    trusted: &[ipnet::IpNet],
) -> std::net::IpAddr {
    let is_trusted = |ip: &std::net::IpAddr| trusted.iter().any(|n| n.contains(ip));
    let mut client = peer.to_canonical();
    if !is_trusted(&client) {
        return client;
    }
    let hops = forwarded_for
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in hops.into_iter().rev() {
        let Ok(ip) = hop.parse::<std::net::IpAddr>() else {
            break;
        };
        client = ip.to_canonical();
        if !is_trusted(&client) {
            break;
        }
    }
    client
}

impl FromRequestParts<AppState> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let trusted = &state.settings.http.trusted_proxies;
        let ip = parts
            .extensions
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map(|c| {
                let forwarded: Vec<&str> = if trusted.is_empty() {
                    Vec::new()
                } else {
                    parts
                        .headers
                        .get_all("x-forwarded-for")
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .collect()
                };
                client_ip(c.0.ip(), &forwarded, trusted).to_string()
            });
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(300).collect());
        Ok(Client(ClientInfo { ip, user_agent }))
    }
}

#[cfg(test)]
mod client_ip_tests {
    use super::client_ip;

    fn nets(v: &[&str]) -> Vec<ipnet::IpNet> {
        v.iter()
            .map(|s| {
                s.parse()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let peer = "10.0.0.5".parse().unwrap();
        let ip = |xff: &[&str], trusted: &[&str]| client_ip(peer, xff, &nets(trusted)).to_string();
        // No trusted proxies: the peer, whatever the header says.
        assert_eq!(ip(&["203.0.113.7"], &[]), "10.0.0.5");
        assert_eq!(ip(&["203.0.113.7"], &["192.168.0.0/16"]), "10.0.0.5");
        // Behind one trusted proxy.
        assert_eq!(ip(&["203.0.113.7"], &["10.0.0.0/8"]), "203.0.113.7");
        // A client forging a hop: the right-most untrusted one counts.
        assert_eq!(
            ip(&["1.2.3.4, 203.0.113.7"], &["10.0.0.0/8"]),
            "203.0.113.7"
        );
        // Two proxies (two headers or one list), both trusted.
        assert_eq!(
            ip(&["203.0.113.7", "10.0.0.9"], &["10.0.0.0/8"]),
            "203.0.113.7"
        );
        assert_eq!(
            ip(&["198.51.100.1, 203.0.113.7, 10.0.0.9"], &["10.0.0.0/8"]),
            "203.0.113.7"
        );
        // Garbage stops the walk at the last trusted address.
        assert_eq!(ip(&["203.0.113.7, bogus"], &["10.0.0.0/8"]), "10.0.0.5");
        // No header from a trusted proxy: the proxy itself.
        assert_eq!(ip(&[], &["10.0.0.0/8"]), "10.0.0.5");
        // IPv4-mapped IPv6 peers are their IPv4 address.
        let mapped = "::ffff:10.0.0.5".parse().unwrap();
        assert_eq!(
            client_ip(mapped, &["2001:db8::1"], &nets(&["10.0.0.5"])).to_string(),
            "2001:db8::1"
        );
    }
}

#[cfg(test)]
mod content_type_tests {
    use axum::http::{HeaderMap, HeaderValue, header};

    use super::{JsonContentType, json_content_type};

    #[test]
    fn json_content_types() {
        use JsonContentType::*;
        let ct = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(v));
            json_content_type(&h)
        };
        assert_eq!(ct("application/json"), Utf8);
        assert_eq!(ct("Application/JSON; charset=utf-8"), Utf8);
        assert_eq!(ct("application/json; charset=\"UTF-8\""), Utf8);
        assert_eq!(ct("application/merge-patch+json"), Utf8);
        assert_eq!(ct("application/json; charset=utf-16"), OtherCharset);
        assert_eq!(ct("application/json;CHARSET=latin1"), OtherCharset);
        assert_eq!(ct("text/json"), NotJson);
        assert_eq!(ct("application/jsonx"), NotJson);
        assert_eq!(ct("application/+json"), NotJson);
        assert_eq!(json_content_type(&HeaderMap::new()), NotJson);
    }
}
