//! Courses themselves: create, the public catalogue, "teaching" and "enrolled" lists, get,
//! change and delete.

use axum::{extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{
    COURSE_NOT_FOUND, MaybeUser, after_streams_deleted, cover::cover_url, delete_object,
    delete_streams, standing,
};
use crate::{
    courses::{
        self, CourseVisibility, Money,
        store::{self, Course},
    },
    domain::PageLimit,
    http::{
        error::{ApiError, Problem},
        extract::{AuthUser, Json, Path, Query},
    },
    state::AppState,
    users::{InvalidInput, Role},
};

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

/// A course as the API shows it (the cover URL needs the storage, the card facts the database).
pub(super) async fn present(state: &AppState, c: Course) -> CourseResponse {
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

pub(super) async fn present_all(state: &AppState, courses: Vec<Course>) -> Vec<CourseResponse> {
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
pub(super) async fn create_course(
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
        Some(p) => Money::price(p.amount, &p.currency)?,
        None => Money::price(0, "CNY")?,
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
pub(super) async fn list_catalogue(
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
pub(super) async fn list_teaching(
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
pub(super) async fn list_enrolled(
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

/// A course. Drafts only for their teachers and admins (404 for others); a bearer token is
/// optional.
#[utoipa::path(get, path = "/courses/{id}", tag = "courses",
    security((), ("bearer" = [])),
    responses((status = 200, body = CourseResponse), (status = 404, body = Problem)))]
pub(super) async fn get_course(
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
pub(super) async fn update_course(
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
            .map(|p| Money::price(p.amount, &p.currency))
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
pub(super) async fn delete_course(
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

#[derive(Debug, Deserialize, ToSchema)]
pub struct DescriptionPreviewRequest {
    /// A course description's Markdown, up to 50,000 characters (absent: empty). Defaulted so
    /// that the role check, not the body's shape, answers a caller who may not use the route.
    #[serde(default)]
    markdown: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DescriptionPreview {
    /// The sanitized HTML the course page would show.
    html: String,
}

/// Render a course description as its page will show it, without saving it: the studio's
/// preview of text not saved yet. Teachers and admins.
#[utoipa::path(post, path = "/courses/description-preview", tag = "courses",
    request_body = DescriptionPreviewRequest,
    security(("bearer" = ["teacher", "admin"])),
    responses((status = 200, body = DescriptionPreview), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 422, body = Problem)))]
pub(super) async fn preview_description(
    user: AuthUser,
    Json(req): Json<DescriptionPreviewRequest>,
) -> Result<Json<DescriptionPreview>, ApiError> {
    user.require_any(&[Role::Teacher, Role::Admin])?;
    let markdown = courses::parse_description(&req.markdown)?;
    Ok(Json(DescriptionPreview {
        html: courses::render_markdown(&markdown),
    }))
}
