//! The node's hub: one task owning this node's chat subscriptions. It listens to
//! `wm:chat:events` (Redis pub/sub, every node) and hands each event to the local connections
//! subscribed to its channel, and acks (or refusals) to the connection that sent the write.
//!
//! Connections talk to it over a command channel; it talks to them over each connection's
//! bounded queue. A connection whose queue is full is too slow to keep up: the hub drops it
//! (its task sees its queue closed and closes the socket) rather than buffer without bound or
//! slow everyone else down.
//!
//! It also keeps every local connection's presence and attendance alive, in one batch per ping
//! interval for the whole node ([`KeepAlive`]): one Redis pipeline and one `UPDATE` instead of
//! one of each per connection (10,000 idle sockets made 500 of each a second).
//!
//! A message frame for a lesson or course room is serialized once per node and shared by all
//! its subscribers (`Bytes`: every socket writes the same buffer, no copy per subscriber); only DMs, whose channel name depends on the reader, are
//! rendered per connection.

use std::{
    collections::{HashMap, HashSet},
    ops::ControlFlow,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Canonical, Keys, MessageView};
use crate::cache::{Heard, Redis};

/// What goes over `wm:chat:events`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Wire {
    /// Stored by the persister: fan out, and ack its sender.
    Stored {
        channel: String,
        sender: Option<Uuid>,
        client_id: String,
        message: MessageView,
    },
    /// A retried write, stored before: ack its sender only.
    Duplicate {
        channel: String,
        sender: Option<Uuid>,
        client_id: String,
        message: MessageView,
    },
    /// A write that can never be stored: an error to its sender.
    Rejected {
        channel: String,
        sender: Option<Uuid>,
        client_id: String,
        code: String,
    },
    Typing {
        channel: String,
        user_id: Uuid,
    },
    Read {
        channel: String,
        user_id: Uuid,
        seq: i64,
    },
    Presence {
        channel: String,
        user_id: Uuid,
        online: bool,
    },
    /// The user lost access to the channel (banned, left the course): their connections drop
    /// the subscription.
    Revoke {
        channel: String,
        user_id: Uuid,
        reason: String,
    },
    /// Room settings changed (mute, slow mode): subscribers are told.
    Room {
        channel: String,
        muted: bool,
        slow_mode_s: i32,
    },
    /// A frame of the live tools (docs/interaction.md) for the room's listeners: everyone,
    /// moderators only, or one user's connections. `staff_frame`, when set, is what moderators
    /// get instead of `frame` (the author of an anonymous question).
    Live {
        channel: String,
        audience: Audience,
        frame: serde_json::Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        staff_frame: Option<serde_json::Value>,
    },
    /// A reaction set or cleared, with the emoji's new count on the message.
    Reaction {
        channel: String,
        message_id: Uuid,
        emoji: String,
        count: i64,
        user_id: Uuid,
        on: bool,
    },
}

/// Who hears a [`Wire::Live`] frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    All,
    /// Moderators of the room (subscribed with moderate access).
    Staff,
    User(Uuid),
}

/// Publish an ephemeral event to every node.
pub async fn publish(redis: &Redis, keys: &Keys, wire: &Wire) -> redis::RedisResult<()> {
    let mut c = redis.conn();
    redis::cmd("PUBLISH")
        .arg(keys.events())
        .arg(serde_json::to_string(wire).expect("wire events serialize"))
        .query_async::<i64>(&mut c)
        .await
        .map(|_| ())
}

pub type ConnId = u64;

/// Largest room (local listeners) whose joins and leaves are broadcast as `presence` events.
pub const PRESENCE_EVENTS_MAX: usize = 200;

/// What the hub hands a connection.
#[derive(Debug)]
pub enum Out {
    /// A message of a subscribed channel, rendered for this connection (`seq` for de-duplication
    /// against the history it was sent on subscribe).
    Message {
        /// Shared by every listener of the fan-out (a 5,000-listener room made 5,000 copies).
        channel: Arc<Canonical>,
        seq: i64,
        frame: Bytes,
    },
    /// Any other frame, sent as is.
    Frame(Bytes),
    /// The outcome of this connection's write (`Stored`, `Duplicate` or `Rejected`).
    Outcome(Arc<Wire>),
    /// The user lost access to a channel.
    Revoked { channel: Canonical, frame: Bytes },
    /// Events may have been missed (the hub's Redis subscription was re-established): catch up
    /// every subscription from the database.
    Resync,
}

/// Who waits for the outcome of a write.
pub enum Waiter {
    Conn(ConnId),
    Once(oneshot::Sender<Arc<Wire>>),
}

enum Cmd {
    Register {
        conn: ConnId,
        user: Uuid,
        out: mpsc::Sender<Out>,
        max_per_user: usize,
        reply: oneshot::Sender<bool>,
    },
    Unregister {
        conn: ConnId,
    },
    Subscribe {
        conn: ConnId,
        channel: Canonical,
        staff: bool,
        reply: oneshot::Sender<()>,
    },
    Unsubscribe {
        conn: ConnId,
        channel: Canonical,
    },
    Expect {
        user: Uuid,
        client_id: String,
        waiter: Waiter,
    },
    Forget {
        user: Uuid,
        client_id: String,
    },
    /// The connection's open attendance intervals now (all of them).
    Attending {
        conn: ConnId,
        ids: Vec<Uuid>,
    },
}

/// What the hub needs to keep its connections' presence and attendance alive.
pub struct KeepAlive {
    pub redis: Redis,
    pub keys: Keys,
    pub db: sqlx::PgPool,
    /// The chat ping interval: presence entries live three of them.
    pub every: Duration,
}

/// Handle on the hub (cheap to clone).
#[derive(Clone)]
pub struct Hub {
    tx: mpsc::Sender<Cmd>,
    next_id: Arc<AtomicU64>,
}

impl Hub {
    /// Start the hub: its task and its Redis subscription.
    pub fn start(keep: KeepAlive, shutdown: CancellationToken) -> Hub {
        let (redis, keys) = (keep.redis.clone(), keep.keys.clone());
        let (tx, rx) = mpsc::channel(4096);
        let (events_tx, events_rx) = mpsc::channel(4096);
        tokio::spawn(subscribe_loop(
            redis,
            keys.events(),
            events_tx,
            shutdown.clone(),
        ));
        tokio::spawn(
            State {
                conns: HashMap::new(),
                subs: HashMap::new(),
                users: HashMap::new(),
                waiters: HashMap::new(),
                keep,
                keeping: Arc::new(AtomicBool::new(false)),
            }
            .run(rx, events_rx, shutdown),
        );
        Hub {
            tx,
            next_id: Arc::new(AtomicU64::new(1)),
        }
    }

    pub fn next_conn_id(&self) -> ConnId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Register a connection; `false` when the user has too many on this node.
    pub async fn register(
        &self,
        conn: ConnId,
        user: Uuid,
        out: mpsc::Sender<Out>,
        max_per_user: usize,
    ) -> bool {
        let (reply, rx) = oneshot::channel();
        let _ = self
            .tx
            .send(Cmd::Register {
                conn,
                user,
                out,
                max_per_user,
                reply,
            })
            .await;
        rx.await.unwrap_or(false)
    }

    pub async fn unregister(&self, conn: ConnId) {
        let _ = self.tx.send(Cmd::Unregister { conn }).await;
    }

    /// Subscribe; resolves once the hub delivers the channel's events to this connection, so
    /// history read afterwards overlaps (never misses) what is delivered live. `staff`: the
    /// connection moderates the room (hears the live tools' moderator frames).
    pub async fn subscribe(&self, conn: ConnId, channel: Canonical, staff: bool) {
        let (reply, rx) = oneshot::channel();
        let _ = self
            .tx
            .send(Cmd::Subscribe {
                conn,
                channel,
                staff,
                reply,
            })
            .await;
        let _ = rx.await;
    }

    pub async fn unsubscribe(&self, conn: ConnId, channel: Canonical) {
        let _ = self.tx.send(Cmd::Unsubscribe { conn, channel }).await;
    }

    /// Route the outcome of `user`'s write `client_id` to `waiter`.
    pub async fn expect(&self, user: Uuid, client_id: String, waiter: Waiter) {
        let _ = self
            .tx
            .send(Cmd::Expect {
                user,
                client_id,
                waiter,
            })
            .await;
    }

    pub async fn forget(&self, user: Uuid, client_id: String) {
        let _ = self.tx.send(Cmd::Forget { user, client_id }).await;
    }

    /// `conn`'s open attendance intervals, kept alive by the hub from now on.
    pub async fn attending(&self, conn: ConnId, ids: Vec<Uuid>) {
        let _ = self.tx.send(Cmd::Attending { conn, ids }).await;
    }
}

struct ConnEntry {
    user: Uuid,
    out: mpsc::Sender<Out>,
    channels: HashSet<Canonical>,
    /// Channels this connection moderates.
    staff: HashSet<Canonical>,
    /// Its open attendance intervals.
    attendance: Vec<Uuid>,
}

struct State {
    conns: HashMap<ConnId, ConnEntry>,
    subs: HashMap<Canonical, HashSet<ConnId>>,
    /// Connections per user on this node.
    users: HashMap<Uuid, usize>,
    waiters: HashMap<(Uuid, String), Waiter>,
    keep: KeepAlive,
    /// A keep-alive batch is being written (the next tick skips rather than pile up).
    keeping: Arc<AtomicBool>,
}

/// Commands (or ids) per keep-alive pipeline or `UPDATE`.
const KEEP_CHUNK: usize = 2000;

/// Lesson and course rooms keep presence (DMs and a user's own channel do not).
pub(super) fn is_room(c: &Canonical) -> bool {
    c.as_str().starts_with("lesson:") || c.as_str().starts_with("course:")
}

/// Pub/sub input of the hub.
enum Input {
    Event(Wire),
    /// The subscription was (re-)established after a loss: events may have been missed.
    Resubscribed,
}

impl State {
    async fn run(
        mut self,
        mut cmds: mpsc::Receiver<Cmd>,
        mut events: mpsc::Receiver<Input>,
        shutdown: CancellationToken,
    ) {
        let mut keep = tokio::time::interval(self.keep.every);
        keep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        keep.tick().await;
        loop {
            tokio::select! {
                Some(cmd) = cmds.recv() => self.command(cmd),
                _ = keep.tick() => self.keep_alive(),
                Some(input) = events.recv() => match input {
                    Input::Event(w) => self.event(w),
                    Input::Resubscribed => {
                        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
                        for id in ids {
                            self.deliver(id, Out::Resync);
                        }
                    }
                },
                () = shutdown.cancelled() => break,
                else => break,
            }
            metrics::gauge!("chat_connections").set(self.conns.len() as f64);
        }
    }

    fn command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Register {
                conn,
                user,
                out,
                max_per_user,
                reply,
            } => {
                let n = self.users.entry(user).or_default();
                if *n >= max_per_user {
                    let _ = reply.send(false);
                    return;
                }
                *n += 1;
                self.conns.insert(
                    conn,
                    ConnEntry {
                        user,
                        out,
                        channels: HashSet::new(),
                        staff: HashSet::new(),
                        attendance: Vec::new(),
                    },
                );
                let _ = reply.send(true);
            }
            Cmd::Unregister { conn } => self.drop_conn(conn),
            Cmd::Subscribe {
                conn,
                channel,
                staff,
                reply,
            } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.channels.insert(channel.clone());
                    if staff {
                        c.staff.insert(channel.clone());
                    } else {
                        c.staff.remove(&channel);
                    }
                    self.subs.entry(channel).or_default().insert(conn);
                }
                let _ = reply.send(());
            }
            Cmd::Unsubscribe { conn, channel } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.channels.remove(&channel);
                    c.staff.remove(&channel);
                }
                self.unsub(conn, &channel);
            }
            Cmd::Expect {
                user,
                client_id,
                waiter,
            } => {
                self.waiters.insert((user, client_id), waiter);
            }
            Cmd::Forget { user, client_id } => {
                self.waiters.remove(&(user, client_id));
            }
            Cmd::Attending { conn, ids } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.attendance = ids;
                }
            }
        }
    }

    /// Every ping interval: the presence of every local connection in its rooms, its user's
    /// online flag and its attendance intervals, refreshed in one batch written off the hub's
    /// task (the hub keeps delivering meanwhile).
    fn keep_alive(&mut self) {
        if self.conns.is_empty() || self.keeping.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut presence: HashSet<(&Canonical, Uuid)> = HashSet::new();
        let mut attendance = Vec::new();
        for c in self.conns.values() {
            for ch in c.channels.iter().filter(|c| is_room(c)) {
                presence.insert((ch, c.user));
            }
            attendance.extend_from_slice(&c.attendance);
        }
        let keys = &self.keep.keys;
        let presence: Vec<(String, String)> = presence
            .into_iter()
            .map(|(ch, user)| (keys.presence(ch.as_str()), user.to_string()))
            .collect();
        let online: Vec<String> = self.users.keys().map(|u| keys.online(*u)).collect();
        let every_s = self.keep.every.as_secs().max(1);
        let (redis, db, keeping) = (
            self.keep.redis.clone(),
            self.keep.db.clone(),
            self.keeping.clone(),
        );
        tokio::spawn(async move {
            let expiry = super::conn::presence_expiry_ms(every_s);
            let mut c = redis.conn();
            for chunk in presence.chunks(KEEP_CHUNK) {
                let mut pipe = redis::pipe();
                for (key, user) in chunk {
                    pipe.zadd(key, user, expiry).ignore();
                }
                let _: redis::RedisResult<()> = pipe.query_async(&mut c).await;
            }
            for chunk in online.chunks(KEEP_CHUNK) {
                let mut pipe = redis::pipe();
                for key in chunk {
                    pipe.set_ex(key, 1, 3 * every_s).ignore();
                }
                let _: redis::RedisResult<()> = pipe.query_async(&mut c).await;
            }
            for chunk in attendance.chunks(KEEP_CHUNK) {
                let r = async {
                    let mut conn = db.acquire().await?;
                    crate::interaction::store::attendance_heartbeat(&mut conn, chunk).await
                }
                .await;
                if let Err(e) = r {
                    tracing::warn!(error = %e, "interaction: cannot refresh attendance");
                }
            }
            keeping.store(false, Ordering::Release);
        });
    }

    fn unsub(&mut self, conn: ConnId, channel: &Canonical) {
        if let Some(set) = self.subs.get_mut(channel) {
            set.remove(&conn);
            if set.is_empty() {
                self.subs.remove(channel);
            }
        }
    }

    fn drop_conn(&mut self, conn: ConnId) {
        let Some(entry) = self.conns.remove(&conn) else {
            return;
        };
        for ch in &entry.channels {
            self.unsub(conn, ch);
        }
        if let Some(n) = self.users.get_mut(&entry.user) {
            *n -= 1;
            if *n == 0 {
                self.users.remove(&entry.user);
            }
        }
        self.waiters
            .retain(|_, w| !matches!(w, Waiter::Conn(c) if *c == conn));
    }

    /// Queue `out` for `conn`; a full queue disconnects it (too slow).
    fn deliver(&mut self, conn: ConnId, out: Out) {
        let Some(entry) = self.conns.get(&conn) else {
            return;
        };
        match entry.out.try_send(out) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::info!(conn, user = %entry.user, "chat: connection too slow; dropped");
                metrics::counter!("chat_slow_consumers_total").increment(1);
                self.drop_conn(conn);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => self.drop_conn(conn),
        }
    }

    fn subscribers(&self, channel: &Canonical) -> Vec<ConnId> {
        self.subs
            .get(channel)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    fn event(&mut self, wire: Wire) {
        match wire {
            // A duplicate is fanned out again too: the persister that stored it may have died
            // between its commit and its `PUBLISH`, and the node that re-reads the entry finds
            // it stored. Connections skip what they already have by `seq`.
            Wire::Stored {
                ref channel,
                sender,
                ref client_id,
                ref message,
            }
            | Wire::Duplicate {
                ref channel,
                sender,
                ref client_id,
                ref message,
            } => {
                let ch = Arc::new(Canonical(channel.clone()));
                let seq = message.seq;
                let shared = (!ch.is_dm()).then(|| message_frame(channel, message));
                for conn in self.subscribers(&ch) {
                    let frame = match &shared {
                        Some(f) => f.clone(),
                        None => {
                            let user = self.conns.get(&conn).map(|c| c.user).unwrap_or_default();
                            message_frame(&ch.display_for(user), message)
                        }
                    };
                    self.deliver(
                        conn,
                        Out::Message {
                            channel: ch.clone(),
                            seq,
                            frame,
                        },
                    );
                }
                metrics::counter!("chat_messages_delivered_total")
                    .increment(self.subs.get(&*ch).map_or(0, |s| s.len()) as u64);
                if let Some(sender) = sender {
                    let key = (sender, client_id.clone());
                    self.resolve(key, wire);
                }
            }
            Wire::Rejected {
                sender: Some(sender),
                ref client_id,
                ..
            } => {
                let key = (sender, client_id.clone());
                self.resolve(key, wire);
            }
            Wire::Rejected { .. } => {}
            Wire::Typing {
                ref channel,
                user_id,
            } => {
                let ch = Canonical(channel.clone());
                for conn in self.subscribers(&ch) {
                    let Some(c) = self.conns.get(&conn) else {
                        continue;
                    };
                    if c.user == user_id {
                        continue;
                    }
                    let frame = serde_json::json!({
                        "type": "typing", "channel": ch.display_for(c.user), "user_id": user_id,
                    });
                    self.deliver(conn, Out::Frame(frame.to_string().into()));
                }
            }
            Wire::Read {
                ref channel,
                user_id,
                seq,
            } => self.broadcast(channel, |display| {
                serde_json::json!({"type": "read", "channel": display, "user_id": user_id, "seq": seq})
            }),
            Wire::Presence {
                ref channel,
                user_id,
                online,
            } => {
                // Joins and leaves are announced in rooms of up to PRESENCE_EVENTS_MAX local
                // listeners; a lecture hall filling up would otherwise cost n² frames (2,000
                // joins × 2,000 listeners). Big rooms ask with a `presence` frame instead.
                let size = self.subs.get(&Canonical(channel.clone())).map_or(0, |s| s.len());
                if size <= PRESENCE_EVENTS_MAX {
                    self.broadcast(channel, |display| {
                        serde_json::json!({"type": "presence", "channel": display,
                                           "user_id": user_id, "online": online})
                    })
                }
            }
            Wire::Room {
                ref channel,
                muted,
                slow_mode_s,
            } => self.broadcast(channel, |display| {
                serde_json::json!({"type": "room", "channel": display, "muted": muted,
                                   "slow_mode_s": slow_mode_s})
            }),
            Wire::Live {
                ref channel,
                audience,
                ref frame,
                ref staff_frame,
            } => self.live(channel, audience, frame, staff_frame.as_ref()),
            Wire::Reaction {
                ref channel,
                message_id,
                ref emoji,
                count,
                user_id,
                on,
            } => self.broadcast(channel, |display| {
                serde_json::json!({"type": "reaction", "channel": display, "message_id": message_id,
                                   "emoji": emoji, "count": count, "user_id": user_id, "on": on})
            }),
            Wire::Revoke {
                ref channel,
                user_id,
                ref reason,
            } => {
                let ch = Canonical(channel.clone());
                for conn in self.subscribers(&ch) {
                    let Some(c) = self.conns.get_mut(&conn) else {
                        continue;
                    };
                    if c.user != user_id {
                        continue;
                    }
                    c.channels.remove(&ch);
                    let frame = serde_json::json!({
                        "type": "unsubscribed", "channel": ch.display_for(user_id), "reason": reason,
                    });
                    self.unsub(conn, &ch);
                    self.deliver(
                        conn,
                        Out::Revoked {
                            channel: ch.clone(),
                            frame: frame.to_string().into(),
                        },
                    );
                }
            }
        }
    }

    /// A live tools' frame: serialized once (twice with a moderators' version), shared by every
    /// listener it is for.
    fn live(
        &mut self,
        channel: &str,
        audience: Audience,
        frame: &serde_json::Value,
        staff_frame: Option<&serde_json::Value>,
    ) {
        let ch = Canonical(channel.to_owned());
        let shared: Bytes = frame.to_string().into();
        let staff: Bytes = staff_frame.map_or_else(|| shared.clone(), |f| f.to_string().into());
        let mut n = 0u64;
        for conn in self.subscribers(&ch) {
            let Some(c) = self.conns.get(&conn) else {
                continue;
            };
            let is_staff = c.staff.contains(&ch);
            let f = match audience {
                Audience::All if is_staff => staff.clone(),
                Audience::All => shared.clone(),
                Audience::Staff if is_staff => staff.clone(),
                Audience::Staff => continue,
                Audience::User(u) if u == c.user => shared.clone(),
                Audience::User(_) => continue,
            };
            n += 1;
            self.deliver(conn, Out::Frame(f));
        }
        metrics::counter!("interaction_frames_delivered_total").increment(n);
    }

    /// One frame per subscriber (DM names differ per reader; other channels share one frame).
    fn broadcast(&mut self, channel: &str, frame: impl Fn(String) -> serde_json::Value) {
        let ch = Canonical(channel.to_owned());
        let shared: Option<Bytes> =
            (!ch.is_dm()).then(|| frame(channel.to_owned()).to_string().into());
        for conn in self.subscribers(&ch) {
            let f = match &shared {
                Some(f) => f.clone(),
                None => {
                    let user = self.conns.get(&conn).map(|c| c.user).unwrap_or_default();
                    frame(ch.display_for(user)).to_string().into()
                }
            };
            self.deliver(conn, Out::Frame(f));
        }
    }

    fn resolve(&mut self, key: (Uuid, String), wire: Wire) {
        match self.waiters.remove(&key) {
            Some(Waiter::Conn(conn)) => self.deliver(conn, Out::Outcome(Arc::new(wire))),
            Some(Waiter::Once(tx)) => {
                let _ = tx.send(Arc::new(wire));
            }
            None => {}
        }
    }
}

/// `{"type":"message","channel":...,"message":{...}}`
pub fn message_frame(display: &str, message: &MessageView) -> Bytes {
    #[derive(Serialize)]
    struct F<'a> {
        r#type: &'static str,
        channel: &'a str,
        message: &'a MessageView,
    }
    serde_json::to_string(&F {
        r#type: "message",
        channel: display,
        message,
    })
    .expect("frames serialize")
    .into()
}

/// Keep a Redis subscription to `wm:chat:events` and feed the hub; re-subscribe after any loss
/// (and tell the hub, which has its connections catch up from the database).
async fn subscribe_loop(
    redis: Redis,
    channel: String,
    tx: mpsc::Sender<Input>,
    shutdown: CancellationToken,
) {
    redis
        .listen("chat hub", &[channel.as_str()], &shutdown, |heard| {
            let tx = tx.clone();
            async move {
                let input = match heard {
                    Heard::Resubscribed => Input::Resubscribed,
                    Heard::Message(payload) => match serde_json::from_str::<Wire>(&payload) {
                        Ok(w) => Input::Event(w),
                        Err(e) => {
                            tracing::warn!(error = %e, "chat hub: unreadable event ignored");
                            return ControlFlow::Continue(());
                        }
                    },
                };
                if tx.send(input).await.is_err() {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            }
        })
        .await;
}
