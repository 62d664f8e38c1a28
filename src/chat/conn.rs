//! One WebSocket connection: a task that owns the socket, reads client frames, writes what the
//! hub queues for it, pings, and cleans up (hub registration, presence) when it ends.
//!
//! Every frame is handled to completion before the next is read; the hub's queue for this
//! connection fills meanwhile and is drained in between. Per subscription the connection keeps
//! the last `seq` it sent: history sent on subscribe and live events overlap by design (the hub
//! subscription is made first), and the overlap is skipped by `seq`.
//!
//! Size: over 800 lines: the connection task is one state machine (subscriptions, pending
//! acks, rate state) whose frame handlers share it; the admission rules of a message are apart
//! in `Conn::admit`, and the protocol types in `chat/mod.rs`.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use futures::{SinkExt, StreamExt};
use redis::AsyncCommands;
use serde_json::json;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use yawc::{Frame, HttpWebSocket, OpCode, close::CloseCode};

use super::{
    Canonical, ChannelName, ChatError, ChatText, ClientFrame, ClientId, Decoded, MessageView,
    PROTOCOL_VERSION,
    access::{self, ChannelAccess},
    hub::{ConnId, Hub, Out, Waiter, Wire},
    persist::{self, Entry, Op},
    store,
};
use crate::{
    courses::policy::Caller,
    domain::{ChannelId, UserId},
    state::AppState,
};

mod interact;
pub use interact::hands;

/// How long a channel access decision is trusted before it is asked again (bans and lost
/// enrollments also revoke at once through `Revoke` events).
const ACCESS_TTL: Duration = Duration::from_secs(30);
/// Each subscription's access is asked again this often (enrollments that end by refund or
/// expiry, course deletion, role changes); leaving a course and bans revoke at once.
const RECHECK: Duration = Duration::from_secs(300);
/// Typing indicators: at most one per channel per this interval.
const TYPING_INTERVAL: Duration = Duration::from_secs(2);
/// At most this many queued frames are written together before the socket is flushed.
const OUT_BATCH: usize = 64;

/// Whether a new message may be stored ([`Conn::admit`]).
enum Admission {
    /// Yes, in this channel.
    Admit(store::Channel),
    /// No: one error frame says why.
    Refuse(Refusal),
}

/// Why a new message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// The caller may not write to the channel.
    Forbidden,
    /// A moderator muted the whole room.
    RoomMuted,
    /// A moderator muted the sender here.
    SenderMuted,
    /// Over `chat.messages_per_10s`.
    RateLimited,
    /// The channel's slow mode: one message every `every_s` seconds.
    SlowMode { every_s: i32 },
}

impl Refusal {
    /// The error frame's code and detail (`channel` as the client named it).
    fn frame(self, channel: &str) -> (ChatError, String) {
        match self {
            Refusal::Forbidden => (ChatError::Forbidden, format!("cannot write to {channel}")),
            Refusal::RoomMuted => (ChatError::Muted, "the room is muted".into()),
            Refusal::SenderMuted => (ChatError::Muted, "you are muted in this channel".into()),
            Refusal::RateLimited => (
                ChatError::RateLimited,
                "too many messages; slow down".into(),
            ),
            Refusal::SlowMode { every_s } => (
                ChatError::SlowMode,
                format!("slow mode: one message every {every_s} s"),
            ),
        }
    }
}

struct Sub {
    name: ChannelName,
    display: String,
    channel_id: Uuid,
    last_seq: i64,
    checked_at: Instant,
}

pub struct Conn {
    id: ConnId,
    caller: Caller,
    state: AppState,
    hub: Hub,
    subs: HashMap<Canonical, Sub>,
    access: HashMap<ChannelName, (ChannelAccess, Instant)>,
    /// Writes waiting for their outcome, by client id.
    pending: HashMap<String, Instant>,
    typing: HashMap<Canonical, Instant>,
    window: (Instant, u32),
    last_seen: Instant,
    /// Live reactions in the current second (docs/interaction.md).
    reactions: (Instant, u32),
    /// Open attendance intervals, by lesson.
    attendance: HashMap<Uuid, Uuid>,
}

type Ws = HttpWebSocket;

enum Flow {
    Continue,
    Close(CloseCode, &'static str),
}

/// Serve one upgraded connection until it closes.
pub async fn serve(mut ws: Ws, state: AppState, caller: Caller, shutdown: CancellationToken) {
    let settings = state.settings.chat.clone();
    let hub = state.chat.clone();
    let id = hub.next_conn_id();
    let (tx, mut rx) = mpsc::channel(settings.outbound_queue.max(8));
    if !hub
        .register(id, caller.id, tx, settings.max_connections_per_user)
        .await
    {
        let _ = ws
            .send(Frame::close(
                CloseCode::Policy,
                "too many connections for this user",
            ))
            .await;
        return;
    }
    metrics::counter!("chat_connections_total").increment(1);
    let mut conn = Conn {
        id,
        caller,
        state,
        hub: hub.clone(),
        subs: HashMap::new(),
        access: HashMap::new(),
        pending: HashMap::new(),
        typing: HashMap::new(),
        window: (Instant::now(), 0),
        last_seen: Instant::now(),
        reactions: (Instant::now(), 0),
        attendance: HashMap::new(),
    };
    let hello = json!({
        "type": "hello", "protocol": PROTOCOL_VERSION, "user_id": caller.id,
        "heartbeat_s": settings.ping_interval_s, "max_frame_bytes": settings.max_frame_bytes,
        "recall_window_s": settings.recall_window_s,
    });
    let mut flow = match ws.send(Frame::text(hello.to_string())).await {
        Ok(()) => Flow::Continue,
        Err(_) => Flow::Close(CloseCode::Normal, ""),
    };
    // Everyone hears their own notifications.
    if matches!(flow, Flow::Continue) {
        let own = ChannelName::User(caller.id);
        let _ = Box::pin(conn.subscribe(&mut ws, own, None)).await;
        conn.online().await;
    }
    // One timer per connection, re-armed only when its moment changes: the next ping, or an
    // unconfirmed write's deadline when that comes sooner. An idle connection wakes once per
    // ping interval (10,000 idle sockets used to wake 10,000 times a second for a 1 s ack
    // check, and re-poll two timers on every delivery).
    let ping_every = Duration::from_secs(settings.ping_interval_s.max(1));
    let mut next_ping = tokio::time::Instant::now() + ping_every;
    let timer = tokio::time::sleep_until(next_ping);
    tokio::pin!(timer);
    let idle = Duration::from_secs(settings.idle_timeout_s.max(2));
    while let Flow::Continue = flow {
        let due = conn.ack_deadline().map_or(next_ping, |d| d.min(next_ping));
        if timer.deadline() != due {
            timer.as_mut().reset(due);
        }
        flow = tokio::select! {
            frame = ws.next() => match frame {
                None => Flow::Close(CloseCode::Normal, ""),
                Some(f) => {
                    conn.last_seen = Instant::now();
                    // Boxed, as every rare or database-bound step here: the connection's
                    // future lives as long as the socket, and an inline handler would make
                    // every idle connection as large as its largest step (memory per socket).
                    Box::pin(conn.on_frame(&mut ws, f)).await
                }
            },
            out = rx.recv() => match out {
                Some(out) => conn.on_outs(&mut ws, out, &mut rx).await,
                // The hub dropped us: we could not keep up.
                None => Flow::Close(CloseCode::Again, "too slow: reconnect and resume"),
            },
            () = &mut timer => match conn.expire_acks(&mut ws).await {
                Flow::Continue if tokio::time::Instant::now() >= next_ping => {
                    next_ping = tokio::time::Instant::now() + ping_every;
                    Box::pin(conn.on_ping_due(&mut ws, idle)).await
                }
                f => f,
            },
            () = shutdown.cancelled() => Flow::Close(CloseCode::Away, "server shutting down"),
        };
    }
    if let Flow::Close(code, reason) = flow {
        let _ = ws.send(Frame::close(code, reason)).await;
    }
    hub.unregister(id).await;
    Box::pin(conn.leave_all()).await;
    Box::pin(conn.leave_lesson(None)).await;
}

/// The outcome of handling a frame: its flow, or, when the handling failed on a dependency (the
/// database or Redis away), `unavailable` naming the frame's `client_id` so the client resends
/// that one (docs/chat.md).
async fn answered(ws: &mut Ws, client_id: Option<&str>, r: anyhow::Result<Flow>) -> Flow {
    match r {
        Ok(flow) => flow,
        Err(e) => {
            tracing::warn!(error = %e, "chat: frame failed");
            error(ws, client_id, ChatError::Unavailable, "try again").await
        }
    }
}

/// Queue a frame without writing it: the caller flushes (or a later `send` writes it first).
async fn feed(ws: &mut Ws, frame: Frame) -> Flow {
    match ws.feed(frame).await {
        Ok(()) => Flow::Continue,
        Err(_) => Flow::Close(CloseCode::Normal, ""),
    }
}

async fn send(ws: &mut Ws, frame: Frame) -> Flow {
    match ws.send(frame).await {
        Ok(()) => Flow::Continue,
        Err(_) => Flow::Close(CloseCode::Normal, ""),
    }
}

/// The refusal of a frame that needs a subscription to `channel` (read, typing, presence).
async fn not_subscribed(ws: &mut Ws, channel: &str) -> Flow {
    let detail = format!("subscribe to {channel} first");
    error(ws, None, ChatError::NotSubscribed, detail).await
}

async fn send_json(ws: &mut Ws, v: serde_json::Value) -> Flow {
    send(ws, Frame::text(v.to_string())).await
}

async fn error(
    ws: &mut Ws,
    client_id: Option<&str>,
    e: ChatError,
    detail: impl Into<String>,
) -> Flow {
    metrics::counter!("chat_errors_total", "code" => e.code()).increment(1);
    send_json(
        ws,
        json!({"type": "error", "client_id": client_id, "code": e.code(), "detail": detail.into()}),
    )
    .await
}

impl Conn {
    fn settings(&self) -> &super::ChatSettings {
        &self.state.settings.chat
    }

    fn keys(&self) -> super::Keys {
        self.state.settings.chat.keys()
    }

    async fn on_frame(&mut self, ws: &mut Ws, frame: Frame) -> Flow {
        match frame.opcode() {
            OpCode::Text => {}
            OpCode::Close => return Flow::Close(CloseCode::Normal, ""),
            // Pings are answered by yawc; pongs only prove the client is alive.
            OpCode::Ping | OpCode::Pong => return Flow::Continue,
            _ => return error(ws, None, ChatError::BadFrame, "frames are JSON text").await,
        }
        if !self.within_frame_rate() {
            return error(
                ws,
                None,
                ChatError::RateLimited,
                "too many frames; slow down",
            )
            .await;
        }
        let f = match super::decode_frame(frame.payload()) {
            Decoded::Chat(f) => f,
            Decoded::Interaction { frame, client_id } => {
                let r = self.interact(ws, frame).await;
                return answered(ws, client_id.as_deref(), r).await;
            }
            Decoded::Refused {
                client_id,
                code,
                detail,
            } => return error(ws, client_id.as_deref(), code, detail).await,
        };
        let result = match f {
            ClientFrame::Subscribe { channel, since_seq } => match ChannelName::parse(&channel) {
                Ok(name) => self.subscribe(ws, name, since_seq).await,
                Err(e) => return error(ws, None, ChatError::Invalid, e.to_string()).await,
            },
            ClientFrame::Unsubscribe { channel } => self.unsubscribe(ws, &channel).await,
            ClientFrame::Send {
                channel,
                client_id,
                body,
                attachment_id,
            } => {
                let r = self
                    .send_message(ws, &channel, &client_id, &body, attachment_id)
                    .await;
                return answered(ws, Some(&client_id), r).await;
            }
            ClientFrame::Recall {
                client_id,
                message_id,
            } => {
                let r = self.recall(ws, &client_id, message_id).await;
                return answered(ws, Some(&client_id), r).await;
            }
            ClientFrame::React {
                client_id,
                message_id,
                emoji,
                on,
            } => {
                let r = self.react(ws, &client_id, message_id, &emoji, on).await;
                return answered(ws, Some(&client_id), r).await;
            }
            ClientFrame::Read { channel, seq } => self.read(ws, &channel, seq).await,
            ClientFrame::Typing { channel } => self.typing(ws, &channel).await,
            ClientFrame::Presence { channel } => self.presence(ws, &channel).await,
            ClientFrame::Ping { nonce } => {
                return send_json(ws, json!({"type": "pong", "nonce": nonce})).await;
            }
        };
        answered(ws, None, result).await
    }

    fn within_frame_rate(&mut self) -> bool {
        let now = Instant::now();
        if now.duration_since(self.window.0) >= Duration::from_secs(10) {
            self.window = (now, 0);
        }
        self.window.1 += 1;
        self.window.1 <= self.settings().frames_per_10s
    }

    /// Per user, all connections and nodes together: a fixed 10 s window in Redis.
    async fn within_message_rate(&self) -> anyhow::Result<bool> {
        let window = OffsetDateTime::now_utc().unix_timestamp() / 10;
        let key = self.keys().rate(self.caller.id, window);
        let mut c = self.state.redis.conn();
        let (n,): (u64,) = redis::pipe()
            .incr(&key, 1u64)
            .expire(&key, 20)
            .ignore()
            .query_async(&mut c)
            .await?;
        Ok(n <= self.settings().messages_per_10s)
    }

    async fn decide(&mut self, name: ChannelName) -> anyhow::Result<ChannelAccess> {
        if let Some((a, at)) = self.access.get(&name)
            && at.elapsed() < ACCESS_TTL
        {
            return Ok(*a);
        }
        let mut db = self.state.db.acquire().await?;
        let a = access::decide(&mut db, self.caller, name).await?;
        // Only grants are cached (revocations arrive as `Revoke` events and clear the cache);
        // a refusal is asked again, so an unban or a new enrollment works at once.
        if a.read {
            self.access.insert(name, (a, Instant::now()));
        }
        Ok(a)
    }

    async fn subscribe(
        &mut self,
        ws: &mut Ws,
        name: ChannelName,
        since_seq: Option<i64>,
    ) -> anyhow::Result<Flow> {
        let display = name.to_string();
        let a = self.decide(name).await?;
        if !a.read {
            return Ok(error(
                ws,
                None,
                ChatError::Forbidden,
                format!("no access to {display}"),
            )
            .await);
        }
        let canonical = name.canonical(self.caller.id);
        let mut db = self.state.db.acquire().await?;
        let channel =
            store::ensure_channel(&mut db, name, self.caller.id, a.course_id, a.lesson_id).await?;
        // Live delivery first, then the history: the two overlap, never leave a gap.
        self.hub
            .subscribe(self.id, canonical.clone(), a.moderate)
            .await;
        let read_seq = store::join(&mut db, UserId(self.caller.id), ChannelId(channel.id)).await?;
        let latest = store::channel_by_name(&mut db, &canonical)
            .await?
            .map_or(channel.last_seq, |c| c.last_seq);
        let max = self.settings().resume_max_messages;
        let mut sent = latest;
        let backlog = match since_seq {
            Some(s) if s >= 0 && latest - s <= max => {
                store::after(&mut db, channel.id, s, max).await?
            }
            _ => Vec::new(),
        };
        drop(db);
        let too_old = since_seq.is_some_and(|s| s < 0 || latest - s > max);
        let flow = send_json(
            ws,
            json!({"type": "subscribed", "channel": display, "seq": latest, "read_seq": read_seq,
                   "muted": channel.muted, "slow_mode_s": channel.slow_mode_s}),
        )
        .await;
        if !matches!(flow, Flow::Continue) {
            return Ok(flow);
        }
        if too_old {
            let f = send_json(
                ws,
                json!({"type": "reset", "channel": display, "seq": latest,
                       "detail": "too far behind: reload the history"}),
            )
            .await;
            if !matches!(f, Flow::Continue) {
                return Ok(f);
            }
        }
        for m in &backlog {
            sent = sent.max(m.seq);
            let f = send(ws, Frame::text(super::hub::message_frame(&display, m))).await;
            if !matches!(f, Flow::Continue) {
                return Ok(f);
            }
        }
        self.subs.insert(
            canonical.clone(),
            Sub {
                name,
                display: display.clone(),
                channel_id: channel.id,
                last_seq: sent,
                checked_at: Instant::now(),
            },
        );
        if matches!(name, ChannelName::Lesson(_) | ChannelName::Course(_)) {
            self.announce(&canonical, true).await;
        }
        if let ChannelName::Lesson(lesson) = name {
            self.attend(lesson).await;
        }
        Ok(Flow::Continue)
    }

    async fn unsubscribe(&mut self, ws: &mut Ws, channel: &str) -> anyhow::Result<Flow> {
        let name = match ChannelName::parse(channel) {
            Ok(n) => n,
            Err(e) => return Ok(error(ws, None, ChatError::Invalid, e.to_string()).await),
        };
        let canonical = name.canonical(self.caller.id);
        if self.subs.remove(&canonical).is_some() {
            if let ChannelName::Lesson(lesson) = name {
                self.leave_lesson(Some(lesson)).await;
            }
            self.hub.unsubscribe(self.id, canonical.clone()).await;
            if !canonical.is_dm() {
                self.announce(&canonical, false).await;
            }
        }
        Ok(send_json(
            ws,
            json!({"type": "unsubscribed", "channel": channel, "reason": "requested"}),
        )
        .await)
    }

    /// The admission rules of a new message, in order: write access to the channel, the
    /// room's and the sender's mutes (moderators pass), the sender's message rate, and slow mode
    /// (moderators pass). Creates the channel's row on first use.
    async fn admit(&mut self, name: ChannelName) -> anyhow::Result<Admission> {
        let a = self.decide(name).await?;
        if !a.write {
            return Ok(Admission::Refuse(Refusal::Forbidden));
        }
        let mut db = self.state.db.acquire().await?;
        let ch =
            store::ensure_channel(&mut db, name, self.caller.id, a.course_id, a.lesson_id).await?;
        if !a.moderate {
            if ch.muted {
                return Ok(Admission::Refuse(Refusal::RoomMuted));
            }
            if store::is_muted(&mut db, ChannelId(ch.id), UserId(self.caller.id)).await? {
                return Ok(Admission::Refuse(Refusal::SenderMuted));
            }
        }
        drop(db);
        if !self.within_message_rate().await? {
            return Ok(Admission::Refuse(Refusal::RateLimited));
        }
        if !a.moderate && ch.slow_mode_s > 0 {
            let key = self.keys().slow(ch.id, self.caller.id);
            let mut c = self.state.redis.conn();
            let set: bool = redis::cmd("SET")
                .arg(&key)
                .arg(1)
                .arg("NX")
                .arg("EX")
                .arg(ch.slow_mode_s)
                .query_async::<Option<String>>(&mut c)
                .await?
                .is_some();
            if !set {
                return Ok(Admission::Refuse(Refusal::SlowMode {
                    every_s: ch.slow_mode_s,
                }));
            }
        }
        Ok(Admission::Admit(ch))
    }

    async fn send_message(
        &mut self,
        ws: &mut Ws,
        channel: &str,
        client_id: &str,
        body: &str,
        attachment: Option<Uuid>,
    ) -> anyhow::Result<Flow> {
        let cid = match ClientId::parse(client_id) {
            Ok(c) => c,
            Err(e) => return Ok(error(ws, None, ChatError::Invalid, e.to_string()).await),
        };
        let cid_s = Some(cid.as_str());
        let name = match ChannelName::parse(channel) {
            Ok(n) => n,
            Err(e) => return Ok(error(ws, cid_s, ChatError::Invalid, e.to_string()).await),
        };
        // A file may go without words: its name is the body then.
        let body = match attachment {
            Some(_) if body.trim().is_empty() => "📎",
            _ => body,
        };
        let text = match ChatText::parse(body, self.settings().max_body_chars) {
            Ok(t) => t,
            Err(e) => return Ok(error(ws, cid_s, ChatError::Invalid, e.to_string()).await),
        };
        // A retry of something already stored is acknowledged again, whatever else changed.
        let mut db = self.state.db.acquire().await?;
        if let Some((ch, m)) = store::by_client_id(&mut db, self.caller.id, cid.as_str()).await? {
            return Ok(self.ack(ws, cid.as_str(), &ch, &m).await);
        }
        drop(db);
        if self.pending.contains_key(cid.as_str()) {
            // Same frame again while the first is in flight: its ack answers both.
            return Ok(Flow::Continue);
        }
        let ch = match self.admit(name).await? {
            Admission::Admit(ch) => ch,
            Admission::Refuse(why) => {
                let (code, detail) = why.frame(channel);
                return Ok(error(ws, cid_s, code, detail).await);
            }
        };
        let data = match attachment {
            None => None,
            Some(id) => {
                let s = self.settings();
                match super::attachments::claim(
                    &self.state.db,
                    &self.state.storage,
                    self.caller.id,
                    id,
                    cid.as_str(),
                    ch.name.as_str(),
                    s.thumbnail_px,
                )
                .await
                {
                    Ok(a) => Some(json!({
                        "attachment": super::attachments::AttachmentData::from(&a)
                    })),
                    Err(super::attachments::ClaimError::Db(e)) => return Err(e.into()),
                    Err(super::attachments::ClaimError::NotFound) => {
                        return Ok(error(ws, cid_s, ChatError::NotFound, "no such upload").await);
                    }
                    Err(e) => {
                        return Ok(error(
                            ws,
                            cid_s,
                            ChatError::Invalid,
                            format!("attachment_id: {e}"),
                        )
                        .await);
                    }
                }
            }
        };
        let entry = Entry {
            op: Op::Send,
            channel: ch.name.0.clone(),
            sender: Some(self.caller.id),
            client_id: cid.as_str().to_owned(),
            kind: None,
            html: text.html(),
            body: text.as_str().to_owned(),
            data,
            message: None,
        };
        self.enqueue(ws, entry).await
    }

    async fn enqueue(&mut self, ws: &mut Ws, entry: Entry) -> anyhow::Result<Flow> {
        let cid = entry.client_id.clone();
        self.hub
            .expect(self.caller.id, cid.clone(), Waiter::Conn(self.id))
            .await;
        if let Err(e) = persist::enqueue(&self.state.redis, &self.keys(), &entry).await {
            self.hub.forget(self.caller.id, cid.clone()).await;
            tracing::warn!(error = %e, "chat: cannot queue a message");
            return Ok(error(
                ws,
                Some(&cid),
                ChatError::Unavailable,
                "cannot queue the message; retry",
            )
            .await);
        }
        self.pending.insert(cid, Instant::now());
        Ok(Flow::Continue)
    }

    async fn recall(
        &mut self,
        ws: &mut Ws,
        client_id: &str,
        message: Uuid,
    ) -> anyhow::Result<Flow> {
        let cid = match ClientId::parse(client_id) {
            Ok(c) => c,
            Err(e) => return Ok(error(ws, None, ChatError::Invalid, e.to_string()).await),
        };
        let cid_s = Some(cid.as_str());
        let mut db = self.state.db.acquire().await?;
        if let Some((ch, m)) = store::by_client_id(&mut db, self.caller.id, cid.as_str()).await? {
            return Ok(self.ack(ws, cid.as_str(), &ch, &m).await);
        }
        let found = store::message(&mut db, message).await?;
        drop(db);
        let Some((_, canonical, m)) = found else {
            return Ok(error(ws, cid_s, ChatError::NotFound, "no such message").await);
        };
        let Some(name) = channel_of(&canonical, self.caller.id) else {
            return Ok(error(ws, cid_s, ChatError::NotFound, "no such message").await);
        };
        let a = self.decide(name).await?;
        if !a.read {
            return Ok(error(ws, cid_s, ChatError::NotFound, "no such message").await);
        }
        let own = m.sender_id == Some(self.caller.id);
        let window = time::Duration::seconds(self.settings().recall_window_s as i64);
        if !a.moderate {
            if !own {
                return Ok(error(
                    ws,
                    cid_s,
                    ChatError::Forbidden,
                    "only the sender or a moderator can remove it",
                )
                .await);
            }
            if OffsetDateTime::now_utc() - m.created_at > window {
                return Ok(error(
                    ws,
                    cid_s,
                    ChatError::RecallExpired,
                    "the recall window is over",
                )
                .await);
            }
        }
        if m.deleted || m.kind != "text" {
            return Ok(error(ws, cid_s, ChatError::NotFound, "already removed").await);
        }
        if !self.within_message_rate().await? {
            return Ok(error(
                ws,
                cid_s,
                ChatError::RateLimited,
                "too many messages; slow down",
            )
            .await);
        }
        let entry = Entry {
            op: Op::Remove,
            channel: canonical.0.clone(),
            sender: Some(self.caller.id),
            client_id: cid.as_str().to_owned(),
            kind: None,
            body: String::new(),
            html: String::new(),
            data: None,
            message: Some(message),
        };
        self.enqueue(ws, entry).await
    }

    /// A reaction is stored at once (no stream: it has no sequence number, and setting it
    /// twice is harmless), then published to every node. The ack holds the emoji's count.
    async fn react(
        &mut self,
        ws: &mut Ws,
        client_id: &str,
        message: Uuid,
        emoji: &str,
        on: bool,
    ) -> anyhow::Result<Flow> {
        let cid = match ClientId::parse(client_id) {
            Ok(c) => c,
            Err(e) => return Ok(error(ws, None, ChatError::Invalid, e.to_string()).await),
        };
        let cid_s = Some(cid.as_str());
        let emoji = match super::emoji::Emoji::parse(emoji) {
            Ok(e) => e,
            Err(e) => return Ok(error(ws, cid_s, ChatError::Invalid, e.to_string()).await),
        };
        let mut db = self.state.db.acquire().await?;
        let found = store::message(&mut db, message).await?;
        drop(db);
        let Some((_, canonical, m)) = found else {
            return Ok(error(ws, cid_s, ChatError::NotFound, "no such message").await);
        };
        let Some(name) = channel_of(&canonical, self.caller.id) else {
            return Ok(error(ws, cid_s, ChatError::NotFound, "no such message").await);
        };
        let a = self.decide(name).await?;
        if !a.read {
            return Ok(error(ws, cid_s, ChatError::NotFound, "no such message").await);
        }
        if !a.write {
            return Ok(error(ws, cid_s, ChatError::Forbidden, "you cannot react here").await);
        }
        if m.deleted || m.kind != "text" {
            return Ok(error(ws, cid_s, ChatError::NotFound, "no such message").await);
        }
        if !self.within_message_rate().await? {
            return Ok(error(
                ws,
                cid_s,
                ChatError::RateLimited,
                "too many messages; slow down",
            )
            .await);
        }
        let mut db = self.state.db.acquire().await?;
        let count = store::react(&mut db, message, self.caller.id, emoji.as_str(), on).await?;
        drop(db);
        let display = canonical.display_for(self.caller.id);
        let _ = super::hub::publish(
            &self.state.redis,
            &self.keys(),
            &Wire::Reaction {
                channel: canonical.0,
                message_id: message,
                emoji: emoji.as_str().to_owned(),
                count,
                user_id: self.caller.id,
                on,
            },
        )
        .await;
        Ok(send_json(
            ws,
            json!({"type": "ack", "client_id": cid.as_str(), "channel": display,
                   "reaction": {"message_id": message, "emoji": emoji.as_str(), "count": count, "on": on}}),
        )
        .await)
    }

    async fn read(&mut self, ws: &mut Ws, channel: &str, seq: i64) -> anyhow::Result<Flow> {
        let (canonical, channel_id) = match self.subscribed(channel) {
            Some(s) => s,
            None => return Ok(not_subscribed(ws, channel).await),
        };
        let mut db = self.state.db.acquire().await?;
        let read_seq =
            store::mark_read(&mut db, UserId(self.caller.id), ChannelId(channel_id), seq).await?;
        drop(db);
        let _ = super::hub::publish(
            &self.state.redis,
            &self.keys(),
            &Wire::Read {
                channel: canonical.0,
                user_id: self.caller.id,
                seq: read_seq,
            },
        )
        .await;
        Ok(Flow::Continue)
    }

    async fn typing(&mut self, ws: &mut Ws, channel: &str) -> anyhow::Result<Flow> {
        let (canonical, _) = match self.subscribed(channel) {
            Some(s) => s,
            None => return Ok(not_subscribed(ws, channel).await),
        };
        if canonical.as_str().starts_with("user:") {
            return Ok(error(
                ws,
                None,
                ChatError::Forbidden,
                "notification channels are read-only",
            )
            .await);
        }
        if self
            .typing
            .get(&canonical)
            .is_some_and(|t| t.elapsed() < TYPING_INTERVAL)
        {
            return Ok(Flow::Continue);
        }
        self.typing.insert(canonical.clone(), Instant::now());
        let _ = super::hub::publish(
            &self.state.redis,
            &self.keys(),
            &Wire::Typing {
                channel: canonical.0,
                user_id: self.caller.id,
            },
        )
        .await;
        Ok(Flow::Continue)
    }

    async fn presence(&mut self, ws: &mut Ws, channel: &str) -> anyhow::Result<Flow> {
        let (canonical, _) = match self.subscribed(channel) {
            Some(s) => s,
            None => return Ok(not_subscribed(ws, channel).await),
        };
        let now = now_ms();
        let mut c = self.state.redis.conn();
        let users: Vec<String> = c
            .zrangebyscore_limit(
                self.keys().presence(canonical.as_str()),
                now,
                "+inf",
                0,
                5000,
            )
            .await?;
        Ok(send_json(
            ws,
            json!({"type": "presence", "channel": channel, "user_ids": users}),
        )
        .await)
    }

    /// The subscription a frame names, if the connection holds it.
    fn subscribed(&self, channel: &str) -> Option<(Canonical, Uuid)> {
        let name = ChannelName::parse(channel).ok()?;
        let canonical = name.canonical(self.caller.id);
        let sub = self.subs.get(&canonical)?;
        Some((canonical, sub.channel_id))
    }

    async fn ack(
        &mut self,
        ws: &mut Ws,
        client_id: &str,
        channel: &Canonical,
        m: &MessageView,
    ) -> Flow {
        self.pending.remove(client_id);
        metrics::counter!("chat_acks_total").increment(1);
        send_json(
            ws,
            json!({"type": "ack", "client_id": client_id,
                   "channel": channel.display_for(self.caller.id), "message": m}),
        )
        .await
    }

    /// What the hub queued for this connection, `first` and whatever else is already waiting
    /// (up to [`OUT_BATCH`]), written together: a busy room's frames cost one `write` per
    /// wake-up instead of one each.
    async fn on_outs(&mut self, ws: &mut Ws, first: Out, rx: &mut mpsc::Receiver<Out>) -> Flow {
        let mut out = first;
        for _ in 0..OUT_BATCH {
            if let f @ Flow::Close(..) = self.on_out(ws, out).await {
                return f;
            }
            match rx.try_recv() {
                Ok(next) => out = next,
                Err(_) => break,
            }
        }
        match ws.flush().await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Close(CloseCode::Normal, ""),
        }
    }

    /// One queued item. Messages and plain frames are only queued (`feed`): [`Conn::on_outs`]
    /// flushes; the rest is written at once (and with it what was queued before, in order).
    async fn on_out(&mut self, ws: &mut Ws, out: Out) -> Flow {
        match out {
            Out::Message {
                channel,
                seq,
                frame,
            } => {
                let Some(sub) = self.subs.get(&*channel) else {
                    return Flow::Continue;
                };
                if seq <= sub.last_seq {
                    return Flow::Continue;
                }
                if seq > sub.last_seq + 1 {
                    // Something was missed (only after a lost Redis subscription): fill the gap
                    // from the database, in order, before this one.
                    if let Some(flow) = Box::pin(self.catch_up(ws, &channel, seq - 1)).await {
                        return flow;
                    }
                }
                if let Some(sub) = self.subs.get_mut(&*channel) {
                    sub.last_seq = seq;
                }
                feed(ws, Frame::text(frame)).await
            }
            Out::Frame(f) => feed(ws, Frame::text(f)).await,
            Out::Outcome(wire) => match &*wire {
                Wire::Stored {
                    channel,
                    client_id,
                    message,
                    ..
                }
                | Wire::Duplicate {
                    channel,
                    client_id,
                    message,
                    ..
                } => {
                    self.ack(ws, client_id, &Canonical(channel.clone()), message)
                        .await
                }
                Wire::Rejected {
                    client_id, code, ..
                } => {
                    self.pending.remove(client_id.as_str());
                    let e = if code == "not_found" || code == "gone" {
                        ChatError::NotFound
                    } else {
                        ChatError::Unavailable
                    };
                    error(ws, Some(client_id), e, format!("refused: {code}")).await
                }
                _ => Flow::Continue,
            },
            Out::Revoked { channel, frame } => {
                if let Ok(ChannelName::Lesson(lesson)) = ChannelName::parse(channel.as_str()) {
                    Box::pin(self.leave_lesson(Some(lesson))).await;
                }
                self.subs.remove(&channel);
                self.access.clear();
                send(ws, Frame::text(frame)).await
            }
            Out::Resync => {
                let channels: Vec<Canonical> = self.subs.keys().cloned().collect();
                for ch in channels {
                    if let Some(flow) = Box::pin(self.catch_up(ws, &ch, i64::MAX)).await {
                        return flow;
                    }
                }
                Flow::Continue
            }
        }
    }

    /// Ask again whether subscriptions older than [`RECHECK`] may still be read; drop those that
    /// may not (`unsubscribed`, reason `access_revoked`).
    async fn recheck(&mut self, ws: &mut Ws) -> Flow {
        let due: Vec<(Canonical, ChannelName)> = self
            .subs
            .iter()
            .filter(|(_, s)| s.checked_at.elapsed() >= RECHECK)
            .map(|(c, s)| (c.clone(), s.name))
            .collect();
        for (canonical, name) in due {
            self.access.remove(&name);
            let Ok(a) = self.decide(name).await else {
                continue;
            };
            if a.read {
                if let Some(s) = self.subs.get_mut(&canonical) {
                    s.checked_at = Instant::now();
                }
                continue;
            }
            let display = self
                .subs
                .remove(&canonical)
                .map(|s| s.display)
                .unwrap_or_default();
            self.hub.unsubscribe(self.id, canonical).await;
            let f = send_json(
                ws,
                json!({"type": "unsubscribed", "channel": display, "reason": "access_revoked"}),
            )
            .await;
            if !matches!(f, Flow::Continue) {
                return f;
            }
        }
        Flow::Continue
    }

    /// Send what the database has after the subscription's last `seq`, up to `upto`.
    async fn catch_up(&mut self, ws: &mut Ws, channel: &Canonical, upto: i64) -> Option<Flow> {
        let sub = self.subs.get(channel)?;
        let (id, from, display) = (sub.channel_id, sub.last_seq, sub.display.clone());
        let max = self.settings().resume_max_messages;
        let missed = async {
            let mut db = self.state.db.acquire().await?;
            let mut missed = store::after(&mut db, id, from, max).await?;
            store::with_reactions(&mut db, &mut missed, self.caller.id).await?;
            anyhow::Ok(missed)
        }
        .await;
        let missed = match missed {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "chat: cannot catch up");
                return None;
            }
        };
        for m in missed.into_iter().filter(|m| m.seq <= upto) {
            let f = send(ws, Frame::text(super::hub::message_frame(&display, &m))).await;
            if let Some(sub) = self.subs.get_mut(channel) {
                sub.last_seq = m.seq;
            }
            if !matches!(f, Flow::Continue) {
                return Some(f);
            }
        }
        None
    }

    /// When the oldest unconfirmed write times out.
    fn ack_deadline(&self) -> Option<tokio::time::Instant> {
        let limit = Duration::from_secs(self.settings().ack_timeout_s);
        let oldest = self.pending.values().min()?;
        Some(tokio::time::Instant::from_std(*oldest + limit))
    }

    /// Every ping interval: close an idle client, ask subscriptions' access again when due,
    /// ping. (Presence and attendance are kept alive by the hub, for all connections at once.)
    async fn on_ping_due(&mut self, ws: &mut Ws, idle: Duration) -> Flow {
        if self.last_seen.elapsed() > idle {
            return Flow::Close(CloseCode::Away, "idle timeout");
        }
        match self.recheck(ws).await {
            Flow::Continue => send(ws, Frame::ping(Vec::new())).await,
            f => f,
        }
    }

    /// Writes whose outcome never came: tell the client to retry (same client id: safe).
    async fn expire_acks(&mut self, ws: &mut Ws) -> Flow {
        let limit = Duration::from_secs(self.settings().ack_timeout_s);
        let late: Vec<String> = self
            .pending
            .iter()
            // `>=`: the timer fires at the deadline, and what it was armed for must go.
            .filter(|(_, t)| t.elapsed() >= limit)
            .map(|(c, _)| c.clone())
            .collect();
        for cid in late {
            self.pending.remove(&cid);
            self.hub.forget(self.caller.id, cid.clone()).await;
            let f = error(
                ws,
                Some(&cid),
                ChatError::AckTimeout,
                "not confirmed in time; resend with the same client_id",
            )
            .await;
            if !matches!(f, Flow::Continue) {
                return f;
            }
        }
        Flow::Continue
    }

    /// Present in a room: a sorted-set entry that expires unless refreshed, and an event.
    async fn announce(&self, channel: &Canonical, online: bool) {
        let key = self.keys().presence(channel.as_str());
        let mut c = self.state.redis.conn();
        let expiry = presence_expiry_ms(self.settings().ping_interval_s);
        let r: redis::RedisResult<()> = if online {
            redis::pipe()
                .zadd(&key, self.caller.id.to_string(), expiry)
                .ignore()
                .expire(&key, 3600)
                .ignore()
                .query_async(&mut c)
                .await
        } else {
            c.zrem(&key, self.caller.id.to_string()).await
        };
        if r.is_ok() {
            let _ = super::hub::publish(
                &self.state.redis,
                &self.keys(),
                &Wire::Presence {
                    channel: channel.0.clone(),
                    user_id: self.caller.id,
                    online,
                },
            )
            .await;
        }
    }

    async fn online(&self) {
        let mut c = self.state.redis.conn();
        let _: redis::RedisResult<()> = c
            .set_ex(
                self.keys().online(self.caller.id),
                1,
                3 * self.settings().ping_interval_s,
            )
            .await;
    }

    async fn leave_all(&mut self) {
        let rooms: Vec<Canonical> = self
            .subs
            .keys()
            .filter(|c| super::hub::is_room(c))
            .cloned()
            .collect();
        for ch in rooms {
            self.announce(&ch, false).await;
        }
    }
}

/// The channel a stored channel name is, as `me` names it.
pub fn channel_of(canonical: &Canonical, me: Uuid) -> Option<ChannelName> {
    if let Some((a, b)) = canonical.dm_members() {
        return (a == me || b == me).then(|| ChannelName::Dm(if a == me { b } else { a }));
    }
    ChannelName::parse(canonical.as_str()).ok()
}

fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// A presence entry written now lives three ping intervals unless refreshed.
pub(super) fn presence_expiry_ms(ping_interval_s: u64) -> i64 {
    now_ms() + 3 * 1000 * ping_interval_s as i64
}
