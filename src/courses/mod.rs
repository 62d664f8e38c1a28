//! Courses, lessons and enrollments, and the one access policy that decides what a user may do
//! in a lesson.
//!
//! Layout: this module holds the parsed inputs (parse, don't validate: a [`CourseTitle`] or
//! a price ([`Money::price`]) exists only if valid) and Markdown rendering; [`policy`] is the access decision
//! (a pure function, tested as a table); [`store`] the queries.

pub mod policy;
pub mod store;

use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use crate::domain::Money;
use crate::users::InvalidInput;

/// Who may see a course in the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CourseVisibility {
    /// Only its teachers (and admins) see it.
    Draft,
    /// In the public catalogue; students may enroll.
    Published,
    /// Out of the catalogue and closed to new enrollments; enrolled students keep access.
    Archived,
}

impl CourseVisibility {
    pub fn as_str(self) -> &'static str {
        match self {
            CourseVisibility::Draft => "draft",
            CourseVisibility::Published => "published",
            CourseVisibility::Archived => "archived",
        }
    }
}

impl FromStr for CourseVisibility {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, InvalidInput> {
        match s {
            "draft" => Ok(CourseVisibility::Draft),
            "published" => Ok(CourseVisibility::Published),
            "archived" => Ok(CourseVisibility::Archived),
            _ => Err(InvalidInput {
                field: "visibility",
                reason: "must be one of draft, published, archived",
            }),
        }
    }
}

/// A member's role in a course (the owner is not a member row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    /// Teaches with the owner: every right in the course's lessons.
    CoTeacher,
    /// Teaching assistant: joins, watches, chats and moderates; does not edit the course.
    Assistant,
}

impl MemberRole {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberRole::CoTeacher => "co_teacher",
            MemberRole::Assistant => "assistant",
        }
    }
}

impl FromStr for MemberRole {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, InvalidInput> {
        match s {
            "co_teacher" => Ok(MemberRole::CoTeacher),
            "assistant" => Ok(MemberRole::Assistant),
            _ => Err(InvalidInput {
                field: "role",
                reason: "must be co_teacher or assistant",
            }),
        }
    }
}

/// Where an enrollment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EnrollmentStatus {
    /// The student has access.
    Active,
    /// The student left the course (may enroll again).
    Left,
    /// The paid order was refunded: access ends.
    Refunded,
}

impl EnrollmentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EnrollmentStatus::Active => "active",
            EnrollmentStatus::Left => "left",
            EnrollmentStatus::Refunded => "refunded",
        }
    }
}

impl FromStr for EnrollmentStatus {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, InvalidInput> {
        match s {
            "active" => Ok(EnrollmentStatus::Active),
            "left" => Ok(EnrollmentStatus::Left),
            "refunded" => Ok(EnrollmentStatus::Refunded),
            _ => Err(InvalidInput {
                field: "status",
                reason: "must be one of active, left, refunded",
            }),
        }
    }
}

/// A lesson's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LessonKind {
    /// One teacher to many: RTMP/WHIP → HLS.
    Broadcast,
    /// An interactive Jitsi class, optionally streamed by Jibri into the lesson's RTMP ingest.
    Meeting,
}

impl LessonKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LessonKind::Broadcast => "broadcast",
            LessonKind::Meeting => "meeting",
        }
    }
}

impl FromStr for LessonKind {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, InvalidInput> {
        match s {
            "broadcast" => Ok(LessonKind::Broadcast),
            "meeting" => Ok(LessonKind::Meeting),
            _ => Err(InvalidInput {
                field: "kind",
                reason: "must be broadcast or meeting",
            }),
        }
    }
}

/// A lesson's status, derived from its live stream (see [`store::lesson_status_sql`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LessonStatus {
    Scheduled,
    Live,
    Ended,
}

impl FromStr for LessonStatus {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, InvalidInput> {
        match s {
            "scheduled" => Ok(LessonStatus::Scheduled),
            "live" => Ok(LessonStatus::Live),
            "ended" => Ok(LessonStatus::Ended),
            _ => Err(InvalidInput {
                field: "status",
                reason: "must be one of scheduled, live, ended",
            }),
        }
    }
}

fn text(
    s: &str,
    field: &'static str,
    min: usize,
    max: usize,
    reason: &'static str,
) -> Result<String, InvalidInput> {
    let s = s.trim();
    let n = s.chars().count();
    if n < min
        || n > max
        || s.chars()
            .any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
    {
        return Err(InvalidInput { field, reason });
    }
    Ok(s.to_string())
}

/// A course or lesson title: 1 to 200 printable characters.
pub fn parse_title(s: &str) -> Result<String, InvalidInput> {
    let t = text(s, "title", 1, 200, "must be 1 to 200 printable characters")?;
    if t.contains(['\n', '\r', '\t']) {
        return Err(InvalidInput {
            field: "title",
            reason: "must be 1 to 200 printable characters",
        });
    }
    Ok(t)
}

/// A course summary: up to 500 characters.
pub fn parse_summary(s: &str) -> Result<String, InvalidInput> {
    text(s, "summary", 0, 500, "must be at most 500 characters")
}

/// Markdown description: up to 50 000 characters.
pub fn parse_description(s: &str) -> Result<String, InvalidInput> {
    text(
        s,
        "description",
        0,
        50_000,
        "must be at most 50000 characters",
    )
}

/// Tags: at most 20, each 1 to 40 characters, lowercased, no spaces, deduplicated.
pub fn parse_tags(tags: &[String]) -> Result<Vec<String>, InvalidInput> {
    const BAD: InvalidInput = InvalidInput {
        field: "tags",
        reason: "at most 20 tags of 1 to 40 letters, digits, '-' or '_'",
    };
    let mut out: Vec<String> = Vec::new();
    for t in tags {
        let t = t.trim().to_lowercase();
        let n = t.chars().count();
        if n == 0
            || n > 40
            || !t
                .chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
        {
            return Err(BAD);
        }
        if !out.contains(&t) {
            out.push(t);
        }
    }
    if out.len() > 20 {
        return Err(BAD);
    }
    Ok(out)
}

/// A BCP 47-ish language tag (`en`, `zh-CN`): 2 to 35 letters, digits and '-'.
pub fn parse_language(s: &str) -> Result<String, InvalidInput> {
    let s = s.trim();
    if (2..=35).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && s.as_bytes()[0].is_ascii_alphabetic()
    {
        Ok(s.to_string())
    } else {
        Err(InvalidInput {
            field: "language",
            reason: "must be a language tag such as en or zh-CN",
        })
    }
}

/// An IANA time zone name as given (`Asia/Shanghai`, `UTC`); kept for display, never used to
/// compute: `starts_at` is stored in UTC.
pub fn parse_time_zone(s: &str) -> Result<String, InvalidInput> {
    Ok(crate::domain::TimeZone::parse(s)?.as_str().to_owned())
}

/// A lesson's length: 1 to 1440 minutes.
pub fn parse_duration_minutes(m: i64) -> Result<i32, InvalidInput> {
    i32::try_from(m)
        .ok()
        .filter(|m| (1..=1440).contains(m))
        .ok_or(InvalidInput {
            field: "duration_minutes",
            reason: "must be between 1 and 1440",
        })
}

/// Markdown → sanitized HTML: rendered with pulldown-cmark, then cleaned by ammonia (raw HTML in
/// the Markdown, `javascript:` links and event handlers are removed; links get
/// `rel="noopener noreferrer"`). URLs may only be http(s), mailto and tel: ammonia's default
/// list also lets `ssh:`, `magnet:`, `mms:`, `sms:` … through, which open other programs from
/// a course page (found by the `markdown` fuzz target).
pub fn render_markdown(md: &str) -> String {
    use pulldown_cmark::{Options, Parser, html};
    let mut opts = Options::empty();
    opts.insert(Options::ENABLE_TABLES);
    opts.insert(Options::ENABLE_STRIKETHROUGH);
    opts.insert(Options::ENABLE_TASKLISTS);
    let mut out = String::with_capacity(md.len() * 3 / 2);
    html::push_html(&mut out, Parser::new_ext(md, opts));
    ammonia::Builder::default()
        .url_schemes(COURSE_URL_SCHEMES.iter().copied().collect())
        .clean(&out)
        .to_string()
}

/// The URL schemes a course description may link or point to.
pub const COURSE_URL_SCHEMES: &[&str] = &["http", "https", "mailto", "tel"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_is_rendered_and_sanitized() {
        let html = render_markdown(
            "# Hi\n\n**bold** <script>alert(1)</script> [x](javascript:alert(1)) <img src=x onerror=alert(1)>",
        );
        assert!(html.contains("<h1>Hi</h1>"), "{html}");
        assert!(html.contains("<strong>bold</strong>"), "{html}");
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("javascript:"), "{html}");
        assert!(!html.contains("onerror"), "{html}");
        let other = render_markdown(
            "[a](ssh://h) [b](magnet:?x=1) ![c](mms:x) [d](tel:+861) [e](https://x)",
        );
        assert!(
            !other.contains("ssh:") && !other.contains("magnet:") && !other.contains("mms:"),
            "{other}"
        );
        assert!(
            other.contains("href=\"tel:+861\"") && other.contains("href=\"https://x\""),
            "{other}"
        );
    }

    #[test]
    fn tags_are_normalised_and_bounded() {
        assert_eq!(
            parse_tags(&["Rust".into(), "rust".into(), "web-dev".into()]).unwrap(),
            vec!["rust", "web-dev"]
        );
        assert!(parse_tags(&["two words".into()]).is_err());
        assert!(parse_tags(&[String::new()]).is_err());
    }
}
