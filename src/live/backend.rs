//! The live supervisor's view of the platform: authorise publishers against PostgreSQL and
//! write the stream's events and status (PostgreSQL row, then Redis pub/sub).
//!
//! Events go through one writer task so they are stored in the order the supervisor saw them
//! (`connected` before `active` before `disconnected` before `idle`), without the supervisor
//! ever waiting on the database.

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::mpsc;
use uuid::Uuid;
use wemaster_media::ingest::RefuseReason;

use super::{
    events::{self, EventKind},
    keys::StreamKey,
    model::{LiveStreamId, StreamStatus, Visibility},
    resume::Resume,
    store::{self, Transition},
    supervisor::{AuthorizedStream, LiveBackend, StatusChange},
};
use crate::cache::Redis;

/// The only RTMP application publishers may use: `rtmp://host/live/<key>`.
pub const RTMP_APP: &str = "live";

struct Event {
    stream_id: Uuid,
    kind: EventKind,
    payload: serde_json::Value,
    status: Option<StatusChange>,
}

/// What the writer task does, in the order the supervisor asked.
enum Job {
    Event(Event),
    /// Save (or, `None`, forget) where a session stands (src/live/resume.rs).
    Resume(Uuid, Option<Resume>),
}

#[derive(Clone)]
pub struct PgLiveBackend {
    db: PgPool,
    redis: Redis,
    node: Uuid,
    events: mpsc::UnboundedSender<Job>,
    /// Checks publish tokens (the web app's go-live), accepted beside stream keys.
    signer: crate::playback::PlaybackSigner,
}

impl PgLiveBackend {
    pub fn new(
        db: PgPool,
        redis: Redis,
        signer: crate::playback::PlaybackSigner,
        // This node: recorded on the streams its sessions make active.
        node: uuid::Uuid,
    ) -> PgLiveBackend {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let pool = db.clone();
        let writer_redis = redis.clone();
        tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                match job {
                    Job::Event(e) => write_event(&pool, &writer_redis, node, e).await,
                    Job::Resume(stream_id, Some(r)) => {
                        super::resume::save(&writer_redis, stream_id, &r).await
                    }
                    Job::Resume(stream_id, None) => {
                        super::resume::forget(&writer_redis, stream_id, node).await
                    }
                }
            }
        });
        PgLiveBackend {
            db,
            redis,
            node,
            events: tx,
            signer,
        }
    }
}

async fn write_event(db: &PgPool, redis: &Redis, node: uuid::Uuid, e: Event) {
    let id = LiveStreamId(e.stream_id);
    if let Some(change) = e.status {
        let result = async {
            let mut conn = db.acquire().await?;
            match change {
                StatusChange::Active => store::mark_active(&mut conn, id, node).await,
                StatusChange::Idle => store::mark_idle(&mut conn, id, node)
                    .await
                    .map(|t| (t, None)),
            }
        }
        .await;
        // The session's published figures go with it — unless another node holds the stream
        // now (a takeover: `mark_idle` changed nothing), whose figures they are.
        if change == StatusChange::Idle && matches!(result, Ok((Transition::Changed(_), _))) {
            super::cluster::forget_session(redis, e.stream_id).await;
        }
        // This node continues the session the other node held (src/live/resume.rs).
        let continued = e.payload.get("continued_from_node").is_some();
        match result {
            Ok((_, Some(previous))) => {
                // A publisher reached this node while the stream was live on another: that
                // node ends its session (its recording is finished there), or only its part
                // of it when the session goes on here.
                tracing::info!(stream_id = %e.stream_id, %previous, continued, "live stream taken over from another node");
                super::cluster::send(
                    redis,
                    &super::cluster::Order {
                        stream_id: e.stream_id,
                        op: super::cluster::Op::Kick,
                        reason: if continued {
                            super::cluster::Reason::ContinuedElsewhere
                        } else {
                            super::cluster::Reason::TakenOver
                        },
                        from: node,
                        to: Some(previous),
                    },
                )
                .await;
            }
            Ok(_) => {}
            Err(err) => {
                tracing::error!(stream_id = %e.stream_id, error = %err, "cannot update the live stream status")
            }
        }
    }
    // A brief retry: a database blip must not lose the record of a session.
    for attempt in 0..3 {
        match events::record_event(db, redis, id, e.kind, e.payload.clone()).await {
            Ok(_) => return,
            Err(err) if attempt < 2 => {
                tracing::warn!(error = %err, kind = e.kind.as_str(), "storing a live event failed; retrying");
                tokio::time::sleep(Duration::from_millis(200 * (attempt + 1))).await;
            }
            Err(err) => tracing::error!(error = %err, kind = e.kind.as_str(), "live event lost"),
        }
    }
}

impl LiveBackend for PgLiveBackend {
    async fn authorize(
        &self,
        app: String,
        stream_key: String,
    ) -> Result<AuthorizedStream, RefuseReason> {
        if app != RTMP_APP {
            return Err(RefuseReason::WrongApp);
        }
        let publish_token = super::publish_token::verify(
            &self.signer,
            &stream_key,
            time::OffsetDateTime::now_utc(),
        );
        let key = StreamKey::parse(&stream_key).ok();
        if publish_token.is_none() && key.is_none() {
            return Err(RefuseReason::UnknownKey);
        }
        let mut conn = self.db.acquire().await.map_err(|e| {
            tracing::error!(error = %e, "cannot check a stream key: database unavailable");
            RefuseReason::Busy
        })?;
        let found = match (publish_token, key) {
            (Some(id), _) => store::get(&mut conn, LiveStreamId(id), store::Scope::All).await,
            (None, Some(key)) => store::find_by_stream_key(&mut conn, &key).await,
            (None, None) => unreachable!("refused above"),
        };
        let stream = found.map_err(|e| {
            tracing::error!(error = %e, "cannot check a stream key");
            RefuseReason::Busy
        })?;
        match stream {
            None => Err(RefuseReason::UnknownKey),
            Some(s) if s.status == StreamStatus::Disabled => Err(RefuseReason::Disabled),
            Some(s) => Ok(AuthorizedStream {
                stream_id: s.id.0,
                owner_id: s.owner_id,
                private: s.visibility == Visibility::Private,
                record: s.record,
                reconnect_window: s.reconnect_window.as_duration(),
                // A session of this stream another node held (or holds) within its window:
                // this publisher continues it.
                resume: if s.reconnect_window.as_duration().is_zero() {
                    None
                } else {
                    super::resume::load_elsewhere(&self.redis, s.id.0, self.node).await
                },
            }),
        }
    }

    fn event(
        &self,
        stream_id: Uuid,
        kind: EventKind,
        payload: serde_json::Value,
        status: Option<StatusChange>,
    ) {
        let _ = self.events.send(Job::Event(Event {
            stream_id,
            kind,
            payload,
            status,
        }));
    }

    fn resume(&self, stream_id: Uuid, state: Option<Resume>) {
        let state = state.map(|r| Resume {
            node: self.node,
            ..r
        });
        let _ = self.events.send(Job::Resume(stream_id, state));
    }
}
