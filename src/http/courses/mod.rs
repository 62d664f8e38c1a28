//! `/api/v1/courses` (with `/cover`), `/api/v1/courses/{id}/lessons`,
//! `/api/v1/courses/{id}/enrollments` and `/api/v1/lessons/{id}` (with `/end`, `/playback` and
//! `/meeting-token`): see `docs/courses.md`.
//!
//! Visibility: a draft course (and its lessons) is visible only to its teachers and admins;
//! to anyone else it answers 404, so ids do not leak. Editing needs the owner, a co-teacher or
//! an admin (others 403 once they can see the course). What a caller may do in a lesson is
//! decided by [`crate::courses::policy::lesson_access`] only.
//!
//! One file per resource: [`catalogue`] (courses themselves: create, list, get, change,
//! delete), [`cover`], [`members`], [`lessons`], [`enrollments`] and [`playback`]; Jitsi
//! meeting tokens are in [`super::meetings`]. This module holds what they share: the
//! caller's [`Standing`] in a course, and the clean-up of lessons' live streams.

mod catalogue;
mod cover;
mod enrollments;
mod lessons;
mod members;
mod playback;

use axum::{extract::FromRequestParts, http::request::Parts};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    error::ApiError,
    extract::{AuthUser, bearer_token},
};
use crate::{
    courses::{
        CourseVisibility, EnrollmentStatus,
        policy::{self, Caller, LessonFacts},
        store::{self, Course, Lesson},
    },
    live::{
        events::{self as live_events, LiveStreamEvent},
        model::LiveStreamId,
        store::{self as live_store, Deleted, Scope},
    },
    state::AppState,
    storage::ObjectKey,
    users::Role,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(catalogue::list_catalogue, catalogue::create_course))
        .routes(routes!(catalogue::list_teaching))
        .routes(routes!(catalogue::list_enrolled))
        .routes(routes!(catalogue::preview_description))
        .routes(routes!(
            catalogue::get_course,
            catalogue::update_course,
            catalogue::delete_course
        ))
        .routes(routes!(
            cover::get_cover,
            cover::put_cover,
            cover::delete_cover
        ))
        .routes(routes!(members::put_member, members::delete_member))
        .routes(routes!(lessons::list_lessons, lessons::create_lesson))
        .routes(routes!(enrollments::list_enrollments, enrollments::enroll))
        .routes(routes!(enrollments::leave_course))
        .routes(routes!(
            lessons::get_lesson,
            lessons::update_lesson,
            lessons::delete_lesson
        ))
        .routes(routes!(lessons::end_lesson))
        .routes(routes!(playback::lesson_playback))
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

pub(super) fn caller(user: Option<&AuthUser>) -> Option<Caller> {
    user.map(|u| Caller {
        id: u.id,
        is_admin: u.has_role(Role::Admin),
    })
}

pub(super) const COURSE_NOT_FOUND: ApiError = ApiError::NotFound("course");
pub(super) const LESSON_NOT_FOUND: ApiError = ApiError::NotFound("lesson");

pub(super) fn rtmp_server_url(state: &AppState) -> String {
    let url = crate::http::origin::public_url(&state.settings.http);
    let host = url.host_str().unwrap_or("localhost");
    format!("rtmp://{host}:{}/live", state.settings.rtmp.listen.port())
}

/// The caller's standing in a course.
pub(super) struct Standing {
    course: Course,
    pub(super) facts: LessonFacts,
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
pub(super) async fn standing(
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

/// The lesson and the caller's standing in its course (404 for lessons of drafts the caller
/// may not see).
pub(super) async fn lesson_standing(
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

/// Soft-delete live streams (lessons' streams) in the caller's transaction; the events to
/// publish once it commits.
pub(super) async fn delete_streams(
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
pub(super) async fn after_streams_deleted(state: &AppState, events: Vec<LiveStreamEvent>) {
    for e in events {
        live_events::publish_or_log(&state.redis, &e).await;
        state.live.kick(e.live_stream_id, "deleted").await;
    }
}

/// Best effort: a leftover object costs storage, not correctness.
pub(super) async fn delete_object(state: &AppState, key: &str) {
    if let Ok(key) = ObjectKey::parse(key)
        && let Err(e) = state.storage.delete(&key).await
    {
        tracing::warn!(error = %e, key = %key.as_str(), "old course cover not deleted");
    }
}
