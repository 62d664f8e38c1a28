//! `[chat]`: the WebSocket chat (docs/chat.md).

use serde::{Deserialize, Serialize};

/// The `[chat]` configuration section.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChatSettings {
    /// Largest client frame, after permessage-deflate inflation (bytes).
    pub max_frame_bytes: usize,
    /// Negotiate permessage-deflate with clients that offer it (every browser does).
    pub compression: bool,
    /// Longest message body (characters of Markdown).
    pub max_body_chars: usize,
    /// The server pings every this many seconds.
    pub ping_interval_s: u64,
    /// A connection that sent nothing (not even a pong) for this long is closed.
    pub idle_timeout_s: u64,
    /// Frames queued for one connection; a client that falls this far behind is disconnected.
    pub outbound_queue: usize,
    /// Messages (send/recall) one user may send per 10 s, all connections together.
    pub messages_per_10s: u64,
    /// Frames of any kind one connection may send per 10 s.
    pub frames_per_10s: u32,
    /// Open WebSocket connections per user on one node.
    pub max_connections_per_user: usize,
    /// Senders may recall (unsend) their messages for this long.
    pub recall_window_s: u64,
    /// A resume (`since_seq`) further behind than this many messages gets `reset` instead.
    pub resume_max_messages: i64,
    /// Messages stored per persister transaction at most.
    pub persist_batch: usize,
    /// How long a sender waits for its ack before it is told to retry.
    pub ack_timeout_s: u64,
    /// Prefix of the chat's Redis keys and pub/sub channel.
    pub key_prefix: String,
    /// Largest attachment (bytes).
    pub attachment_max_bytes: u64,
    /// Content types attachments may have (a subset of `attachments::KNOWN_TYPES`).
    pub attachment_types: Vec<String>,
    /// An upload no message claimed within this many seconds is deleted.
    pub attachment_ttl_s: u64,
    /// Width of image thumbnails (pixels).
    pub thumbnail_px: u32,
}
