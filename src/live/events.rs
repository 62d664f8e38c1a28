//! Events of a live stream's life: stored in `live_stream_events` (the record) and published as
//! JSON on the Redis channel [`CHANNEL`] (best effort, for other nodes and for the chat and
//! webhook consumers; a consumer that must not miss one reads the table).
//!
//! Two ways to record one:
//! - [`record_event`]: store then publish, for a change already committed (the live runtime:
//!   connected, active, disconnected, idle).
//! - [`store_event`] inside the transaction that makes the change, then [`publish`] after the
//!   commit (the HTTP actions), so nobody hears of a change that was rolled back.

use redis::AsyncCommands;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use super::model::LiveStreamId;
use crate::cache::Redis;
use crate::domain::{Page, PageLimit};

/// The Redis pub/sub channel every live stream event is published on.
pub const CHANNEL: &str = "wm:events:live_stream";

/// What happened. Stored and published as `live_stream.<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// Created through the API.
    Created,
    /// A publisher authenticated and started sending.
    Connected,
    /// A live session started: the stream is `active`.
    Active,
    /// The publisher went away; the reconnect window is open.
    Disconnected,
    /// The session ended (window over, or `complete`): back to `idle`.
    Idle,
    /// Disabled: publishers are refused (and a live one kicked).
    Disabled,
    /// Enabled again after `disabled`.
    Enabled,
    /// Settings changed (title, record, reconnect window, visibility).
    Updated,
    /// A new stream key replaced the old one.
    StreamKeyReset,
    /// Deleted (soft).
    Deleted,
}

impl EventKind {
    pub const ALL: [EventKind; 10] = [
        EventKind::Created,
        EventKind::Connected,
        EventKind::Active,
        EventKind::Disconnected,
        EventKind::Idle,
        EventKind::Disabled,
        EventKind::Enabled,
        EventKind::Updated,
        EventKind::StreamKeyReset,
        EventKind::Deleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Created => "live_stream.created",
            EventKind::Connected => "live_stream.connected",
            EventKind::Active => "live_stream.active",
            EventKind::Disconnected => "live_stream.disconnected",
            EventKind::Idle => "live_stream.idle",
            EventKind::Disabled => "live_stream.disabled",
            EventKind::Enabled => "live_stream.enabled",
            EventKind::Updated => "live_stream.updated",
            EventKind::StreamKeyReset => "live_stream.stream_key_reset",
            EventKind::Deleted => "live_stream.deleted",
        }
    }
}

/// A stored event: the JSON listed by the API and published on the Redis channel
/// `wm:events:live_stream`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct LiveStreamEvent {
    /// UUID v7: events of one stream sort by id in the order they were stored.
    pub id: Uuid,
    pub live_stream_id: Uuid,
    /// `live_stream.<what>`, e.g. `live_stream.disabled`.
    pub kind: String,
    /// Details of the event; an object (`actor_id` when a person caused it, `reason`, …).
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

/// Store an event row (inside the caller's transaction, if it passes one). Publish it with
/// [`publish`] once the transaction has committed.
pub async fn store_event(
    conn: &mut PgConnection,
    stream_id: LiveStreamId,
    kind: EventKind,
    payload: serde_json::Value,
) -> Result<LiveStreamEvent, sqlx::Error> {
    let event = sqlx::query_as!(
        LiveStreamEvent,
        r#"INSERT INTO live_stream_events (id, live_stream_id, kind, payload)
           VALUES ($1, $2, $3, $4)
           RETURNING id, live_stream_id, kind, payload, created_at"#,
        Uuid::now_v7(),
        stream_id.0,
        kind.as_str(),
        payload,
    )
    .fetch_one(&mut *conn)
    .await?;
    metrics::counter!("live_stream_events_total", "kind" => kind.as_str()).increment(1);
    // What integrators hear of (docs/webhooks.md), in the same transaction as the row.
    let session = event.payload["session_id"]
        .as_str()
        .and_then(|s| s.parse().ok());
    match (kind, session) {
        (EventKind::Active, Some(session)) => {
            crate::webhooks::stream_started(conn, stream_id.0, session).await?;
        }
        (EventKind::Idle, Some(session)) => {
            let why = event.payload["why"].as_str().unwrap_or("");
            let duration_s = event.payload["duration_s"].as_f64().unwrap_or(0.0);
            crate::webhooks::stream_ended(conn, stream_id.0, session, why, duration_s).await?;
        }
        _ => {}
    }
    Ok(event)
}

/// PUBLISH the event's JSON on [`CHANNEL`]; returns how many subscribers received it.
pub async fn publish(redis: &Redis, event: &LiveStreamEvent) -> redis::RedisResult<u64> {
    let json = serde_json::to_string(event).expect("an event serializes");
    let mut conn = redis.conn();
    conn.publish(CHANNEL, json).await
}

/// [`publish`], logging a failure instead of returning it: the row is stored, and pub/sub is
/// best effort by nature (a subscriber that is down misses messages anyway).
pub async fn publish_or_log(redis: &Redis, event: &LiveStreamEvent) {
    if let Err(e) = publish(redis, event).await {
        metrics::counter!("live_stream_event_publish_failures_total").increment(1);
        tracing::warn!(error = %e, event_id = %event.id, kind = %event.kind, "cannot publish live stream event");
    }
}

/// Store an event and publish it: for changes already committed (the live runtime). Takes the
/// pool rather than a connection so that it cannot be called inside an open transaction and
/// announce a change that may yet roll back. Fails only if the row cannot be stored.
pub async fn record_event(
    db: &PgPool,
    redis: &Redis,
    stream_id: LiveStreamId,
    kind: EventKind,
    payload: serde_json::Value,
) -> Result<LiveStreamEvent, sqlx::Error> {
    let mut tx = db.begin().await?;
    let event = store_event(&mut tx, stream_id, kind, payload).await?;
    tx.commit().await?;
    publish_or_log(redis, &event).await;
    Ok(event)
}

/// A stream's events, newest first, after `cursor` (the last id of the previous page).
pub async fn list_events(
    conn: &mut PgConnection,
    stream_id: LiveStreamId,
    cursor: Option<Uuid>,
    limit: PageLimit,
) -> Result<Page<LiveStreamEvent>, sqlx::Error> {
    let fetch = i64::try_from(limit.get() + 1).unwrap_or(i64::MAX);
    let items = sqlx::query_as!(
        LiveStreamEvent,
        r#"SELECT id, live_stream_id, kind, payload, created_at
           FROM live_stream_events
           WHERE live_stream_id = $1 AND ($2::uuid IS NULL OR id < $2)
           ORDER BY id DESC
           LIMIT $3"#,
        stream_id.0,
        cursor,
        fetch,
    )
    .fetch_all(conn)
    .await?;
    Ok(Page::cut(items, limit, |e| e.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_named_live_stream_dot_something() {
        let mut seen = std::collections::HashSet::new();
        for k in EventKind::ALL {
            let name = k.as_str();
            // The same rule as the table's CHECK constraint.
            let rest = name.strip_prefix("live_stream.").unwrap();
            assert!(
                !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name}"
            );
            assert!(seen.insert(name), "{name} twice");
        }
    }
}
