//! Who may read, write and moderate a channel. Lesson rooms and course channels ask the one
//! course access policy (`courses::policy`); a ban from a course's chat closes both.
//!
//! | channel          | read + write                                   | moderate                 |
//! |------------------|------------------------------------------------|--------------------------|
//! | `lesson:<id>`    | policy `chat` (teachers, assistants, enrolled) | policy `moderate`        |
//! | `course:<id>`    | same facts, no free preview                    | teachers, assistants, admins |
//! | `dm:<other>`     | both active, sharing a course, or one an admin | nobody                   |
//! | `user:<own id>`  | read only, the user themself (system writes)   | nobody                   |

use sqlx::PgConnection;
use uuid::Uuid;

use super::ChannelName;
use crate::courses::{
    policy::{self, Caller},
    store as courses,
};

/// What a caller may do in one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChannelAccess {
    pub read: bool,
    pub write: bool,
    pub moderate: bool,
    /// The course a lesson room or course channel belongs to (bans apply per course).
    pub course_id: Option<Uuid>,
    pub lesson_id: Option<Uuid>,
}

impl ChannelAccess {
    const NONE: ChannelAccess = ChannelAccess {
        read: false,
        write: false,
        moderate: false,
        course_id: None,
        lesson_id: None,
    };
}

/// The decision for `caller` on `channel`. An unknown lesson, course or user is `NONE` (the
/// socket answers `forbidden` either way: no probing for ids).
pub async fn decide(
    conn: &mut PgConnection,
    caller: Caller,
    channel: ChannelName,
) -> Result<ChannelAccess, sqlx::Error> {
    match channel {
        ChannelName::Lesson(id) => {
            let Some(lesson) = courses::get_lesson(conn, id).await? else {
                return Ok(ChannelAccess::NONE);
            };
            let Some(course) = courses::get_course(conn, lesson.course_id).await? else {
                return Ok(ChannelAccess::NONE);
            };
            let facts = courses::facts(conn, &course, lesson.free_preview, Some(caller.id)).await?;
            let access = policy::lesson_access(Some(caller), &facts);
            let banned = !access.moderate && is_banned(conn, course.id, caller.id).await?;
            Ok(ChannelAccess {
                read: access.chat && !banned,
                write: access.chat && !banned,
                moderate: access.moderate,
                course_id: Some(course.id),
                lesson_id: Some(lesson.id),
            })
        }
        ChannelName::Course(id) => {
            let Some(course) = courses::get_course(conn, id).await? else {
                return Ok(ChannelAccess::NONE);
            };
            let facts = courses::facts(conn, &course, false, Some(caller.id)).await?;
            let access = policy::lesson_access(Some(caller), &facts);
            let banned = !access.moderate && is_banned(conn, course.id, caller.id).await?;
            Ok(ChannelAccess {
                read: access.chat && !banned,
                write: access.chat && !banned,
                moderate: access.moderate,
                course_id: Some(course.id),
                lesson_id: None,
            })
        }
        ChannelName::Dm(other) => {
            let allowed = other != caller.id && dm_allowed(conn, caller, other).await?;
            Ok(ChannelAccess {
                read: allowed,
                write: allowed,
                ..ChannelAccess::NONE
            })
        }
        ChannelName::User(id) => Ok(ChannelAccess {
            read: id == caller.id,
            ..ChannelAccess::NONE
        }),
    }
}

pub async fn is_banned(
    conn: &mut PgConnection,
    course: Uuid,
    user: Uuid,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query_scalar!(
        "SELECT EXISTS (SELECT 1 FROM chat_bans WHERE course_id = $1 AND user_id = $2) AS \"b!\"",
        course,
        user
    )
    .fetch_one(conn)
    .await?)
}

/// Two users may talk directly when both accounts are active and they share a course (as
/// owner, member or active student), or when either is an admin — strangers cannot spam.
async fn dm_allowed(
    conn: &mut PgConnection,
    caller: Caller,
    other: Uuid,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query_scalar!(
        r#"WITH related AS (
               SELECT id AS course_id, owner_id AS user_id FROM courses
               UNION ALL SELECT course_id, user_id FROM course_members
               UNION ALL SELECT course_id, user_id FROM enrollments WHERE status = 'active')
           SELECT (SELECT status = 'active' FROM users WHERE id = $2) IS TRUE
              AND ($3 OR 'admin' = ANY((SELECT roles FROM users WHERE id = $2)::text[])
                   OR EXISTS (SELECT 1 FROM related a JOIN related b USING (course_id)
                              WHERE a.user_id = $1 AND b.user_id = $2)) AS "allowed!""#,
        caller.id,
        other,
        caller.is_admin,
    )
    .fetch_one(conn)
    .await?)
}
