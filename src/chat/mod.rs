//! Chat and notifications over WebSocket (issue #8). The protocol is documented frame by frame
//! in `docs/chat.md`.
//!
//! Layout:
//! - this module: settings, the domain types parsed at the edge ([`ChannelName`], [`ChatText`],
//!   [`ClientId`]), the Markdown subset, and the JSON frames;
//! - [`access`]: who may read, write and moderate a channel (lesson rooms ask the course policy);
//! - [`store`]: PostgreSQL (channels, messages, read markers, moderation);
//! - [`persist`]: the one task (per cluster, leader-elected in Redis) that moves messages from
//!   the Redis stream `wm:chat:in` into PostgreSQL in batches, numbers them, and only then
//!   publishes them on `wm:chat:events`;
//! - [`hub`]: per node, the task that owns the local subscriptions and fans published events
//!   out to the connections (and acks to their senders);
//! - [`conn`]: one task per WebSocket connection.
//!
//! Path of a message: socket → checks (access, mute, ban, slow mode, rate) → `XADD wm:chat:in`
//! → persister: one transaction numbers and stores the batch → `PUBLISH wm:chat:events` →
//! every node's hub → subscribers' sockets, and the ack to the sender. A crash before the commit
//! leaves the entry pending in the stream (claimed again); after the commit and before `XACK`
//! the entry is replayed and found by its `(sender, client_id)`: nothing is lost, nothing is
//! stored twice.

pub mod access;
pub mod attachments;
pub mod conn;
pub mod emoji;
pub mod hub;
pub mod notify;
pub mod persist;
pub mod store;

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::users::InvalidInput;

use crate::config::ChatSettings;

impl ChatSettings {
    pub fn keys(&self) -> Keys {
        Keys::new(&self.key_prefix)
    }
}

/// A channel, as the client names it: `lesson:<id>`, `course:<id>`, `dm:<other user id>`,
/// `user:<own id>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelName {
    Lesson(Uuid),
    Course(Uuid),
    /// A direct conversation with another user (as seen by the caller).
    Dm(Uuid),
    User(Uuid),
}

/// A channel's stored, caller-independent name: a DM between a and b is one channel
/// `dm:<low>:<high>`; the other kinds are stored as clients name them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Canonical(pub String);

impl ChannelName {
    pub fn parse(s: &str) -> Result<ChannelName, InvalidInput> {
        const BAD: InvalidInput = InvalidInput {
            field: "channel",
            reason: "must be lesson:<id>, course:<id>, dm:<user id> or user:<own id>",
        };
        let (kind, id) = s.split_once(':').ok_or(BAD)?;
        let id = Uuid::parse_str(id).map_err(|_| BAD)?;
        match kind {
            "lesson" => Ok(ChannelName::Lesson(id)),
            "course" => Ok(ChannelName::Course(id)),
            "dm" => Ok(ChannelName::Dm(id)),
            "user" => Ok(ChannelName::User(id)),
            _ => Err(BAD),
        }
    }

    /// The stored name, for the caller `me`.
    pub fn canonical(&self, me: Uuid) -> Canonical {
        Canonical(match *self {
            ChannelName::Dm(other) => {
                let (a, b) = if me < other { (me, other) } else { (other, me) };
                format!("dm:{a}:{b}")
            }
            other => other.to_string(),
        })
    }

    pub fn kind(&self) -> &'static str {
        match self {
            ChannelName::Lesson(_) => "lesson",
            ChannelName::Course(_) => "course",
            ChannelName::Dm(_) => "dm",
            ChannelName::User(_) => "user",
        }
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelName::Lesson(id) => write!(f, "lesson:{id}"),
            ChannelName::Course(id) => write!(f, "course:{id}"),
            ChannelName::Dm(id) => write!(f, "dm:{id}"),
            ChannelName::User(id) => write!(f, "user:{id}"),
        }
    }
}

impl Canonical {
    /// The name `me` uses for this channel (`dm:<other>` for a DM).
    pub fn display_for(&self, me: Uuid) -> String {
        match self.dm_members() {
            Some((a, b)) => format!("dm:{}", if a == me { b } else { a }),
            None => self.0.clone(),
        }
    }

    /// The two members of a DM channel.
    pub fn dm_members(&self) -> Option<(Uuid, Uuid)> {
        let rest = self.0.strip_prefix("dm:")?;
        let (a, b) = rest.split_once(':')?;
        Some((Uuid::parse_str(a).ok()?, Uuid::parse_str(b).ok()?))
    }

    pub fn is_dm(&self) -> bool {
        self.0.starts_with("dm:")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A message body: Markdown, 1 to `max` characters after trimming, no NUL or other control
/// characters except newlines and tabs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatText(String);

impl ChatText {
    pub fn parse(s: &str, max_chars: usize) -> Result<ChatText, InvalidInput> {
        let t = s.trim();
        if t.is_empty() {
            return Err(InvalidInput {
                field: "body",
                reason: "must not be empty",
            });
        }
        if t.chars().count() > max_chars {
            return Err(InvalidInput {
                field: "body",
                reason: "is longer than the chat limit",
            });
        }
        if t.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
            return Err(InvalidInput {
                field: "body",
                reason: "must not contain control characters",
            });
        }
        Ok(ChatText(t.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The sanitized HTML of the Markdown subset (see [`render`]).
    pub fn html(&self) -> String {
        render(&self.0)
    }
}

/// A client's idempotency key for one state-changing frame: 1 to 64 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientId(String);

impl ClientId {
    pub fn parse(s: &str) -> Result<ClientId, InvalidInput> {
        if (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic()) {
            Ok(ClientId(s.to_owned()))
        } else {
            Err(InvalidInput {
                field: "client_id",
                reason: "must be 1 to 64 printable ASCII characters",
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The HTML tags a chat message may hold (ammonia's allow-list in [`render`]).
pub const CHAT_TAGS: &[&str] = &[
    "p",
    "br",
    "em",
    "strong",
    "del",
    "code",
    "pre",
    "a",
    "ul",
    "ol",
    "li",
    "blockquote",
];

/// The chat's Markdown subset → sanitized HTML: emphasis, strong, strikethrough, inline code
/// and code blocks, links (`rel="noopener noreferrer nofollow"`), lists, quotes and line
/// breaks. Headings become paragraphs' text, images their alt text, raw HTML is dropped;
/// ammonia enforces the allow-list whatever pulldown-cmark emits.
pub fn render(md: &str) -> String {
    use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd, html};
    use std::collections::HashSet;
    let mut opts = Options::empty();
    opts.insert(Options::ENABLE_STRIKETHROUGH);
    // Headings and images are not part of chat: keep their text only.
    let events = Parser::new_ext(md, opts).filter_map(|e| match e {
        Event::Start(Tag::Heading { .. }) => Some(Event::Start(Tag::Paragraph)),
        Event::End(TagEnd::Heading(_)) => Some(Event::End(TagEnd::Paragraph)),
        Event::Start(Tag::Image { .. }) | Event::End(TagEnd::Image) => None,
        Event::Html(_) | Event::InlineHtml(_) => None,
        Event::SoftBreak => Some(Event::HardBreak),
        e => Some(e),
    });
    let mut out = String::with_capacity(md.len() + 16);
    html::push_html(&mut out, events);
    let tags: HashSet<&str> = CHAT_TAGS.iter().copied().collect();
    ammonia::Builder::default()
        .tags(tags)
        .link_rel(Some("noopener noreferrer nofollow"))
        .url_schemes(["http", "https", "mailto"].into_iter().collect())
        .clean(&out)
        .to_string()
        .trim_end()
        .to_owned()
}

/// A stored message as clients see it. Removed messages keep their place (`id`, `seq`) with an
/// empty body and `deleted: true`: a tombstone.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MessageView {
    pub id: Uuid,
    pub seq: i64,
    /// `text`, `tombstone` (the event that removed `refers_to`) or `notice` (system).
    pub kind: String,
    /// Null for system notices.
    pub sender_id: Option<Uuid>,
    pub client_id: String,
    pub body: String,
    pub html: String,
    pub refers_to: Option<Uuid>,
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub deleted: bool,
    pub deleted_by: Option<Uuid>,
    /// Reactions, one entry per emoji (in history pages and resumes; a new message has none).
    #[serde(default)]
    pub reactions: Vec<ReactionCount>,
}

/// How many reacted to a message with one emoji, and whether the reader did.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReactionCount {
    pub emoji: String,
    pub count: i64,
    pub me: bool,
}

/// Frames a client sends (`type` tags them). Unknown types are refused with an error frame.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    Subscribe {
        channel: String,
        since_seq: Option<i64>,
    },
    Unsubscribe {
        channel: String,
    },
    Send {
        channel: String,
        client_id: String,
        #[serde(default)]
        body: String,
        /// An upload of the sender's (`POST /api/v1/chat/uploads`) to attach.
        #[serde(default)]
        attachment_id: Option<Uuid>,
    },
    Recall {
        client_id: String,
        message_id: Uuid,
    },
    Read {
        channel: String,
        seq: i64,
    },
    Typing {
        channel: String,
    },
    Presence {
        channel: String,
    },
    /// Add (`on: true`) or take back a reaction.
    React {
        client_id: String,
        message_id: Uuid,
        emoji: String,
        on: bool,
    },
    /// Application-level ping for browsers (which cannot send WebSocket pings).
    Ping {
        nonce: Option<serde_json::Value>,
    },
}

/// The protocol version this server speaks (`hello.protocol`; `?v=` may ask for it).
pub const PROTOCOL_VERSION: u32 = 1;

/// What a client's text frame is, decided without the socket (sans-IO, fuzzed:
/// [`crate::fuzzing::chat_frame`]): a chat frame, a live-interaction frame
/// (docs/interaction.md), or a refusal to answer with an error frame.
#[derive(Debug)]
pub enum Decoded {
    Chat(ClientFrame),
    Interaction {
        frame: crate::interaction::Frame,
        client_id: Option<String>,
    },
    Refused {
        client_id: Option<String>,
        code: ChatError,
        detail: String,
    },
}

/// Decode a text frame's payload: JSON with no NUL in its strings (PostgreSQL cannot store
/// one), a chat frame first and, only when that fails on a `type` the live tools own, an
/// interaction frame (chat frames pay nothing for them). A refusal keeps the frame's
/// `client_id` when it has one, so the client can match the error to what it sent.
pub fn decode_frame(payload: &[u8]) -> Decoded {
    if crate::domain::json_has_nul(payload) {
        return Decoded::Refused {
            client_id: None,
            code: ChatError::BadFrame,
            detail: "a string of the frame contains a NUL character (U+0000)".into(),
        };
    }
    let e = match serde_json::from_slice::<ClientFrame>(payload) {
        Ok(f) => return Decoded::Chat(f),
        Err(e) => e,
    };
    let v: Option<serde_json::Value> = serde_json::from_slice(payload).ok();
    let client_id = v
        .as_ref()
        .and_then(|v| v.get("client_id"))
        .and_then(|c| c.as_str())
        .map(str::to_owned);
    let ty = v
        .as_ref()
        .and_then(|v| v.get("type"))
        .and_then(|t| t.as_str());
    if let Some(ty) = ty
        && crate::interaction::FRAME_TYPES.contains(&ty)
    {
        return match serde_json::from_value::<crate::interaction::Frame>(v.unwrap_or_default()) {
            Ok(frame) => Decoded::Interaction { frame, client_id },
            Err(e) => Decoded::Refused {
                client_id,
                code: ChatError::BadFrame,
                detail: e.to_string(),
            },
        };
    }
    let code = if ty.is_some() && e.to_string().contains("unknown variant") {
        ChatError::UnknownType
    } else {
        ChatError::BadFrame
    };
    Decoded::Refused {
        client_id,
        code,
        detail: e.to_string(),
    }
}

/// Error codes of `error` frames (stable; documented in docs/chat.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatError {
    BadFrame,
    UnknownType,
    Invalid,
    Forbidden,
    NotFound,
    NotSubscribed,
    Muted,
    Banned,
    SlowMode,
    RateLimited,
    RecallExpired,
    AckTimeout,
    Unavailable,
    /// The poll is closed (docs/interaction.md).
    Closed,
}

impl ChatError {
    pub fn code(self) -> &'static str {
        match self {
            ChatError::BadFrame => "bad_frame",
            ChatError::UnknownType => "unknown_type",
            ChatError::Invalid => "invalid",
            ChatError::Forbidden => "forbidden",
            ChatError::NotFound => "not_found",
            ChatError::NotSubscribed => "not_subscribed",
            ChatError::Muted => "muted",
            ChatError::Banned => "banned",
            ChatError::SlowMode => "slow_mode",
            ChatError::RateLimited => "rate_limited",
            ChatError::RecallExpired => "recall_expired",
            ChatError::AckTimeout => "ack_timeout",
            ChatError::Unavailable => "unavailable",
            ChatError::Closed => "closed",
        }
    }
}

/// Redis keys and channels of the chat, under `chat.key_prefix` (nodes of one deployment share
/// it; tests give each app its own).
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
        }
    }
    /// The stream messages wait in until the persister has stored them.
    pub fn inbox(&self) -> String {
        format!("{}in", self.prefix)
    }
    /// Pub/sub channel every node's hub listens to.
    pub fn events(&self) -> String {
        format!("{}events", self.prefix)
    }
    /// Persister leadership lease.
    pub fn leader(&self) -> String {
        format!("{}persister", self.prefix)
    }
    /// Sorted set of users present in a channel (score: expiry, ms since the epoch).
    pub fn presence(&self, canonical: &str) -> String {
        format!("{}presence:{canonical}", self.prefix)
    }
    /// Set while a user has a connection on some node (expires unless refreshed).
    pub fn online(&self, user: Uuid) -> String {
        format!("{}online:{user}", self.prefix)
    }
    /// Per-user message counter of one 10 s window.
    pub fn rate(&self, user: Uuid, window: i64) -> String {
        format!("{}rate:{user}:{window}", self.prefix)
    }
    /// The raised hands of a lesson (sorted set: user → ms raised).
    pub fn hands(&self, lesson: Uuid) -> String {
        format!("{}hands:{lesson}", self.prefix)
    }
    /// A live reaction's `client_id` seen (counted once).
    pub fn reaction_id(&self, user: Uuid, client_id: &str) -> String {
        format!("{}rx:{user}:{client_id}", self.prefix)
    }
    /// Slow-mode marker of a user in a channel.
    pub fn slow(&self, channel: Uuid, user: Uuid) -> String {
        format!("{}slow:{channel}:{user}", self.prefix)
    }
}

/// `user` lost access to `course` (left it, was removed from its staff): their connections drop
/// the course channel and its lesson rooms at once. Best effort: subscriptions are also
/// re-checked every few minutes.
pub async fn revoke_course(
    db: &mut sqlx::PgConnection,
    redis: &crate::cache::Redis,
    keys: &Keys,
    course: Uuid,
    user: Uuid,
    reason: &str,
) {
    let lessons = match sqlx::query_scalar!("SELECT id FROM lessons WHERE course_id = $1", course)
        .fetch_all(db)
        .await
    {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "chat: cannot list lessons to revoke");
            Vec::new()
        }
    };
    let channels = std::iter::once(format!("course:{course}"))
        .chain(lessons.into_iter().map(|l| format!("lesson:{l}")));
    for channel in channels {
        let wire = hub::Wire::Revoke {
            channel,
            user_id: user,
            reason: reason.to_owned(),
        };
        if let Err(e) = hub::publish(redis, keys, &wire).await {
            tracing::warn!(error = %e, "chat: cannot publish a revocation");
        }
    }
}

/// Consumer group of the persister.
pub const GROUP: &str = "persist";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_parse_and_dms_are_one_channel_for_both_sides() {
        let a = Uuid::now_v7();
        let b = Uuid::now_v7();
        let from_a = ChannelName::parse(&format!("dm:{b}")).unwrap();
        let from_b = ChannelName::parse(&format!("dm:{a}")).unwrap();
        assert_eq!(from_a.canonical(a), from_b.canonical(b));
        let c = from_a.canonical(a);
        assert_eq!(c.display_for(a), format!("dm:{b}"));
        assert_eq!(c.display_for(b), format!("dm:{a}"));
        let lesson = ChannelName::parse(&format!("lesson:{a}")).unwrap();
        assert_eq!(lesson.canonical(b).as_str(), format!("lesson:{a}"));
        for bad in [
            "",
            "lesson",
            "lesson:",
            "room:x",
            "dm:not-a-uuid",
            &format!("x:{a}"),
        ] {
            assert!(ChannelName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn chat_text_is_bounded_and_trimmed() {
        assert_eq!(ChatText::parse("  hi \n", 10).unwrap().as_str(), "hi");
        assert!(ChatText::parse("   ", 10).is_err());
        assert!(ChatText::parse(&"x".repeat(11), 10).is_err());
        assert!(ChatText::parse("a\u{0}b", 10).is_err());
        assert!(ChatText::parse("line\nline", 20).is_ok());
    }

    #[test]
    fn client_ids_are_short_printable_ascii() {
        assert!(ClientId::parse("m-1").is_ok());
        assert!(ClientId::parse("").is_err());
        assert!(ClientId::parse(&"x".repeat(65)).is_err());
        assert!(ClientId::parse("a b").is_err());
    }

    #[test]
    fn markdown_subset_is_rendered_and_everything_else_is_dropped() {
        assert_eq!(
            render("**hi** _there_"),
            "<p><strong>hi</strong> <em>there</em></p>"
        );
        assert_eq!(render("`x`"), "<p><code>x</code></p>");
        let link = render("[w](https://example.org)");
        assert!(link.contains(r#"href="https://example.org""#), "{link}");
        assert!(link.contains("nofollow"), "{link}");
        assert!(!render("[x](javascript:alert(1))").contains("javascript"));
        let html = render("<script>alert(1)</script><img src=x onerror=alert(1)>");
        assert!(!html.contains("script") && !html.contains("img"), "{html}");
        assert_eq!(render("# Title"), "<p>Title</p>");
        assert!(!render("![alt](https://x/y.png)").contains("<img"));
        assert_eq!(render("a\nb"), "<p>a<br>\nb</p>");
    }
}
