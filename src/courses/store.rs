//! Queries on `courses`, `course_members`, `lessons` and `enrollments`. Every function takes
//! `&mut PgConnection`, so callers choose a pooled connection or a transaction.
//!
//! A lesson's status is not stored: it is derived from its live stream in the query
//! (`active` stream → `live`; ended by a teacher (`ended_at`) or a session that ended
//! (`live_stream.idle` event) → `ended`; otherwise `scheduled`), so it follows the live
//! stream's events without a listener. Deleted lessons (`deleted_at`) are in no query.
//!
//! Size: over 800 lines: every query of courses, lessons, members and enrollments, kept in one
//! place so the compile-checked SQL of the courses schema reads together; a split per table is
//! the next step if it grows.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    CourseVisibility, EnrollmentStatus, LessonKind, LessonStatus, MemberRole, Money,
    policy::LessonFacts,
};
use crate::domain::{Currency, Page, PageLimit};

/// A course as stored.
#[derive(Debug, Clone)]
pub struct Course {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub title: String,
    pub summary: String,
    pub description: String,
    pub description_html: String,
    pub price: Money,
    pub visibility: CourseVisibility,
    pub tags: Vec<String>,
    pub language: String,
    /// The cover image's object key, if it has one.
    pub cover_key: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

struct CourseRow {
    id: Uuid,
    owner_id: Uuid,
    title: String,
    summary: String,
    description: String,
    description_html: String,
    price_amount: i64,
    currency: String,
    visibility: String,
    tags: Vec<String>,
    language: String,
    cover_key: Option<String>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

fn decode(table: &str, column: &str, e: impl std::fmt::Display) -> sqlx::Error {
    sqlx::Error::Decode(format!("{table}.{column}: {e}").into())
}

impl TryFrom<CourseRow> for Course {
    type Error = sqlx::Error;
    fn try_from(r: CourseRow) -> Result<Course, sqlx::Error> {
        Ok(Course {
            id: r.id,
            owner_id: r.owner_id,
            title: r.title,
            summary: r.summary,
            description: r.description,
            description_html: r.description_html,
            price: Money::new(r.price_amount, Currency::from_db(r.currency)),
            visibility: r
                .visibility
                .parse()
                .map_err(|e| decode("courses", "visibility", e))?,
            tags: r.tags,
            language: r.language,
            cover_key: r.cover_key,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// What to create (all parsed).
#[derive(Debug, Clone)]
pub struct NewCourse {
    pub owner_id: Uuid,
    pub title: String,
    pub summary: String,
    pub description: String,
    pub price: Money,
    pub visibility: CourseVisibility,
    pub tags: Vec<String>,
    pub language: String,
}

/// A partial update: `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct CoursePatch {
    pub title: Option<String>,
    pub summary: Option<String>,
    pub description: Option<String>,
    pub price: Option<Money>,
    pub visibility: Option<CourseVisibility>,
    pub tags: Option<Vec<String>>,
    pub language: Option<String>,
}

pub async fn create_course(
    conn: &mut PgConnection,
    new: &NewCourse,
) -> Result<Course, sqlx::Error> {
    let html = super::render_markdown(&new.description);
    sqlx::query_as!(
        CourseRow,
        r#"INSERT INTO courses (id, owner_id, title, summary, description, description_html,
                                price_amount, currency, visibility, tags, language)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
           RETURNING id, owner_id, title, summary, description, description_html, price_amount,
                     currency, visibility, tags, language, cover_key, created_at, updated_at"#,
        Uuid::now_v7(),
        new.owner_id,
        new.title,
        new.summary,
        new.description,
        html,
        new.price.amount,
        new.price.currency.as_str(),
        new.visibility.as_str(),
        &new.tags,
        new.language,
    )
    .fetch_one(conn)
    .await?
    .try_into()
}

pub async fn get_course(conn: &mut PgConnection, id: Uuid) -> Result<Option<Course>, sqlx::Error> {
    sqlx::query_as!(
        CourseRow,
        r#"SELECT id, owner_id, title, summary, description, description_html, price_amount,
                  currency, visibility, tags, language, cover_key, created_at, updated_at
           FROM courses WHERE id = $1"#,
        id,
    )
    .fetch_optional(conn)
    .await?
    .map(Course::try_from)
    .transpose()
}

pub async fn update_course(
    conn: &mut PgConnection,
    id: Uuid,
    patch: &CoursePatch,
) -> Result<Option<Course>, sqlx::Error> {
    let html = patch.description.as_deref().map(super::render_markdown);
    sqlx::query_as!(
        CourseRow,
        r#"UPDATE courses
           SET title = COALESCE($2, title),
               summary = COALESCE($3, summary),
               description = COALESCE($4, description),
               description_html = COALESCE($5, description_html),
               price_amount = COALESCE($6, price_amount),
               currency = COALESCE($7, currency),
               visibility = COALESCE($8, visibility),
               tags = COALESCE($9, tags),
               language = COALESCE($10, language),
               updated_at = now()
           WHERE id = $1
           RETURNING id, owner_id, title, summary, description, description_html, price_amount,
                     currency, visibility, tags, language, cover_key, created_at, updated_at"#,
        id,
        patch.title.as_deref(),
        patch.summary.as_deref(),
        patch.description.as_deref(),
        html.as_deref(),
        patch.price.as_ref().map(|p| p.amount),
        patch.price.as_ref().map(|p| p.currency.as_str()),
        patch.visibility.map(CourseVisibility::as_str),
        patch.tags.as_deref() as Option<&[String]>,
        patch.language.as_deref(),
    )
    .fetch_optional(conn)
    .await?
    .map(Course::try_from)
    .transpose()
}

/// Set (or, with `None`, remove) a course's cover; returns the previous key, or `None` when
/// there is no such course.
pub async fn set_cover(
    conn: &mut PgConnection,
    id: Uuid,
    key: Option<&str>,
) -> Result<Option<Option<String>>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"UPDATE courses c SET cover_key = $2, updated_at = now()
           FROM (SELECT cover_key FROM courses WHERE id = $1 FOR UPDATE) old
           WHERE c.id = $1 RETURNING old.cover_key"#,
        id,
        key,
    )
    .fetch_optional(conn)
    .await
}

/// Whether any order (whatever its state) was ever placed for the course: such a course is
/// archived, never deleted (the database refuses through `orders_course_id_fkey`).
pub async fn has_orders(conn: &mut PgConnection, course: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM orders WHERE course_id = $1) AS "exists!""#,
        course
    )
    .fetch_one(conn)
    .await
}

/// Lock a course row for the rest of the transaction (deletion).
pub async fn lock_course(conn: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
    Ok(
        sqlx::query_scalar!("SELECT id FROM courses WHERE id = $1 FOR UPDATE", id)
            .fetch_optional(conn)
            .await?
            .is_some(),
    )
}

/// The live streams of every lesson of a course (deleted lessons included).
pub async fn lesson_streams(
    conn: &mut PgConnection,
    course: Uuid,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT live_stream_id FROM lessons WHERE course_id = $1 ORDER BY id",
        course
    )
    .fetch_all(conn)
    .await
}

/// Delete a course row; its members, lessons and enrollments go with it (ON DELETE CASCADE).
/// Refused by the database when an order points at it.
pub async fn delete_course(conn: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!("DELETE FROM courses WHERE id = $1", id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Catalogue order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    Newest,
    Oldest,
    PriceAsc,
    PriceDesc,
}

impl Sort {
    pub fn parse(s: Option<&str>) -> Result<Sort, crate::users::InvalidInput> {
        match s {
            None | Some("newest") => Ok(Sort::Newest),
            Some("oldest") => Ok(Sort::Oldest),
            Some("price_asc") => Ok(Sort::PriceAsc),
            Some("price_desc") => Ok(Sort::PriceDesc),
            Some(_) => Err(crate::users::InvalidInput {
                field: "sort",
                reason: "must be one of newest, oldest, price_asc, price_desc",
            }),
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            Sort::Newest => "newest",
            Sort::Oldest => "oldest",
            Sort::PriceAsc => "price_asc",
            Sort::PriceDesc => "price_desc",
        }
    }
}

/// Keyset position in the catalogue: the last item's price and id (price only matters for the
/// price sorts). Encoded for clients as `<price>_<id>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub price: i64,
    pub id: Uuid,
}

impl Cursor {
    pub fn encode(&self) -> String {
        format!("{}_{}", self.price, self.id)
    }
    pub fn decode(s: &str) -> Option<Cursor> {
        let (p, id) = s.split_once('_')?;
        Some(Cursor {
            price: p.parse().ok()?,
            id: id.parse().ok()?,
        })
    }
}

/// Catalogue filters (published courses only).
#[derive(Debug, Clone, Default)]
pub struct CatalogueFilter {
    /// Full-text query (websearch syntax) over title, summary and tags.
    pub q: Option<String>,
    pub tag: Option<String>,
    pub language: Option<String>,
    /// `Some(true)`: free only; `Some(false)`: paid only.
    pub free: Option<bool>,
    pub owner_id: Option<Uuid>,
}

pub async fn catalogue(
    conn: &mut PgConnection,
    filter: &CatalogueFilter,
    sort: Sort,
    cursor: Option<Cursor>,
    limit: PageLimit,
) -> Result<(Vec<Course>, Option<Cursor>), sqlx::Error> {
    let fetch = i64::try_from(limit.get() + 1).unwrap_or(i64::MAX);
    let rows = sqlx::query_as!(
        CourseRow,
        r#"SELECT id, owner_id, title, summary, description, description_html, price_amount,
                  currency, visibility, tags, language, cover_key, created_at, updated_at
           FROM courses
           WHERE visibility = 'published'
             AND ($1::text IS NULL OR search @@ websearch_to_tsquery('simple', $1))
             AND ($2::text IS NULL OR tags @> ARRAY[$2::text])
             AND ($3::text IS NULL OR language = $3)
             AND ($4::bool IS NULL OR (price_amount = 0) = $4)
             AND ($5::uuid IS NULL OR owner_id = $5)
             AND ($7::uuid IS NULL OR CASE $6::text
                    WHEN 'oldest' THEN id > $7
                    WHEN 'price_asc' THEN (price_amount, id) > ($8::bigint, $7)
                    WHEN 'price_desc' THEN (price_amount, id) < ($8::bigint, $7)
                    ELSE id < $7 END)
           ORDER BY
             CASE WHEN $6 = 'price_asc' THEN price_amount END ASC,
             CASE WHEN $6 = 'price_desc' THEN price_amount END DESC,
             CASE WHEN $6 IN ('oldest', 'price_asc') THEN id END ASC,
             id DESC
           LIMIT $9"#,
        filter.q.as_deref(),
        filter.tag.as_deref(),
        filter.language.as_deref(),
        filter.free,
        filter.owner_id,
        sort.as_str(),
        cursor.map(|c| c.id),
        cursor.map(|c| c.price).unwrap_or(0),
        fetch,
    )
    .fetch_all(conn)
    .await?;
    let mut items = rows
        .into_iter()
        .map(Course::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    let next = if items.len() > limit.get() {
        items.truncate(limit.get());
        items.last().map(|c| Cursor {
            price: c.price.amount,
            id: c.id,
        })
    } else {
        None
    };
    Ok((items, next))
}

/// Courses `user` teaches (owns or is a member of), every visibility, newest first.
pub async fn teaching(
    conn: &mut PgConnection,
    user: Uuid,
    cursor: Option<Uuid>,
    limit: PageLimit,
) -> Result<Page<Course>, sqlx::Error> {
    let fetch = i64::try_from(limit.get() + 1).unwrap_or(i64::MAX);
    let rows = sqlx::query_as!(
        CourseRow,
        r#"SELECT id, owner_id, title, summary, description, description_html, price_amount,
                  currency, visibility, tags, language, cover_key, created_at, updated_at
           FROM courses c
           WHERE (owner_id = $1
                  OR EXISTS (SELECT 1 FROM course_members m WHERE m.course_id = c.id AND m.user_id = $1))
             AND ($2::uuid IS NULL OR id < $2)
           ORDER BY id DESC
           LIMIT $3"#,
        user,
        cursor,
        fetch,
    )
    .fetch_all(conn)
    .await?;
    page(rows, limit)
}

/// Courses `user` is actively enrolled in, newest enrollment first (cursor: the course id of
/// the last item, positions by enrollment id).
pub async fn enrolled(
    conn: &mut PgConnection,
    user: Uuid,
    cursor: Option<Uuid>,
    limit: PageLimit,
) -> Result<Page<Course>, sqlx::Error> {
    let fetch = i64::try_from(limit.get() + 1).unwrap_or(i64::MAX);
    let rows = sqlx::query_as!(
        CourseRow,
        r#"SELECT c.id, c.owner_id, c.title, c.summary, c.description, c.description_html,
                  c.price_amount, c.currency, c.visibility, c.tags, c.language, c.cover_key,
                  c.created_at, c.updated_at
           FROM enrollments e JOIN courses c ON c.id = e.course_id
           WHERE e.user_id = $1 AND e.status = 'active'
             AND ($2::uuid IS NULL OR c.id < $2)
           ORDER BY c.id DESC
           LIMIT $3"#,
        user,
        cursor,
        fetch,
    )
    .fetch_all(conn)
    .await?;
    page(rows, limit)
}

fn page(rows: Vec<CourseRow>, limit: PageLimit) -> Result<Page<Course>, sqlx::Error> {
    let items = rows
        .into_iter()
        .map(Course::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::cut(items, limit, |c| c.id))
}

/// `user`'s member role in `course`, if any.
pub async fn member_role(
    conn: &mut PgConnection,
    course: Uuid,
    user: Uuid,
) -> Result<Option<MemberRole>, sqlx::Error> {
    let role = sqlx::query_scalar!(
        "SELECT role FROM course_members WHERE course_id = $1 AND user_id = $2",
        course,
        user,
    )
    .fetch_optional(conn)
    .await?;
    role.map(|r| r.parse().map_err(|e| decode("course_members", "role", e)))
        .transpose()
}

/// Add or change a member.
pub async fn put_member(
    conn: &mut PgConnection,
    course: Uuid,
    user: Uuid,
    role: MemberRole,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO course_members (course_id, user_id, role) VALUES ($1, $2, $3)
         ON CONFLICT (course_id, user_id) DO UPDATE SET role = EXCLUDED.role",
        course,
        user,
        role.as_str(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn remove_member(
    conn: &mut PgConnection,
    course: Uuid,
    user: Uuid,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "DELETE FROM course_members WHERE course_id = $1 AND user_id = $2",
        course,
        user,
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// An enrollment as stored.
#[derive(Debug, Clone)]
pub struct Enrollment {
    pub id: Uuid,
    pub course_id: Uuid,
    pub user_id: Uuid,
    pub status: EnrollmentStatus,
    pub source: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

struct EnrollmentRow {
    id: Uuid,
    course_id: Uuid,
    user_id: Uuid,
    status: String,
    source: String,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl TryFrom<EnrollmentRow> for Enrollment {
    type Error = sqlx::Error;
    fn try_from(r: EnrollmentRow) -> Result<Enrollment, sqlx::Error> {
        Ok(Enrollment {
            id: r.id,
            course_id: r.course_id,
            user_id: r.user_id,
            status: r
                .status
                .parse()
                .map_err(|e| decode("enrollments", "status", e))?,
            source: r.source,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// How an enrollment became active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrollmentSource {
    /// The course is free: the student enrolled.
    Free,
    /// A teacher of the course or an admin granted it (`by`).
    Grant { by: Uuid },
}

/// Make `user`'s enrollment in `course` active (a new row, or a left/refunded one again).
pub async fn activate_enrollment(
    conn: &mut PgConnection,
    course: Uuid,
    user: Uuid,
    source: EnrollmentSource,
) -> Result<Enrollment, sqlx::Error> {
    let (src, by) = match source {
        EnrollmentSource::Free => ("free", None),
        EnrollmentSource::Grant { by } => ("grant", Some(by)),
    };
    let row = sqlx::query_as!(
        EnrollmentRow,
        r#"INSERT INTO enrollments (id, course_id, user_id, status, source, granted_by)
           VALUES ($1, $2, $3, 'active', $4, $5)
           ON CONFLICT ON CONSTRAINT enrollments_course_user_key DO UPDATE
             SET status = 'active', source = EXCLUDED.source, granted_by = EXCLUDED.granted_by,
                 updated_at = now()
             WHERE enrollments.status <> 'active'
           RETURNING id, course_id, user_id, status, source, created_at, updated_at"#,
        Uuid::now_v7(),
        course,
        user,
        src,
        by,
    )
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(r) => {
            crate::webhooks::enrollment_created(conn, course, user).await?;
            r.try_into()
        }
        // Already active: nothing changed.
        None => get_enrollment_required(conn, course, user).await,
    }
}

async fn get_enrollment_required(
    conn: &mut PgConnection,
    course: Uuid,
    user: Uuid,
) -> Result<Enrollment, sqlx::Error> {
    get_enrollment(conn, course, user)
        .await?
        .ok_or(sqlx::Error::RowNotFound)
}

pub async fn get_enrollment(
    conn: &mut PgConnection,
    course: Uuid,
    user: Uuid,
) -> Result<Option<Enrollment>, sqlx::Error> {
    sqlx::query_as!(
        EnrollmentRow,
        r#"SELECT id, course_id, user_id, status, source, created_at, updated_at
           FROM enrollments WHERE course_id = $1 AND user_id = $2"#,
        course,
        user,
    )
    .fetch_optional(conn)
    .await?
    .map(Enrollment::try_from)
    .transpose()
}

/// Whether `user` is actively enrolled in `course` (a course order for it is refused).
pub async fn is_actively_enrolled(
    conn: &mut PgConnection,
    course: Uuid,
    user: Uuid,
) -> Result<bool, sqlx::Error> {
    let enrolled: Option<String> = sqlx::query_scalar!(
        "SELECT status FROM enrollments WHERE course_id = $1 AND user_id = $2",
        course,
        user
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(enrolled.as_deref() == Some("active"))
}

/// Move an active enrollment to `to` (`left` or `refunded`). `None` if there was no active one.
pub async fn end_enrollment(
    conn: &mut PgConnection,
    course: Uuid,
    user: Uuid,
    to: EnrollmentStatus,
) -> Result<Option<Enrollment>, sqlx::Error> {
    sqlx::query_as!(
        EnrollmentRow,
        r#"UPDATE enrollments SET status = $3, updated_at = now()
           WHERE course_id = $1 AND user_id = $2 AND status = 'active'
           RETURNING id, course_id, user_id, status, source, created_at, updated_at"#,
        course,
        user,
        to.as_str(),
    )
    .fetch_optional(conn)
    .await?
    .map(Enrollment::try_from)
    .transpose()
}

/// One line of a course's roster, as its teachers see it.
#[derive(Debug, Clone)]
pub struct RosterEntry {
    pub enrollment: Enrollment,
    pub display_name: String,
    /// The order that paid for it (`source = order`).
    pub order_id: Option<Uuid>,
    /// Who granted it (`source = grant`).
    pub granted_by: Option<Uuid>,
}

/// Enrollments of a course, every status unless `status` is given, oldest first.
pub async fn list_enrollments(
    conn: &mut PgConnection,
    course: Uuid,
    status: Option<EnrollmentStatus>,
    cursor: Option<Uuid>,
    limit: PageLimit,
) -> Result<Page<RosterEntry>, sqlx::Error> {
    let fetch = i64::try_from(limit.get() + 1).unwrap_or(i64::MAX);
    let rows = sqlx::query!(
        r#"SELECT e.id, e.course_id, e.user_id, e.status, e.source, e.created_at, e.updated_at,
                  e.order_id, e.granted_by, u.display_name
           FROM enrollments e JOIN users u ON u.id = e.user_id
           WHERE e.course_id = $1 AND ($2::text IS NULL OR e.status = $2)
             AND ($3::uuid IS NULL OR e.id > $3)
           ORDER BY e.id LIMIT $4"#,
        course,
        status.map(EnrollmentStatus::as_str),
        cursor,
        fetch,
    )
    .fetch_all(conn)
    .await?;
    let items = rows
        .into_iter()
        .map(|r| {
            Ok(RosterEntry {
                enrollment: EnrollmentRow {
                    id: r.id,
                    course_id: r.course_id,
                    user_id: r.user_id,
                    status: r.status,
                    source: r.source,
                    created_at: r.created_at,
                    updated_at: r.updated_at,
                }
                .try_into()?,
                display_name: r.display_name,
                order_id: r.order_id,
                granted_by: r.granted_by,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Page::cut(items, limit, |e| e.enrollment.id))
}

/// A lesson with its derived status.
#[derive(Debug, Clone)]
pub struct Lesson {
    pub id: Uuid,
    pub course_id: Uuid,
    pub title: String,
    pub kind: LessonKind,
    pub starts_at: OffsetDateTime,
    pub duration_minutes: i32,
    pub time_zone: String,
    pub free_preview: bool,
    pub live_stream_id: Uuid,
    pub room_name: String,
    pub status: LessonStatus,
    /// When a teacher ended it (`POST /lessons/{id}/end`).
    pub ended_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

struct LessonRow {
    id: Uuid,
    course_id: Uuid,
    title: String,
    kind: String,
    starts_at: OffsetDateTime,
    duration_minutes: i32,
    time_zone: String,
    free_preview: bool,
    live_stream_id: Uuid,
    room_name: String,
    status: String,
    ended_at: Option<OffsetDateTime>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl TryFrom<LessonRow> for Lesson {
    type Error = sqlx::Error;
    fn try_from(r: LessonRow) -> Result<Lesson, sqlx::Error> {
        Ok(Lesson {
            id: r.id,
            course_id: r.course_id,
            title: r.title,
            kind: r.kind.parse().map_err(|e| decode("lessons", "kind", e))?,
            starts_at: r.starts_at,
            duration_minutes: r.duration_minutes,
            time_zone: r.time_zone,
            free_preview: r.free_preview,
            live_stream_id: r.live_stream_id,
            room_name: r.room_name,
            status: r
                .status
                .parse()
                .map_err(|e| decode("lessons", "status", e))?,
            ended_at: r.ended_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

#[derive(Debug, Clone)]
pub struct NewLesson {
    pub course_id: Uuid,
    pub title: String,
    pub kind: LessonKind,
    pub starts_at: OffsetDateTime,
    pub duration_minutes: i32,
    pub time_zone: String,
    pub free_preview: bool,
    pub live_stream_id: Uuid,
    pub room_name: String,
}

#[derive(Debug, Clone, Default)]
pub struct LessonPatch {
    pub title: Option<String>,
    pub kind: Option<LessonKind>,
    pub starts_at: Option<OffsetDateTime>,
    pub duration_minutes: Option<i32>,
    pub time_zone: Option<String>,
    pub free_preview: Option<bool>,
}

pub async fn create_lesson(conn: &mut PgConnection, new: &NewLesson) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::now_v7();
    sqlx::query!(
        r#"INSERT INTO lessons (id, course_id, title, kind, starts_at, duration_minutes, time_zone,
                                free_preview, live_stream_id, room_name)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"#,
        id,
        new.course_id,
        new.title,
        new.kind.as_str(),
        new.starts_at,
        new.duration_minutes,
        new.time_zone,
        new.free_preview,
        new.live_stream_id,
        new.room_name,
    )
    .execute(conn)
    .await?;
    Ok(id)
}

pub async fn update_lesson(
    conn: &mut PgConnection,
    id: Uuid,
    patch: &LessonPatch,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        r#"UPDATE lessons
           SET title = COALESCE($2, title),
               kind = COALESCE($3, kind),
               starts_at = COALESCE($4, starts_at),
               duration_minutes = COALESCE($5, duration_minutes),
               time_zone = COALESCE($6, time_zone),
               free_preview = COALESCE($7, free_preview),
               updated_at = now()
           WHERE id = $1 AND deleted_at IS NULL"#,
        id,
        patch.title.as_deref(),
        patch.kind.map(LessonKind::as_str),
        patch.starts_at,
        patch.duration_minutes,
        patch.time_zone.as_deref(),
        patch.free_preview,
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Soft-delete a lesson: it vanishes from every query; returns its live stream (`None` when
/// there was no such lesson, or it was deleted already).
pub async fn delete_lesson(conn: &mut PgConnection, id: Uuid) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "UPDATE lessons SET deleted_at = now(), updated_at = now()
         WHERE id = $1 AND deleted_at IS NULL RETURNING live_stream_id",
        id
    )
    .fetch_optional(conn)
    .await
}

/// Mark a lesson ended (the first time only: `ended_at` keeps the first end).
pub async fn end_lesson(conn: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE lessons SET ended_at = coalesce(ended_at, now()), updated_at = now()
         WHERE id = $1 AND deleted_at IS NULL",
        id
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

pub async fn get_lesson(conn: &mut PgConnection, id: Uuid) -> Result<Option<Lesson>, sqlx::Error> {
    sqlx::query_as!(
        LessonRow,
        r#"SELECT l.id, l.course_id, l.title, l.kind, l.starts_at, l.duration_minutes, l.time_zone,
                  l.free_preview, l.live_stream_id, l.room_name, l.ended_at, l.created_at, l.updated_at,
                  CASE WHEN s.status = 'active' THEN 'live'
                       WHEN l.ended_at IS NOT NULL THEN 'ended'
                       WHEN EXISTS (SELECT 1 FROM live_stream_events e
                                    WHERE e.live_stream_id = l.live_stream_id
                                      AND e.kind = 'live_stream.idle') THEN 'ended'
                       ELSE 'scheduled' END AS "status!"
           FROM lessons l JOIN live_streams s ON s.id = l.live_stream_id
           WHERE l.id = $1 AND l.deleted_at IS NULL"#,
        id,
    )
    .fetch_optional(conn)
    .await?
    .map(Lesson::try_from)
    .transpose()
}

/// The lessons of a course in schedule order.
pub async fn list_lessons(
    conn: &mut PgConnection,
    course: Uuid,
) -> Result<Vec<Lesson>, sqlx::Error> {
    sqlx::query_as!(
        LessonRow,
        r#"SELECT l.id, l.course_id, l.title, l.kind, l.starts_at, l.duration_minutes, l.time_zone,
                  l.free_preview, l.live_stream_id, l.room_name, l.ended_at, l.created_at, l.updated_at,
                  CASE WHEN s.status = 'active' THEN 'live'
                       WHEN l.ended_at IS NOT NULL THEN 'ended'
                       WHEN EXISTS (SELECT 1 FROM live_stream_events e
                                    WHERE e.live_stream_id = l.live_stream_id
                                      AND e.kind = 'live_stream.idle') THEN 'ended'
                       ELSE 'scheduled' END AS "status!"
           FROM lessons l JOIN live_streams s ON s.id = l.live_stream_id
           WHERE l.course_id = $1 AND l.deleted_at IS NULL
           ORDER BY l.starts_at, l.id
           LIMIT 500"#,
        course,
    )
    .fetch_all(conn)
    .await?
    .into_iter()
    .map(Lesson::try_from)
    .collect()
}

/// The facts the access policy needs about `course` and `user`.
pub async fn facts(
    conn: &mut PgConnection,
    course: &Course,
    free_preview: bool,
    user: Option<Uuid>,
) -> Result<LessonFacts, sqlx::Error> {
    let (member, enrollment) = match user {
        Some(u) => (
            member_role(conn, course.id, u).await?,
            get_enrollment(conn, course.id, u).await?.map(|e| e.status),
        ),
        None => (None, None),
    };
    Ok(LessonFacts {
        course_owner: course.owner_id,
        course_visibility: course.visibility,
        free_preview,
        member,
        enrollment,
    })
}

/// Ready recordings of a live stream (replays), oldest first.
pub async fn replays(
    conn: &mut PgConnection,
    live_stream_id: Uuid,
) -> Result<Vec<(Uuid, OffsetDateTime, i64)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT id, started_at, duration_ms FROM recordings
           WHERE live_stream_id = $1 AND deleted_at IS NULL AND status = 'ready'
           ORDER BY id"#,
        live_stream_id,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.id, r.started_at, r.duration_ms))
        .collect())
}

/// A paid order the payments module confirmed (shape to be fixed by the payments issue).
#[derive(Debug, Clone)]
pub struct PaidOrder {
    pub order_id: Uuid,
    pub course_id: Uuid,
    pub user_id: Uuid,
}

/// The enrollment a confirmed paid order creates (`source = 'order'`, `order_id` set), in the
/// payments transaction that writes the order's ledger entries: either both happen or neither.
/// An existing enrollment (left, refunded, or granted) becomes active and points at the order.
pub async fn enroll_paid(conn: &mut PgConnection, order: &PaidOrder) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"INSERT INTO enrollments (id, course_id, user_id, status, source, order_id)
           VALUES ($1, $2, $3, 'active', 'order', $4)
           ON CONFLICT ON CONSTRAINT enrollments_course_user_key DO UPDATE
             SET status = 'active', source = 'order', order_id = EXCLUDED.order_id,
                 updated_at = now()"#,
        Uuid::now_v7(),
        order.course_id,
        order.user_id,
        order.order_id,
    )
    .execute(&mut *conn)
    .await?;
    crate::webhooks::enrollment_created(conn, order.course_id, order.user_id).await
}

/// A fully refunded order ends the enrollment it created (`refunded`); other enrollments
/// (granted meanwhile, or from another order) are left alone.
pub async fn refund_paid(conn: &mut PgConnection, order_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"UPDATE enrollments SET status = 'refunded', updated_at = now()
           WHERE order_id = $1 AND source = 'order' AND status = 'active'"#,
        order_id,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// What a catalogue card shows beside the course itself: the teacher's name and the start of
/// the next lesson that has not ended (none when nothing is scheduled). One query per page.
pub struct CardFacts {
    pub teacher_name: String,
    pub next_lesson_at: Option<OffsetDateTime>,
}

pub async fn card_facts(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, CardFacts>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT c.id, u.display_name,
                  (SELECT min(l.starts_at) FROM lessons l
                    WHERE l.course_id = c.id AND l.deleted_at IS NULL AND l.ended_at IS NULL
                      AND l.starts_at + make_interval(mins => l.duration_minutes) > now()) AS next_lesson_at
             FROM courses c JOIN users u ON u.id = c.owner_id
            WHERE c.id = ANY($1)"#,
        ids
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.id,
                CardFacts {
                    teacher_name: r.display_name,
                    next_lesson_at: r.next_lesson_at,
                },
            )
        })
        .collect())
}
