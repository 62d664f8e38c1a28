//! System notifications: a notice is a message with no sender in the user's own channel
//! `user:<id>`, stored and delivered like any message (so a client that was offline gets it on
//! resume). Its `client_id` is the notification's idempotency key: the same event notified
//! twice is stored once.

use uuid::Uuid;

use super::{
    Keys,
    persist::{self, Entry, Op},
};
use crate::cache::Redis;

/// Queue a notice for `user`. `key` identifies the event (e.g. `live:<lesson id>:<session>`);
/// `body` is Markdown.
pub async fn notice(
    redis: &Redis,
    keys: &Keys,
    user: Uuid,
    key: &str,
    body: &str,
    data: serde_json::Value,
) -> redis::RedisResult<()> {
    persist::enqueue(
        redis,
        keys,
        &Entry {
            op: Op::Send,
            channel: format!("user:{user}"),
            sender: None,
            client_id: key.chars().take(64).collect(),
            kind: Some("notice".into()),
            html: super::render(body),
            body: body.to_owned(),
            data: Some(data),
            message: None,
        },
    )
    .await
}
