//! Orders to the node that holds a live session, over Redis pub/sub (`wm:live:commands`): the
//! HTTP actions (complete, disable, reset the key, delete) reach whichever node the load
//! balancer sent them to, and the session is in the memory of the node its publisher reached.
//! An action that finds no session here is sent to every node; the one holding it acts. A
//! publisher that reaches another node while the stream is live takes it over: the new holder
//! tells the old one to end its session (`taken_over`).
//!
//! Each node also publishes its sessions' figures (`active_session`: codecs, bitrate, viewers)
//! every [`SESSION_EVERY`] under `wm:live:session:{stream}`, so whichever node answers the
//! teacher's studio shows them.
//!
//! Pub/sub is enough: an order is about a session that is running now, and a node that misses
//! one (its subscription was down that moment) is a node whose sessions are ending anyway, or
//! which the heartbeat sweep ends (src/node.rs).

use std::ops::ControlFlow;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::runtime::LiveRuntime;
use crate::cache::{Heard, Redis};

pub const CHANNEL: &str = "wm:live:commands";

/// How often a node publishes its sessions' figures; they live three times that.
pub const SESSION_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

fn session_key(stream_id: Uuid) -> String {
    format!("wm:live:session:{stream_id}")
}

/// A session's figures as its node last published them.
pub async fn published_session(
    redis: &Redis,
    stream_id: Uuid,
) -> Option<super::runtime::ActiveSession> {
    let mut c = redis.conn();
    let raw: Option<String> = redis::cmd("GET")
        .arg(session_key(stream_id))
        .query_async(&mut c)
        .await
        .ok()?;
    serde_json::from_str(&raw?).ok()
}

/// The session ended: its figures go at once (not when they expire).
pub async fn forget_session(redis: &Redis, stream_id: Uuid) {
    let mut c = redis.conn();
    let _: redis::RedisResult<()> = redis::cmd("DEL")
        .arg(session_key(stream_id))
        .query_async(&mut c)
        .await;
}

/// Publish this node's sessions' figures every [`SESSION_EVERY`] until `shutdown`.
pub fn spawn_session_publisher(
    redis: Redis,
    runtime: LiveRuntime,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SESSION_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let ttl = SESSION_EVERY.as_secs() * 3;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let sessions = runtime.all_here().await;
            if sessions.is_empty() {
                continue;
            }
            let mut pipe = redis::pipe();
            for (stream_id, session) in &sessions {
                let json = serde_json::to_string(session).expect("sessions serialize");
                pipe.set_ex(session_key(*stream_id), json, ttl).ignore();
            }
            let mut c = redis.conn();
            if let Err(e) = pipe.query_async::<()>(&mut c).await {
                tracing::warn!(error = %e, "cannot publish this node's live sessions");
            }
        }
    })
}

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
    /// Taken over by a node that continues the same session (src/live/resume.rs): the old
    /// node's part ends without ending the session.
    ContinuedElsewhere,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Completed => "completed",
            Reason::Disabled => "disabled",
            Reason::Deleted => "deleted",
            Reason::StreamKeyReset => "stream_key_reset",
            Reason::TakenOver => "taken_over",
            Reason::ContinuedElsewhere => "continued_elsewhere",
        }
    }

    pub fn parse(reason: &str) -> Option<Reason> {
        [
            Reason::Completed,
            Reason::Disabled,
            Reason::Deleted,
            Reason::StreamKeyReset,
            Reason::TakenOver,
            Reason::ContinuedElsewhere,
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
        redis
            .listen("live orders", &[CHANNEL], &shutdown, |heard| {
                let runtime = runtime.clone();
                async move {
                    if let Heard::Message(text) = heard {
                        match serde_json::from_str::<Order>(&text) {
                            Ok(order) => apply(&runtime, me, order).await,
                            Err(_) => tracing::warn!("live orders: unreadable order ignored"),
                        }
                    }
                    ControlFlow::Continue(())
                }
            })
            .await;
    })
}

async fn apply(runtime: &LiveRuntime, me: Uuid, order: Order) {
    if order.from == me || order.to.is_some_and(|to| to != me) {
        return;
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
