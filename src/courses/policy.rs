//! The one access policy for lessons: given who the caller is to a course, what may they do in
//! one of its lessons. Pure: the facts are gathered by [`super::store::lesson_context`], the
//! decision is made here, and every route (playback, meeting token, later chat) asks it.
//!
//! | caller                          | join | live | replay | chat | moderate |
//! |---------------------------------|------|------|--------|------|----------|
//! | admin                           | yes  | yes  | yes    | yes  | yes      |
//! | course owner, co-teacher        | yes  | yes  | yes    | yes  | yes      |
//! | assistant                       | yes  | yes  | yes    | yes  | yes      |
//! | enrolled student (active)       | yes  | yes  | yes    | yes  | no       |
//! | anyone, free-preview lesson of a published course | yes | yes | yes | no | no |
//! | everyone else (left, refunded, not enrolled, anonymous) | no | no | no | no | no |
//!
//! An anonymous caller may watch a free preview but never join a meeting (a Jitsi token names a
//! user) nor chat.

use serde::Serialize;
use uuid::Uuid;

use super::{CourseVisibility, EnrollmentStatus, MemberRole};

/// What a caller may do in a lesson.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, utoipa::ToSchema)]
pub struct LessonAccess {
    /// Join the Jitsi meeting (get a meeting token).
    pub join_meeting: bool,
    /// Watch the live HLS stream.
    pub watch_live: bool,
    /// Watch the lesson's recordings.
    pub watch_replay: bool,
    /// Read and write the lesson's chat.
    pub chat: bool,
    /// Moderate: remove messages, mute; in Jitsi, moderator with recording and livestreaming.
    pub moderate: bool,
}

impl LessonAccess {
    pub const NOTHING: LessonAccess = LessonAccess {
        join_meeting: false,
        watch_live: false,
        watch_replay: false,
        chat: false,
        moderate: false,
    };
    pub const EVERYTHING: LessonAccess = LessonAccess {
        join_meeting: true,
        watch_live: true,
        watch_replay: true,
        chat: true,
        moderate: true,
    };
    pub const STUDENT: LessonAccess = LessonAccess {
        join_meeting: true,
        watch_live: true,
        watch_replay: true,
        chat: true,
        moderate: false,
    };
    pub const PREVIEW: LessonAccess = LessonAccess {
        join_meeting: true,
        watch_live: true,
        watch_replay: true,
        chat: false,
        moderate: false,
    };
}

/// The caller, as the policy sees them: `None` is anonymous.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub id: Uuid,
    pub is_admin: bool,
}

/// What the database says about a lesson and the caller's relation to its course.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LessonFacts {
    pub course_owner: Uuid,
    pub course_visibility: CourseVisibility,
    pub free_preview: bool,
    /// The caller's member role in the course, if any.
    pub member: Option<MemberRole>,
    /// The caller's enrollment in the course, if any.
    pub enrollment: Option<EnrollmentStatus>,
}

/// The caller's role in a course, from the facts (teachers first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    Admin,
    Owner,
    CoTeacher,
    Assistant,
    Student,
    None,
}

pub fn relation(caller: Option<Caller>, facts: &LessonFacts) -> Relation {
    let Some(c) = caller else {
        return Relation::None;
    };
    if c.id == facts.course_owner {
        return Relation::Owner;
    }
    match facts.member {
        Some(MemberRole::CoTeacher) => return Relation::CoTeacher,
        Some(MemberRole::Assistant) => return Relation::Assistant,
        None => {}
    }
    if c.is_admin {
        return Relation::Admin;
    }
    if facts.enrollment == Some(EnrollmentStatus::Active) {
        Relation::Student
    } else {
        Relation::None
    }
}

/// The decision.
pub fn lesson_access(caller: Option<Caller>, facts: &LessonFacts) -> LessonAccess {
    match relation(caller, facts) {
        Relation::Admin | Relation::Owner | Relation::CoTeacher | Relation::Assistant => {
            LessonAccess::EVERYTHING
        }
        Relation::Student => LessonAccess::STUDENT,
        Relation::None => {
            if facts.free_preview && facts.course_visibility == CourseVisibility::Published {
                LessonAccess {
                    // A Jitsi token names a user: anonymous callers cannot join.
                    join_meeting: caller.is_some(),
                    ..LessonAccess::PREVIEW
                }
            } else {
                LessonAccess::NOTHING
            }
        }
    }
}

/// Teachers of the course (owner, co-teacher) and admins: they edit it and get Jitsi's
/// `owner` affiliation.
pub fn is_teacher(caller: Option<Caller>, facts: &LessonFacts) -> bool {
    matches!(
        relation(caller, facts),
        Relation::Admin | Relation::Owner | Relation::CoTeacher
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const Y: bool = true;
    const N: bool = false;

    #[test]
    fn the_policy_table() {
        let owner = Uuid::now_v7();
        let other = Uuid::now_v7();
        let facts = |member, enrollment, free_preview| LessonFacts {
            course_owner: owner,
            course_visibility: CourseVisibility::Published,
            free_preview,
            member,
            enrollment,
        };
        let user = |id| {
            Some(Caller {
                id,
                is_admin: false,
            })
        };
        let admin = Some(Caller {
            id: other,
            is_admin: true,
        });
        use EnrollmentStatus::*;
        use MemberRole::*;
        // (who, caller, facts, join, live, replay, chat, moderate)
        let table: Vec<(&str, Option<Caller>, LessonFacts, [bool; 5])> = vec![
            (
                "course owner",
                user(owner),
                facts(None, None, N),
                [Y, Y, Y, Y, Y],
            ),
            (
                "co-teacher",
                user(other),
                facts(Some(CoTeacher), None, N),
                [Y, Y, Y, Y, Y],
            ),
            (
                "assistant",
                user(other),
                facts(Some(Assistant), None, N),
                [Y, Y, Y, Y, Y],
            ),
            ("admin", admin, facts(None, None, N), [Y, Y, Y, Y, Y]),
            (
                "enrolled student",
                user(other),
                facts(None, Some(Active), N),
                [Y, Y, Y, Y, N],
            ),
            (
                "student who left",
                user(other),
                facts(None, Some(Left), N),
                [N, N, N, N, N],
            ),
            (
                "refunded student",
                user(other),
                facts(None, Some(Refunded), N),
                [N, N, N, N, N],
            ),
            (
                "unenrolled student",
                user(other),
                facts(None, None, N),
                [N, N, N, N, N],
            ),
            ("anonymous", None, facts(None, None, N), [N, N, N, N, N]),
            (
                "unenrolled, free preview",
                user(other),
                facts(None, None, Y),
                [Y, Y, Y, N, N],
            ),
            (
                "anonymous, free preview",
                None,
                facts(None, None, Y),
                [N, Y, Y, N, N],
            ),
            (
                "enrolled, free preview",
                user(other),
                facts(None, Some(Active), Y),
                [Y, Y, Y, Y, N],
            ),
        ];
        for (who, caller, f, [join, live, replay, chat, moderate]) in table {
            let want = LessonAccess {
                join_meeting: join,
                watch_live: live,
                watch_replay: replay,
                chat,
                moderate,
            };
            assert_eq!(lesson_access(caller, &f), want, "{who}");
        }
    }

    #[test]
    fn a_free_preview_of_an_unpublished_course_opens_nothing() {
        let f = LessonFacts {
            course_owner: Uuid::now_v7(),
            course_visibility: CourseVisibility::Draft,
            free_preview: true,
            member: None,
            enrollment: None,
        };
        assert_eq!(lesson_access(None, &f), LessonAccess::NOTHING);
    }
}
