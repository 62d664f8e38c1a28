//! Live HLS from any node: a node asked for a live stream it does not hold forwards the request
//! to the node that does (`live_streams.node_id` → `cluster_nodes.internal_url`), so a viewer
//! behind a load balancer plays whichever node answers — and keeps playing after a reload when
//! the publisher reconnected elsewhere.
//!
//! Chosen over serving live HLS from object storage: the holder has every playlist and segment
//! in memory or its spool the moment they exist, LL-HLS parts and blocking reloads included;
//! through storage a segment would show up only after its upload (a segment's length or more
//! of latency, and a PUT plus GETs per segment). The cost is one internal hop for the viewers
//! who land on another node; a CDN in front (docs/deploy.md) absorbs most of those.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use sqlx::PgPool;
use uuid::Uuid;

/// How long a lookup is believed: a reconnect elsewhere is seen within this.
const POSITIVE_TTL: Duration = Duration::from_secs(2);
/// Not held by another live node: asked again after this (players retry on 404).
const NEGATIVE_TTL: Duration = Duration::from_secs(1);

/// The request header a forwarded request carries: it is never forwarded again (two nodes that
/// disagree for a moment cannot bounce a request between them).
pub const FORWARDED_HEADER: &str = "x-wemaster-forwarded";

/// Which node holds a live stream, cached briefly; and the HTTP client that forwards to it.
pub struct Peers {
    db: PgPool,
    me: Uuid,
    lost_after: Duration,
    http: reqwest::Client,
    cache: Mutex<HashMap<Uuid, (Option<String>, Instant)>>,
}

impl Peers {
    pub fn new(db: PgPool, me: Uuid, lost_after: Duration) -> anyhow::Result<Peers> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            // Our own nodes: no redirects to follow, no proxy from the environment.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        Ok(Peers {
            db,
            me,
            lost_after,
            http,
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The internal URL of the node holding `stream`, when another node that is alive (beat
    /// within `live.node_lost_after_s`) holds it.
    pub async fn holder(&self, stream: Uuid) -> Option<String> {
        let now = Instant::now();
        if let Ok(cache) = self.cache.lock()
            && let Some((url, at)) = cache.get(&stream)
        {
            let ttl = if url.is_some() {
                POSITIVE_TTL
            } else {
                NEGATIVE_TTL
            };
            if now.duration_since(*at) < ttl {
                return url.clone();
            }
        }
        let url = sqlx::query_scalar!(
            r#"SELECT n.internal_url AS "url!"
                 FROM live_streams s JOIN cluster_nodes n ON n.id = s.node_id
                WHERE s.id = $1 AND s.deleted_at IS NULL AND s.node_id <> $2
                  AND n.internal_url IS NOT NULL
                  AND n.heartbeat_at > now() - make_interval(secs => $3)"#,
            stream,
            self.me,
            self.lost_after.as_secs_f64()
        )
        .fetch_optional(&self.db)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot look up the node holding a live stream");
            None
        });
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() > 10_000 {
                cache.retain(|_, (_, at)| now.duration_since(*at) < POSITIVE_TTL);
            }
            cache.insert(stream, (url.clone(), now));
        }
        url
    }
}
