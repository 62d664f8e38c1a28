//! Orders to the node that holds a live session, over Redis pub/sub (`wm:live:commands`): the
//! HTTP actions (complete, disable, reset the key, delete) reach whichever node the load
//! balancer sent them to, and the session is in the memory of the node its publisher reached.
//! An action that finds no session here is sent to every node; the one holding it acts. A
//! publisher that reaches another node while the stream is live takes it over: the new holder
//! tells the old one to end its session (`taken_over`).
//!
//! Pub/sub is enough: an order is about a session that is running now, and a node that misses
//! one (its subscription was down that moment) is a node whose sessions are ending anyway, or
//! which the heartbeat sweep ends (src/node.rs).

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::runtime::LiveRuntime;
use crate::cache::Redis;

pub const CHANNEL: &str = "wm:live:commands";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    pub stream_id: Uuid,
    pub op: Op,
    pub reason: Reason,
    /// The node that sent it (it ignores its own).
    pub from: Uuid,
    /// Only this node acts (a takeover); `None`: whichever holds the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Uuid>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Complete,
    Kick,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Completed,
    Disabled,
    Deleted,
    StreamKeyReset,
    TakenOver,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Completed => "completed",
            Reason::Disabled => "disabled",
            Reason::Deleted => "deleted",
            Reason::StreamKeyReset => "stream_key_reset",
            Reason::TakenOver => "taken_over",
        }
    }

    pub fn parse(reason: &str) -> Option<Reason> {
        [
            Reason::Completed,
            Reason::Disabled,
            Reason::Deleted,
            Reason::StreamKeyReset,
            Reason::TakenOver,
        ]
        .into_iter()
        .find(|r| r.as_str() == reason)
    }
}

/// Publish an order; a failure is logged (the action still did what it could here).
pub async fn send(redis: &Redis, order: &Order) -> bool {
    let mut c = redis.conn();
    let body = serde_json::to_string(order).expect("orders serialize");
    match redis::cmd("PUBLISH")
        .arg(CHANNEL)
        .arg(body)
        .query_async::<u64>(&mut c)
        .await
    {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(error = %e, stream_id = %order.stream_id, "cannot send a live order to the other nodes");
            false
        }
    }
}

/// Listen for orders and apply those for this node to its own sessions; re-subscribes after a
/// loss until `shutdown`.
pub fn spawn_listener(
    redis: Redis,
    me: Uuid,
    runtime: LiveRuntime,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !shutdown.is_cancelled() {
            let subscribed = async {
                let mut ps = redis.pubsub().await?;
                ps.subscribe(CHANNEL).await?;
                redis::RedisResult::Ok(ps)
            };
            let ps = match subscribed.await {
                Ok(ps) => ps,
                Err(e) => {
                    tracing::warn!(error = %e, "live orders: cannot subscribe to Redis; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                        () = shutdown.cancelled() => return,
                    }
                }
            };
            let mut messages = ps.into_on_message();
            loop {
                let msg = tokio::select! {
                    m = messages.next() => m,
                    () = shutdown.cancelled() => return,
                };
                let Some(msg) = msg else { break };
                let Ok(order) = msg
                    .get_payload::<String>()
                    .map_err(|_| ())
                    .and_then(|p| serde_json::from_str::<Order>(&p).map_err(|_| ()))
                else {
                    tracing::warn!("live orders: unreadable order ignored");
                    continue;
                };
                if order.from == me || order.to.is_some_and(|to| to != me) {
                    continue;
                }
                let found = match order.op {
                    Op::Complete => runtime.complete_here(order.stream_id).await,
                    Op::Kick => {
                        runtime
                            .kick_here(order.stream_id, order.reason.as_str())
                            .await
                    }
                };
                if found {
                    tracing::info!(stream_id = %order.stream_id, reason = order.reason.as_str(), from = %order.from, "live order from another node applied");
                    metrics::counter!("live_orders_applied_total", "reason" => order.reason.as_str())
                        .increment(1);
                }
            }
            tracing::warn!("live orders: Redis subscription lost");
        }
    })
}
