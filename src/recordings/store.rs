//! Queries on `recordings`, `recording_segments` and `recording_events`.
//!
//! Like live streams, access is a scope inside the query: a recording outside the caller's
//! scope is not found (404), never forbidden, so ids do not leak.

use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::{Page, PageLimit};
use crate::live::store::Scope;

/// A recording as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RecordingRow {
    pub id: Uuid,
    pub live_stream_id: Uuid,
    pub owner_id: Uuid,
    pub session_id: Uuid,
    pub status: String,
    pub failure_reason: Option<String>,
    pub visibility: String,
    pub started_at: OffsetDateTime,
    pub ended_at: Option<OffsetDateTime>,
    pub ready_at: Option<OffsetDateTime>,
    pub duration_ms: i64,
    pub size_bytes: i64,
    pub segment_count: i32,
    pub video_codec: Option<String>,
    pub audio_codec: Option<String>,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub mp4_size_bytes: Option<i64>,
    pub has_poster: bool,
    /// The last attempt at the MP4 failed (it is tried again at the next start, up to 3 times).
    pub mp4_failed_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
}

/// One stored segment of a recording.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SegmentRow {
    pub seq: i32,
    pub name: String,
    pub duration_ms: i32,
    pub size_bytes: i64,
    pub discontinuity: bool,
    pub uploaded: bool,
    pub lost: bool,
    /// When the segment's first frame arrived (NULL for segments recorded before it was kept).
    pub started_at: Option<OffsetDateTime>,
}

/// Filters of the recordings list.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub live_stream_id: Option<Uuid>,
    pub owner_id: Option<Uuid>,
    pub status: Option<String>,
    pub started_after: Option<OffsetDateTime>,
    pub started_before: Option<OffsetDateTime>,
    pub min_size_bytes: Option<i64>,
    pub max_size_bytes: Option<i64>,
    /// Recordings of this course's lessons.
    pub course_id: Option<Uuid>,
}

pub async fn create(
    db: &PgPool,
    id: Uuid,
    live_stream_id: Uuid,
    owner_id: Uuid,
    session_id: Uuid,
    private: bool,
    started_at: OffsetDateTime,
    node: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"INSERT INTO recordings (id, live_stream_id, owner_id, session_id, visibility, started_at, node_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7)"#,
        id,
        live_stream_id,
        owner_id,
        session_id,
        if private { "private" } else { "public" },
        started_at,
        node
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn get(
    conn: &mut PgConnection,
    scope: Scope,
    id: Uuid,
) -> Result<Option<RecordingRow>, sqlx::Error> {
    let owner = match scope {
        Scope::All => None,
        Scope::OwnedBy(u) => Some(u),
    };
    sqlx::query_as!(
        RecordingRow,
        r#"SELECT id, live_stream_id, owner_id, session_id, status, failure_reason, visibility,
                started_at, ended_at, ready_at, duration_ms, size_bytes, segment_count,
                video_codec, audio_codec, width, height, mp4_size_bytes, has_poster, mp4_failed_at, created_at
           FROM recordings
           WHERE id = $1 AND deleted_at IS NULL AND ($2::uuid IS NULL OR owner_id = $2)"#,
        id,
        owner,
    )
    .fetch_optional(conn)
    .await
}

/// Set a recording's visibility; the updated row, or `None` when it is not in `scope` (or
/// deleted). A runtime query: it touches one column the compile-checked ones already read.
pub async fn set_visibility(
    conn: &mut PgConnection,
    scope: Scope,
    id: Uuid,
    visibility: &str,
) -> Result<Option<RecordingRow>, sqlx::Error> {
    let owner = match scope {
        Scope::All => None,
        Scope::OwnedBy(u) => Some(u),
    };
    let done = sqlx::query(
        "UPDATE recordings SET visibility = $3, updated_at = now()
         WHERE id = $1 AND deleted_at IS NULL AND ($2::uuid IS NULL OR owner_id = $2)",
    )
    .bind(id)
    .bind(owner)
    .bind(visibility)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(None);
    }
    get(conn, scope, id).await
}

/// Whether the recording exists at all (deleted ones included): deletes are idempotent.
pub async fn exists_in_scope(
    conn: &mut PgConnection,
    scope: Scope,
    id: Uuid,
) -> Result<Option<bool>, sqlx::Error> {
    let owner = match scope {
        Scope::All => None,
        Scope::OwnedBy(u) => Some(u),
    };
    sqlx::query_scalar!(
        r#"SELECT deleted_at IS NOT NULL AS "deleted!" FROM recordings
           WHERE id = $1 AND ($2::uuid IS NULL OR owner_id = $2)"#,
        id,
        owner,
    )
    .fetch_optional(conn)
    .await
}

pub async fn list(
    conn: &mut PgConnection,
    scope: Scope,
    filter: &ListFilter,
    cursor: Option<Uuid>,
    limit: PageLimit,
) -> Result<Page<RecordingRow>, sqlx::Error> {
    let owner = match scope {
        Scope::All => filter.owner_id,
        Scope::OwnedBy(u) => Some(u),
    };
    let fetch = i64::try_from(limit.get() + 1).unwrap_or(i64::MAX);
    let items = sqlx::query_as!(
        RecordingRow,
        r#"SELECT id, live_stream_id, owner_id, session_id, status, failure_reason, visibility,
                started_at, ended_at, ready_at, duration_ms, size_bytes, segment_count,
                video_codec, audio_codec, width, height, mp4_size_bytes, has_poster, mp4_failed_at, created_at
           FROM recordings
           WHERE deleted_at IS NULL
             AND ($1::uuid IS NULL OR owner_id = $1)
             AND ($2::uuid IS NULL OR live_stream_id = $2)
             AND ($3::text IS NULL OR status = $3)
             AND ($4::timestamptz IS NULL OR started_at >= $4)
             AND ($5::timestamptz IS NULL OR started_at < $5)
             AND ($6::bigint IS NULL OR size_bytes >= $6)
             AND ($7::bigint IS NULL OR size_bytes <= $7)
             AND ($8::uuid IS NULL OR id < $8)
             AND ($10::uuid IS NULL OR live_stream_id IN
                    (SELECT live_stream_id FROM lessons WHERE course_id = $10))
           ORDER BY id DESC
           LIMIT $9"#,
        owner,
        filter.live_stream_id,
        filter.status.as_deref(),
        filter.started_after,
        filter.started_before,
        filter.min_size_bytes,
        filter.max_size_bytes,
        cursor,
        fetch,
        filter.course_id,
    )
    .fetch_all(conn)
    .await?;
    Ok(Page::cut(items, limit, |r| r.id))
}

pub async fn segments(db: &PgPool, id: Uuid) -> Result<Vec<SegmentRow>, sqlx::Error> {
    sqlx::query_as!(
        SegmentRow,
        r#"SELECT seq, name, duration_ms, size_bytes, discontinuity,
                  uploaded_at IS NOT NULL AS "uploaded!", lost, started_at
           FROM recording_segments WHERE recording_id = $1 ORDER BY seq"#,
        id,
    )
    .fetch_all(db)
    .await
}

/// Store a segment's row (its file is in `node`'s spool), unless the recording went on on
/// another node meanwhile (src/live/resume.rs): then nothing is stored and `false` comes back.
/// The recording row is share-locked while the segment is added, so a node claiming the
/// recording ([`claim_for_session`]) numbers its segments after this one.
pub async fn insert_segment(
    db: &PgPool,
    id: Uuid,
    seg: &SegmentRow,
    node: Uuid,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"WITH owner AS (
               SELECT id FROM recordings WHERE id = $1 AND (node_id = $8 OR node_id IS NULL)
               FOR SHARE),
           ins AS (
               INSERT INTO recording_segments
                      (recording_id, seq, name, duration_ms, size_bytes, discontinuity, started_at, node_id)
               SELECT $1, $2, $3, $4, $5, $6, $7, $8 FROM owner
               ON CONFLICT (recording_id, seq) DO NOTHING)
           SELECT EXISTS (SELECT 1 FROM owner) AS "ours!""#,
        id,
        seg.seq,
        &seg.name,
        seg.duration_ms,
        seg.size_bytes,
        seg.discontinuity,
        seg.started_at,
        node
    )
    .fetch_one(db)
    .await
}

/// A live session that another node held goes on on `me` (src/live/resume.rs): its open
/// recording becomes `me`'s. Returns the recording and the sequence number its next segment
/// takes, or `None` when it has no open recording (never had one, or it is being finished).
pub async fn claim_for_session(
    db: &PgPool,
    session_id: Uuid,
    me: Uuid,
) -> Result<Option<(Uuid, i32)>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let Some(id) = sqlx::query_scalar!(
        r#"UPDATE recordings SET node_id = $2, updated_at = now()
            WHERE id = (SELECT id FROM recordings
                         WHERE session_id = $1 AND status = 'recording' AND deleted_at IS NULL
                         ORDER BY started_at DESC LIMIT 1)
              AND status = 'recording'
        RETURNING id"#,
        session_id,
        me
    )
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(None);
    };
    // A statement of its own (a new snapshot): a segment the old holder added while this
    // update waited for its lock is counted.
    let next = sqlx::query_scalar!(
        r#"SELECT coalesce(max(seq) + 1, 0) AS "next!" FROM recording_segments WHERE recording_id = $1"#,
        id
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some((id, next)))
}

/// Segments of `id` still waiting for another node's upload (a node that held the recording
/// before `me`).
pub async fn pending_elsewhere(db: &PgPool, id: Uuid, me: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM recording_segments
            WHERE recording_id = $1 AND uploaded_at IS NULL AND NOT lost
              AND node_id IS NOT NULL AND node_id <> $2"#,
        id,
        me
    )
    .fetch_one(db)
    .await
}

/// Give up on them: the playlist goes on without them (a gap, marked as a discontinuity).
pub async fn mark_lost_elsewhere(db: &PgPool, id: Uuid, me: Uuid) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query!(
        r#"UPDATE recording_segments SET lost = true
            WHERE recording_id = $1 AND uploaded_at IS NULL AND NOT lost
              AND node_id IS NOT NULL AND node_id <> $2"#,
        id,
        me
    )
    .execute(db)
    .await?
    .rows_affected())
}

pub async fn mark_uploaded(db: &PgPool, id: Uuid, seq: i32) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"UPDATE recording_segments SET uploaded_at = now() WHERE recording_id = $1 AND seq = $2"#,
        id,
        seq
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Take over the unfinished recordings of nodes silent for `lost_after_s` (src/node.rs):
/// they become `me`'s, and their segments not yet uploaded are lost (they were in the lost
/// node's spool). Returns each recording and its stream, for this node's recorder to finish.
pub async fn adopt_lost(
    db: &PgPool,
    me: Uuid,
    lost_after_s: f64,
) -> Result<Vec<(Uuid, Uuid)>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let adopted = sqlx::query!(
        r#"WITH lost AS (
               SELECT r.id FROM recordings r LEFT JOIN cluster_nodes n ON n.id = r.node_id
                WHERE r.status IN ('recording', 'processing') AND r.deleted_at IS NULL
                  AND r.node_id IS NOT NULL AND r.node_id <> $1
                  AND (n.id IS NULL OR n.heartbeat_at < now() - make_interval(secs => $2))
                FOR UPDATE OF r SKIP LOCKED)
           UPDATE recordings SET node_id = $1, updated_at = now() FROM lost
            WHERE recordings.id = lost.id
        RETURNING recordings.id, recordings.live_stream_id"#,
        me,
        lost_after_s
    )
    .fetch_all(&mut *tx)
    .await?;
    let ids: Vec<Uuid> = adopted.iter().map(|r| r.id).collect();
    sqlx::query!(
        "UPDATE recording_segments SET lost = true
          WHERE recording_id = ANY($1) AND uploaded_at IS NULL AND NOT lost",
        &ids
    )
    .execute(&mut *tx)
    .await?;
    // Segments a lost node left in recordings that went on on another node (a session
    // continued there): their files are gone with it.
    sqlx::query!(
        "UPDATE recording_segments s SET lost = true
           FROM cluster_nodes n
          WHERE s.node_id = n.id AND n.id <> $1
            AND n.heartbeat_at < now() - make_interval(secs => $2)
            AND s.uploaded_at IS NULL AND NOT s.lost",
        me,
        lost_after_s
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(adopted
        .into_iter()
        .map(|r| (r.id, r.live_stream_id))
        .collect())
}

pub async fn mark_lost(db: &PgPool, id: Uuid, seq: i32) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"UPDATE recording_segments SET lost = true WHERE recording_id = $1 AND seq = $2"#,
        id,
        seq
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The recording is being finished by `node`. `false`: it is another node's now (a session
/// that went on there took it: that node finishes it).
pub async fn set_processing(db: &PgPool, id: Uuid, node: Uuid) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query!(
        r#"UPDATE recordings SET status = 'processing', ended_at = coalesce(ended_at, now()),
                updated_at = now()
         WHERE id = $1 AND status IN ('recording', 'processing')
           AND (node_id = $2 OR node_id IS NULL)"#,
        id,
        node
    )
    .execute(db)
    .await?
    .rows_affected();
    if updated == 1 {
        return Ok(true);
    }
    let holder = sqlx::query_scalar!("SELECT node_id FROM recordings WHERE id = $1", id)
        .fetch_optional(db)
        .await?
        .flatten();
    Ok(holder.is_none_or(|h| h == node))
}

/// What finalization found out.
#[derive(Debug, Clone, Default)]
pub struct Finished {
    pub duration_ms: i64,
    pub size_bytes: i64,
    pub segment_count: i32,
    pub video_codec: Option<String>,
    pub audio_codec: Option<String>,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub mp4_size_bytes: Option<i64>,
    pub has_poster: bool,
}

pub async fn set_ready(db: &PgPool, id: Uuid, f: &Finished) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"UPDATE recordings SET status = 'ready', ready_at = now(), updated_at = now(),
                duration_ms = $2, size_bytes = $3, segment_count = $4,
                video_codec = coalesce($5, video_codec), audio_codec = coalesce($6, audio_codec),
                width = coalesce($7, width), height = coalesce($8, height),
                mp4_size_bytes = $9, has_poster = $10
         WHERE id = $1"#,
        id,
        f.duration_ms,
        f.size_bytes,
        f.segment_count,
        f.video_codec.as_deref(),
        f.audio_codec.as_deref(),
        f.width,
        f.height,
        f.mp4_size_bytes,
        f.has_poster
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn set_failed(db: &PgPool, id: Uuid, reason: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"UPDATE recordings SET status = 'failed', failure_reason = $2,
                ended_at = coalesce(ended_at, now()), updated_at = now()
         WHERE id = $1"#,
        id,
        reason
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Codec and picture facts, recorded as soon as the publisher reports them.
pub async fn set_media_info(
    db: &PgPool,
    id: Uuid,
    video_codec: Option<&str>,
    audio_codec: Option<&str>,
    width: Option<i32>,
    height: Option<i32>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"UPDATE recordings SET video_codec = coalesce($2, video_codec),
                audio_codec = coalesce($3, audio_codec), width = coalesce($4, width),
                height = coalesce($5, height), updated_at = now()
         WHERE id = $1"#,
        id,
        video_codec,
        audio_codec,
        width,
        height
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn mark_deleted(conn: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        r#"UPDATE recordings SET deleted_at = now(), updated_at = now()
         WHERE id = $1 AND deleted_at IS NULL"#,
        id
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Recordings this node's previous process left unfinished (their segments wait in its spool;
/// other nodes' are theirs), and those from before nodes were recorded.
pub async fn unfinished(db: &PgPool, node: Uuid) -> Result<Vec<RecordingRow>, sqlx::Error> {
    sqlx::query_as!(
        RecordingRow,
        r#"SELECT id, live_stream_id, owner_id, session_id, status, failure_reason, visibility,
                started_at, ended_at, ready_at, duration_ms, size_bytes, segment_count,
                video_codec, audio_codec, width, height, mp4_size_bytes, has_poster, mp4_failed_at, created_at
           FROM recordings
           WHERE status IN ('recording', 'processing') AND deleted_at IS NULL
             AND (node_id = $1 OR node_id IS NULL)
           ORDER BY id"#,
        node
    )
    .fetch_all(db)
    .await
}

/// Ready or failed recordings whose retention has passed: the stream's override, else
/// `default_days` (0 = keep forever).
pub async fn expired(db: &PgPool, default_days: i32, limit: i64) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT r.id FROM recordings r JOIN live_streams s ON s.id = r.live_stream_id
           WHERE r.deleted_at IS NULL AND r.status IN ('ready', 'failed')
             AND coalesce(s.recording_retention_days, nullif($1::int, 0)) IS NOT NULL
             AND coalesce(r.ended_at, r.started_at)
                 < now() - make_interval(days => coalesce(s.recording_retention_days, $1::int))
           ORDER BY r.id LIMIT $2"#,
        default_days,
        limit,
    )
    .fetch_all(db)
    .await
}

/// Store an event and publish it on Redis (best effort).
pub async fn record_event(
    db: &PgPool,
    redis: &crate::cache::Redis,
    recording_id: Option<Uuid>,
    live_stream_id: Uuid,
    kind: &str,
    payload: serde_json::Value,
) -> Result<(), sqlx::Error> {
    use redis::AsyncCommands;
    let id = Uuid::now_v7();
    let mut tx = db.begin().await?;
    let created_at: OffsetDateTime = sqlx::query_scalar!(
        r#"INSERT INTO recording_events (id, recording_id, live_stream_id, kind, payload)
         VALUES ($1, $2, $3, $4, $5) RETURNING created_at"#,
        id,
        recording_id,
        live_stream_id,
        kind,
        &payload
    )
    .fetch_one(&mut *tx)
    .await?;
    // Integrators hear of it in the same transaction (docs/webhooks.md).
    if let (Some(recording), "recording.ready") = (recording_id, kind) {
        crate::webhooks::recording_ready(&mut tx, recording).await?;
    }
    tx.commit().await?;
    let message = serde_json::json!({
        "id": id, "recording_id": recording_id, "live_stream_id": live_stream_id,
        "kind": kind, "payload": payload,
        "created_at": created_at.format(&time::format_description::well_known::Rfc3339).ok(),
    });
    let mut conn = redis.conn();
    let _: Result<i64, _> = conn.publish(EVENTS_CHANNEL, message.to_string()).await;
    Ok(())
}

/// The Redis pub/sub channel recording events are published on.
pub const EVENTS_CHANNEL: &str = "wm:events:recording";

/// The MP4 (its size) and the poster (its size), made after `ready`; their bytes are added to
/// the recording's size.
/// The outcome of one attempt at the MP4 and poster: their sizes (`None`: not made this
/// time), and the picture size read from the segments when the publisher changed it (it
/// replaces the one the publisher announced). A poster made earlier is kept; a missing MP4
/// marks the attempt failed.
pub async fn set_extras(
    db: &PgPool,
    id: Uuid,
    mp4_size_bytes: Option<i64>,
    poster_size_bytes: Option<i64>,
    picture: Option<(u32, u32)>,
) -> Result<(), sqlx::Error> {
    let (width, height) = picture.map_or((None, None), |(w, h)| (Some(w as i32), Some(h as i32)));
    sqlx::query!(
        r#"UPDATE recordings SET mp4_size_bytes = coalesce($2::bigint, mp4_size_bytes),
                  has_poster = has_poster OR $3,
                  size_bytes = size_bytes + coalesce($2::bigint, 0) + coalesce($4::bigint, 0),
                  width = coalesce($5, width), height = coalesce($6, height),
                  mp4_attempts = mp4_attempts + 1,
                  mp4_failed_at = CASE WHEN $2::bigint IS NULL THEN now() END,
                  updated_at = now()
           WHERE id = $1"#,
        id,
        mp4_size_bytes,
        poster_size_bytes.is_some(),
        poster_size_bytes,
        width,
        height,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Ready recordings without their MP4: the process stopped before it was made, or an
/// attempt failed (tried up to three times, at each start).
pub async fn missing_extras(db: &PgPool) -> Result<Vec<RecordingRow>, sqlx::Error> {
    sqlx::query_as!(
        RecordingRow,
        r#"SELECT id, live_stream_id, owner_id, session_id, status, failure_reason, visibility,
                  started_at, ended_at, ready_at, duration_ms, size_bytes, segment_count,
                  video_codec, audio_codec, width, height, mp4_size_bytes, has_poster, mp4_failed_at, created_at
           FROM recordings
           WHERE status = 'ready' AND mp4_size_bytes IS NULL AND mp4_attempts < 3
             AND deleted_at IS NULL AND ready_at > now() - interval '7 days'
           ORDER BY id"#
    )
    .fetch_all(db)
    .await
}

/// Ready recordings whose last MP4 attempt failed long enough ago to try again: 2 minutes
/// after the first failure, 4 after the second (three attempts in all, as at a start).
pub async fn failed_extras_due(db: &PgPool) -> Result<Vec<RecordingRow>, sqlx::Error> {
    sqlx::query_as!(
        RecordingRow,
        r#"SELECT id, live_stream_id, owner_id, session_id, status, failure_reason, visibility,
                  started_at, ended_at, ready_at, duration_ms, size_bytes, segment_count,
                  video_codec, audio_codec, width, height, mp4_size_bytes, has_poster, mp4_failed_at, created_at
           FROM recordings
           WHERE status = 'ready' AND mp4_size_bytes IS NULL AND mp4_attempts < 3
             AND mp4_failed_at < now() - mp4_attempts * interval '2 minutes'
             AND deleted_at IS NULL
           ORDER BY id
           LIMIT 20"#
    )
    .fetch_all(db)
    .await
}

/// What a recording's list entry says of its stream: the retention override, the names of the
/// stream, its lesson and course (when it is a lesson's), and its owner.
#[derive(Debug, Clone, Default)]
pub struct StreamInfo {
    /// `recording_retention_days` (None: the default applies).
    pub retention_days: Option<i32>,
    pub title: String,
    pub owner_name: String,
    pub lesson: Option<(Uuid, String)>,
    pub course: Option<(Uuid, String)>,
}

/// [`StreamInfo`] of each of `streams`, in one query.
pub async fn stream_info(
    conn: &mut PgConnection,
    streams: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, StreamInfo>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT s.id, s.recording_retention_days, s.title, u.display_name AS owner_name,
                  l.id AS "lesson_id?", l.title AS "lesson_title?",
                  c.id AS "course_id?", c.title AS "course_title?"
           FROM live_streams s JOIN users u ON u.id = s.owner_id
           LEFT JOIN lessons l ON l.live_stream_id = s.id
           LEFT JOIN courses c ON c.id = l.course_id
           WHERE s.id = ANY($1)"#,
        streams
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let info = StreamInfo {
                retention_days: r.recording_retention_days,
                title: r.title,
                owner_name: r.owner_name,
                lesson: r.lesson_id.zip(r.lesson_title),
                course: r.course_id.zip(r.course_title),
            };
            (r.id, info)
        })
        .collect())
}

/// One UTC day of [`usage_history`].
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageDay {
    /// YYYY-MM-DD (UTC).
    pub day: String,
    /// Bytes held at the end of the day (today: now).
    pub bytes: i64,
    /// Recordings kept at the end of the day (deleted ones no longer count).
    pub recordings: i64,
}

/// Storage held by recordings at the end of each of the last `days` UTC days.
///
/// Rebuilt from events rather than sampled: a recording holds its segments' bytes as they close
/// while it is recorded, its `size_bytes` (HLS, MP4, poster) once ready, and nothing once
/// deleted. Each of those changes is an event at a time; a day's figure is the sum of the
/// events up to its end.
pub async fn usage_history(
    conn: &mut PgConnection,
    days: i32,
) -> Result<Vec<UsageDay>, sqlx::Error> {
    sqlx::query_as!(
        UsageDay,
        r#"WITH seg AS (
               SELECT s.recording_id, s.created_at, s.size_bytes
               FROM recording_segments s JOIN recordings r ON r.id = s.recording_id
               WHERE (r.ready_at IS NULL OR s.created_at < r.ready_at)
                 AND (r.deleted_at IS NULL OR s.created_at < r.deleted_at)),
           rec AS (
               SELECT r.started_at, r.ready_at, r.deleted_at, r.size_bytes,
                      coalesce((SELECT sum(seg.size_bytes) FROM seg WHERE seg.recording_id = r.id),
                               0)::bigint AS seg_bytes
               FROM recordings r),
           ev AS (
               SELECT created_at AS at, size_bytes AS bytes, 0 AS n FROM seg
               UNION ALL
               SELECT started_at, 0, 1 FROM rec
               UNION ALL
               SELECT ready_at, size_bytes - seg_bytes, 0 FROM rec
               WHERE ready_at IS NOT NULL AND (deleted_at IS NULL OR deleted_at > ready_at)
               UNION ALL
               SELECT deleted_at,
                      -(CASE WHEN ready_at IS NOT NULL AND ready_at < deleted_at
                             THEN size_bytes ELSE seg_bytes END),
                      -1
               FROM rec WHERE deleted_at IS NOT NULL),
           daily AS (
               SELECT (at AT TIME ZONE 'UTC')::date AS day, sum(bytes) AS bytes, sum(n) AS n
               FROM ev GROUP BY 1),
           span AS (
               SELECT ((now() AT TIME ZONE 'UTC')::date - k) AS day
               FROM generate_series(0, $1 - 1) k)
           SELECT to_char(span.day, 'YYYY-MM-DD') AS "day!",
                  coalesce((SELECT sum(bytes) FROM daily WHERE daily.day <= span.day), 0)::bigint
                      AS "bytes!",
                  coalesce((SELECT sum(n) FROM daily WHERE daily.day <= span.day), 0)::bigint
                      AS "recordings!"
           FROM span ORDER BY span.day"#,
        days
    )
    .fetch_all(conn)
    .await
}
