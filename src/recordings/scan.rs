//! Consistency between object storage and the recordings table, for ops.
//!
//! - **Orphan objects**: under `recordings/<id>/` with no recording `<id>`, or one that is
//!   deleted (a deletion that failed half-way, or files copied in by hand).
//! - **Missing objects**: a ready recording whose stored segments, playlist, MP4 or poster are
//!   not in storage (lost by the store, or removed by hand).
//!
//! [`scan`] only reports; [`repair`] deletes orphan objects and makes recordings match what is
//! really stored: missing segments become `lost` (left out of the playlist, with a
//! discontinuity), a missing MP4 or poster is dropped from the answer, the playlist is
//! rewritten, and a recording left without any segment becomes `failed`. Recordings still
//! recording or processing are left alone: their objects are arriving.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{recorder::object_key, render_playlist, store};
use crate::storage::{PutOptions, Storage};

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrphanObject {
    pub key: String,
    pub size_bytes: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MissingObjects {
    pub recording_id: Uuid,
    /// Object names under `recordings/<id>/` that the recording needs and storage lacks.
    pub missing: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct ScanReport {
    pub objects_scanned: u64,
    pub recordings_scanned: u64,
    pub orphan_objects: Vec<OrphanObject>,
    pub orphan_bytes: u64,
    pub recordings_with_missing_objects: Vec<MissingObjects>,
    /// Filled in by a repair: orphan objects deleted, recordings corrected.
    pub deleted_objects: u64,
    pub repaired_recordings: u64,
}

struct Rec {
    id: Uuid,
    status: String,
    deleted: bool,
    mp4_size_bytes: Option<i64>,
    has_poster: bool,
}

/// Compare storage with the table; reports at most `limit` entries of each kind.
pub async fn scan(db: &PgPool, storage: &Storage, limit: usize) -> anyhow::Result<ScanReport> {
    let objects = storage.list("recordings/").await?;
    let recs: Vec<Rec> = sqlx::query_as!(
        Rec,
        r#"SELECT id, status, deleted_at IS NOT NULL AS "deleted!", mp4_size_bytes, has_poster
           FROM recordings"#
    )
    .fetch_all(db)
    .await?;
    let recs: HashMap<Uuid, Rec> = recs.into_iter().map(|r| (r.id, r)).collect();
    let mut report = ScanReport {
        objects_scanned: objects.len() as u64,
        ..ScanReport::default()
    };
    let mut present: HashMap<Uuid, Vec<String>> = HashMap::new();
    for o in &objects {
        let key = o.key.as_ref();
        let mut parts = key.splitn(3, '/');
        let (_, id, name) = (parts.next(), parts.next(), parts.next());
        let id = id.and_then(|i| i.parse::<Uuid>().ok());
        match id.and_then(|i| recs.get(&i)) {
            Some(r) if !r.deleted => {
                present
                    .entry(r.id)
                    .or_default()
                    .push(name.unwrap_or_default().to_string());
            }
            _ => {
                report.orphan_bytes += o.size;
                if report.orphan_objects.len() < limit {
                    report.orphan_objects.push(OrphanObject {
                        key: key.to_string(),
                        size_bytes: o.size,
                    });
                }
            }
        }
    }
    for r in recs.values().filter(|r| !r.deleted && r.status == "ready") {
        report.recordings_scanned += 1;
        let have = present.get(&r.id).cloned().unwrap_or_default();
        let mut needed: Vec<String> = store::segments(db, r.id)
            .await?
            .into_iter()
            .filter(|s| s.uploaded && !s.lost)
            .map(|s| s.name)
            .collect();
        needed.push("index.m3u8".into());
        if r.mp4_size_bytes.is_some() {
            needed.push("recording.mp4".into());
        }
        if r.has_poster {
            needed.push("poster.jpg".into());
        }
        let missing: Vec<String> = needed.into_iter().filter(|n| !have.contains(n)).collect();
        if !missing.is_empty() && report.recordings_with_missing_objects.len() < limit {
            report.recordings_with_missing_objects.push(MissingObjects {
                recording_id: r.id,
                missing,
            });
        }
    }
    report
        .recordings_with_missing_objects
        .sort_by_key(|m| m.recording_id);
    Ok(report)
}

/// Scan, then fix what the scan found (see the module docs). `target_ns`: the playlists'
/// target duration (the packager's maximum segment duration).
/// What a repair acts on: everything the scan finds, or only the findings an operator chose.
#[derive(Debug, Clone, Default)]
pub enum Choice {
    #[default]
    All,
    /// These orphan keys and these recordings, where the fresh scan still finds them wrong:
    /// a key that is no longer an orphan (or never was) is left alone.
    Only {
        objects: std::collections::HashSet<String>,
        recordings: std::collections::HashSet<Uuid>,
    },
}

pub async fn repair(
    db: &PgPool,
    storage: &Storage,
    target_ns: u64,
    choice: &Choice,
) -> anyhow::Result<ScanReport> {
    let mut report = scan(db, storage, usize::MAX).await?;
    if let Choice::Only {
        objects,
        recordings,
    } = choice
    {
        report.orphan_objects.retain(|o| objects.contains(&o.key));
        report.orphan_bytes = report.orphan_objects.iter().map(|o| o.size_bytes).sum();
        report
            .recordings_with_missing_objects
            .retain(|m| recordings.contains(&m.recording_id));
    }
    for o in &report.orphan_objects {
        storage
            .delete(&crate::storage::ObjectKey::parse(o.key.clone())?)
            .await?;
        report.deleted_objects += 1;
        metrics::counter!("recording_orphan_objects_deleted_total").increment(1);
    }
    for m in &report.recordings_with_missing_objects {
        repair_recording(db, storage, m, target_ns).await?;
        report.repaired_recordings += 1;
    }
    Ok(report)
}

async fn repair_recording(
    db: &PgPool,
    storage: &Storage,
    m: &MissingObjects,
    target_ns: u64,
) -> anyhow::Result<()> {
    let id = m.recording_id;
    let segments = store::segments(db, id).await?;
    let by_name: BTreeMap<&str, i32> = segments.iter().map(|s| (s.name.as_str(), s.seq)).collect();
    for name in &m.missing {
        if let Some(seq) = by_name.get(name.as_str()) {
            store::mark_lost(db, id, *seq).await?;
        }
    }
    let missing = |n: &str| m.missing.iter().any(|x| x == n);
    let segments = store::segments(db, id).await?;
    let kept: Vec<_> = segments.iter().filter(|s| s.uploaded && !s.lost).collect();
    if kept.is_empty() {
        store::set_failed(db, id, "its objects are missing from storage").await?;
        tracing::warn!(recording_id = %id, "repair: no segment left, recording failed");
        return Ok(());
    }
    let playlist = render_playlist(&segments, None, true, target_ns);
    storage
        .put_bytes(
            &object_key(id, "index.m3u8"),
            playlist.clone().into(),
            &PutOptions {
                content_type: Some("application/vnd.apple.mpegurl".into()),
                cache_control: Some("no-cache".into()),
            },
        )
        .await?;
    sqlx::query!(
        r#"UPDATE recordings SET
            segment_count = $2,
            duration_ms = $3,
            mp4_size_bytes = CASE WHEN $4::bool THEN NULL ELSE mp4_size_bytes END,
            has_poster = has_poster AND NOT $5::bool,
            size_bytes = $6::bigint + $7::bigint + CASE WHEN $4 THEN 0 ELSE coalesce(mp4_size_bytes, 0) END,
            updated_at = now()
         WHERE id = $1"#,
        id,
        kept.len() as i32,
        kept.iter().map(|s| i64::from(s.duration_ms)).sum::<i64>(),
        missing("recording.mp4"),
        missing("poster.jpg"),
        kept.iter().map(|s| s.size_bytes).sum::<i64>(),
        playlist.len() as i64
    )
    .execute(db)
    .await?;
    tracing::warn!(recording_id = %id, missing = ?m.missing, "repair: recording corrected to what storage holds");
    Ok(())
}
