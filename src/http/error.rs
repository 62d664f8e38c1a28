//! The API's one error type, rendered as `application/problem+json` (RFC 9457):
//! `{type, title, status, detail, code}`. `code` is stable and machine-readable; `detail` is
//! for people. Internal causes are logged with their chain and never sent to clients.

use axum::{
    extract::rejection::{JsonRejection, PathRejection, QueryRejection},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

use crate::{storage::StorageError, users::InvalidInput};

/// Every error an API handler can answer with. Each variant names its status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `malformed_json`: the body is not JSON, or not the JSON this route takes.
    #[error("{0}")]
    MalformedJson(String),
    /// 400 `bad_request`: a path or query parameter could not be parsed.
    #[error("{0}")]
    BadRequest(String),
    /// 401 `unauthorized`, with `WWW-Authenticate: Bearer`.
    #[error("{0}")]
    Unauthorized(String),
    /// 401 `invalid_credentials`: the same answer for an unknown email and a wrong password.
    #[error("email or password is incorrect")]
    InvalidCredentials,
    /// 401 `unauthorized`: a bearer token was presented and refused (expired, malformed, wrong
    /// key, `alg: none`, revoked), with `WWW-Authenticate: Bearer error="invalid_token"`.
    #[error("{0}")]
    InvalidToken(#[from] crate::auth::TokenError),
    /// 403 `forbidden`.
    #[error("{0}")]
    Forbidden(String),
    /// 403 with a specific code, e.g. `mfa_required`, `totp_required`, `session_required`.
    #[error("{1}")]
    ForbiddenCode(&'static str, String),
    /// 429 `rate_limited`, with `Retry-After` in seconds.
    #[error("too many attempts; retry after {} s", .0.as_secs().max(1))]
    TooManyRequests(std::time::Duration),
    /// 404 `not_found`: the resource does not exist (or is not visible to the caller).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 404 `route_not_found`.
    #[error("no route for {0}")]
    RouteNotFound(String),
    /// 405 `method_not_allowed`.
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// 409 with a specific code, e.g. `email_taken`.
    #[error("{1}")]
    Conflict(&'static str, String),
    /// 413 `payload_too_large`.
    #[error("request body is larger than the limit")]
    PayloadTooLarge,
    /// 408 `request_timeout`: the request body stalled past `http.body_read_timeout_s`.
    #[error("the request body stalled: no data within the body read timeout")]
    RequestTimeout,
    /// 415 `unsupported_media_type`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 416 `range_not_satisfiable`, with `Content-Range: bytes */size`.
    #[error("range not satisfiable")]
    RangeNotSatisfiable { size: u64 },
    /// 422 `validation_failed`, naming the field.
    #[error("{0}")]
    Validation(#[from] InvalidInput),
    /// 422 with a specific code, e.g. `insufficient_funds`, `idempotency_key_reused`,
    /// `refund_exceeds_paid`.
    #[error("{1}")]
    Unprocessable(&'static str, String),
    /// 400 with a specific code, e.g. `invalid_callback` (a provider callback that does not
    /// verify).
    #[error("{1}")]
    BadRequestCode(&'static str, String),
    /// 503 `unavailable`: a dependency (database, Redis, storage) is down.
    #[error("{0} is unavailable")]
    Unavailable(&'static str),
    /// 500 `internal`; the cause is logged, the client sees a generic detail.
    #[error(transparent)]
    Internal(anyhow::Error),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson(_) | ApiError::BadRequest(_) | ApiError::BadRequestCode(..) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Unprocessable(..) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized(_) | ApiError::InvalidCredentials => StatusCode::UNAUTHORIZED,
            ApiError::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::ForbiddenCode(..) => StatusCode::FORBIDDEN,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotFound(_) | ApiError::RouteNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(..) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::BadRequestCode(code, _) | ApiError::Unprocessable(code, _) => code,
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::InvalidCredentials => "invalid_credentials",
            ApiError::InvalidToken(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::ForbiddenCode(code, _) => code,
            ApiError::TooManyRequests(_) => "rate_limited",
            ApiError::NotFound(_) => "not_found",
            ApiError::RouteNotFound(_) => "route_not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Conflict(code, _) => code,
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::RequestTimeout => "request_timeout",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::RangeNotSatisfiable { .. } => "range_not_satisfiable",
            ApiError::Validation(_) => "validation_failed",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

/// The problem+json body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the problem kind: `urn:wemaster:problem:<code>`.
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable code.
    pub code: String,
    /// For `validation_failed`: the field at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Render any status/code/detail as problem+json (used by fallbacks outside handlers too).
pub fn problem_response(
    status: StatusCode,
    code: &str,
    detail: String,
    field: Option<String>,
) -> Response {
    let body = Problem {
        type_: format!("urn:wemaster:problem:{code}"),
        title: status.canonical_reason().unwrap_or("Error").to_string(),
        status: status.as_u16(),
        detail,
        code: code.to_string(),
        field,
    };
    let json = serde_json::to_vec(&body).unwrap_or_default();
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        )],
        json,
    )
        .into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let detail = match &self {
            ApiError::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "internal error");
                "an internal error occurred; the request id identifies it in the logs".to_string()
            }
            other => other.to_string(),
        };
        let field = match &self {
            ApiError::Validation(v) => Some(v.field.to_string()),
            _ => None,
        };
        let mut resp = problem_response(status, self.code(), detail, field);
        match self {
            ApiError::InvalidToken(e) => {
                if let Ok(v) = HeaderValue::from_str(&e.www_authenticate()) {
                    resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                }
            }
            ApiError::TooManyRequests(d) => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(d.as_secs().max(1)));
            }
            ApiError::Unauthorized(_) | ApiError::InvalidCredentials => {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"wemaster\""),
                );
            }
            ApiError::RangeNotSatisfiable { size } => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    resp.headers_mut().insert(header::CONTENT_RANGE, v);
                }
            }
            _ => {}
        }
        resp
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::MissingJsonContentType(_) => {
                ApiError::UnsupportedMediaType("expected Content-Type: application/json".into())
            }
            r if r.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            r => ApiError::MalformedJson(r.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::BadRequest(r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::BadRequest(r.body_text())
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound(_) => ApiError::NotFound("object"),
            StorageError::InvalidRange { size } => ApiError::RangeNotSatisfiable { size },
            StorageError::InvalidKey(k) => ApiError::BadRequest(k.to_string()),
            other => {
                tracing::error!(error = %other, "storage error");
                ApiError::Unavailable("storage")
            }
        }
    }
}

/// An error from deeper code is a bug (500) — unless the database or Redis could not be reached
/// on its way, which is an outage (503, like the same error met directly in a handler).
impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        for cause in e.chain() {
            if cause
                .downcast_ref::<sqlx::Error>()
                .is_some_and(database_unreachable)
            {
                tracing::error!(error = format!("{e:#}"), "database unavailable");
                return ApiError::Unavailable("database");
            }
            if let Some(r) = cause.downcast_ref::<redis::RedisError>()
                && (r.is_io_error() || r.is_timeout() || r.is_connection_dropped())
            {
                tracing::error!(error = format!("{e:#}"), "Redis unavailable");
                return ApiError::Unavailable("redis");
            }
        }
        ApiError::Internal(e)
    }
}

/// The database could not be reached (an outage, 503), as opposed to a query that failed.
fn database_unreachable(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed
    )
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            e if database_unreachable(&e) => {
                tracing::error!(error = %e, "database unavailable");
                ApiError::Unavailable("database")
            }
            e => ApiError::Internal(e.into()),
        }
    }
}

#[cfg(test)]
mod outage_tests {
    use super::*;

    #[test]
    fn an_outage_deep_in_the_code_is_a_503_and_a_bug_a_500() {
        let deep = anyhow::Error::from(sqlx::Error::PoolTimedOut).context("starting a session");
        assert_eq!(
            ApiError::from(deep).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let bug = anyhow::Error::from(sqlx::Error::RowNotFound).context("starting a session");
        assert_eq!(
            ApiError::from(bug).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
