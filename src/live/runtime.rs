//! The live runtime: one supervisor task on this node owns every live session (publisher,
//! pipeline, HLS playlist, reconnect window). Others talk to it through [`LiveRuntime`], a
//! cheap handle over a channel; nobody else touches session state.

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// What a live session looks like from outside while it runs (`active_session` in the API).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ActiveSession {
    pub session_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub started_at: time::OffsetDateTime,
    /// `rtmp` or `whip`.
    pub protocol: String,
    /// True while a publisher is connected; false inside the reconnect window.
    pub publishing: bool,
    pub video_codec: Option<String>,
    pub audio_codec: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub frame_rate: Option<f64>,
    /// Ingest bitrate over the last few seconds, bits per second.
    pub bitrate_bps: u64,
    pub viewers: u64,
}

pub(crate) enum Command {
    /// End the session now: kick the publisher, write ENDLIST, back to idle.
    Complete {
        stream_id: Uuid,
        reply: oneshot::Sender<bool>,
    },
    /// Kick the publisher (stream disabled or key reset); the session then ends.
    Kick {
        stream_id: Uuid,
        reason: &'static str,
        reply: oneshot::Sender<bool>,
    },
    /// The running session of a stream, if any.
    Status {
        stream_id: Uuid,
        reply: oneshot::Sender<Option<ActiveSession>>,
    },
    /// Every running session of this node, by stream.
    All {
        reply: oneshot::Sender<Vec<(Uuid, ActiveSession)>>,
    },
}

/// Handle on the live runtime. Cheap to clone.
#[derive(Clone)]
pub struct LiveRuntime {
    tx: mpsc::Sender<Command>,
    /// Several nodes: where an action for a session held elsewhere goes (src/live/cluster.rs).
    cluster: Option<std::sync::Arc<(crate::cache::Redis, Uuid)>>,
}

impl LiveRuntime {
    pub(crate) fn new(tx: mpsc::Sender<Command>) -> LiveRuntime {
        LiveRuntime { tx, cluster: None }
    }

    /// Send the actions for sessions this node does not hold to the node that does.
    pub fn clustered(self, redis: crate::cache::Redis, node: Uuid) -> LiveRuntime {
        LiveRuntime {
            tx: self.tx,
            cluster: Some(std::sync::Arc::new((redis, node))),
        }
    }

    /// End the stream's live session now (the `complete` action), here or on the node holding
    /// it. Returns whether one was running here, or the order went to the other nodes.
    pub async fn complete(&self, stream_id: Uuid) -> bool {
        self.complete_here(stream_id).await
            || self
                .elsewhere(stream_id, super::cluster::Op::Complete, "completed")
                .await
    }

    /// Disconnect the stream's publisher, if any (disable, key reset, delete), here or on the
    /// node holding its session.
    pub async fn kick(&self, stream_id: Uuid, reason: &'static str) -> bool {
        self.kick_here(stream_id, reason).await
            || self
                .elsewhere(stream_id, super::cluster::Op::Kick, reason)
                .await
    }

    async fn elsewhere(&self, stream_id: Uuid, op: super::cluster::Op, reason: &str) -> bool {
        let (Some(cluster), Some(reason)) = (&self.cluster, super::cluster::Reason::parse(reason))
        else {
            return false;
        };
        let (redis, me) = &**cluster;
        super::cluster::send(
            redis,
            &super::cluster::Order {
                stream_id,
                op,
                reason,
                from: *me,
                to: None,
            },
        )
        .await
    }

    /// End the stream's live session on this node. Returns whether one was running.
    pub(crate) async fn complete_here(&self, stream_id: Uuid) -> bool {
        let (reply, rx) = oneshot::channel();
        if self
            .tx
            .send(Command::Complete { stream_id, reply })
            .await
            .is_err()
        {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// Disconnect the publisher of the stream's session on this node, if any.
    pub(crate) async fn kick_here(&self, stream_id: Uuid, reason: &'static str) -> bool {
        let (reply, rx) = oneshot::channel();
        if self
            .tx
            .send(Command::Kick {
                stream_id,
                reason,
                reply,
            })
            .await
            .is_err()
        {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// Every session running on this node, by stream.
    pub(crate) async fn all_here(&self) -> Vec<(Uuid, ActiveSession)> {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Command::All { reply }).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// The running session of a stream on another node, as its holder last published it (a
    /// few seconds old at most; src/live/cluster.rs).
    pub async fn status_elsewhere(&self, stream_id: Uuid) -> Option<ActiveSession> {
        let cluster = self.cluster.as_ref()?;
        super::cluster::published_session(&cluster.0, stream_id).await
    }

    /// The running session of a stream on this node, if any.
    pub async fn status(&self, stream_id: Uuid) -> Option<ActiveSession> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Status { stream_id, reply })
            .await
            .ok()?;
        rx.await.ok().flatten()
    }
}
