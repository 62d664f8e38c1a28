//! `/api/v1/courses` (with `/cover`), `/api/v1/courses/{id}/lessons`,
//! `/api/v1/courses/{id}/enrollments` and `/api/v1/lessons/{id}` (with `/end`, `/playback` and
//! `/meeting-token`): see `docs/courses.md`.
//!
//! Visibility: a draft course (and its lessons) is visible only to its teachers and admins;
//! to anyone else it answers 404, so ids do not leak. Editing needs the owner, a co-teacher or
//! an admin (others 403 once they can see the course). What a caller may do in a lesson is
//! decided by [`crate::courses::policy::lesson_access`] only.

use axum::{
    extract::{FromRequestParts, State},
    http::{StatusCode, request::Parts},
    routing::get,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    error::{ApiError, Problem},
    extract::{AuthUser, Json, Path, Query, bearer_token},
};
use crate::{
    courses::{
        self, CourseVisibility, EnrollmentStatus, LessonKind, LessonStatus, MemberRole, Money,
        policy::{self, Caller, LessonAccess, LessonFacts},
        store::{self, Course, Enrollment, EnrollmentSource, Lesson},
    },
    live::{
        events::{self as live_events, LiveStreamEvent},
        keys::StreamKey,
        model::{
            LiveStreamId, NewLiveStream, PageLimit, ReconnectWindow, StreamStatus, Title,
            Visibility,
        },
        store::{self as live_store, Deleted, Scope, Transition},
    },
    state::AppState,
    storage::{ObjectKey, PresignMethod, PutOptions},
    users::{InvalidInput, Role},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_catalogue, create_course))
        .routes(routes!(list_teaching))
        .routes(routes!(list_enrolled))
        .routes(routes!(get_course, update_course, delete_course))
        .routes(routes!(get_cover, put_cover, delete_cover))
        .routes(routes!(put_member, delete_member))
        .routes(routes!(list_lessons, create_lesson))
        .routes(routes!(list_enrollments, enroll))
        .routes(routes!(leave_course))
        .routes(routes!(get_lesson, update_lesson, delete_lesson))
        .routes(routes!(end_lesson))
        .routes(routes!(lesson_playback))
        .routes(routes!(meeting_token))
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

/// An optional caller: no `Authorization` header is anonymous; a bad token is still 401.
pub struct MaybeUser(pub Option<AuthUser>);

impl FromRequestParts<AppState> for MaybeUser {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if bearer_token(parts).is_none() {
            return Ok(MaybeUser(None));
        }
        Ok(MaybeUser(Some(
            AuthUser::from_request_parts(parts, state).await?,
        )))
    }
}

fn caller(user: Option<&AuthUser>) -> Option<Caller> {
    user.map(|u| Caller {
        id: u.id,
        is_admin: u.has_role(Role::Admin),
    })
}

const COURSE_NOT_FOUND: ApiError = ApiError::NotFound("course");
const LESSON_NOT_FOUND: ApiError = ApiError::NotFound("lesson");

/// A course as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CourseResponse {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub title: String,
    pub summary: String,
    /// Markdown as written.
    pub description: String,
    /// The description rendered to sanitized HTML.
    pub description_html: String,
    pub price: Money,
    pub visibility: CourseVisibility,
    pub tags: Vec<String>,
    pub language: String,
    /// The cover image, or null. Published and archived courses: a stable public URL
    /// (`/api/v1/courses/{id}/cover?v=...`, a new `v` for each new cover). Drafts: a presigned
    /// storage URL valid for an hour (drafts are shown only to their teachers).
    #[schema(required = true)]
    pub cover_url: Option<String>,
    /// The owner's display name.
    pub teacher_name: String,
    /// When the next lesson that has not ended starts; null when none is scheduled.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    pub next_lesson_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

/// How long the presigned cover URL of a draft stays valid.
const DRAFT_COVER_URL_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// The version of a cover in its public URL: the random part of its key, so that a new cover
/// gets a new URL (caches keep the old one for the old URL only).
fn cover_version(key: &str) -> &str {
    let name = key.rsplit('/').next().unwrap_or(key);
    let stem = name.split('.').next().unwrap_or(name);
    stem.strip_prefix("cover-").unwrap_or(stem)
}

async fn cover_url(state: &AppState, c: &Course) -> Option<String> {
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
    let base = state
        .settings
        .http
        .public_url
        .as_str()
        .trim_end_matches('/');
    Some(format!(
        "{base}/api/v1/courses/{}/cover?v={}",
        c.id,
        cover_version(key)
    ))
}

/// A course as the API shows it (the cover URL needs the storage, the card facts the database).
async fn present(state: &AppState, c: Course) -> CourseResponse {
    present_all(state, vec![c])
        .await
        .pop()
        .expect("one course in, one out")
}

fn present_one(
    c: Course,
    cover_url: Option<String>,
    facts: Option<store::CardFacts>,
) -> CourseResponse {
    let (teacher_name, next_lesson_at) = facts
        .map(|f| (f.teacher_name, f.next_lesson_at))
        .unwrap_or_default();
    CourseResponse {
        id: c.id,
        owner_id: c.owner_id,
        title: c.title,
        summary: c.summary,
        description: c.description,
        description_html: c.description_html,
        price: c.price,
        visibility: c.visibility,
        tags: c.tags,
        language: c.language,
        cover_url,
        teacher_name,
        next_lesson_at,
        created_at: c.created_at,
        updated_at: c.updated_at,
    }
}

async fn present_all(state: &AppState, courses: Vec<Course>) -> Vec<CourseResponse> {
    let ids: Vec<Uuid> = courses.iter().map(|c| c.id).collect();
    // The card facts are decoration: a failed read shows the courses without them.
    let mut facts = match state.db.acquire().await {
        Ok(mut conn) => store::card_facts(&mut conn, &ids)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot read the courses' card facts");
                Default::default()
            }),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the courses' card facts");
            Default::default()
        }
    };
    let mut out = Vec::with_capacity(courses.len());
    for c in courses {
        let cover_url = cover_url(state, &c).await;
        let f = facts.remove(&c.id);
        out.push(present_one(c, cover_url, f));
    }
    out
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CourseList {
    pub items: Vec<CourseResponse>,
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct MoneyInput {
    amount: i64,
    currency: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCourse {
    title: Option<String>,
    summary: Option<String>,
    /// Markdown (rendered and sanitized into `description_html`).
    description: Option<String>,
    /// Default `{"amount": 0, "currency": "CNY"}` (free).
    price: Option<MoneyInput>,
    /// `draft` (default), `published` or `archived`.
    visibility: Option<String>,
    tags: Option<Vec<String>>,
    /// Language tag, default `en`.
    language: Option<String>,
}

/// Create a course owned by the caller (teachers and admins).
#[utoipa::path(post, path = "/courses", tag = "courses", request_body = CreateCourse,
    security(("bearer" = ["teacher", "admin"])),
    responses((status = 201, body = CourseResponse), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn create_course(
    State(state): State<AppState>,
    user: AuthUser,
    Json(req): Json<CreateCourse>,
) -> Result<(StatusCode, Json<CourseResponse>), ApiError> {
    user.require_any(&[Role::Teacher, Role::Admin])?;
    let title = req.title.as_deref().ok_or(InvalidInput {
        field: "title",
        reason: "is required",
    })?;
    let price = match &req.price {
        Some(p) => Money::parse(p.amount, &p.currency)?,
        None => Money::parse(0, "CNY")?,
    };
    let new = store::NewCourse {
        owner_id: user.id,
        title: courses::parse_title(title)?,
        summary: courses::parse_summary(req.summary.as_deref().unwrap_or(""))?,
        description: courses::parse_description(req.description.as_deref().unwrap_or(""))?,
        price,
        visibility: req
            .visibility
            .as_deref()
            .map(str::parse)
            .transpose()?
            .unwrap_or(CourseVisibility::Draft),
        tags: courses::parse_tags(req.tags.as_deref().unwrap_or(&[]))?,
        language: courses::parse_language(req.language.as_deref().unwrap_or("en"))?,
    };
    let mut conn = state.db.acquire().await?;
    let course = store::create_course(&mut conn, &new).await?;
    drop(conn);
    Ok((StatusCode::CREATED, Json(present(&state, course).await)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CatalogueQuery {
    /// Full-text search over title, summary and tags (web search syntax: words, "phrases", -not).
    q: Option<String>,
    /// Only courses with this tag.
    tag: Option<String>,
    /// Only courses in this language.
    language: Option<String>,
    /// `true`: free courses only; `false`: paid only.
    free: Option<bool>,
    owner_id: Option<Uuid>,
    /// `newest` (default), `oldest`, `price_asc`, `price_desc`.
    sort: Option<String>,
    cursor: Option<String>,
    /// 1 to 100, default 20.
    limit: Option<i64>,
}

/// The public catalogue: published courses, searchable and filterable.
#[utoipa::path(get, path = "/courses", tag = "courses", params(CatalogueQuery),
    security(()),
    responses((status = 200, body = CourseList), (status = 422, body = Problem)))]
async fn list_catalogue(
    State(state): State<AppState>,
    Query(q): Query<CatalogueQuery>,
) -> Result<Json<CourseList>, ApiError> {
    let sort = store::Sort::parse(q.sort.as_deref())?;
    let limit = PageLimit::parse(q.limit)?;
    let cursor = q
        .cursor
        .as_deref()
        .map(|c| {
            store::Cursor::decode(c).ok_or(InvalidInput {
                field: "cursor",
                reason: "is not a cursor of this list",
            })
        })
        .transpose()?;
    let filter = store::CatalogueFilter {
        q: q.q.filter(|s| !s.trim().is_empty()),
        tag: q.tag.map(|t| t.trim().to_lowercase()),
        language: q.language,
        free: q.free,
        owner_id: q.owner_id,
    };
    let mut conn = state.db.acquire().await?;
    let (items, next) = store::catalogue(&mut conn, &filter, sort, cursor, limit).await?;
    drop(conn);
    Ok(Json(CourseList {
        items: present_all(&state, items).await,
        next_cursor: next.map(|c| c.encode()),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    cursor: Option<Uuid>,
    /// 1 to 100, default 20.
    limit: Option<i64>,
}

/// The courses the caller teaches (owns, or is a co-teacher or assistant of), every visibility.
#[utoipa::path(get, path = "/courses/teaching", tag = "courses", params(PageQuery),
    security(("bearer" = ["teacher", "admin"])),
    responses((status = 200, body = CourseList), (status = 401, body = Problem), (status = 403, body = Problem)))]
async fn list_teaching(
    State(state): State<AppState>,
    user: AuthUser,
    Query(q): Query<PageQuery>,
) -> Result<Json<CourseList>, ApiError> {
    user.require_any(&[Role::Teacher, Role::Admin])?;
    let limit = PageLimit::parse(q.limit)?;
    let mut conn = state.db.acquire().await?;
    let page = store::teaching(&mut conn, user.id, q.cursor, limit).await?;
    drop(conn);
    Ok(Json(CourseList {
        items: present_all(&state, page.items).await,
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}

/// "My courses": the courses the caller is actively enrolled in.
#[utoipa::path(get, path = "/courses/enrolled", tag = "courses", params(PageQuery),
    security(("bearer" = [])),
    responses((status = 200, body = CourseList), (status = 401, body = Problem)))]
async fn list_enrolled(
    State(state): State<AppState>,
    user: AuthUser,
    Query(q): Query<PageQuery>,
) -> Result<Json<CourseList>, ApiError> {
    let limit = PageLimit::parse(q.limit)?;
    let mut conn = state.db.acquire().await?;
    let page = store::enrolled(&mut conn, user.id, q.cursor, limit).await?;
    drop(conn);
    Ok(Json(CourseList {
        items: present_all(&state, page.items).await,
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}

/// The caller's standing in a course.
struct Standing {
    course: Course,
    facts: LessonFacts,
}

impl Standing {
    fn relation(&self, user: Option<&AuthUser>) -> policy::Relation {
        policy::relation(caller(user), &self.facts)
    }
    /// Owner, co-teacher or admin: may edit.
    fn can_edit(&self, user: Option<&AuthUser>) -> bool {
        policy::is_teacher(caller(user), &self.facts)
    }
    /// Teachers, assistants and admins see drafts.
    fn can_see_drafts(&self, user: Option<&AuthUser>) -> bool {
        matches!(
            self.relation(user),
            policy::Relation::Admin
                | policy::Relation::Owner
                | policy::Relation::CoTeacher
                | policy::Relation::Assistant
        )
    }
}

/// The course and the caller's standing; 404 for a draft the caller may not see.
async fn standing(
    conn: &mut sqlx::PgConnection,
    id: Uuid,
    user: Option<&AuthUser>,
    free_preview: bool,
) -> Result<Standing, ApiError> {
    let course = store::get_course(conn, id).await?.ok_or(COURSE_NOT_FOUND)?;
    let facts = store::facts(conn, &course, free_preview, user.map(|u| u.id)).await?;
    let s = Standing { course, facts };
    if s.course.visibility == CourseVisibility::Draft && !s.can_see_drafts(user) {
        // An enrolled student keeps seeing a course that went back to draft.
        if s.facts.enrollment != Some(EnrollmentStatus::Active) {
            return Err(COURSE_NOT_FOUND);
        }
    }
    Ok(s)
}

/// A course. Drafts only for their teachers and admins (404 for others); a bearer token is
/// optional.
#[utoipa::path(get, path = "/courses/{id}", tag = "courses",
    security((), ("bearer" = [])),
    responses((status = 200, body = CourseResponse), (status = 404, body = Problem)))]
async fn get_course(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Path(id): Path<Uuid>,
) -> Result<Json<CourseResponse>, ApiError> {
    let mut conn = state.db.acquire().await?;
    let s = standing(&mut conn, id, user.as_ref(), false).await?;
    drop(conn);
    Ok(Json(present(&state, s.course).await))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCourse {
    title: Option<String>,
    summary: Option<String>,
    description: Option<String>,
    price: Option<MoneyInput>,
    visibility: Option<String>,
    tags: Option<Vec<String>>,
    language: Option<String>,
}

/// Change a course (owner, co-teachers, admins).
#[utoipa::path(patch, path = "/courses/{id}", tag = "courses", request_body = UpdateCourse,
    security(("bearer" = ["teacher", "admin"])),
    responses((status = 200, body = CourseResponse), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn update_course(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(req): Json<UpdateCourse>,
) -> Result<Json<CourseResponse>, ApiError> {
    user.require_any(&[Role::Teacher, Role::Admin])?;
    let mut conn = state.db.acquire().await?;
    let s = standing(&mut conn, id, Some(&user), false).await?;
    if !s.can_edit(Some(&user)) {
        return Err(ApiError::Forbidden(
            "only the course's teachers and admins may change it".into(),
        ));
    }
    let patch = store::CoursePatch {
        title: req.title.as_deref().map(courses::parse_title).transpose()?,
        summary: req
            .summary
            .as_deref()
            .map(courses::parse_summary)
            .transpose()?,
        description: req
            .description
            .as_deref()
            .map(courses::parse_description)
            .transpose()?,
        price: req
            .price
            .map(|p| Money::parse(p.amount, &p.currency))
            .transpose()?,
        visibility: req.visibility.as_deref().map(str::parse).transpose()?,
        tags: req.tags.as_deref().map(courses::parse_tags).transpose()?,
        language: req
            .language
            .as_deref()
            .map(courses::parse_language)
            .transpose()?,
    };
    let course = store::update_course(&mut conn, id, &patch)
        .await?
        .ok_or(COURSE_NOT_FOUND)?;
    drop(conn);
    Ok(Json(present(&state, course).await))
}

/// Delete a course (its owner and admins). Only a course that nothing was ever sold for: one
/// with an order, whatever its state, answers 409 `course_has_orders` and is archived instead
/// (`PATCH {"visibility": "archived"}`: out of the catalogue, closed to new students, open to
/// those enrolled). Deleting removes the course, its members, lessons and (free or granted)
/// enrollments and its cover; each lesson's live stream is deleted (a running session ends);
/// the recordings stay with their owner under `/api/v1/recordings`.
#[utoipa::path(delete, path = "/courses/{id}", tag = "courses",
    security(("bearer" = ["teacher", "admin"])),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem),
              (status = 409, body = Problem, description = "course_has_orders: archive it instead")))]
async fn delete_course(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    user.require_any(&[Role::Teacher, Role::Admin])?;
    let mut tx = state.db.begin().await?;
    let s = standing(&mut tx, id, Some(&user), false).await?;
    if !user.owns(s.course.owner_id) {
        return Err(ApiError::Forbidden(
            "only the course owner and admins delete a course".into(),
        ));
    }
    let has_orders = || {
        ApiError::Conflict(
            "course_has_orders",
            "this course has orders: archive it instead (visibility \"archived\")".into(),
        )
    };
    if !store::lock_course(&mut tx, id).await? {
        return Err(COURSE_NOT_FOUND);
    }
    if store::has_orders(&mut tx, id).await? {
        return Err(has_orders());
    }
    let streams = store::lesson_streams(&mut tx, id).await?;
    let events = delete_streams(&mut tx, &streams, user.id).await?;
    match store::delete_course(&mut tx, id).await {
        Ok(_) => {}
        // An order placed since the check: the foreign key refuses, as it should.
        Err(sqlx::Error::Database(d)) if d.constraint() == Some("orders_course_id_fkey") => {
            return Err(has_orders());
        }
        Err(e) => return Err(e.into()),
    }
    tx.commit().await?;
    after_streams_deleted(&state, events).await;
    if let Some(key) = s.course.cover_key.as_deref() {
        delete_object(&state, key).await;
    }
    tracing::info!(course_id = %id, user_id = %user.id, lessons = streams.len(), "course deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Soft-delete live streams (lessons' streams) in the caller's transaction; the events to
/// publish once it commits.
async fn delete_streams(
    conn: &mut sqlx::PgConnection,
    ids: &[Uuid],
    actor: Uuid,
) -> Result<Vec<LiveStreamEvent>, ApiError> {
    let mut events = Vec::new();
    for id in ids {
        let id = LiveStreamId(*id);
        if let Deleted::Now(_) = live_store::delete(conn, id, Scope::All).await? {
            events.push(
                live_events::store_event(
                    conn,
                    id,
                    live_events::EventKind::Deleted,
                    serde_json::json!({"actor_id": actor}),
                )
                .await?,
            );
        }
    }
    Ok(events)
}

/// After the commit: publish the deletions and end the streams' sessions now (the key no
/// longer opens them).
async fn after_streams_deleted(state: &AppState, events: Vec<LiveStreamEvent>) {
    for e in events {
        live_events::publish_or_log(&state.redis, &e).await;
        state.live.kick(e.live_stream_id, "deleted").await;
    }
}

/// Best effort: a leftover object costs storage, not correctness.
async fn delete_object(state: &AppState, key: &str) {
    if let Ok(key) = ObjectKey::parse(key)
        && let Err(e) = state.storage.delete(&key).await
    {
        tracing::warn!(error = %e, key = %key.as_str(), "old course cover not deleted");
    }
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
async fn put_cover(
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
        super::upload::read_capped(&headers, body, state.settings.courses.cover_max_bytes).await?;
    let Some((content_type, ext)) = super::upload::sniff_image(&body) else {
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
async fn delete_cover(
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
async fn get_cover(
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

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutMember {
    /// `co_teacher` or `assistant`.
    role: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberResponse {
    pub course_id: Uuid,
    pub user_id: Uuid,
    pub role: MemberRole,
}

/// Add a co-teacher or assistant, or change their role (the owner and admins).
#[utoipa::path(put, path = "/courses/{id}/members/{user_id}", tag = "courses", request_body = PutMember,
    security(("bearer" = ["teacher", "admin"])),
    responses((status = 200, body = MemberResponse), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn put_member(
    State(state): State<AppState>,
    user: AuthUser,
    Path((id, member)): Path<(Uuid, Uuid)>,
    Json(req): Json<PutMember>,
) -> Result<Json<MemberResponse>, ApiError> {
    user.require_any(&[Role::Teacher, Role::Admin])?;
    let mut conn = state.db.acquire().await?;
    let s = standing(&mut conn, id, Some(&user), false).await?;
    if !user.owns(s.course.owner_id) {
        return Err(ApiError::Forbidden(
            "only the course owner and admins manage members".into(),
        ));
    }
    let role: MemberRole = req
        .role
        .as_deref()
        .ok_or(InvalidInput {
            field: "role",
            reason: "is required",
        })?
        .parse()?;
    if member == s.course.owner_id {
        return Err(InvalidInput {
            field: "user_id",
            reason: "the owner is not a member",
        }
        .into());
    }
    crate::users::find_by_id(&mut conn, member)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    store::put_member(&mut conn, id, member, role).await?;
    Ok(Json(MemberResponse {
        course_id: id,
        user_id: member,
        role,
    }))
}

/// Remove a member (204, also when they were not one).
#[utoipa::path(delete, path = "/courses/{id}/members/{user_id}", tag = "courses",
    security(("bearer" = ["teacher", "admin"])),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn delete_member(
    State(state): State<AppState>,
    user: AuthUser,
    Path((id, member)): Path<(Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    user.require_any(&[Role::Teacher, Role::Admin])?;
    let mut conn = state.db.acquire().await?;
    let s = standing(&mut conn, id, Some(&user), false).await?;
    if !user.owns(s.course.owner_id) {
        return Err(ApiError::Forbidden(
            "only the course owner and admins manage members".into(),
        ));
    }
    store::remove_member(&mut conn, id, member).await?;
    // Their moderator rights in the course's chat end now (they may still read it as a student).
    let keys = state.settings.chat.keys();
    crate::chat::revoke_course(&mut conn, &state.redis, &keys, id, member, "access_revoked").await;
    Ok(StatusCode::NO_CONTENT)
}

/// A lesson as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct LessonResponse {
    pub id: Uuid,
    pub course_id: Uuid,
    pub title: String,
    pub kind: LessonKind,
    /// UTC.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub starts_at: OffsetDateTime,
    pub duration_minutes: i32,
    /// The IANA zone the lesson was scheduled in (for display).
    pub time_zone: String,
    /// `scheduled` → `live` → `ended`, from the lesson's live stream.
    pub status: LessonStatus,
    pub free_preview: bool,
    /// What the caller may do in this lesson.
    pub access: LessonAccess,
    /// Teachers only: the lesson's live stream (manage it under `/api/v1/live-streams`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_stream_id: Option<Uuid>,
    /// Teachers only: RTMP ingest for OBS or Jibri. With the stream key only in the answer of
    /// lesson creation; elsewhere the server URL (the key is stored hashed; the course owner
    /// can reset it with `POST /api/v1/live-streams/{live_stream_id}/reset-stream-key`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtmp_url: Option<String>,
    /// Only in the answer of lesson creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_key: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

fn rtmp_server_url(state: &AppState) -> String {
    let host = state
        .settings
        .http
        .public_url
        .host_str()
        .unwrap_or("localhost");
    format!("rtmp://{host}:{}/live", state.settings.rtmp.listen.port())
}

fn lesson_response(
    state: &AppState,
    l: Lesson,
    s: &Standing,
    user: Option<&AuthUser>,
    key: Option<&StreamKey>,
) -> LessonResponse {
    let facts = LessonFacts {
        free_preview: l.free_preview,
        ..s.facts
    };
    let access = policy::lesson_access(caller(user), &facts);
    let teacher = s.can_edit(user);
    let rtmp = rtmp_server_url(state);
    LessonResponse {
        id: l.id,
        course_id: l.course_id,
        title: l.title,
        kind: l.kind,
        starts_at: l.starts_at,
        duration_minutes: l.duration_minutes,
        time_zone: l.time_zone,
        status: l.status,
        free_preview: l.free_preview,
        access,
        live_stream_id: teacher.then_some(l.live_stream_id),
        rtmp_url: teacher.then(|| match key {
            Some(k) => format!("{rtmp}/{}", k.expose()),
            None => rtmp,
        }),
        stream_key: key.filter(|_| teacher).map(|k| k.expose().to_string()),
        created_at: l.created_at,
        updated_at: l.updated_at,
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LessonList {
    pub items: Vec<LessonResponse>,
    /// Always null: a course's lessons come in one page (at most 500).
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// The lessons of a course, in schedule order (a bearer token is optional).
#[utoipa::path(get, path = "/courses/{id}/lessons", tag = "courses",
    security((), ("bearer" = [])),
    responses((status = 200, body = LessonList), (status = 404, body = Problem)))]
async fn list_lessons(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Path(id): Path<Uuid>,
) -> Result<Json<LessonList>, ApiError> {
    let mut conn = state.db.acquire().await?;
    let s = standing(&mut conn, id, user.as_ref(), false).await?;
    let lessons = store::list_lessons(&mut conn, id).await?;
    Ok(Json(LessonList {
        items: lessons
            .into_iter()
            .map(|l| lesson_response(&state, l, &s, user.as_ref(), None))
            .collect(),
        next_cursor: None,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateLesson {
    title: Option<String>,
    /// `broadcast` or `meeting`.
    kind: Option<String>,
    /// RFC 3339 with an offset; stored in UTC.
    starts_at: Option<String>,
    /// 1 to 1440.
    duration_minutes: Option<i64>,
    /// IANA zone name, default `UTC`.
    time_zone: Option<String>,
    /// Open to everyone while the course is published (default false).
    free_preview: Option<bool>,
}

fn parse_starts_at(s: &str) -> Result<OffsetDateTime, InvalidInput> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| t.to_offset(time::UtcOffset::UTC))
        .map_err(|_| InvalidInput {
            field: "starts_at",
            reason: "must be an RFC 3339 timestamp such as 2026-12-01T09:00:00+08:00",
        })
}

/// Add a lesson (the course's owner, co-teachers, admins). Each lesson gets its own private,
/// recorded live stream owned by the course owner; the answer is the only one with its stream
/// key.
#[utoipa::path(post, path = "/courses/{id}/lessons", tag = "courses", request_body = CreateLesson,
    security(("bearer" = ["teacher", "admin"])),
    responses((status = 201, body = LessonResponse), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn create_lesson(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(req): Json<CreateLesson>,
) -> Result<(StatusCode, Json<LessonResponse>), ApiError> {
    user.require_any(&[Role::Teacher, Role::Admin])?;
    let mut tx = state.db.begin().await?;
    let s = standing(&mut tx, id, Some(&user), false).await?;
    if !s.can_edit(Some(&user)) {
        return Err(ApiError::Forbidden(
            "only the course's teachers and admins add lessons".into(),
        ));
    }
    let required = |field| InvalidInput {
        field,
        reason: "is required",
    };
    let title = courses::parse_title(req.title.as_deref().ok_or(required("title"))?)?;
    let kind: LessonKind = req.kind.as_deref().ok_or(required("kind"))?.parse()?;
    let starts_at = parse_starts_at(req.starts_at.as_deref().ok_or(required("starts_at"))?)?;
    let duration_minutes =
        courses::parse_duration_minutes(req.duration_minutes.ok_or(required("duration_minutes"))?)?;
    let time_zone = courses::parse_time_zone(req.time_zone.as_deref().unwrap_or("UTC"))?;
    let key = StreamKey::generate();
    let stream = crate::live::store::create(
        &mut tx,
        &NewLiveStream {
            owner_id: s.course.owner_id,
            title: Title::parse(&title)?,
            record: true,
            reconnect_window: ReconnectWindow::default(),
            visibility: Visibility::Private,
        },
        &key,
    )
    .await?;
    let lesson_id = store::create_lesson(
        &mut tx,
        &store::NewLesson {
            course_id: id,
            title,
            kind,
            starts_at,
            duration_minutes,
            time_zone,
            free_preview: req.free_preview.unwrap_or(false),
            live_stream_id: stream.id.0,
            room_name: crate::meetings::new_room_name(),
        },
    )
    .await?;
    let lesson = store::get_lesson(&mut tx, lesson_id)
        .await?
        .ok_or(LESSON_NOT_FOUND)?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(lesson_response(&state, lesson, &s, Some(&user), Some(&key))),
    ))
}

/// The lesson and the caller's standing in its course (404 for lessons of drafts the caller
/// may not see).
async fn lesson_standing(
    conn: &mut sqlx::PgConnection,
    id: Uuid,
    user: Option<&AuthUser>,
) -> Result<(Lesson, Standing), ApiError> {
    let lesson = store::get_lesson(conn, id).await?.ok_or(LESSON_NOT_FOUND)?;
    let s = standing(conn, lesson.course_id, user, lesson.free_preview)
        .await
        .map_err(|e| match e {
            ApiError::NotFound(_) => LESSON_NOT_FOUND,
            e => e,
        })?;
    Ok((lesson, s))
}

/// A lesson, with what the caller may do in it (a bearer token is optional).
#[utoipa::path(get, path = "/lessons/{id}", tag = "courses",
    security((), ("bearer" = [])),
    responses((status = 200, body = LessonResponse), (status = 404, body = Problem)))]
async fn get_lesson(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Path(id): Path<Uuid>,
) -> Result<Json<LessonResponse>, ApiError> {
    let mut conn = state.db.acquire().await?;
    let (lesson, s) = lesson_standing(&mut conn, id, user.as_ref()).await?;
    Ok(Json(lesson_response(
        &state,
        lesson,
        &s,
        user.as_ref(),
        None,
    )))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateLesson {
    title: Option<String>,
    kind: Option<String>,
    starts_at: Option<String>,
    duration_minutes: Option<i64>,
    time_zone: Option<String>,
    free_preview: Option<bool>,
}

/// Change a lesson (the course's owner, co-teachers, admins).
#[utoipa::path(patch, path = "/lessons/{id}", tag = "courses", request_body = UpdateLesson,
    security(("bearer" = ["teacher", "admin"])),
    responses((status = 200, body = LessonResponse), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn update_lesson(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(req): Json<UpdateLesson>,
) -> Result<Json<LessonResponse>, ApiError> {
    user.require_any(&[Role::Teacher, Role::Admin])?;
    let mut conn = state.db.acquire().await?;
    let (_, s) = lesson_standing(&mut conn, id, Some(&user)).await?;
    if !s.can_edit(Some(&user)) {
        return Err(ApiError::Forbidden(
            "only the course's teachers and admins change lessons".into(),
        ));
    }
    let patch = store::LessonPatch {
        title: req.title.as_deref().map(courses::parse_title).transpose()?,
        kind: req.kind.as_deref().map(str::parse).transpose()?,
        starts_at: req.starts_at.as_deref().map(parse_starts_at).transpose()?,
        duration_minutes: req
            .duration_minutes
            .map(courses::parse_duration_minutes)
            .transpose()?,
        time_zone: req
            .time_zone
            .as_deref()
            .map(courses::parse_time_zone)
            .transpose()?,
        free_preview: req.free_preview,
    };
    store::update_lesson(&mut conn, id, &patch).await?;
    let (lesson, s) = lesson_standing(&mut conn, id, Some(&user)).await?;
    Ok(Json(lesson_response(&state, lesson, &s, Some(&user), None)))
}

/// Delete a lesson (the course's owner, co-teachers, admins). The lesson disappears from the
/// course (the row is kept, marked deleted); its live stream is deleted, so a running session
/// ends now and its key stops working; its recordings stay with the stream's owner under
/// `/api/v1/recordings`. 204; 404 when it does not exist (or no longer).
#[utoipa::path(delete, path = "/lessons/{id}", tag = "courses",
    security(("bearer" = ["teacher", "admin"])),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem)))]
async fn delete_lesson(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    user.require_any(&[Role::Teacher, Role::Admin])?;
    let mut tx = state.db.begin().await?;
    let (_, s) = lesson_standing(&mut tx, id, Some(&user)).await?;
    if !s.can_edit(Some(&user)) {
        return Err(ApiError::Forbidden(
            "only the course's teachers and admins delete lessons".into(),
        ));
    }
    let stream = store::delete_lesson(&mut tx, id)
        .await?
        .ok_or(LESSON_NOT_FOUND)?;
    let events = delete_streams(&mut tx, &[stream], user.id).await?;
    tx.commit().await?;
    after_streams_deleted(&state, events).await;
    tracing::info!(lesson_id = %id, user_id = %user.id, "lesson deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// End a lesson (the course's owner, co-teachers, admins): its status becomes `ended`, a
/// running live session is completed now (the playlist ends, the recording is finalized) and
/// the lesson's live stream is disabled, so an encoder that reconnects on its own (OBS does)
/// cannot start it again. To go live again, enable the stream
/// (`POST /api/v1/live-streams/{live_stream_id}/enable`); the lesson then shows `live` while it
/// plays. Idempotent.
#[utoipa::path(post, path = "/lessons/{id}/end", tag = "courses",
    security(("bearer" = ["teacher", "admin"])),
    responses((status = 200, body = LessonResponse), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn end_lesson(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<LessonResponse>, ApiError> {
    user.require_any(&[Role::Teacher, Role::Admin])?;
    let mut tx = state.db.begin().await?;
    let (lesson, s) = lesson_standing(&mut tx, id, Some(&user)).await?;
    if !s.can_edit(Some(&user)) {
        return Err(ApiError::Forbidden(
            "only the course's teachers and admins end lessons".into(),
        ));
    }
    if !store::end_lesson(&mut tx, id).await? {
        return Err(LESSON_NOT_FOUND);
    }
    let stream = LiveStreamId(lesson.live_stream_id);
    let event = match live_store::transition(
        &mut tx,
        stream,
        Scope::All,
        &[StreamStatus::Idle, StreamStatus::Active],
        StreamStatus::Disabled,
    )
    .await?
    {
        Transition::Changed(_) => Some(
            live_events::store_event(
                &mut tx,
                stream,
                live_events::EventKind::Disabled,
                serde_json::json!({"actor_id": user.id, "reason": "lesson_ended", "lesson_id": id}),
            )
            .await?,
        ),
        Transition::Unchanged(_) | Transition::NotFound => None,
    };
    tx.commit().await?;
    if let Some(e) = &event {
        live_events::publish_or_log(&state.redis, e).await;
    }
    // Ends the running session now, even when the stream was disabled already.
    state.live.kick(stream.0, "disabled").await;
    tracing::info!(lesson_id = %id, user_id = %user.id, "lesson ended");
    let mut conn = state.db.acquire().await?;
    let (lesson, s) = lesson_standing(&mut conn, id, Some(&user)).await?;
    Ok(Json(lesson_response(&state, lesson, &s, Some(&user), None)))
}

/// An enrollment as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct EnrollmentResponse {
    pub id: Uuid,
    pub course_id: Uuid,
    pub user_id: Uuid,
    /// `active`, `left` or `refunded`.
    pub status: EnrollmentStatus,
    /// `free`, `grant` or `order`.
    pub source: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl From<Enrollment> for EnrollmentResponse {
    fn from(e: Enrollment) -> Self {
        EnrollmentResponse {
            id: e.id,
            course_id: e.course_id,
            user_id: e.user_id,
            status: e.status,
            source: e.source,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// One line of a course's roster.
#[derive(Debug, Serialize, ToSchema)]
pub struct RosterEntry {
    #[serde(flatten)]
    pub enrollment: EnrollmentResponse,
    /// The student's display name.
    pub display_name: String,
    /// The order that paid for it (`source = order`); its refunds are under
    /// `/api/v1/refunds?order_id=` (staff).
    #[schema(required = true)]
    pub order_id: Option<Uuid>,
    /// Who granted it (`source = grant`).
    #[schema(required = true)]
    pub granted_by: Option<Uuid>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EnrollmentList {
    pub items: Vec<RosterEntry>,
    #[schema(required = true)]
    pub next_cursor: Option<Uuid>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RosterQuery {
    /// `active`, `left` or `refunded` (default: every state).
    status: Option<String>,
    cursor: Option<Uuid>,
    /// 1 to 100, default 20.
    limit: Option<i64>,
}

/// The roster of a course: every enrollment with its state (`active`, `left` — the student
/// left —, `refunded` — the order that paid for it was refunded in full), how it came
/// (`free`, `grant`, `order`), oldest first. The course's teachers, assistants and admins.
#[utoipa::path(get, path = "/courses/{id}/enrollments", tag = "courses", params(RosterQuery),
    security(("bearer" = ["teacher", "admin"])),
    responses((status = 200, body = EnrollmentList), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn list_enrollments(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Query(q): Query<RosterQuery>,
) -> Result<Json<EnrollmentList>, ApiError> {
    user.require_any(&[Role::Teacher, Role::Admin])?;
    let limit = PageLimit::parse(q.limit)?;
    let status: Option<EnrollmentStatus> = q.status.as_deref().map(str::parse).transpose()?;
    let mut conn = state.db.acquire().await?;
    let s = standing(&mut conn, id, Some(&user), false).await?;
    if !s.can_see_drafts(Some(&user)) {
        return Err(ApiError::Forbidden(
            "only the course's teachers and admins see its enrollments".into(),
        ));
    }
    let page = store::list_enrollments(&mut conn, id, status, q.cursor, limit).await?;
    Ok(Json(EnrollmentList {
        items: page
            .items
            .into_iter()
            .map(|r| RosterEntry {
                enrollment: r.enrollment.into(),
                display_name: r.display_name,
                order_id: r.order_id,
                granted_by: r.granted_by,
            })
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Enroll {
    /// Omit to enroll yourself in a free, published course. Teachers of the course and admins
    /// name a user to grant them an enrollment (any course, free or paid).
    user_id: Option<Uuid>,
}

/// Enroll: yourself in a free published course, or (teachers and admins) grant another user an
/// enrollment. 201 with the active enrollment (also when it already was active). Paid courses
/// answer 403 `payment_required` to self-enrollment: they open through an order.
#[utoipa::path(post, path = "/courses/{id}/enrollments", tag = "courses", request_body = Enroll,
    security(("bearer" = [])),
    responses((status = 201, body = EnrollmentResponse), (status = 401, body = Problem),
              (status = 403, body = Problem, description = "payment_required, enrollment_closed, or not a teacher granting"),
              (status = 404, body = Problem)))]
async fn enroll(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(req): Json<Enroll>,
) -> Result<(StatusCode, Json<EnrollmentResponse>), ApiError> {
    let mut conn = state.db.acquire().await?;
    let s = standing(&mut conn, id, Some(&user), false).await?;
    let target = req.user_id.unwrap_or(user.id);
    let source = if target != user.id {
        if !s.can_edit(Some(&user)) {
            return Err(ApiError::Forbidden(
                "only the course's teachers and admins grant enrollments".into(),
            ));
        }
        crate::users::find_by_id(&mut conn, target)
            .await?
            .ok_or(ApiError::NotFound("user"))?;
        EnrollmentSource::Grant { by: user.id }
    } else if s.can_edit(Some(&user)) {
        // A teacher enrolling themselves (e.g. to test the student view): a grant.
        EnrollmentSource::Grant { by: user.id }
    } else {
        if s.course.visibility != CourseVisibility::Published {
            return Err(ApiError::ForbiddenCode(
                "enrollment_closed",
                "this course does not take enrollments".into(),
            ));
        }
        if !s.course.price.is_free() {
            return Err(ApiError::ForbiddenCode(
                "payment_required",
                "this course is paid: enrollment comes with a confirmed order".into(),
            ));
        }
        EnrollmentSource::Free
    };
    let e = store::activate_enrollment(&mut conn, id, target, source).await?;
    Ok((StatusCode::CREATED, Json(e.into())))
}

/// Leave a course: the caller's active enrollment becomes `left` (they may enroll again).
#[utoipa::path(post, path = "/courses/{id}/leave", tag = "courses",
    security(("bearer" = [])),
    responses((status = 200, body = EnrollmentResponse), (status = 401, body = Problem),
              (status = 404, body = Problem, description = "no such course, or no active enrollment")))]
async fn leave_course(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<EnrollmentResponse>, ApiError> {
    let mut conn = state.db.acquire().await?;
    standing(&mut conn, id, Some(&user), false).await?;
    let e = store::end_enrollment(&mut conn, id, user.id, EnrollmentStatus::Left)
        .await?
        .ok_or(ApiError::NotFound("enrollment"))?;
    let keys = state.settings.chat.keys();
    crate::chat::revoke_course(&mut conn, &state.redis, &keys, id, user.id, "left_course").await;
    Ok(Json(e.into()))
}

/// A signed live URL.
#[derive(Debug, Serialize, ToSchema)]
pub struct LivePlayback {
    pub live_stream_id: Uuid,
    pub hls_url: String,
}

/// A signed replay URL.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayPlayback {
    pub recording_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub started_at: OffsetDateTime,
    pub duration_s: f64,
    pub hls_url: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlaybackResponse {
    pub lesson_id: Uuid,
    pub status: LessonStatus,
    /// The live stream (present when the caller may watch live; plays while the lesson is live).
    #[schema(required = true)]
    pub live: Option<LivePlayback>,
    /// Ready recordings of the lesson (when the caller may watch replays).
    pub replays: Vec<ReplayPlayback>,
    /// When the tokens in these URLs expire.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
}

/// Signed, expiring HLS URLs of a lesson (live and replays) for callers the access policy
/// allows: 401 for anonymous callers and 403 for signed-in ones it does not (a free preview
/// plays for everyone; a bearer token is optional).
#[utoipa::path(get, path = "/lessons/{id}/playback", tag = "courses",
    security((), ("bearer" = [])),
    responses((status = 200, body = PlaybackResponse), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn lesson_playback(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Path(id): Path<Uuid>,
) -> Result<Json<PlaybackResponse>, ApiError> {
    let mut conn = state.db.acquire().await?;
    let (lesson, s) = lesson_standing(&mut conn, id, user.as_ref()).await?;
    let access = policy::lesson_access(caller(user.as_ref()), &s.facts);
    if !access.watch_live && !access.watch_replay {
        return Err(match user {
            None => ApiError::Unauthorized("sign in to watch this lesson".into()),
            Some(_) => ApiError::Forbidden("enroll in the course to watch this lesson".into()),
        });
    }
    let expires_at = OffsetDateTime::now_utc()
        + time::Duration::seconds(state.settings.playback.token_ttl_s as i64);
    let base = state
        .settings
        .http
        .public_url
        .as_str()
        .trim_end_matches('/')
        .to_string();
    let live = access.watch_live.then(|| {
        let token = state.playback.sign(
            &crate::playback::live_resource(lesson.live_stream_id),
            expires_at,
        );
        LivePlayback {
            live_stream_id: lesson.live_stream_id,
            hls_url: format!(
                "{base}/hls/live/{}/index.m3u8?token={token}",
                lesson.live_stream_id
            ),
        }
    });
    let replays = if access.watch_replay {
        store::replays(&mut conn, lesson.live_stream_id)
            .await?
            .into_iter()
            .map(|(rid, started_at, duration_ms)| {
                let token = state.playback.sign(&format!("recording/{rid}"), expires_at);
                ReplayPlayback {
                    recording_id: rid,
                    started_at,
                    duration_s: duration_ms as f64 / 1000.0,
                    hls_url: format!("{base}/hls/vod/{rid}/index.m3u8?token={token}"),
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(Json(PlaybackResponse {
        lesson_id: lesson.id,
        status: lesson.status,
        live,
        replays,
        expires_at,
    }))
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
