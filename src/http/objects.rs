//! `/objects/{key}`: the local storage backend's presigned URLs, served by this process.
//!
//! With `storage.backend = "s3"` presigned URLs point at the S3 service itself and this route
//! answers 404. Access is the URL's signature alone (method, key and expiry are signed), the
//! same contract as an S3 presigned URL.

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use futures::TryStreamExt;
use serde::Deserialize;
use time::OffsetDateTime;
use tokio_util::io::StreamReader;

use super::{
    error::ApiError,
    extract::{Path, Query},
    range::parse_range,
};
use crate::{
    state::AppState,
    storage::{ObjectKey, PresignMethod, PutOptions, Storage, StorageError},
};

pub fn router(upload_limit: u64) -> Router<AppState> {
    Router::new().route(
        "/objects/{*key}",
        get(download)
            .head(download)
            .put(upload)
            .layer(tower_http::limit::RequestBodyLimitLayer::new(
                usize::try_from(upload_limit).unwrap_or(usize::MAX),
            ))
            .layer(axum::middleware::map_response(limit_as_problem)),
    )
}

/// tower-http's body limit answers 413 in plain text (at once, from `Content-Length`): give
/// it the problem+json body every other refusal has.
async fn limit_as_problem(res: axum::response::Response) -> axum::response::Response {
    use axum::response::IntoResponse;
    let problem = res
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/problem+json"));
    if res.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE && !problem {
        return ApiError::PayloadTooLarge.into_response();
    }
    res
}

#[derive(Deserialize)]
struct Signed {
    method: String,
    expires: i64,
    signature: String,
}

fn authorize(
    state: &AppState,
    method: PresignMethod,
    key: &str,
    q: &Signed,
) -> Result<ObjectKey, ApiError> {
    let Storage::Local(local) = &state.storage else {
        return Err(ApiError::RouteNotFound(
            "/objects (storage backend is not local)".into(),
        ));
    };
    let key = ObjectKey::parse(key).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let wanted = match method {
        PresignMethod::Get => "GET",
        PresignMethod::Put => "PUT",
    };
    if q.method != wanted
        || !local.verify_presigned(
            method,
            &key,
            q.expires,
            &q.signature,
            OffsetDateTime::now_utc(),
        )
    {
        return Err(ApiError::Forbidden(
            "the URL signature is invalid or has expired".into(),
        ));
    }
    Ok(key)
}

async fn download(
    State(state): State<AppState>,
    Path(key): Path<String>,
    Query(q): Query<Signed>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let key = authorize(&state, PresignMethod::Get, &key, &q)?;
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let range =
        parse_range(range).map_err(|()| ApiError::BadRequest("malformed Range header".into()))?;
    let object = state.storage.get(&key, range).await?;
    object_response(object, None)
}

/// A stored object as an HTTP answer: 200, or 206 with `Content-Range` for a range;
/// `Accept-Ranges`, `ETag`, the stored content type, and `cache_control` when given.
pub fn object_response(
    object: crate::storage::GetObject,
    cache_control: Option<&'static str>,
) -> Result<Response, ApiError> {
    let mut resp_headers = HeaderMap::new();
    let content_type = object
        .meta
        .content_type
        .clone()
        .unwrap_or_else(|| "application/octet-stream".into());
    resp_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    resp_headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(cc) = cache_control {
        resp_headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cc));
    }
    if let Some(etag) = object
        .meta
        .etag
        .as_deref()
        .and_then(|e| HeaderValue::from_str(e).ok())
    {
        resp_headers.insert(header::ETAG, etag);
    }
    let size = object.meta.size;
    let (status, length) = match object.range {
        Some((start, end)) => {
            let v = format!("bytes {start}-{end}/{size}");
            resp_headers.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&v).map_err(anyhow::Error::from)?,
            );
            (StatusCode::PARTIAL_CONTENT, end - start + 1)
        }
        None => (StatusCode::OK, size),
    };
    resp_headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    let body = Body::from_stream(object.body);
    Ok((status, resp_headers, body).into_response())
}

async fn upload(
    State(state): State<AppState>,
    Path(key): Path<String>,
    Query(q): Query<Signed>,
    request: Request,
) -> Result<StatusCode, ApiError> {
    let key = authorize(&state, PresignMethod::Put, &key, &q)?;
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let stream = request
        .into_body()
        .into_data_stream()
        .map_err(|e| std::io::Error::other(e));
    let reader = StreamReader::new(stream);
    let opts = PutOptions {
        content_type,
        cache_control: None,
    };
    match state
        .storage
        .put_stream(&key, Box::pin(reader), &opts)
        .await
    {
        Ok(_) => Ok(StatusCode::OK),
        Err(StorageError::Io(e)) if is_length_limit(&e) => Err(ApiError::PayloadTooLarge),
        Err(e) => Err(e.into()),
    }
}

/// Did the body stop because it went past the upload limit?
fn is_length_limit(e: &std::io::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> =
        e.get_ref().map(|inner| inner as _);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}
