//! This node among several sharing one database (docs/deploy.md, "Several nodes").
//!
//! A node is named by an id kept in its spool folder (`media.spool_dir/node-id`, made at the
//! first start): the spool holds the segments not yet uploaded, so whoever owns that folder owns
//! the live sessions and recordings that write to it — a restarted process is the same node, and
//! its start-up recovery takes back its own streams and recordings and leaves the other nodes'
//! alone (it used to reset every active stream and mark other nodes' pending segments lost).
//!
//! Every node writes a heartbeat to `cluster_nodes`; once per cluster (a job lease) a node looks
//! for active streams whose node has been silent for `live.node_lost_after_s` and ends them
//! (`live_stream.idle` with `why: node_lost`, which also tells integrators `stream.ended`), and
//! takes over their unfinished recordings: what reached object storage is finalized (HLS, MP4)
//! by this node's recorder; the segments still in the lost node's spool are marked lost.

use std::{path::Path, time::Duration};

use anyhow::Context;
use serde_json::json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    cache::Redis,
    jobs::Lease,
    live::{
        events::{self, EventKind},
        model::LiveStreamId,
        store::{self, Transition},
    },
    recordings::recorder::{RecorderHandle, RecorderMsg},
};

/// This node: its id (stable across restarts, from the spool) and a name for people.
#[derive(Debug, Clone)]
pub struct Node {
    pub id: Uuid,
    pub name: String,
    /// Where the other nodes reach this node's HTTP (`live.internal_url`).
    pub internal_url: String,
}

impl Node {
    /// Read `spool_dir/node-id`, or make it.
    pub fn load_or_create(spool_dir: &Path, internal_url: String) -> anyhow::Result<Node> {
        std::fs::create_dir_all(spool_dir)
            .with_context(|| format!("cannot create media.spool_dir {}", spool_dir.display()))?;
        let path = spool_dir.join("node-id");
        let id = match std::fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse()
                .with_context(|| format!("{} does not hold a node id", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = Uuid::now_v7();
                std::fs::write(&path, format!("{id}\n"))
                    .with_context(|| format!("cannot write {}", path.display()))?;
                id
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "node".into());
        Ok(Node {
            id,
            name: format!("{host} (pid {})", std::process::id()),
            internal_url,
        })
    }
}

/// How often the heartbeat is written, and after how long a silent node is lost.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub heartbeat: Duration,
    pub lost_after: Duration,
}

/// The heartbeat and the lost-node sweep; stops at `shutdown`.
pub fn spawn(
    node: Node,
    timing: Timing,
    db: PgPool,
    redis: Redis,
    lease: Lease,
    recorder: RecorderHandle,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(timing.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            if let Err(e) = heartbeat(&db, &node).await {
                tracing::warn!(error = %e, "cannot write this node's heartbeat");
            }
            if lease.claim_every("live.lost_nodes", timing.heartbeat).await {
                match end_lost_streams(&db, &redis, node.id, timing.lost_after).await {
                    Ok(0) => {}
                    Ok(n) => tracing::warn!(streams = n, "ended the live streams of lost nodes"),
                    Err(e) => tracing::warn!(error = %e, "cannot end the streams of lost nodes"),
                }
                let lost_s = timing.lost_after.as_secs_f64();
                match crate::recordings::store::adopt_lost(&db, node.id, lost_s).await {
                    Ok(adopted) => {
                        for (recording_id, live_stream_id) in adopted {
                            metrics::counter!("recordings_adopted_total").increment(1);
                            recorder.send(RecorderMsg::Adopted {
                                recording_id,
                                live_stream_id,
                            });
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot take over the recordings of lost nodes")
                    }
                }
            }
        }
    })
}

async fn heartbeat(db: &PgPool, node: &Node) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO cluster_nodes (id, name, internal_url) VALUES ($1, $2, $3)
         ON CONFLICT (id) DO UPDATE
            SET name = EXCLUDED.name, internal_url = EXCLUDED.internal_url, heartbeat_at = now()",
        node.id,
        node.name,
        node.internal_url
    )
    .execute(db)
    .await?;
    Ok(())
}

/// End the active streams of nodes silent for `lost_after` (never this node's). Returns how
/// many were ended.
pub async fn end_lost_streams(
    db: &PgPool,
    redis: &Redis,
    me: Uuid,
    lost_after: Duration,
) -> Result<u64, sqlx::Error> {
    let lost = sqlx::query!(
        r#"SELECT s.id, s.node_id AS "node_id!",
                  (SELECT e.payload->>'session_id' FROM live_stream_events e
                    WHERE e.live_stream_id = s.id AND e.kind = 'live_stream.active'
                    ORDER BY e.id DESC LIMIT 1) AS session_id
             FROM live_streams s LEFT JOIN cluster_nodes n ON n.id = s.node_id
            WHERE s.status = 'active' AND s.deleted_at IS NULL AND s.node_id IS NOT NULL
              AND s.node_id <> $1
              AND (n.id IS NULL OR n.heartbeat_at < now() - make_interval(secs => $2))"#,
        me,
        lost_after.as_secs_f64()
    )
    .fetch_all(db)
    .await?;
    let mut ended = 0;
    for s in lost {
        let mut tx = db.begin().await?;
        let id = LiveStreamId(s.id);
        // Conditional: a node that came back (or another sweep) may have changed it meanwhile.
        if let Transition::Changed(_) = store::mark_idle(&mut tx, id, s.node_id).await? {
            let event = events::store_event(
                &mut tx,
                id,
                EventKind::Idle,
                json!({"session_id": s.session_id, "why": "node_lost", "node_id": s.node_id}),
            )
            .await?;
            tx.commit().await?;
            events::publish_or_log(redis, &event).await;
            metrics::counter!("live_sessions_ended_node_lost_total").increment(1);
            ended += 1;
        }
    }
    Ok(ended)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_keeps_its_id_in_its_spool() {
        let dir = tempfile::tempdir().unwrap();
        let url = || "http://127.0.0.1:8080".to_string();
        let a = Node::load_or_create(dir.path(), url()).unwrap();
        let again = Node::load_or_create(dir.path(), url()).unwrap();
        assert_eq!(a.id, again.id, "a restart is the same node");
        let other = tempfile::tempdir().unwrap();
        assert_ne!(Node::load_or_create(other.path(), url()).unwrap().id, a.id);
        std::fs::write(dir.path().join("node-id"), "garbage").unwrap();
        assert!(Node::load_or_create(dir.path(), url()).is_err());
    }
}
