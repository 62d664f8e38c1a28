//! Deleting recordings: by request (API) and by retention (a background job).
//!
//! Deletion removes every object under `recordings/<id>/` first and marks the row deleted
//! after, so a failure half-way leaves a recording that can be deleted again, never a row
//! that says deleted while its objects still cost money. Repeating it is harmless.

use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{recorder::object_prefix, store};
use crate::{cache::Redis, storage::Storage};

/// Remove a recording's objects, then mark it deleted and record `recording.deleted`.
/// Returns false when it was already deleted.
pub async fn delete_recording(
    db: &PgPool,
    redis: &Redis,
    storage: &Storage,
    id: Uuid,
    why: &str,
) -> anyhow::Result<bool> {
    let objects = storage.delete_prefix(&object_prefix(id)).await?;
    let mut conn = db.acquire().await?;
    let Some(rec) = store::get(&mut conn, crate::live::store::Scope::All, id).await? else {
        return Ok(false);
    };
    if !store::mark_deleted(&mut conn, id).await? {
        return Ok(false);
    }
    drop(conn);
    store::record_event(
        db,
        redis,
        Some(id),
        rec.live_stream_id,
        "recording.deleted",
        json!({"why": why, "objects": objects, "size_bytes": rec.size_bytes}),
    )
    .await?;
    tracing::info!(recording_id = %id, why, objects, "recording deleted");
    Ok(true)
}

/// Run retention every `interval` (on one node of the cluster: `lease`): recordings older than
/// their stream's `recording_retention_days`, else `default_days` (0 = keep forever), are
/// deleted.
pub fn spawn(
    db: PgPool,
    redis: Redis,
    storage: Storage,
    default_days: u32,
    interval: Duration,
    lease: crate::jobs::Lease,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            if !lease.claim_every("recordings.retention", interval).await {
                continue;
            }
            match run_once(&db, &redis, &storage, default_days).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "retention deleted expired recordings"),
                Err(e) => tracing::warn!(error = %e, "retention run failed"),
            }
        }
    })
}

/// One retention pass; the number of recordings deleted.
pub async fn run_once(
    db: &PgPool,
    redis: &Redis,
    storage: &Storage,
    default_days: u32,
) -> anyhow::Result<u64> {
    let mut deleted = 0;
    loop {
        let ids = store::expired(db, default_days.min(36_500) as i32, 100).await?;
        if ids.is_empty() {
            return Ok(deleted);
        }
        let batch = ids.len();
        let mut progressed = false;
        for id in ids {
            match delete_recording(db, redis, storage, id, "retention").await {
                Ok(true) => {
                    deleted += 1;
                    progressed = true;
                    metrics::counter!("recording_retention_deletions_total").increment(1);
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(recording_id = %id, error = %e, "retention could not delete a recording")
                }
            }
        }
        if !progressed || batch < 100 {
            return Ok(deleted);
        }
    }
}
