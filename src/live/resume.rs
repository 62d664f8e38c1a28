//! A live session that goes on on another node: the resume record.
//!
//! The node holding a session keeps where it stands in Redis (`wm:live:resume:{stream}`): the
//! session's id and start, the playlist's next media sequence and discontinuity sequence, the
//! next segment index and the end of its timeline. It is rewritten as each segment closes and
//! lives for the stream's reconnect window (plus a segment) after the last write, so it outlives
//! the node: when that node dies mid-lesson and the encoder reconnects through the load balancer
//! to another node within the window, the new node finds the record and continues the **same
//! session** — the same id, a playlist whose numbering goes on after a discontinuity (a player
//! reloading the same URL keeps playing), segment names that cannot collide with the old node's,
//! and the same recording (its recorder claims it: `recordings::store::claim_for_session`).
//!
//! The same happens when a publisher moves to another node while the old one is still up (a
//! takeover): the old node's session ends (`taken_over`) and hands its recording over instead of
//! finishing it.
//!
//! A session that ends normally (window passed, completed, disabled) deletes its record, only if
//! it is still its own (a compare-and-delete: the new holder may have written it meanwhile).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;
use wemaster_media::{hls::ResumePoint, llhls::LlResumePoint};

use crate::cache::Redis;

/// Where a session stands, as its node last wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Resume {
    pub session_id: Uuid,
    /// The node holding the session.
    pub node: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    pub next_sequence: u64,
    pub discontinuity_sequence: u64,
    /// The first segment index the next publisher may use (indices name the segment files).
    pub next_start_index: u64,
    /// End of the last segment on the session timeline (ms).
    pub timeline_end_ms: u64,
    /// Seconds the record lives after this write: the reconnect window and a segment.
    pub ttl_s: u64,
    /// The LL-HLS playlist's numbering, when LL-HLS is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ll: Option<LlPoint>,
}

/// [`LlResumePoint`], as the record keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LlPoint {
    pub next_msn: u64,
    pub discontinuity_sequence: u64,
    pub next_init: u64,
}

impl From<LlResumePoint> for LlPoint {
    fn from(p: LlResumePoint) -> LlPoint {
        LlPoint {
            next_msn: p.next_msn,
            discontinuity_sequence: p.discontinuity_sequence,
            next_init: p.next_init,
        }
    }
}

impl From<LlPoint> for LlResumePoint {
    fn from(p: LlPoint) -> LlResumePoint {
        LlResumePoint {
            next_msn: p.next_msn,
            discontinuity_sequence: p.discontinuity_sequence,
            next_init: p.next_init,
        }
    }
}

impl Resume {
    pub fn point(&self) -> ResumePoint {
        ResumePoint {
            next_sequence: self.next_sequence,
            discontinuity_sequence: self.discontinuity_sequence,
        }
    }
}

fn key(stream_id: Uuid) -> String {
    format!("wm:live:resume:{stream_id}")
}

/// How long a record lives after a write: a publisher reconnecting later starts afresh.
pub fn ttl(reconnect_window: Duration, segment_max: Duration) -> u64 {
    (reconnect_window + segment_max).as_secs().max(1) + 1
}

pub async fn save(redis: &Redis, stream_id: Uuid, r: &Resume) {
    let json = serde_json::to_string(r).expect("resume records serialize");
    let mut c = redis.conn();
    if let Err(e) = redis::cmd("SET")
        .arg(key(stream_id))
        .arg(json)
        .arg("EX")
        .arg(r.ttl_s)
        .query_async::<()>(&mut c)
        .await
    {
        tracing::warn!(%stream_id, error = %e, "cannot save where the live session stands");
    }
}

/// The record of a session held by another node than `me`, if any.
pub async fn load_elsewhere(redis: &Redis, stream_id: Uuid, me: Uuid) -> Option<Resume> {
    let mut c = redis.conn();
    let raw: Option<String> = redis::cmd("GET")
        .arg(key(stream_id))
        .query_async(&mut c)
        .await
        .ok()?;
    let r: Resume = serde_json::from_str(&raw?).ok()?;
    (r.node != me).then_some(r)
}

/// Delete the record if `node` still holds it.
pub async fn forget(redis: &Redis, stream_id: Uuid, node: Uuid) {
    // One key: a script is atomic on a single Redis and on a cluster alike.
    const SCRIPT: &str = r#"
local raw = redis.call('GET', KEYS[1])
if raw and cjson.decode(raw)['node'] == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0"#;
    let mut c = redis.conn();
    if let Err(e) = redis::Script::new(SCRIPT)
        .key(key(stream_id))
        .arg(node.to_string())
        .invoke_async::<i64>(&mut c)
        .await
    {
        tracing::warn!(%stream_id, error = %e, "cannot delete the live session's resume record");
    }
}
