//! Queries on `live_streams`. Every function takes `&mut PgConnection`, so callers choose: a
//! pooled connection, or a transaction that also stores the event of the change
//! ([`super::events::store_event`]) and publishes it after commit.
//!
//! Access is a [`Scope`] inside the query (`Scope::OwnedBy(user)` for a teacher, `Scope::All`
//! for admins and the ingest), so a stream outside the caller's scope is simply not found: the
//! API answers 404, never 403, and ids do not leak.
//!
//! Deletion is soft: `deleted_at` is set, the row vanishes from every query here (the stream key
//! included), and recordings and events keep pointing at it.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    keys::StreamKey,
    model::{
        LiveStream, LiveStreamId, LiveStreamPatch, NewLiveStream, Page, PageLimit, ReconnectWindow,
        StreamStatus,
    },
};

/// Whose streams a query may see and touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every stream: admins, and the ingest/runtime.
    All,
    /// The streams of this user only.
    OwnedBy(Uuid),
}

impl Scope {
    fn owner(self) -> Option<Uuid> {
        match self {
            Scope::All => None,
            Scope::OwnedBy(u) => Some(u),
        }
    }
}

/// The columns every query returns, as the database types them.
struct Row {
    id: Uuid,
    owner_id: Uuid,
    title: String,
    status: String,
    stream_key_prefix: String,
    record: bool,
    reconnect_window_s: i32,
    visibility: String,
    recording_retention_days: Option<i32>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

fn decode_error(column: &str, e: impl std::fmt::Display) -> sqlx::Error {
    sqlx::Error::Decode(format!("live_streams.{column}: {e}").into())
}

impl TryFrom<Row> for LiveStream {
    type Error = sqlx::Error;
    fn try_from(r: Row) -> Result<LiveStream, sqlx::Error> {
        Ok(LiveStream {
            id: LiveStreamId(r.id),
            owner_id: r.owner_id,
            title: r.title,
            status: r.status.parse().map_err(|e| decode_error("status", e))?,
            stream_key_prefix: r.stream_key_prefix,
            record: r.record,
            reconnect_window: ReconnectWindow::parse(r.reconnect_window_s.into())
                .map_err(|e| decode_error("reconnect_window_s", e))?,
            visibility: r
                .visibility
                .parse()
                .map_err(|e| decode_error("visibility", e))?,
            recording_retention_days: r
                .recording_retention_days
                .and_then(|d| u16::try_from(d).ok()),
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

fn one(row: Option<Row>) -> Result<Option<LiveStream>, sqlx::Error> {
    row.map(LiveStream::try_from).transpose()
}

/// Insert a stream with the hash of `key` (the key itself is never stored).
pub async fn create(
    conn: &mut PgConnection,
    new: &NewLiveStream,
    key: &StreamKey,
) -> Result<LiveStream, sqlx::Error> {
    let hash = key.hash();
    let row = sqlx::query_as!(
        Row,
        r#"INSERT INTO live_streams
               (id, owner_id, title, stream_key_hash, stream_key_prefix, record,
                reconnect_window_s, visibility)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           RETURNING id, owner_id, title, status, stream_key_prefix, record,
                     reconnect_window_s, visibility, recording_retention_days, created_at, updated_at"#,
        LiveStreamId::new().0,
        new.owner_id,
        new.title.as_str(),
        hash.as_bytes(),
        key.display_prefix(),
        new.record,
        i32::from(new.reconnect_window.seconds()),
        new.visibility.as_str(),
    )
    .fetch_one(conn)
    .await?;
    row.try_into()
}

/// A stream that is not deleted, if `scope` may see it.
pub async fn get(
    conn: &mut PgConnection,
    id: LiveStreamId,
    scope: Scope,
) -> Result<Option<LiveStream>, sqlx::Error> {
    let row = sqlx::query_as!(
        Row,
        r#"SELECT id, owner_id, title, status, stream_key_prefix, record,
                  reconnect_window_s, visibility, recording_retention_days, created_at, updated_at
           FROM live_streams
           WHERE id = $1 AND deleted_at IS NULL AND ($2::uuid IS NULL OR owner_id = $2)"#,
        id.0,
        scope.owner(),
    )
    .fetch_optional(conn)
    .await?;
    one(row)
}

/// The streams `scope` may see, newest first, `limit` at a time, starting after `cursor` (the
/// last id of the previous page), optionally only those with `status`.
pub async fn list(
    conn: &mut PgConnection,
    scope: Scope,
    status: Option<StreamStatus>,
    cursor: Option<Uuid>,
    limit: PageLimit,
) -> Result<Page<LiveStream>, sqlx::Error> {
    // One more than asked tells whether a next page exists.
    let fetch = i64::try_from(limit.get() + 1).unwrap_or(i64::MAX);
    let rows = sqlx::query_as!(
        Row,
        r#"SELECT id, owner_id, title, status, stream_key_prefix, record,
                  reconnect_window_s, visibility, recording_retention_days, created_at, updated_at
           FROM live_streams
           WHERE deleted_at IS NULL
             AND ($1::uuid IS NULL OR owner_id = $1)
             AND ($2::text IS NULL OR status = $2)
             AND ($3::uuid IS NULL OR id < $3)
           ORDER BY id DESC
           LIMIT $4"#,
        scope.owner(),
        status.map(StreamStatus::as_str),
        cursor,
        fetch,
    )
    .fetch_all(conn)
    .await?;
    let items = rows
        .into_iter()
        .map(LiveStream::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::cut(items, limit, |s| s.id.0))
}

/// Apply `patch` (fields left `None` stay as they are). `None` if not found in `scope`.
pub async fn update(
    conn: &mut PgConnection,
    id: LiveStreamId,
    scope: Scope,
    patch: &LiveStreamPatch,
) -> Result<Option<LiveStream>, sqlx::Error> {
    let row = sqlx::query_as!(
        Row,
        r#"UPDATE live_streams
           SET title = COALESCE($3, title),
               record = COALESCE($4, record),
               reconnect_window_s = COALESCE($5, reconnect_window_s),
               visibility = COALESCE($6, visibility),
               recording_retention_days = CASE WHEN $7 THEN $8 ELSE recording_retention_days END,
               updated_at = now()
           WHERE id = $1 AND deleted_at IS NULL AND ($2::uuid IS NULL OR owner_id = $2)
           RETURNING id, owner_id, title, status, stream_key_prefix, record,
                     reconnect_window_s, visibility, recording_retention_days, created_at, updated_at"#,
        id.0,
        scope.owner(),
        patch.title.as_ref().map(|t| t.as_str()),
        patch.record,
        patch.reconnect_window.map(|w| i32::from(w.seconds())),
        patch.visibility.map(|v| v.as_str()),
        patch.recording_retention_days.is_some(),
        patch.recording_retention_days.flatten().map(i32::from),
    )
    .fetch_optional(conn)
    .await?;
    one(row)
}

/// Replace the stream's key with `key`: the old one stops working at once (for new
/// publishers; a connected one must be kicked by the caller). `None` if not found in `scope`.
pub async fn reset_key(
    conn: &mut PgConnection,
    id: LiveStreamId,
    scope: Scope,
    key: &StreamKey,
) -> Result<Option<LiveStream>, sqlx::Error> {
    let hash = key.hash();
    let row = sqlx::query_as!(
        Row,
        r#"UPDATE live_streams
           SET stream_key_hash = $3, stream_key_prefix = $4, updated_at = now()
           WHERE id = $1 AND deleted_at IS NULL AND ($2::uuid IS NULL OR owner_id = $2)
           RETURNING id, owner_id, title, status, stream_key_prefix, record,
                     reconnect_window_s, visibility, recording_retention_days, created_at, updated_at"#,
        id.0,
        scope.owner(),
        hash.as_bytes(),
        key.display_prefix(),
    )
    .fetch_optional(conn)
    .await?;
    one(row)
}

/// The outcome of a status change.
#[derive(Debug)]
pub enum Transition {
    /// The status was one of `from` and is now the new one.
    Changed(LiveStream),
    /// The stream exists but its status was not one of `from`; nothing changed.
    Unchanged(LiveStream),
    /// No such stream in scope (or deleted).
    NotFound,
}

/// Compare-and-set the status: becomes `to` only if it is one of `from`. Concurrent changes
/// serialise on the row, so exactly one caller sees `Changed` (and stores the event).
pub async fn transition(
    conn: &mut PgConnection,
    id: LiveStreamId,
    scope: Scope,
    from: &[StreamStatus],
    to: StreamStatus,
) -> Result<Transition, sqlx::Error> {
    let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
    let row = sqlx::query_as!(
        Row,
        r#"UPDATE live_streams
           SET status = $4, updated_at = now()
           WHERE id = $1 AND deleted_at IS NULL AND ($2::uuid IS NULL OR owner_id = $2)
             AND status = ANY($3::text[])
           RETURNING id, owner_id, title, status, stream_key_prefix, record,
                     reconnect_window_s, visibility, recording_retention_days, created_at, updated_at"#,
        id.0,
        scope.owner(),
        &from as &[&str],
        to.as_str(),
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(s) = one(row)? {
        return Ok(Transition::Changed(s));
    }
    Ok(match get(conn, id, scope).await? {
        Some(s) => Transition::Unchanged(s),
        None => Transition::NotFound,
    })
}

/// For the live runtime: `idle` → `active` when a session of `node` starts. A disabled (or
/// deleted) stream is never made active. Also answers the node that held the stream's session
/// before, when another one did (its session was taken over).
pub async fn mark_active(
    conn: &mut PgConnection,
    id: LiveStreamId,
    node: Uuid,
) -> Result<(Transition, Option<Uuid>), sqlx::Error> {
    let t = transition(
        conn,
        id,
        Scope::All,
        &[StreamStatus::Idle],
        StreamStatus::Active,
    )
    .await?;
    // The node holding the session: its restart takes the stream back, others leave it alone.
    // The one that held it before, if another: its session was taken over (a publisher that
    // reached this node while one was still live there) and must end.
    let before = sqlx::query_scalar!(
        r#"UPDATE live_streams s SET node_id = $2
             FROM (SELECT id, node_id FROM live_streams WHERE id = $1 FOR UPDATE) old
            WHERE s.id = old.id AND s.status = 'active'
            RETURNING old.node_id"#,
        id.0,
        node
    )
    .fetch_optional(&mut *conn)
    .await?
    .flatten();
    let taken_from = match &t {
        // It was live already (on the node it names): that session is over.
        Transition::Unchanged(_) => before.filter(|prev| *prev != node),
        _ => None,
    };
    Ok((t, taken_from))
}

/// For the live runtime: `active` → `idle` when a session of `node` ends. A stream disabled
/// meanwhile stays disabled, and one another node has made its own since (a publisher that
/// moved there) stays active: only the holder's end counts.
pub async fn mark_idle(
    conn: &mut PgConnection,
    id: LiveStreamId,
    node: Uuid,
) -> Result<Transition, sqlx::Error> {
    let row = sqlx::query_as!(
        Row,
        r#"UPDATE live_streams
           SET status = 'idle', updated_at = now()
           WHERE id = $1 AND deleted_at IS NULL AND status = 'active'
             AND (node_id IS NULL OR node_id = $2)
           RETURNING id, owner_id, title, status, stream_key_prefix, record,
                     reconnect_window_s, visibility, recording_retention_days, created_at, updated_at"#,
        id.0,
        node,
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(s) = one(row)? {
        return Ok(Transition::Changed(s));
    }
    Ok(match get(conn, id, Scope::All).await? {
        Some(s) => Transition::Unchanged(s),
        None => Transition::NotFound,
    })
}

/// The outcome of a delete.
#[derive(Debug)]
pub enum Deleted {
    /// Deleted by this call.
    Now(LiveStream),
    /// In scope, but deleted before.
    Already,
    /// Never existed, or not in scope.
    NotFound,
}

/// Soft-delete: set `deleted_at`. The stream disappears from every other query here, its key
/// included; its events and recordings stay.
pub async fn delete(
    conn: &mut PgConnection,
    id: LiveStreamId,
    scope: Scope,
) -> Result<Deleted, sqlx::Error> {
    let row = sqlx::query_as!(
        Row,
        r#"UPDATE live_streams
           SET deleted_at = now(), updated_at = now()
           WHERE id = $1 AND deleted_at IS NULL AND ($2::uuid IS NULL OR owner_id = $2)
           RETURNING id, owner_id, title, status, stream_key_prefix, record,
                     reconnect_window_s, visibility, recording_retention_days, created_at, updated_at"#,
        id.0,
        scope.owner(),
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(s) = one(row)? {
        return Ok(Deleted::Now(s));
    }
    let gone = sqlx::query_scalar!(
        r#"SELECT 1 AS "one!" FROM live_streams
           WHERE id = $1 AND deleted_at IS NOT NULL AND ($2::uuid IS NULL OR owner_id = $2)"#,
        id.0,
        scope.owner(),
    )
    .fetch_optional(conn)
    .await?;
    Ok(if gone.is_some() {
        Deleted::Already
    } else {
        Deleted::NotFound
    })
}

/// The stream a publisher's key opens, for the RTMP and WHIP ingest: looked up by the key's
/// SHA-256 (unique index), then the hashes compared again in constant time. Deleted streams are
/// not found; disabled ones are returned (check `status`, so that "disabled" and "unknown key"
/// can be refused and counted apart).
pub async fn find_by_stream_key(
    conn: &mut PgConnection,
    key: &StreamKey,
) -> Result<Option<LiveStream>, sqlx::Error> {
    let hash = key.hash();
    let found = sqlx::query!(
        r#"SELECT id, owner_id, title, status, stream_key_prefix, record,
                  reconnect_window_s, visibility, recording_retention_days, created_at, updated_at, stream_key_hash
           FROM live_streams
           WHERE stream_key_hash = $1 AND deleted_at IS NULL"#,
        hash.as_bytes(),
    )
    .fetch_optional(conn)
    .await?;
    let Some(r) = found else {
        return Ok(None);
    };
    // Belt and braces: the index lookup compares with memcmp; this comparison does not leak
    // how much of a guess matched.
    if !hash.matches(&r.stream_key_hash) {
        return Ok(None);
    }
    Row {
        id: r.id,
        owner_id: r.owner_id,
        title: r.title,
        status: r.status,
        stream_key_prefix: r.stream_key_prefix,
        record: r.record,
        reconnect_window_s: r.reconnect_window_s,
        visibility: r.visibility,
        recording_retention_days: r.recording_retention_days,
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
    .try_into()
    .map(Some)
}

/// This node's `active` streams back to `idle`: run at start, when this process holds no
/// session. A crash leaves the streams it was serving `active`; nothing else would end them
/// soon. Other nodes' streams are theirs (a lost node's are ended by the sweep in src/node.rs);
/// rows from before nodes were recorded (`node_id` null) count as this node's.
pub async fn reset_active(conn: &mut PgConnection, node: Uuid) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE live_streams SET status = 'idle', updated_at = now()
         WHERE status = 'active' AND deleted_at IS NULL AND (node_id = $1 OR node_id IS NULL)",
        node
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}
