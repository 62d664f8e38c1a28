//! `/courses/{id}/enrollments` (the roster, enrolling and granting) and `/courses/{id}/leave`.

use axum::{extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::standing;
use crate::{
    courses::{
        CourseVisibility, EnrollmentStatus,
        store::{self, Enrollment, EnrollmentSource},
    },
    domain::PageLimit,
    http::{
        error::{ApiError, Problem},
        extract::{AuthUser, Json, Path, Query},
    },
    state::AppState,
    users::Role,
};

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
pub(super) async fn list_enrollments(
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
pub(super) async fn enroll(
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
pub(super) async fn leave_course(
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
