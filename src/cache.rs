//! Redis: one multiplexed connection shared by every request — a `ConnectionManager` (which
//! reconnects by itself) on a single Redis, or a cluster connection (which follows the slot map
//! and `MOVED`/`ASK` redirects) on a Redis Cluster (`redis.cluster`). Used for sessions and
//! revocation, rate limits, pub/sub between nodes and queues (Redis Streams).
//!
//! Everything else in the crate talks to [`RedisConn`] and does not know which one it has. Two
//! things a cluster changes are handled here:
//! - a pipeline whose commands touch keys in different slots cannot go to one node; on a
//!   cluster such a pipeline is sent command by command (concurrently, on the cluster's
//!   per-node multiplexed sockets). Transactions (`MULTI`) must stay within one slot: the only
//!   one we have touches one key.
//! - pub/sub subscribers need a dedicated connection to one node; classic `PUBLISH` on a
//!   cluster reaches the subscribers of every node, so any reachable seed will do.

use std::time::Duration;

use anyhow::Context;
use redis::{
    Cmd, Pipeline, RedisFuture, RedisResult, Value,
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection},
    cluster::ClusterClient,
    cluster_async::ClusterConnection,
    cluster_routing::Slot,
};

use crate::config::RedisSettings;

/// A cheap-to-clone Redis handle.
#[derive(Clone)]
pub struct Redis {
    inner: Inner,
    conn: RedisConn,
    timeout: Duration,
}

#[derive(Clone)]
enum Inner {
    Single(redis::Client),
    Cluster {
        /// The seed nodes (for subscribers: any one of them hears every `PUBLISH`).
        seeds: Vec<redis::Client>,
        urls: Vec<String>,
    },
}

/// What a [`Redis::listen`] listener hears.
pub enum Heard {
    /// A message's text.
    Message(String),
    /// The subscription was lost and is back: messages of the gap were not heard.
    Resubscribed,
}

/// One connection of either kind; every `redis` command helper works on it.
#[derive(Clone)]
pub enum RedisConn {
    Managed(ConnectionManager),
    Multiplexed(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Redis {
    /// Connect (bounded by `redis.timeout_s`); later drops are repaired by the manager (single)
    /// or the cluster connection (which refreshes its slot map from any node that answers).
    pub async fn connect(settings: &RedisSettings) -> anyhow::Result<Redis> {
        let timeout = Duration::from_secs(settings.timeout_s);
        let (inner, conn) = if settings.cluster {
            let urls = settings.seed_urls();
            let seeds = urls
                .iter()
                .map(|u| redis::Client::open(u.as_str()))
                .collect::<RedisResult<Vec<_>>>()
                .context("redis.url or redis.cluster_seeds is not a valid Redis URL")?;
            let client = cluster_client(&urls, timeout, timeout)?;
            let conn = tokio::time::timeout(timeout, client.get_async_connection())
                .await
                .context("timed out connecting to the Redis Cluster (redis.url)")?
                .context("cannot connect to the Redis Cluster (redis.url, redis.cluster_seeds)")?;
            (Inner::Cluster { seeds, urls }, RedisConn::Cluster(conn))
        } else {
            let client = redis::Client::open(settings.url.expose())
                .context("redis.url is not a valid Redis URL")?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(3);
            let conn = tokio::time::timeout(
                timeout,
                ConnectionManager::new_with_config(client.clone(), config),
            )
            .await
            .context("timed out connecting to Redis (redis.url)")?
            .context("cannot connect to Redis (redis.url)")?;
            (Inner::Single(client), RedisConn::Managed(conn))
        };
        Ok(Redis {
            inner,
            conn,
            timeout,
        })
    }

    /// The shared multiplexed connection (clone it per use; clones share the sockets).
    pub fn conn(&self) -> RedisConn {
        self.conn.clone()
    }

    /// Whether this is a Redis Cluster (`redis.cluster`).
    pub fn is_cluster(&self) -> bool {
        matches!(self.inner, Inner::Cluster { .. })
    }

    /// A dedicated subscriber connection (pub/sub needs its own). On a cluster: the first seed
    /// that answers.
    pub async fn pubsub(&self) -> RedisResult<redis::aio::PubSub> {
        match &self.inner {
            Inner::Single(client) => client.get_async_pubsub().await,
            Inner::Cluster { seeds, .. } => {
                let mut last = None;
                for seed in seeds {
                    match tokio::time::timeout(self.timeout, seed.get_async_pubsub()).await {
                        Ok(Ok(ps)) => return Ok(ps),
                        Ok(Err(e)) => last = Some(e),
                        Err(_) => {
                            last = Some(redis::RedisError::from(std::io::Error::from(
                                std::io::ErrorKind::TimedOut,
                            )))
                        }
                    }
                }
                Err(last.expect("a cluster has at least one seed"))
            }
        }
    }

    /// Listen to `channels` until `shutdown` (or until `on` says stop), handing it each
    /// message's text, and [`Heard::Resubscribed`] after a lost subscription is back (what was
    /// published meanwhile is gone: the caller catches up from its own records). A lost or
    /// refused subscription is retried every second; `what` names the listener in the logs.
    pub async fn listen<F, Fut>(
        &self,
        what: &'static str,
        channels: &[&str],
        shutdown: &tokio_util::sync::CancellationToken,
        mut on: F,
    ) where
        F: FnMut(Heard) -> Fut,
        Fut: std::future::Future<Output = std::ops::ControlFlow<()>>,
    {
        use futures::StreamExt;
        let mut first = true;
        while !shutdown.is_cancelled() {
            let subscribed = async {
                let mut ps = self.pubsub().await?;
                ps.subscribe(channels).await?;
                RedisResult::Ok(ps)
            };
            let ps = match subscribed.await {
                Ok(ps) => ps,
                Err(e) => {
                    tracing::warn!(error = %e, listener = what, "cannot subscribe to Redis; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        () = shutdown.cancelled() => return,
                    }
                }
            };
            if !first {
                tracing::info!(listener = what, "Redis subscription re-established");
                if on(Heard::Resubscribed).await.is_break() {
                    return;
                }
            }
            first = false;
            let mut messages = ps.into_on_message();
            loop {
                let msg = tokio::select! {
                    m = messages.next() => m,
                    () = shutdown.cancelled() => return,
                };
                let Some(msg) = msg else { break };
                let Ok(text) = msg.get_payload::<String>() else {
                    continue;
                };
                if on(Heard::Message(text)).await.is_break() {
                    return;
                }
            }
            tracing::warn!(listener = what, "Redis subscription lost");
        }
    }

    /// A dedicated connection for blocking reads (`XREADGROUP … BLOCK`): blocking on the shared
    /// connection would hold every other command behind it, and the response timeout must
    /// outlast the block (`block` plus the usual timeout).
    pub async fn blocking_conn(&self, block: Duration) -> RedisResult<RedisConn> {
        match &self.inner {
            Inner::Single(client) => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(block + self.timeout));
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map(RedisConn::Multiplexed)
            }
            Inner::Cluster { urls, .. } => {
                let client = cluster_client(urls, self.timeout, block + self.timeout)
                    .map_err(|e| redis::RedisError::from(std::io::Error::other(e.to_string())))?;
                client.get_async_connection().await.map(RedisConn::Cluster)
            }
        }
    }

    /// Readiness probe (on a cluster: every master answers).
    pub async fn ping(&self) -> RedisResult<()> {
        let mut c = self.conn();
        redis::cmd("PING")
            .query_async::<Value>(&mut c)
            .await
            .map(|_| ())
    }
}

fn cluster_client(
    urls: &[String],
    connect: Duration,
    response: Duration,
) -> anyhow::Result<ClusterClient> {
    ClusterClient::builder(urls.iter().map(String::as_str))
        .connection_timeout(connect)
        .response_timeout(response)
        .retries(3)
        .build()
        .context("redis.url or redis.cluster_seeds is not a valid Redis URL")
}

/// The slot of a command's first key (the argument after the name; channels count as keys on
/// a cluster, which routes `PUBLISH` by it). `None` for a command without arguments.
fn first_key_slot(cmd: &Cmd) -> Option<Slot> {
    match cmd.args_iter().nth(1)? {
        redis::Arg::Simple(key) => Some(Slot::for_key(key)),
        _ => None,
    }
}

/// Whether every command of `pipeline` goes to one slot (so one node can take it whole).
fn one_slot(pipeline: &Pipeline) -> bool {
    let mut slots = pipeline.cmd_iter().filter_map(first_key_slot);
    match slots.next() {
        None => true,
        Some(first) => slots.all(|s| s == first),
    }
}

/// Send a pipeline whose keys lie in several slots: one sub-pipeline per slot (commands keep
/// their order within a slot, so a channel's messages stay in order), all in flight at once.
/// The pipeline was never atomic, so nothing is lost but the single round trip; an error
/// answer fails the whole, as it fails any pipeline we send.
async fn by_slot(c: ClusterConnection, pipeline: &Pipeline) -> RedisResult<Vec<Value>> {
    let cmds: Vec<&Cmd> = pipeline.cmd_iter().collect();
    let mut groups: Vec<(Option<Slot>, Vec<usize>)> = Vec::new();
    for (i, cmd) in cmds.iter().enumerate() {
        let slot = first_key_slot(cmd);
        match groups
            .iter_mut()
            .find(|(s, _)| slot.is_none() || *s == slot)
        {
            Some((_, idx)) => idx.push(i),
            None => groups.push((slot, vec![i])),
        }
    }
    let sends = groups.into_iter().map(|(_, idx)| {
        let mut c = c.clone();
        let mut sub = redis::pipe();
        for &i in &idx {
            sub.add_command(cmds[i].clone());
        }
        async move {
            let values = c.req_packed_commands(&sub, 0, idx.len()).await?;
            RedisResult::Ok(idx.into_iter().zip(values))
        }
    });
    let mut values: Vec<Option<Value>> = vec![None; cmds.len()];
    for group in futures::future::try_join_all(sends).await? {
        for (i, v) in group {
            values[i] = Some(v);
        }
    }
    Ok(values
        .into_iter()
        .map(|v| v.unwrap_or(Value::Nil))
        .collect())
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Managed(c) => c.req_packed_command(cmd),
            RedisConn::Multiplexed(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Managed(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Multiplexed(c) => c.req_packed_commands(pipeline, offset, count),
            // The slots are looked at only on a cluster: one Redis takes any pipeline whole.
            RedisConn::Cluster(c) => {
                if pipeline.is_transaction() || one_slot(pipeline) {
                    c.req_packed_commands(pipeline, offset, count)
                } else {
                    let c = c.clone();
                    Box::pin(async move {
                        let values = by_slot(c, pipeline).await?;
                        Ok(values.into_iter().skip(offset).take(count).collect())
                    })
                }
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Managed(c) => c.get_db(),
            RedisConn::Multiplexed(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
        }
    }
}
