//! The live supervisor: one task that owns every live session of this node.
//!
//! A live session is what students watch: one playlist that spans every publisher of the same
//! lesson, including reconnects inside the stream's reconnect window.
//!
//! ```text
//!  rtmp::serve / whip --ingest::PublishRequest--> supervisor --auth task (DB)--> Authorized
//!                                     |  grant: frames channel + kick token
//!                                     v
//!                          media::live::LiveOutput (TS packager: inline in the RTMP
//!                                     |  connection task; behind spawn_publisher's channel
//!                                     |  for WHIP)
//!                                     |  PublisherEvent (segment closed, ended)
//!                                     v
//!                          supervisor: playlist (LiveView, read by the HLS routes),
//!                                      reconnect window timer, events (event writer task)
//! ```
//!
//! Session states: `Publishing(publisher)` → publisher gone → `Waiting(window deadline)` →
//! a publisher comes back (same session, `#EXT-X-DISCONTINUITY`) or the window passes
//! (`#EXT-X-ENDLIST`, stream back to idle). `complete`/`disable` end it without waiting.
//!
//! Size: the whole live-session state machine is one task with its state; the start-up recovery is
//! the next split.

use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
    path::PathBuf,
    sync::{Arc, Mutex, RwLock, atomic::Ordering},
    time::{Duration, Instant},
};

use serde_json::json;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use wemaster_media::{
    codec::{AudioCodec, VideoCodec},
    frame::EndReason,
    hls::LivePlaylist,
    ingest::{PublishGrant, PublishRequest, RefuseReason},
    live::{
        LiveOutput, LlMode, LlShared, OutputSlot, PackagerConfig, PublisherEvent, PublisherStats,
        spawn_publisher,
    },
    llhls::LlLimits,
    packager::SegmentLimits,
    whep::{WhepFeed, WhepOutput},
};

use crate::recordings::recorder::{RecorderHandle, RecorderMsg};

use super::{
    events::EventKind,
    resume::{self, Resume},
    runtime::{ActiveSession, Command, LiveRuntime},
};

/// Settings of the live path.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    pub segments: SegmentLimits,
    pub window_segments: usize,
    pub spool_dir: PathBuf,
    pub frame_queue: usize,
    /// LL-HLS parts and when they are made; `None`: off.
    pub ll: Option<(LlLimits, LlMode)>,
    /// The WebRTC socket task that serves WHEP viewers; `None`: WHEP is off.
    pub whep: Option<wemaster_media::whip::WhipServer>,
}

/// What the HLS routes see of a stream: its current (or last) session's playlist and files.
pub struct LiveView {
    pub session_id: Uuid,
    /// Playback needs a signed token (the stream's visibility when its publisher connected).
    pub private: std::sync::atomic::AtomicBool,
    pub dir: PathBuf,
    pub playlist: Mutex<LivePlaylist>,
    /// The LL-HLS output (parts, LL playlist), when LL-HLS is on.
    pub ll: Option<Arc<LlShared>>,
    /// The WHEP feed of the session, when WHEP is on.
    pub whep: Option<Arc<WhepFeed>>,
    /// Last playlist fetch per client address, to estimate viewers.
    viewers: Mutex<HashMap<IpAddr, Instant>>,
}

/// A viewer counts while it fetched the playlist within this long.
const VIEWER_TTL: Duration = Duration::from_secs(15);

impl LiveView {
    /// The session is over (its playlist has `EXT-X-ENDLIST`).
    pub fn is_ended(&self) -> bool {
        self.playlist.lock().map(|p| p.is_ended()).unwrap_or(true)
    }

    pub fn touch_viewer(&self, ip: IpAddr) {
        if let Ok(mut v) = self.viewers.lock() {
            let now = Instant::now();
            v.insert(ip, now);
            if v.len() > 10_000 {
                v.retain(|_, t| now.duration_since(*t) < VIEWER_TTL);
            }
        }
    }

    /// HLS viewers (client addresses that fetched the playlist lately) and WebRTC viewers
    /// (connected now).
    pub fn viewer_count(&self) -> u64 {
        let webrtc = self.whep.as_ref().map_or(0, |f| f.viewer_count() as u64);
        let Ok(mut v) = self.viewers.lock() else {
            return webrtc;
        };
        let now = Instant::now();
        v.retain(|_, t| now.duration_since(*t) < VIEWER_TTL);
        v.len() as u64 + webrtc
    }
}

/// Stream id → its live view. Written by the supervisor, read by HLS requests.
pub type LiveRegistry = Arc<RwLock<HashMap<Uuid, Arc<LiveView>>>>;

/// What the authorisation task found for a publish request.
pub struct AuthorizedStream {
    pub stream_id: Uuid,
    pub owner_id: Uuid,
    pub private: bool,
    /// Record the session (the stream's `record`).
    pub record: bool,
    pub reconnect_window: Duration,
    /// The stream's session that another node held and this publisher continues
    /// (src/live/resume.rs).
    pub resume: Option<Resume>,
}

/// The status a session moves its stream to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusChange {
    Active,
    Idle,
}

/// The service side the supervisor needs: authorise publishers and write events.
/// Implemented over PostgreSQL + Redis in `super::backend`.
pub trait LiveBackend: Send + Sync + 'static {
    /// Find the stream for a key (constant-time compare) and check it may publish.
    fn authorize(
        &self,
        app: String,
        stream_key: String,
    ) -> impl Future<Output = Result<AuthorizedStream, RefuseReason>> + Send;
    /// Queue an event (stored and published in order); `status` also moves the stream's status.
    fn event(
        &self,
        stream_id: Uuid,
        kind: EventKind,
        payload: serde_json::Value,
        status: Option<StatusChange>,
    );
    /// Keep (`Some`) or drop (`None`) where a session stands, for a node that continues it.
    /// The backend sets `node` to this node. Queued with the events, in order.
    fn resume(&self, _stream_id: Uuid, _state: Option<Resume>) {}
}

enum Msg {
    Command(Command),
    Publish(PublishRequest),
    Authorized(PublishRequest, Result<AuthorizedStream, RefuseReason>),
    Publisher {
        stream_id: Uuid,
        generation: u64,
        event: PublisherEvent,
    },
    WindowExpired {
        stream_id: Uuid,
        session_id: Uuid,
        generation: u64,
    },
}

struct Publisher {
    generation: u64,
    kick: CancellationToken,
    stats: Arc<PublisherStats>,
    connected_at: Instant,
    protocol: &'static str,
    /// Bytes counted at the last bitrate sample, and the rate then (bits per second).
    last_bytes: u64,
    bitrate_bps: u64,
}

/// How often ingest bitrates are sampled (the API's `bitrate_bps`, the metric).
const BITRATE_INTERVAL: Duration = Duration::from_secs(5);

/// Why a session should end when its publisher goes away.
#[derive(Clone, Copy, PartialEq)]
enum Ending {
    /// Normal: wait for the reconnect window.
    Window,
    /// `complete`, `disable`, delete, a takeover from another node, shutdown: end as soon as
    /// the publisher's pipeline has drained, saying why.
    Now(&'static str),
}

struct Session {
    id: Uuid,
    started_at: OffsetDateTime,
    view: Arc<LiveView>,
    publisher: Option<Publisher>,
    generation: u64,
    reconnect_window: Duration,
    ending: Ending,
    /// Segments that left the playlist, deleted once they are `window` segments old.
    evicted: VecDeque<PathBuf>,
    last_protocol: &'static str,
    /// End of the last segment on the session timeline (ms): the next publisher starts there.
    timeline_end_ms: u64,
    /// The recorder records this session.
    recorded: bool,
    /// The lowest segment index the next publisher may start at: indices name the segment
    /// files, and a session continued from another node must not reuse that node's names.
    next_start_index: u64,
}

/// Start the supervisor; returns the runtime handle and the sender the RTMP server uses.
pub fn start<B: LiveBackend>(
    config: LiveConfig,
    backend: B,
    registry: LiveRegistry,
    recorder: RecorderHandle,
    shutdown: CancellationToken,
) -> anyhow::Result<(
    LiveRuntime,
    mpsc::Sender<PublishRequest>,
    tokio::task::JoinHandle<()>,
)> {
    let (msg_tx, msg_rx) = mpsc::channel::<Msg>(1024);
    let (cmd_tx, mut cmd_rx) = mpsc::channel::<Command>(256);
    let (pub_tx, mut pub_rx) = mpsc::channel::<PublishRequest>(256);
    // Two small forwarders keep the public channel types independent of `Msg`.
    let fwd = msg_tx.clone();
    tokio::spawn(async move {
        while let Some(c) = cmd_rx.recv().await {
            if fwd.send(Msg::Command(c)).await.is_err() {
                break;
            }
        }
    });
    let fwd = msg_tx.clone();
    tokio::spawn(async move {
        while let Some(p) = pub_rx.recv().await {
            if fwd.send(Msg::Publish(p)).await.is_err() {
                break;
            }
        }
    });
    let sup = Supervisor {
        config,
        backend: Arc::new(backend),
        registry,
        recorder,
        sessions: HashMap::new(),
        tx: msg_tx,
        next_generation: 1,
    };
    let handle = tokio::spawn(sup.run(msg_rx, shutdown));
    Ok((LiveRuntime::new(cmd_tx), pub_tx, handle))
}

struct Supervisor<B> {
    config: LiveConfig,
    backend: Arc<B>,
    registry: LiveRegistry,
    recorder: RecorderHandle,
    sessions: HashMap<Uuid, Session>,
    tx: mpsc::Sender<Msg>,
    next_generation: u64,
}

impl<B: LiveBackend> Supervisor<B> {
    async fn run(mut self, mut rx: mpsc::Receiver<Msg>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(BITRATE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(m) => self.handle(m),
                    None => break,
                },
                _ = tick.tick() => self.sample_bitrates(),
                () = shutdown.cancelled() => break,
            }
        }
        // Graceful shutdown: kick every publisher and let their pipelines drain, so each
        // session's last segment is closed and its playlist ends.
        for s in self.sessions.values_mut() {
            s.ending = Ending::Now("ended");
            if let Some(p) = &s.publisher {
                p.kick.cancel();
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.sessions.values().any(|s| s.publisher.is_some()) {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(m @ Msg::Publisher { .. })) => self.handle(m),
                Ok(Some(Msg::Publish(req))) => {
                    let _ = req.reply.send(Err(RefuseReason::Busy));
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        let ids: Vec<Uuid> = self.sessions.keys().copied().collect();
        for id in ids {
            self.end_session(id, "shutdown");
        }
    }

    /// Ingest bitrate per live stream over the last interval: `live_ingest_bitrate_bps`.
    fn sample_bitrates(&mut self) {
        let mut total = 0;
        for (stream_id, s) in &mut self.sessions {
            let bps = match &mut s.publisher {
                Some(p) => {
                    let bytes = p.stats.bytes_in.load(Ordering::Relaxed);
                    p.bitrate_bps =
                        (bytes.saturating_sub(p.last_bytes) * 8) / BITRATE_INTERVAL.as_secs();
                    p.last_bytes = bytes;
                    p.bitrate_bps
                }
                None => 0,
            };
            total += bps;
            metrics::gauge!("live_ingest_bitrate_bps", "live_stream_id" => stream_id.to_string())
                .set(bps as f64);
        }
        metrics::gauge!("live_ingest_bitrate_bps_total").set(total as f64);
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Command(c) => self.command(c),
            Msg::Publish(req) => {
                let backend = self.backend.clone();
                let tx = self.tx.clone();
                // The lookup touches the database: off the supervisor's loop.
                tokio::spawn(async move {
                    let result = backend
                        .authorize(req.app.clone(), req.stream_key.clone())
                        .await;
                    let _ = tx.send(Msg::Authorized(req, result)).await;
                });
            }
            Msg::Authorized(req, Err(reason)) => {
                // Counted once, by the RTMP server (`rtmp_refused_total{reason}`).
                tracing::info!(peer = %req.peer, reason = reason.as_str(), "publish refused");
                let _ = req.reply.send(Err(reason));
            }
            Msg::Authorized(req, Ok(stream)) => self.accept(req, stream),
            Msg::Publisher {
                stream_id,
                generation,
                event,
            } => self.publisher_event(stream_id, generation, event),
            Msg::WindowExpired {
                stream_id,
                session_id,
                generation,
            } => {
                let expired = self.sessions.get(&stream_id).is_some_and(|s| {
                    s.id == session_id && s.generation == generation && s.publisher.is_none()
                });
                if expired {
                    self.end_session(stream_id, "reconnect window passed");
                }
            }
        }
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Status { stream_id, reply } => {
                let _ = reply.send(self.sessions.get(&stream_id).map(active_session));
            }
            Command::All { reply } => {
                let _ = reply.send(
                    self.sessions
                        .iter()
                        .map(|(id, s)| (*id, active_session(s)))
                        .collect(),
                );
            }
            Command::Complete { stream_id, reply } => {
                let _ = reply.send(self.finish_now(stream_id, "completed"));
            }
            Command::Kick {
                stream_id,
                reason,
                reply,
            } => {
                let found = match reason {
                    // A new key or a disabled stream: this publisher must go; a disabled or
                    // deleted stream also ends its session now.
                    // A publisher of the stream reached another node: this session is over
                    // (its recording ends here; the new node records its own).
                    "disabled" | "deleted" | "taken_over" | "continued_elsewhere" => {
                        self.finish_now(stream_id, reason)
                    }
                    _ => match self
                        .sessions
                        .get(&stream_id)
                        .and_then(|s| s.publisher.as_ref())
                    {
                        Some(p) => {
                            tracing::info!(%stream_id, reason, "publisher kicked");
                            p.kick.cancel();
                            true
                        }
                        None => false,
                    },
                };
                let _ = reply.send(found);
            }
        }
    }

    /// End a session as soon as its publisher (if any) has drained.
    fn finish_now(&mut self, stream_id: Uuid, why: &'static str) -> bool {
        let Some(s) = self.sessions.get_mut(&stream_id) else {
            return false;
        };
        s.ending = Ending::Now(why);
        match &s.publisher {
            Some(p) => {
                tracing::info!(%stream_id, why, "ending live session: kicking the publisher");
                p.kick.cancel();
            }
            None => self.end_session(stream_id, why),
        }
        true
    }

    fn accept(&mut self, req: PublishRequest, stream: AuthorizedStream) {
        let stream_id = stream.stream_id;
        let generation = self.next_generation;
        self.next_generation += 1;
        let new_session = !self.sessions.contains_key(&stream_id);
        // A session another node held within the window goes on here; one of this node's own
        // (a reconnect here) takes precedence.
        let continued = if new_session { stream.resume } else { None };
        if new_session {
            let session_id = continued.map_or_else(Uuid::now_v7, |r| r.session_id);
            let dir = self
                .config
                .spool_dir
                .join("live")
                .join(stream_id.to_string())
                .join(session_id.to_string());
            if let Err(e) = std::fs::create_dir_all(&dir) {
                tracing::error!(%stream_id, error = %e, dir = %dir.display(), "cannot create the spool directory");
                let _ = req.reply.send(Err(RefuseReason::Busy));
                return;
            }
            // The maximum, not the target: EXT-X-TARGETDURATION may never change.
            let target_ns = self.config.segments.max.as_nanos() as u64;
            let view = Arc::new(LiveView {
                session_id,
                private: std::sync::atomic::AtomicBool::new(stream.private),
                dir,
                playlist: Mutex::new(match &continued {
                    Some(r) => {
                        LivePlaylist::continued(target_ns, self.config.window_segments, r.point())
                    }
                    None => LivePlaylist::new(target_ns, self.config.window_segments),
                }),
                ll: self.config.ll.map(|(limits, mode)| {
                    let ll = LlShared::new(limits, self.config.window_segments, mode);
                    if let Some(point) = continued.and_then(|r| r.ll) {
                        ll.continue_from(point.into());
                    }
                    ll
                }),
                whep: self.config.whep.as_ref().map(|w| w.new_feed()),
                viewers: Mutex::new(HashMap::new()),
            });
            // The previous session's files go when a new one starts (its playlist is replaced).
            let previous = self
                .registry
                .write()
                .ok()
                .and_then(|mut r| r.insert(stream_id, view.clone()));
            if let Some(prev) = previous {
                let dir = prev.dir.clone();
                tokio::spawn(async move {
                    let _ = tokio::fs::remove_dir_all(dir).await;
                });
            }
            let started_at = continued.map_or_else(OffsetDateTime::now_utc, |r| r.started_at);
            self.sessions.insert(
                stream_id,
                Session {
                    id: session_id,
                    started_at,
                    view,
                    publisher: None,
                    generation,
                    reconnect_window: stream.reconnect_window,
                    ending: Ending::Window,
                    evicted: VecDeque::new(),
                    last_protocol: req.protocol,
                    timeline_end_ms: continued.map_or(0, |r| r.timeline_end_ms),
                    recorded: stream.record,
                    next_start_index: continued.map_or(0, |r| r.next_start_index),
                },
            );
            if let Some(r) = &continued {
                tracing::info!(%stream_id, %session_id, from = %r.node, "continuing a live session another node held");
                metrics::counter!("live_sessions_continued_total").increment(1);
            }
            if stream.record {
                // A continued session goes on in its recording, if that is still open.
                self.recorder.send(RecorderMsg::Started {
                    session_id,
                    live_stream_id: stream_id,
                    owner_id: stream.owner_id,
                    private: stream.private,
                    started_at,
                    continued: continued.is_some(),
                });
            }
            metrics::gauge!("live_sessions_active").increment(1.0);
        }
        let (dir, ll, whep, floor) = match self.sessions.get(&stream_id) {
            Some(s) => (
                s.view.dir.clone(),
                s.view.ll.clone(),
                s.view.whep.clone(),
                s.next_start_index,
            ),
            None => return,
        };
        // A million indices per publisher: a range no publisher fills (23 days of 2 s segments).
        let start_index = generation.saturating_mul(1_000_000).max(floor);
        // A WHIP publisher passes its Opus to the viewers itself; RTMP's AAC is transcoded.
        let opus_from_ingest = req.protocol == "whip";
        let timeline_start_ms = self
            .sessions
            .get(&stream_id)
            .map_or(0, |s| s.timeline_end_ms);
        let packager = PackagerConfig {
            dir,
            segments: self.config.segments,
            start_index,
            timeline_start_ms,
            ll,
            whep: whep.clone().map(|feed| WhepOutput {
                feed,
                opus_from_ingest,
            }),
        };
        let Some(session) = self.sessions.get_mut(&stream_id) else {
            return;
        };
        session
            .view
            .private
            .store(stream.private, Ordering::Relaxed);
        session.generation = generation;
        session.next_start_index = start_index.saturating_add(1_000_000);
        session.ending = Ending::Window;
        let replaced = session.publisher.take();
        if let Some(old) = &replaced {
            // The old connection may be half-dead after a network drop: the new one wins.
            tracing::warn!(%stream_id, peer = %req.peer, "a new publisher replaces the current one");
            old.kick.cancel();
        }
        if !new_session || continued.is_some() {
            if let Ok(mut p) = session.view.playlist.lock() {
                p.mark_discontinuity();
            }
            // The session's spool directory may have gone with the error that dropped the
            // last publisher (an operator clearing a full disk): the packager needs it back.
            if let Err(e) = std::fs::create_dir_all(&session.view.dir) {
                tracing::warn!(%stream_id, error = %e, "cannot recreate the session's spool directory");
            }
        }
        let (frames_tx, frames_rx) = mpsc::channel(self.config.frame_queue);
        let (events_tx, mut events_rx) = mpsc::unbounded_channel();
        let stats = Arc::new(PublisherStats::default());
        let kick = CancellationToken::new();
        // The packager: taken by the RTMP connection and run inline there; behind the frame
        // channel for WHIP (the task takes it when the first frame arrives).
        let output = OutputSlot::new(LiveOutput::new(packager, events_tx, stats.clone()));
        spawn_publisher(frames_rx, output.clone());
        let tx = self.tx.clone();
        tokio::spawn(async move {
            while let Some(event) = events_rx.recv().await {
                if tx
                    .send(Msg::Publisher {
                        stream_id,
                        generation,
                        event,
                    })
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        session.publisher = Some(Publisher {
            generation,
            kick: kick.clone(),
            stats,
            connected_at: Instant::now(),
            protocol: req.protocol,
            last_bytes: 0,
            bitrate_bps: 0,
        });
        session.last_protocol = req.protocol;
        let session_id = session.id;
        let mut payload = json!({"session_id": session_id, "protocol": req.protocol,
            "peer": req.peer.to_string(), "replaced_publisher": replaced.is_some(),
            "reconnect": !new_session || continued.is_some()});
        if let Some(r) = &continued {
            payload["continued_from_node"] = json!(r.node);
        }
        self.emit(
            stream_id,
            EventKind::Connected,
            payload,
            Some(StatusChange::Active),
        );
        self.save_resume(stream_id);
        if req
            .reply
            .send(Ok(PublishGrant {
                frames: frames_tx,
                kick: kick.clone(),
                output,
                whep: whep.filter(|_| opus_from_ingest),
            }))
            .is_err()
        {
            // The connection went away while we were deciding.
            kick.cancel();
        }
    }

    fn publisher_event(&mut self, stream_id: Uuid, generation: u64, event: PublisherEvent) {
        let Some(session) = self.sessions.get_mut(&stream_id) else {
            // A segment of a session that already ended (shutdown race): nothing lists it.
            return;
        };
        match event {
            PublisherEvent::Started { has_audio } => {
                let session_id = session.id;
                self.emit(
                    stream_id,
                    EventKind::Active,
                    json!({"session_id": session_id, "audio": has_audio}),
                    None,
                );
            }
            PublisherEvent::SegmentClosed {
                path,
                duration_ns,
                end_ms,
                started_at,
            } => {
                session.timeline_end_ms = session.timeline_end_ms.max(end_ms);
                if session.recorded {
                    self.recorder.send(RecorderMsg::Segment {
                        session_id: session.id,
                        path: path.clone(),
                        duration_ns,
                        generation,
                        started_at,
                    });
                }
                let Some(name) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .map(str::to_string)
                else {
                    return;
                };
                // Segment numbers restart with the process; the session id does not repeat.
                // Under the session's own path a segment URL names the same bytes for ever,
                // as its `immutable` caching promises.
                let uri = format!("{}/{name}", session.id);
                let evicted = match session.view.playlist.lock() {
                    Ok(mut p) if !p.is_ended() => p.push(uri, duration_ns, Some(started_at)),
                    _ => Vec::new(),
                };
                metrics::counter!("live_segments_total").increment(1);
                for e in evicted {
                    if let Some((_, file)) = e.uri.split_once('/') {
                        session.evicted.push_back(session.view.dir.join(file));
                    }
                }
                // Keep a window's worth of evicted files: a slow player may still fetch them.
                while session.evicted.len() > self.config.window_segments {
                    if let Some(old) = session.evicted.pop_front() {
                        tokio::spawn(async move {
                            let _ = tokio::fs::remove_file(old).await;
                        });
                    }
                }
                self.save_resume(stream_id);
            }
            PublisherEvent::Ended { reason, error } => {
                let current = session
                    .publisher
                    .as_ref()
                    .is_some_and(|p| p.generation == generation);
                if !current {
                    // A replaced publisher drained; the session belongs to its successor.
                    return;
                }
                if let Some(p) = session.publisher.take() {
                    let info = p.stats.info.lock().ok().and_then(|i| i.clone());
                    if let (true, Some(info)) = (session.recorded, info) {
                        self.recorder.send(RecorderMsg::Info {
                            session_id: session.id,
                            info,
                        });
                    }
                }
                let session_id = session.id;
                if let Some(e) = &error {
                    tracing::error!(%stream_id, error = %e, "live pipeline failed");
                    metrics::counter!("live_pipeline_errors_total").increment(1);
                }
                self.emit(
                    stream_id,
                    EventKind::Disconnected,
                    json!({"session_id": session_id, "reason": end_reason(&reason), "error": error}),
                    None,
                );
                let Some(session) = self.sessions.get_mut(&stream_id) else {
                    return;
                };
                // A spool write error (a full disk) closes the publisher's connection but not
                // the lesson: the encoder reconnects into the same session and recording, as
                // after a network drop, and goes on once the disk has room again.
                if let Ending::Now(why) = session.ending {
                    self.end_session(stream_id, why);
                    return;
                }
                if session.reconnect_window.is_zero() {
                    self.end_session(stream_id, "ended");
                    return;
                }
                let window = session.reconnect_window;
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(window).await;
                    let _ = tx
                        .send(Msg::WindowExpired {
                            stream_id,
                            session_id,
                            generation,
                        })
                        .await;
                });
            }
        }
    }

    /// ENDLIST, back to idle. The view stays registered so the ended playlist stays playable.
    fn end_session(&mut self, stream_id: Uuid, why: &'static str) {
        let Some(session) = self.sessions.remove(&stream_id) else {
            return;
        };
        if let Some(p) = &session.publisher {
            p.kick.cancel();
        }
        metrics::gauge!("live_ingest_bitrate_bps", "live_stream_id" => stream_id.to_string())
            .set(0.0);
        if let Ok(mut p) = session.view.playlist.lock() {
            p.end();
        }
        if let Some(ll) = &session.view.ll {
            ll.end();
        }
        if let Some(feed) = session.view.whep.clone() {
            tokio::spawn(async move { feed.end().await });
        }
        if session.recorded {
            // A publisher still attached (complete/disable/shutdown) tells its media first.
            if let Some(info) = session
                .publisher
                .as_ref()
                .and_then(|p| p.stats.info.lock().ok().and_then(|i| i.clone()))
            {
                self.recorder.send(RecorderMsg::Info {
                    session_id: session.id,
                    info,
                });
            }
            self.recorder.send(RecorderMsg::Ended {
                session_id: session.id,
            });
        }
        metrics::gauge!("live_sessions_active").decrement(1.0);
        if why == "continued_elsewhere" {
            // Only this node's part is over: the session (same id, same recording) goes on
            // on the node the publisher reached; the stream stays active. Its playlist is that
            // node's now: viewers here are forwarded there (src/http/hls.rs).
            tracing::info!(%stream_id, session_id = %session.id, "live session went on on another node");
            if let Ok(mut r) = self.registry.write()
                && r.get(&stream_id)
                    .is_some_and(|v| Arc::ptr_eq(v, &session.view))
            {
                r.remove(&stream_id);
            }
            let dir = session.view.dir.clone();
            tokio::spawn(async move {
                let _ = tokio::fs::remove_dir_all(dir).await;
            });
            return;
        }
        // Over: no other node continues it. A shutdown keeps the record, so an encoder that
        // reconnects to another node (a rolling restart) goes on in the same session.
        if why != "shutdown" {
            self.backend.resume(stream_id, None);
        }
        let duration_s = (OffsetDateTime::now_utc() - session.started_at).as_seconds_f64();
        tracing::info!(%stream_id, session_id = %session.id, why, duration_s, "live session ended");
        self.emit(
            stream_id,
            EventKind::Idle,
            json!({"session_id": session.id, "why": why, "duration_s": duration_s}),
            Some(StatusChange::Idle),
        );
    }

    /// Save where `stream_id`'s session stands, for a node that may continue it
    /// (src/live/resume.rs). Not kept for a stream without a reconnect window.
    fn save_resume(&self, stream_id: Uuid) {
        let Some(s) = self.sessions.get(&stream_id) else {
            return;
        };
        if s.reconnect_window.is_zero() {
            return;
        }
        let Ok(point) = s.view.playlist.lock().map(|p| p.resume_point()) else {
            return;
        };
        self.backend.resume(
            stream_id,
            Some(Resume {
                session_id: s.id,
                node: Uuid::nil(),
                started_at: s.started_at,
                next_sequence: point.next_sequence,
                discontinuity_sequence: point.discontinuity_sequence,
                next_start_index: s.next_start_index,
                timeline_end_ms: s.timeline_end_ms,
                ttl_s: resume::ttl(s.reconnect_window, self.config.segments.max),
                ll: s
                    .view
                    .ll
                    .as_ref()
                    .and_then(|ll| ll.resume_point())
                    .map(Into::into),
            }),
        );
    }

    fn emit(
        &self,
        stream_id: Uuid,
        kind: EventKind,
        payload: serde_json::Value,
        status: Option<StatusChange>,
    ) {
        self.backend.event(stream_id, kind, payload, status);
    }
}

fn end_reason(r: &EndReason) -> String {
    match r {
        EndReason::ProtocolError(e) => format!("protocol_error: {e}"),
        other => other.as_str().to_string(),
    }
}

/// Codec names as the API shows them (`h264`, `aac`).
pub(crate) fn video_codec_name(c: VideoCodec) -> String {
    match c {
        VideoCodec::H264 => "h264".into(),
        VideoCodec::Hevc => "hevc".into(),
        VideoCodec::Av1 => "av1".into(),
        VideoCodec::Vp9 => "vp9".into(),
        VideoCodec::Other(x) => format!("other({x:#x})"),
    }
}

pub(crate) fn audio_codec_name(c: AudioCodec) -> String {
    match c {
        AudioCodec::Aac => "aac".into(),
        AudioCodec::Mp3 => "mp3".into(),
        AudioCodec::Opus => "opus".into(),
        AudioCodec::Other(x) => format!("other({x:#x})"),
    }
}

fn active_session(s: &Session) -> ActiveSession {
    let info = s
        .publisher
        .as_ref()
        .and_then(|p| p.stats.info.lock().ok().and_then(|i| i.clone()));
    // The last sample; before the first one, the average since the publisher connected.
    let bitrate_bps = s.publisher.as_ref().map_or(0, |p| {
        if p.bitrate_bps > 0 {
            p.bitrate_bps
        } else {
            let secs = p.connected_at.elapsed().as_secs_f64().max(1.0);
            (p.stats.bytes_in.load(Ordering::Relaxed) as f64 * 8.0 / secs) as u64
        }
    });
    ActiveSession {
        session_id: s.id,
        started_at: s.started_at,
        protocol: s
            .publisher
            .as_ref()
            .map_or(s.last_protocol, |p| p.protocol)
            .to_string(),
        publishing: s.publisher.is_some(),
        video_codec: info
            .as_ref()
            .and_then(|i| i.video_codec)
            .map(video_codec_name),
        audio_codec: info
            .as_ref()
            .and_then(|i| i.audio_codec)
            .map(audio_codec_name),
        width: info.as_ref().and_then(|i| i.width),
        height: info.as_ref().and_then(|i| i.height),
        frame_rate: info.as_ref().and_then(|i| i.frame_rate),
        bitrate_bps,
        viewers: s.view.viewer_count(),
    }
}
