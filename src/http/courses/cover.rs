//! `/courses/{id}/cover`: the course's cover image (upload, removal, and serving it).

use axum::{extract::State, http::StatusCode};
use uuid::Uuid;

use super::{
    COURSE_NOT_FOUND, MaybeUser,
    catalogue::{CourseResponse, present},
    delete_object, standing,
};
use crate::{
    courses::{
        CourseVisibility,
        store::{self, Course},
    },
    http::{
        error::{ApiError, Problem},
        extract::{AuthUser, Json, Path},
    },
    state::AppState,
    storage::{ObjectKey, PresignMethod, PutOptions},
    users::Role,
};

/// How long the presigned cover URL of a draft stays valid.
pub(super) const DRAFT_COVER_URL_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// The version of a cover in its public URL: the random part of its key, so that a new cover
/// gets a new URL (caches keep the old one for the old URL only).
pub(super) fn cover_version(key: &str) -> &str {
    let name = key.rsplit('/').next().unwrap_or(key);
    let stem = name.split('.').next().unwrap_or(name);
    stem.strip_prefix("cover-").unwrap_or(stem)
}

pub(super) async fn cover_url(state: &AppState, c: &Course) -> Option<String> {
    let key = c.cover_key.as_deref()?;
    if c.visibility == CourseVisibility::Draft {
        let key = ObjectKey::parse(key).ok()?;
        return state
            .storage
            .presign(PresignMethod::Get, &key, DRAFT_COVER_URL_TTL)
            .await
            .map_err(|e| tracing::warn!(error = %e, course_id = %c.id, "cover not presigned"))
            .ok()
            .map(|u| u.to_string());
    }
    let base = crate::http::origin::public_base(&state.settings.http);
    Some(format!(
        "{base}/api/v1/courses/{}/cover?v={}",
        c.id,
        cover_version(key)
    ))
}

/// Upload the course's cover image: the image itself as the body, PNG, JPEG or WebP (judged by
/// its bytes, not its `Content-Type`), at most `courses.cover_max_bytes` (5 MiB by default).
/// Replaces the previous cover, whose object is deleted. The owner, co-teachers and admins.
#[utoipa::path(put, path = "/courses/{id}/cover", tag = "courses",
    request_body(content = Vec<u8>, content_type = "image/jpeg"),
    security(("bearer" = ["teacher", "admin"])),
    responses((status = 200, body = CourseResponse), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 413, body = Problem),
              (status = 415, body = Problem, description = "not a PNG, JPEG or WebP image")))]
pub(super) async fn put_cover(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<Json<CourseResponse>, ApiError> {
    user.require_any(&[Role::Teacher, Role::Admin])?;
    let mut conn = state.db.acquire().await?;
    let s = standing(&mut conn, id, Some(&user), false).await?;
    if !s.can_edit(Some(&user)) {
        return Err(ApiError::Forbidden(
            "only the course's teachers and admins change its cover".into(),
        ));
    }
    drop(conn);
    let body =
        crate::http::upload::read_capped(&headers, body, state.settings.courses.cover_max_bytes)
            .await?;
    let Some((content_type, ext)) = crate::http::upload::sniff_image(&body) else {
        return Err(ApiError::UnsupportedMediaType(
            "a cover is a PNG, JPEG or WebP image".into(),
        ));
    };
    let key = ObjectKey::parse(format!(
        "courses/{id}/cover-{}.{ext}",
        hex::encode(crate::auth::random_bytes(8))
    ))
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("cover key: {e}")))?;
    state
        .storage
        .put_bytes(
            &key,
            body,
            &PutOptions {
                content_type: Some(content_type.into()),
                cache_control: Some("public, max-age=86400".into()),
            },
        )
        .await?;
    let mut conn = state.db.acquire().await?;
    let Some(old) = store::set_cover(&mut conn, id, Some(key.as_str())).await? else {
        // Deleted meanwhile: take the new object back out.
        drop(conn);
        delete_object(&state, key.as_str()).await;
        return Err(COURSE_NOT_FOUND);
    };
    let course = store::get_course(&mut conn, id)
        .await?
        .ok_or(COURSE_NOT_FOUND)?;
    drop(conn);
    if let Some(old) = old {
        delete_object(&state, &old).await;
    }
    Ok(Json(present(&state, course).await))
}

/// Remove the course's cover (its object is deleted). 204, also when there was none.
#[utoipa::path(delete, path = "/courses/{id}/cover", tag = "courses",
    security(("bearer" = ["teacher", "admin"])),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem)))]
pub(super) async fn delete_cover(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    user.require_any(&[Role::Teacher, Role::Admin])?;
    let mut conn = state.db.acquire().await?;
    let s = standing(&mut conn, id, Some(&user), false).await?;
    if !s.can_edit(Some(&user)) {
        return Err(ApiError::Forbidden(
            "only the course's teachers and admins change its cover".into(),
        ));
    }
    let old = store::set_cover(&mut conn, id, None)
        .await?
        .ok_or(COURSE_NOT_FOUND)?;
    drop(conn);
    if let Some(old) = old {
        delete_object(&state, &old).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The course's cover image, to whoever may see the course: everyone for published and
/// archived courses (cacheable by shared caches for a day; the URL in `cover_url` changes with
/// each new cover), the course's teachers and admins for drafts (a bearer token is optional).
#[utoipa::path(get, path = "/courses/{id}/cover", tag = "courses",
    security((), ("bearer" = [])),
    responses((status = 200, description = "the image (image/png, image/jpeg or image/webp)",
               content_type = "image/*", body = Vec<u8>),
              (status = 404, body = Problem, description = "no such course, or it has no cover")))]
pub(super) async fn get_cover(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Path(id): Path<Uuid>,
) -> Result<axum::response::Response, ApiError> {
    use axum::http::header;
    let mut conn = state.db.acquire().await?;
    let s = standing(&mut conn, id, user.as_ref(), false).await?;
    drop(conn);
    let key = s
        .course
        .cover_key
        .as_deref()
        .and_then(|k| ObjectKey::parse(k).ok())
        .ok_or(ApiError::NotFound("cover"))?;
    let object = match state.storage.get(&key, None).await {
        Ok(o) => o,
        Err(crate::storage::StorageError::NotFound(_)) => return Err(ApiError::NotFound("cover")),
        Err(e) => return Err(e.into()),
    };
    let public = s.course.visibility != CourseVisibility::Draft;
    let mut r = axum::response::Response::new(axum::body::Body::from_stream(object.body));
    let h = r.headers_mut();
    let content_type = object
        .meta
        .content_type
        .as_deref()
        .filter(|t| t.starts_with("image/"))
        .unwrap_or("application/octet-stream");
    for (name, value) in [
        (header::CONTENT_TYPE, content_type.to_string()),
        (header::CONTENT_LENGTH, object.meta.size.to_string()),
        (
            header::CACHE_CONTROL,
            if public {
                "public, max-age=86400".into()
            } else {
                "private, no-store".into()
            },
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".into()),
    ] {
        if let Ok(v) = header::HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    if let Some(etag) = object.meta.etag.as_deref()
        && let Ok(v) = header::HeaderValue::from_str(etag)
    {
        h.insert(header::ETAG, v);
    }
    Ok(r)
}
