//! The WHIP socket task: one UDP socket, every session's `Rtc`, one loop.
//!
//! ```text
//!  UDP datagram --(Rtc::accepts)--> session.rtc.handle_input --> poll_output until Timeout
//!       Transmit -> socket.try_send_to       Event::MediaData -> H264Framer / Vp8ToH264 / OpusToAac
//!  commands (start, end) and the earliest session deadline wake the loop too
//! ```
//!
//! Keyframes (PLI): when the peer connects, every 500 ms until the first keyframe, after a
//! packet loss gap, and — for H.264 passed through — when the open HLS segment has reached the
//! segment duration and no keyframe came to cut it (browsers send keyframes only on request).
//! The session follows the packager's rule (cut at the first keyframe at or past the target)
//! to know when that is. VP8 needs no such request: the transcoder makes H.264 keyframes itself.
//!
//! A session ends when the client DELETEs it, its ICE connection drops (a client that
//! vanished), the supervisor kicks it, or the server shuts down; exactly one
//! [`MediaFrame::End`] follows its last frame.
//!
//! WHEP viewers ([`crate::whep`]) run in the same loop: in tasks of their own, one per viewer
//! socket ([`WhipServer::spawn`]), or in the ingest task when there is no viewer socket. Samples
//! of a live session's [`WhepFeed`] arrive on a bounded channel and are written to each viewer
//! of the feed (str0m packetizes and encrypts per viewer; the sample bytes are shared).
//! Datagrams are routed by a source-address cache first, so a packet costs one lookup, not a
//! scan of every peer; viewers' timers are served in one sweep at most every [`VIEWER_TICK`].
//!
//! Size: one task owns every WebRTC peer of the process (publishers and viewers): datagram
//! routing, timers and the feed fan-out share its state, and a split would hand that state around;
//! the viewers' half is the next split if it grows.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use str0m::{
    Event, IceConnectionState, Input, Output,
    format::Codec,
    media::{KeyframeRequestKind, MediaKind, Mid},
    net::{Protocol, Receive},
};
use tokio::{net::UdpSocket, sync::mpsc, sync::oneshot};
use tokio_util::sync::CancellationToken;

use super::{
    IngestVideo, Negotiated, WhipError,
    audio::OpusToAac,
    h264::H264Framer,
    viewer::{FeedState, ViewerSession},
    vp8::{self, Vp8ToH264},
};
use crate::codec::{AudioCodec, VideoCodec};
use crate::frame::{EndReason, MediaFrame, StreamInfo};
use crate::ingest::PublishGrant;
use crate::whep::{
    Viewer, WhepFeed,
    feed::{FeedMsg, Sample},
};

/// While no keyframe arrived, ask again this often.
const KEYFRAME_RETRY: Duration = Duration::from_millis(500);
/// The loop wakes at least this often (kicks, keyframe retries).
const MAX_SLEEP: Duration = Duration::from_millis(200);
/// Video frames over which the frame rate is measured when the stream does not declare it.
const RATE_FRAMES: u64 = 60;
/// Viewers' timers (RTCP, ICE keep-alives) are swept together at most this often.
pub(crate) const VIEWER_TICK: Duration = Duration::from_millis(5);
/// The loop's sleep with no peer at all.
const IDLE_SLEEP: Duration = Duration::from_secs(3600);
/// Datagrams taken in one wake-up before commands and timers get their turn.
const RECV_BATCH: usize = 64;
/// Samples on their way from the feeds to the socket task.
const FEED_QUEUE: usize = 4096;

/// What every session of a [`WhipServer`] shares.
#[derive(Debug, Clone)]
pub struct WhipOptions {
    /// The HLS segment duration: a keyframe is requested (H.264) or made (VP8) when one is due.
    pub segment_duration: Duration,
    /// The rendered `whip-vp8-h264` pipeline; `None` when VP8 is refused.
    pub vp8_pipeline: Option<String>,
    /// WHEP viewers this node serves at most (all streams).
    pub max_viewers: usize,
}

impl Default for WhipOptions {
    fn default() -> Self {
        WhipOptions {
            segment_duration: Duration::from_secs(2),
            vp8_pipeline: None,
            max_viewers: 1000,
        }
    }
}

enum Cmd {
    Start {
        id: String,
        negotiated: Negotiated,
        grant: PublishGrant,
        reply: oneshot::Sender<Result<(), WhipError>>,
    },
    End {
        id: String,
        reply: oneshot::Sender<bool>,
    },
    View {
        id: String,
        viewer: Viewer,
        feed: Arc<WhepFeed>,
        reply: oneshot::Sender<Result<(), WhipError>>,
    },
}

/// One socket task that serves WHEP viewers.
struct ViewerTask {
    tx: mpsc::Sender<Cmd>,
    /// Its viewers now (kept by the task).
    count: Arc<AtomicUsize>,
}

/// Handle on the WebRTC socket tasks: the WHIP ingest task, and the tasks that serve WHEP
/// viewers — each its own UDP socket, so viewers spread over the cores and never slow the
/// ingest. With no viewer sockets, the ingest task serves the viewers too.
#[derive(Clone)]
pub struct WhipServer {
    tx: mpsc::Sender<Cmd>,
    viewer_tasks: Arc<[ViewerTask]>,
    feeds: Arc<[mpsc::Sender<FeedMsg>]>,
    next_feed: Arc<std::sync::atomic::AtomicU64>,
    max_viewers: usize,
    local: SocketAddr,
}

impl WhipServer {
    /// Start the ingest task on `socket` and one viewer task per entry of `viewer_sockets`
    /// (none: the ingest task serves viewers); they stop (ending every session) on `shutdown`.
    /// `advertised` is the candidate address clients send to (the ICE agent matches datagrams
    /// against it: with a socket bound to 0.0.0.0 the real destination is not known).
    pub fn spawn(
        socket: UdpSocket,
        advertised: SocketAddr,
        viewer_sockets: Vec<(UdpSocket, SocketAddr)>,
        options: WhipOptions,
        shutdown: CancellationToken,
    ) -> std::io::Result<(WhipServer, tokio::task::JoinHandle<()>)> {
        let local = socket.local_addr()?;
        let max_viewers = options.max_viewers;
        let (tx, rx) = mpsc::channel(256);
        let mut viewer_tasks = Vec::new();
        let mut feeds = Vec::new();
        // The ingest task serves the viewers itself when there is no viewer socket; otherwise
        // its feed sender is dropped here, which turns its feed branch off.
        let (ingest_feeds, ingest_feeds_rx) = mpsc::channel(FEED_QUEUE);
        let ingest_count = Arc::new(AtomicUsize::new(0));
        if viewer_sockets.is_empty() {
            viewer_tasks.push(ViewerTask {
                tx: tx.clone(),
                count: ingest_count.clone(),
            });
            feeds.push(ingest_feeds);
        }
        for (worker, (socket, advertised)) in viewer_sockets.into_iter().enumerate() {
            let (vtx, vrx) = mpsc::channel(256);
            let (feeds_tx, feeds_rx) = mpsc::channel(FEED_QUEUE);
            let count = Arc::new(AtomicUsize::new(0));
            viewer_tasks.push(ViewerTask {
                tx: vtx,
                count: count.clone(),
            });
            feeds.push(feeds_tx);
            let task = Task { worker, count };
            tokio::spawn(run(
                socket,
                advertised,
                options.clone(),
                vrx,
                feeds_rx,
                task,
                shutdown.clone(),
            ));
        }
        let task = Task {
            worker: 0,
            count: ingest_count,
        };
        let handle = tokio::spawn(run(
            socket,
            advertised,
            options,
            rx,
            ingest_feeds_rx,
            task,
            shutdown,
        ));
        Ok((
            WhipServer {
                tx,
                viewer_tasks: viewer_tasks.into(),
                feeds: feeds.into(),
                next_feed: Default::default(),
                max_viewers,
                local,
            },
            handle,
        ))
    }

    /// A new WHEP feed (one per live session) whose samples go to the viewer tasks.
    pub fn new_feed(&self) -> Arc<WhepFeed> {
        let id = self
            .next_feed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        WhepFeed::new(id, self.feeds.clone())
    }

    /// The viewer task a new viewer should go to (the least loaded); its candidates go in
    /// the answer. `Busy` when the node serves `max_viewers` already.
    pub fn viewer_slot(&self) -> Result<usize, WhipError> {
        let counts: Vec<usize> = self
            .viewer_tasks
            .iter()
            .map(|t| t.count.load(Ordering::Relaxed))
            .collect();
        if counts.iter().sum::<usize>() >= self.max_viewers {
            return Err(WhipError::Busy(format!(
                "this server already serves {} WebRTC viewers (whep.max_viewers)",
                self.max_viewers
            )));
        }
        Ok(counts
            .iter()
            .enumerate()
            .min_by_key(|(_, c)| **c)
            .map_or(0, |(i, _)| i))
    }

    /// Attach a negotiated WHEP viewer of `feed` to viewer task `slot`.
    pub async fn view(
        &self,
        slot: usize,
        id: String,
        viewer: Viewer,
        feed: Arc<WhepFeed>,
    ) -> Result<(), WhipError> {
        let task = self.viewer_tasks.get(slot).ok_or(WhipError::Unavailable)?;
        let (reply, rx) = oneshot::channel();
        task.tx
            .send(Cmd::View {
                id,
                viewer,
                feed,
                reply,
            })
            .await
            .map_err(|_| WhipError::Unavailable)?;
        rx.await.map_err(|_| WhipError::Unavailable)?
    }

    /// End viewer `id` of task `slot` (the client's DELETE). False when there is none.
    pub async fn end_viewer(&self, slot: usize, id: &str) -> bool {
        let Some(task) = self.viewer_tasks.get(slot) else {
            return false;
        };
        let (reply, rx) = oneshot::channel();
        let cmd = Cmd::End {
            id: id.to_string(),
            reply,
        };
        if task.tx.send(cmd).await.is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// The bound UDP address of the ingest socket.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Attach a negotiated session; its frames go to `grant.frames`.
    pub async fn start(
        &self,
        id: String,
        negotiated: Negotiated,
        grant: PublishGrant,
    ) -> Result<(), WhipError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Start {
                id,
                negotiated,
                grant,
                reply,
            })
            .await
            .map_err(|_| WhipError::Unavailable)?;
        rx.await.map_err(|_| WhipError::Unavailable)?
    }

    /// End a WHIP session (the client's DELETE). False when no such session runs.
    pub async fn end(&self, id: &str) -> bool {
        let (reply, rx) = oneshot::channel();
        if self
            .tx
            .send(Cmd::End {
                id: id.to_string(),
                reply,
            })
            .await
            .is_err()
        {
            return false;
        }
        rx.await.unwrap_or(false)
    }
}

impl std::fmt::Debug for WhipServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhipServer")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

/// Which viewer task a run loop is.
struct Task {
    worker: usize,
    count: Arc<AtomicUsize>,
}

impl Task {
    /// The task serves `n` viewers now (for [`WhipServer::viewer_slot`] and the metric).
    fn publish(&self, n: usize) {
        self.count.store(n, Ordering::Relaxed);
        metrics::gauge!("whep_viewers_active", "socket" => self.worker.to_string()).set(n as f64);
    }
}

/// Where a session's video goes.
enum VideoIn {
    /// H.264 access units → FLV/AVCC frames, in the socket task.
    H264(H264Framer),
    /// VP8 frames → the transcoder (from the first VP8 keyframe on); `None` when it failed.
    Vp8 {
        transcoder: Option<Vp8ToH264>,
        keyframe_seen: bool,
    },
}

struct Session {
    rtc: str0m::Rtc,
    grant: PublishGrant,
    epoch: Instant,
    deadline: Instant,
    video_mid: Option<Mid>,
    video: VideoIn,
    audio: Option<OpusToAac>,
    /// The stream description sent as `Metadata` (shared with the VP8 transcoder's thread).
    info: Arc<Mutex<StreamInfo>>,
    video_clock: Clock,
    audio_clock: Clock,
    got_keyframe: bool,
    last_keyframe_request: Option<Instant>,
    want_keyframe: bool,
    segments: SegmentClock,
    rate: RateMeter,
    dropped: u64,
    /// The live session's WHEP feed: Opus goes to it as it came.
    whep: Option<Arc<WhepFeed>>,
    /// Input arrived since the last sweep: its keyframe and kick checks are due.
    touched: bool,
}

/// The packager's segment cuts as the session sees them: a segment opens at a keyframe and is
/// cut by the first keyframe at or past the target duration.
#[derive(Debug)]
struct SegmentClock {
    target_ms: u64,
    /// DTS of the open segment's first keyframe.
    start_ms: Option<u64>,
    /// A keyframe was requested for the open segment.
    requested: bool,
}

impl SegmentClock {
    fn new(target: Duration) -> SegmentClock {
        SegmentClock {
            target_ms: (target.as_millis() as u64).max(1),
            start_ms: None,
            requested: false,
        }
    }

    /// A keyframe at `dts_ms` went to the packager.
    fn keyframe(&mut self, dts_ms: u64) {
        if self
            .start_ms
            .is_none_or(|s| dts_ms.saturating_sub(s) >= self.target_ms)
        {
            self.start_ms = Some(dts_ms);
            self.requested = false;
        }
    }

    /// Whether the open segment, now at `dts_ms`, needs a keyframe that was not asked for yet.
    fn needs_keyframe(&self, dts_ms: u64) -> bool {
        !self.requested
            && self
                .start_ms
                .is_some_and(|s| dts_ms.saturating_sub(s) >= self.target_ms)
    }
}

/// Frames per second measured over the first [`RATE_FRAMES`] video frames.
#[derive(Debug, Default)]
struct RateMeter {
    first_ms: Option<u64>,
    frames: u64,
    done: bool,
}

impl RateMeter {
    /// A video frame at `dts_ms`; the rate once, when enough frames were seen.
    fn frame(&mut self, dts_ms: u64) -> Option<f64> {
        if self.done {
            return None;
        }
        let first = *self.first_ms.get_or_insert(dts_ms);
        self.frames += 1;
        if self.frames <= RATE_FRAMES || dts_ms <= first {
            return None;
        }
        self.done = true;
        let fps = (self.frames - 1) as f64 * 1000.0 / (dts_ms - first) as f64;
        Some((fps * 100.0).round() / 100.0)
    }
}

#[derive(Default)]
struct Clock {
    base: Option<(u64, u64, u64)>,
    last: u64,
}

impl Clock {
    /// RTP time → ms on the session clock: the track's first packet is placed at its arrival
    /// time since the session started, later ones follow the RTP clock.
    fn at(&mut self, rtp: u64, freq: u64, arrival_ms: u64) -> u64 {
        let (r0, w0, f) = *self.base.get_or_insert((rtp, arrival_ms, freq.max(1)));
        let ms = w0 + rtp.saturating_sub(r0) * 1000 / f;
        self.last = self.last.max(ms);
        self.last
    }
}

impl Session {
    fn send(&mut self, frame: MediaFrame) {
        // The socket loop serves every session: never wait on one consumer.
        if self.grant.frames.try_send(frame).is_err() {
            self.dropped += 1;
            if self.dropped % 100 == 1 {
                tracing::warn!(
                    dropped = self.dropped,
                    "WHIP frame queue full: dropping frames"
                );
            }
        }
    }

    /// Change the stream description and send it on as `Metadata`.
    fn update_info(&mut self, change: impl FnOnce(&mut StreamInfo)) {
        let info = match self.info.lock() {
            Ok(mut i) => {
                change(&mut i);
                i.clone()
            }
            Err(_) => return,
        };
        self.send(MediaFrame::Metadata(info));
    }

    /// One H.264 access unit at `dts` (ms).
    fn h264(&mut self, data: &[u8], dts: u64) {
        let VideoIn::H264(framer) = &mut self.video else {
            return;
        };
        let frames = framer.push(data, dts);
        // New parameter sets (the first, or a resolution change): describe them.
        let changed = frames
            .iter()
            .any(|f| f.sequence_header)
            .then_some((framer.profile, framer.sps_info));
        for f in frames {
            if f.keyframe && !f.sequence_header {
                self.got_keyframe = true;
                self.segments.keyframe(f.dts_ms);
            }
            self.send(MediaFrame::Video(f));
        }
        if let Some((Some((p, l)), sps)) = changed {
            self.update_info(|i| {
                i.video_profile = Some(p);
                i.video_level = Some(l);
                if let Some(sps) = sps {
                    i.width = Some(sps.width);
                    i.height = Some(sps.height);
                    if sps.frame_rate.is_some() {
                        i.frame_rate = sps.frame_rate;
                    }
                }
            });
        }
    }

    /// One VP8 frame at `pts` (ms): to the transcoder, from the first keyframe on.
    fn vp8(&mut self, data: &[u8], pts: u64, keyframe: bool) {
        let VideoIn::Vp8 {
            transcoder,
            keyframe_seen,
        } = &mut self.video
        else {
            return;
        };
        // The decoder cannot start on an interframe: wait for the keyframe asked for.
        *keyframe_seen |= keyframe;
        if !*keyframe_seen {
            return;
        }
        if let Some(t) = transcoder {
            t.push(data, pts);
        }
        if keyframe {
            self.got_keyframe = true;
            if let Some((w, h)) = vp8::keyframe_size(data) {
                let known = self
                    .info
                    .lock()
                    .is_ok_and(|i| i.width == Some(w) && i.height == Some(h));
                if !known {
                    self.update_info(|i| {
                        i.width = Some(w);
                        i.height = Some(h);
                    });
                }
            }
        }
    }

    /// Drain `poll_output`; `Some(reason)` when the session is over.
    fn drive(&mut self, socket: &UdpSocket) -> Option<EndReason> {
        loop {
            let out = match self.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => return Some(EndReason::ProtocolError(e.to_string())),
            };
            match out {
                Output::Timeout(t) => {
                    self.deadline = t;
                    break;
                }
                Output::Transmit(t) => {
                    let _ = socket.try_send_to(&t.contents, t.destination);
                }
                Output::Event(e) => {
                    if let Some(r) = self.event(e) {
                        return Some(r);
                    }
                }
            }
        }
        if !self.rtc.is_alive() {
            return Some(EndReason::Timeout);
        }
        None
    }

    fn event(&mut self, e: Event) -> Option<EndReason> {
        match e {
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                return Some(EndReason::Timeout);
            }
            Event::Connected => self.want_keyframe = true,
            Event::MediaAdded(m) if m.kind == MediaKind::Video => {
                self.video_mid = Some(m.mid);
                self.want_keyframe = true;
            }
            Event::MediaData(d) => {
                let arrival = d.network_time.saturating_duration_since(self.epoch);
                let arrival_ms = arrival.as_millis() as u64;
                let codec = d.params.spec().codec;
                match codec {
                    Codec::H264 | Codec::Vp8 => {
                        let dts =
                            self.video_clock
                                .at(d.time.numer(), d.time.denom() as u64, arrival_ms);
                        if !d.contiguous {
                            self.want_keyframe = true;
                        }
                        tracing::trace!(
                            rtp = d.time.numer(),
                            dts,
                            bytes = d.data.len(),
                            keyframe = d.is_keyframe(),
                            contiguous = d.contiguous,
                            seq = ?d.seq_range,
                            "WHIP video frame"
                        );
                        if codec == Codec::H264 {
                            self.h264(&d.data, dts);
                        } else {
                            self.vp8(&d.data, dts, d.is_keyframe());
                        }
                        let declared = self.info.lock().is_ok_and(|i| i.frame_rate.is_some());
                        if let Some(fps) = self.rate.frame(dts).filter(|_| !declared) {
                            self.update_info(|i| i.frame_rate = Some(fps));
                        }
                    }
                    Codec::Opus => {
                        let pts =
                            self.audio_clock
                                .at(d.time.numer(), d.time.denom() as u64, arrival_ms);
                        if let Some(a) = &self.audio {
                            a.push(&d.data, pts);
                        }
                        if let Some(feed) = self.whep.as_ref().filter(|f| f.has_viewers()) {
                            feed.send(Sample::Audio {
                                data: Arc::from(&d.data[..]),
                                ms: pts,
                            });
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        None
    }

    /// Ask for a keyframe when needed (start, loss, none yet, a segment to cut), throttled.
    fn request_keyframe(&mut self, now: Instant) {
        let segment_due = matches!(self.video, VideoIn::H264(_))
            && self.segments.needs_keyframe(self.video_clock.last);
        let due = self.want_keyframe
            || segment_due
            || (!self.got_keyframe
                && self
                    .last_keyframe_request
                    .is_none_or(|t| now.duration_since(t) >= KEYFRAME_RETRY));
        let throttled = self
            .last_keyframe_request
            .is_some_and(|t| now.duration_since(t) < Duration::from_millis(250));
        if !due || throttled || !self.rtc.is_connected() {
            return;
        }
        let Some(mid) = self.video_mid else { return };
        if let Some(mut w) = self.rtc.writer(mid) {
            let _ = w.request_keyframe(None, KeyframeRequestKind::Pli);
            self.want_keyframe = false;
            self.last_keyframe_request = Some(now);
            if segment_due {
                self.segments.requested = true;
            }
        }
    }

    /// Send `End` after the transcoders drained (off the runtime: they block briefly).
    fn finish(mut self, reason: EndReason) {
        self.rtc.disconnect();
        let audio = self.audio.take();
        let video = match &mut self.video {
            VideoIn::Vp8 { transcoder, .. } => transcoder.take(),
            VideoIn::H264(_) => None,
        };
        let frames = self.grant.frames.clone();
        tokio::spawn(async move {
            if audio.is_some() || video.is_some() {
                let _ = tokio::task::spawn_blocking(move || {
                    if let Some(v) = video {
                        v.finish();
                    }
                    if let Some(a) = audio {
                        a.finish();
                    }
                })
                .await;
            }
            let _ = frames.send(MediaFrame::End(reason)).await;
        });
    }
}

/// Who a datagram's source address belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Ingest(String),
    Viewer(String),
}

/// Everything the socket task owns.
struct Peers {
    sessions: HashMap<String, Session>,
    viewers: HashMap<String, ViewerSession>,
    feeds: HashMap<u64, FeedState>,
    routes: HashMap<SocketAddr, Route>,
}

impl Peers {
    /// The peer that takes `input` from `source`: the cached route when it still accepts,
    /// else a scan (new peers, ICE checks from new candidates), which refreshes the cache.
    fn route(&mut self, source: SocketAddr, input: &Input) -> Option<Route> {
        if let Some(r) = self.routes.get(&source) {
            let ok = match r {
                Route::Ingest(id) => self.sessions.get(id).is_some_and(|s| s.rtc.accepts(input)),
                Route::Viewer(id) => self.viewers.get(id).is_some_and(|v| v.rtc.accepts(input)),
            };
            if ok {
                return Some(r.clone());
            }
        }
        let found = self
            .sessions
            .iter()
            .find(|(_, s)| s.rtc.accepts(input))
            .map(|(id, _)| Route::Ingest(id.clone()))
            .or_else(|| {
                self.viewers
                    .iter()
                    .find(|(_, v)| v.rtc.accepts(input))
                    .map(|(id, _)| Route::Viewer(id.clone()))
            })?;
        if self.routes.len() > 4 * (self.sessions.len() + self.viewers.len()) + 64 {
            // Stale addresses of ended peers: start over rather than grow.
            self.routes.clear();
        }
        self.routes.insert(source, found.clone());
        Some(found)
    }

    /// One datagram: to the peer it belongs to, whose output is driven at once.
    #[allow(clippy::too_many_arguments)]
    fn on_datagram(
        &mut self,
        data: &[u8],
        source: SocketAddr,
        local: SocketAddr,
        socket: &UdpSocket,
        ended: &mut Vec<(String, EndReason)>,
        ended_viewers: &mut Vec<String>,
        next_viewer_sweep: &mut Instant,
    ) {
        let Ok(contents) = data.try_into() else {
            return;
        };
        let now = Instant::now();
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: local,
                contents,
            },
        );
        match self.route(source, &input) {
            Some(Route::Ingest(id)) => {
                if let Some(s) = self.sessions.get_mut(&id) {
                    if let Err(e) = s.rtc.handle_input(input) {
                        tracing::debug!(error = %e, "WHIP input refused");
                    }
                    s.touched = true;
                    if let Some(r) = s.drive(socket) {
                        ended.push((id, r));
                    }
                }
            }
            Some(Route::Viewer(id)) => {
                if let Some(v) = self.viewers.get_mut(&id) {
                    if let Err(e) = v.rtc.handle_input(input) {
                        tracing::debug!(error = %e, "WHEP input refused");
                    }
                    if v.drive(socket).is_some() {
                        ended_viewers.push(id.clone());
                    }
                    *next_viewer_sweep =
                        (*next_viewer_sweep).min(v.deadline.max(now + VIEWER_TICK));
                    if v.take_keyframe_wanted() {
                        let feed = v.feed;
                        self.source_keyframe(feed);
                    }
                }
            }
            None => {}
        }
    }

    /// Ask the source of `feed` for a keyframe (the WHIP ingest task reads the flag; an RTMP
    /// source cannot be asked and sends its next one within its GOP).
    fn source_keyframe(&self, feed: u64) {
        if let Some(f) = self.feeds.get(&feed) {
            f.feed.want_keyframe();
        }
    }

    fn remove_viewer(&mut self, id: &str) -> Option<ViewerSession> {
        let v = self.viewers.remove(id)?;
        if let Some(f) = self.feeds.get_mut(&v.feed) {
            f.remove(id);
            if f.is_empty() {
                self.feeds.remove(&v.feed);
            }
        }
        Some(v)
    }

    /// One sample of a feed to each of its viewers; the viewers that ended go to `ended`.
    /// Returns the earliest timer of the viewers written to.
    fn fan_out(
        &mut self,
        msg: FeedMsg,
        socket: &UdpSocket,
        ended: &mut Vec<String>,
    ) -> Option<Instant> {
        let feed = self.feeds.get_mut(&msg.feed)?;
        let now = Instant::now();
        let (wallclock, rtp_ms) = match &msg.sample {
            Sample::Video { ms, .. } | Sample::Audio { ms, .. } => feed.clock(*ms, now),
            Sample::End => {
                ended.extend(feed.viewer_ids().iter().cloned());
                return None;
            }
        };
        let mut keyframe_wanted = false;
        let mut earliest: Option<Instant> = None;
        for id in feed.viewer_ids() {
            let Some(v) = self.viewers.get_mut(id) else {
                continue;
            };
            if msg.after_gap {
                v.lost_picture();
            }
            v.write(&msg.sample, wallclock, rtp_ms);
            if v.drive(socket).is_some() {
                ended.push(id.clone());
            }
            earliest = Some(earliest.map_or(v.deadline, |e| e.min(v.deadline)));
            keyframe_wanted |= v.take_keyframe_wanted();
        }
        if keyframe_wanted {
            self.source_keyframe(msg.feed);
        }
        earliest
    }
}

async fn run(
    socket: UdpSocket,
    local: SocketAddr,
    options: WhipOptions,
    mut rx: mpsc::Receiver<Cmd>,
    mut feeds_rx: mpsc::Receiver<FeedMsg>,
    task: Task,
    shutdown: CancellationToken,
) {
    let mut peers = Peers {
        sessions: HashMap::new(),
        viewers: HashMap::new(),
        feeds: HashMap::new(),
        routes: HashMap::new(),
    };
    let mut buf = vec![0u8; 2048];
    let mut next_viewer_sweep = Instant::now() + MAX_SLEEP;
    // Every session's kick and keyframe checks run at least this often; a session that got
    // input, or whose timer is due, is served at once. (Serving every session on every
    // datagram made the loop's cost grow with the square of the sessions.)
    let mut next_sweep = Instant::now() + MAX_SLEEP;
    // One timer, re-armed only when the loop's next moment changes (not one per datagram).
    let timer = tokio::time::sleep_until(next_sweep.into());
    tokio::pin!(timer);
    loop {
        let now = Instant::now();
        let next = if peers.sessions.is_empty() && peers.viewers.is_empty() {
            // Nothing to serve: sleep until a datagram or a command comes.
            now + IDLE_SLEEP
        } else {
            peers
                .sessions
                .values()
                .map(|s| s.deadline)
                .min()
                .unwrap_or(now + MAX_SLEEP)
                .min(next_sweep.max(now))
                .min(next_viewer_sweep)
        };
        if timer.deadline() != next.into() {
            timer.as_mut().reset(next.into());
        }
        let mut ended: Vec<(String, EndReason)> = Vec::new();
        let mut ended_viewers: Vec<String> = Vec::new();
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                let Ok((n, source)) = r else { continue };
                // Take what else is waiting (bounded), one loop turn for the lot.
                let mut datagram = Some((n, source));
                let mut taken = 0;
                while let Some((n, source)) = datagram {
                    peers.on_datagram(&buf[..n], source, local, &socket, &mut ended, &mut ended_viewers, &mut next_viewer_sweep);
                    taken += 1;
                    datagram = (taken < RECV_BATCH).then(|| socket.try_recv_from(&mut buf).ok()).flatten();
                }
            }
            // (A closed channel disables this branch: the ingest task of a server with viewer
            // sockets has no feed.)
            Some(msg) = feeds_rx.recv() => {
                let mut due = peers.fan_out(msg, &socket, &mut ended_viewers);
                // Take what else is queued in the same wake-up (bounded: commands and
                // datagrams get their turn).
                for _ in 0..64 {
                    let Ok(msg) = feeds_rx.try_recv() else { break };
                    let d = peers.fan_out(msg, &socket, &mut ended_viewers);
                    due = match (due, d) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                if let Some(d) = due {
                    next_viewer_sweep = next_viewer_sweep.min(d.max(now + VIEWER_TICK));
                }
            }
            cmd = rx.recv() => match cmd {
                Some(Cmd::Start { id, negotiated, grant, reply }) => {
                    match start_session(negotiated, grant, &options) {
                        Ok(mut s) => {
                            if let Some(r) = s.drive(&socket) {
                                s.finish(r);
                            } else {
                                peers.sessions.insert(id.clone(), s);
                                metrics::gauge!("whip_sessions_active").set(peers.sessions.len() as f64);
                            }
                            let _ = reply.send(Ok(()));
                        }
                        Err(e) => { let _ = reply.send(Err(e)); }
                    }
                }
                Some(Cmd::View { id, viewer, feed, reply }) => {
                    let mut v = ViewerSession::new(viewer, feed.id);
                    if v.drive(&socket).is_none() {
                        next_viewer_sweep = next_viewer_sweep.min(v.deadline.max(now + VIEWER_TICK));
                        peers
                            .feeds
                            .entry(feed.id)
                            .or_insert_with(|| FeedState::new(feed.clone(), task.worker))
                            .add(id.clone());
                        peers.viewers.insert(id, v);
                        task.publish(peers.viewers.len());
                        let _ = reply.send(Ok(()));
                    } else {
                        let _ = reply.send(Err(WhipError::Unavailable));
                    }
                }
                Some(Cmd::End { id, reply }) => {
                    let found = if peers.sessions.contains_key(&id) {
                        ended.push((id, EndReason::PublisherClosed));
                        true
                    } else if peers.viewers.contains_key(&id) {
                        ended_viewers.push(id);
                        true
                    } else {
                        false
                    };
                    let _ = reply.send(found);
                }
                None => break,
            },
            () = &mut timer => {}
            () = shutdown.cancelled() => break,
        }
        let now = Instant::now();
        let sweep = now >= next_sweep;
        if sweep {
            next_sweep = now + MAX_SLEEP;
        }
        for (id, s) in peers.sessions.iter_mut() {
            if !(sweep || std::mem::take(&mut s.touched) || s.deadline <= now) {
                continue;
            }
            if ended.iter().any(|(e, _)| e == id) {
                continue;
            }
            if s.grant.kick.is_cancelled() || s.grant.frames.is_closed() {
                ended.push((id.clone(), EndReason::Kicked));
                continue;
            }
            if s.whep.as_ref().is_some_and(|f| f.take_keyframe_wanted()) {
                s.want_keyframe = true;
            }
            if s.deadline <= now {
                if let Err(e) = s.rtc.handle_input(Input::Timeout(now)) {
                    ended.push((id.clone(), EndReason::ProtocolError(e.to_string())));
                    continue;
                }
                if let Some(r) = s.drive(&socket) {
                    ended.push((id.clone(), r));
                    continue;
                }
            }
            s.request_keyframe(now);
            if let Some(r) = s.drive(&socket) {
                ended.push((id.clone(), r));
            }
        }
        if now >= next_viewer_sweep {
            let mut earliest = now + MAX_SLEEP;
            let mut wanted = Vec::new();
            for (id, v) in peers.viewers.iter_mut() {
                if v.deadline <= now {
                    if v.rtc.handle_input(Input::Timeout(now)).is_err()
                        || v.drive(&socket).is_some()
                    {
                        ended_viewers.push(id.clone());
                        continue;
                    }
                    if v.take_keyframe_wanted() {
                        wanted.push(v.feed);
                    }
                }
                earliest = earliest.min(v.deadline);
            }
            next_viewer_sweep = earliest.max(now + VIEWER_TICK);
            for feed in wanted {
                peers.source_keyframe(feed);
            }
        }
        for (id, reason) in ended {
            if let Some(s) = peers.sessions.remove(&id) {
                tracing::info!(session = %id, reason = reason.as_str(), "WHIP session ended");
                s.finish(reason);
                metrics::gauge!("whip_sessions_active").set(peers.sessions.len() as f64);
            }
        }
        for id in ended_viewers {
            if let Some(mut v) = peers.remove_viewer(&id) {
                task.publish(peers.viewers.len());
                tracing::info!(viewer = %id, frames = v.frames_sent(), "WHEP viewer left");
                v.rtc.disconnect();
                // Flush what the close queued (the DTLS close alert tells the browser now).
                let _ = v.drive(&socket);
            }
        }
    }
    for (_, s) in peers.sessions.drain() {
        s.finish(EndReason::Shutdown);
    }
    for (_, mut v) in peers.viewers.drain() {
        v.rtc.disconnect();
        let _ = v.drive(&socket);
    }
    // (An ingest task with viewer sockets never had a viewer: its label is a viewer task's.)
    if task.count.load(Ordering::Relaxed) > 0 {
        task.publish(0);
    }
    for (_, f) in peers.feeds.drain() {
        f.clear();
    }
}

fn start_session(
    n: Negotiated,
    grant: PublishGrant,
    options: &WhipOptions,
) -> Result<Session, WhipError> {
    let audio = if n.has_audio {
        match OpusToAac::start(grant.frames.clone()) {
            Ok(a) => Some(a),
            Err(e) => {
                // Video still flows: HLS without sound beats no lesson.
                tracing::error!(error = %e, "WHIP audio transcoder unavailable: video only");
                None
            }
        }
    } else {
        None
    };
    let info = Arc::new(Mutex::new(StreamInfo {
        video_codec: Some(VideoCodec::H264),
        audio_codec: audio.as_ref().map(|_| AudioCodec::Aac),
        audio_sample_rate: audio.as_ref().map(|_| 48_000),
        audio_channels: audio.as_ref().map(|_| 2),
        encoder: Some(match n.video {
            IngestVideo::H264 => "whip".into(),
            IngestVideo::Vp8 => "whip (VP8 transcoded to H.264)".into(),
        }),
        ..StreamInfo::default()
    }));
    let video = match n.video {
        IngestVideo::H264 => VideoIn::H264(H264Framer::default()),
        IngestVideo::Vp8 => {
            // Negotiation refuses VP8 without a pipeline; a pipeline that fails to start
            // refuses the session (nothing would reach HLS).
            let description = options.vp8_pipeline.as_deref().ok_or_else(|| {
                WhipError::Unsupported("VP8 → H.264 transcoding is turned off".into())
            })?;
            let t = Vp8ToH264::start(
                description,
                options.segment_duration,
                grant.frames.clone(),
                info.clone(),
            )
            .map_err(|e| {
                tracing::error!(error = %e, "WHIP VP8 transcoder unavailable");
                WhipError::Unavailable
            })?;
            VideoIn::Vp8 {
                transcoder: Some(t),
                keyframe_seen: false,
            }
        }
    };
    let first = info.lock().map(|i| i.clone()).unwrap_or_default();
    let whep = grant.whep.clone();
    let mut s = Session {
        rtc: n.rtc,
        grant,
        epoch: n.created,
        deadline: Instant::now(),
        touched: true,
        video_mid: None,
        video,
        audio,
        info,
        video_clock: Clock::default(),
        audio_clock: Clock::default(),
        got_keyframe: false,
        last_keyframe_request: None,
        want_keyframe: true,
        segments: SegmentClock::new(options.segment_duration),
        rate: RateMeter::default(),
        dropped: 0,
        whep,
    };
    s.send(MediaFrame::Metadata(first));
    if s.audio.is_some() {
        // Before any video: the packager decides at the first keyframe whether there is audio.
        s.send(MediaFrame::Audio(super::audio::aac_sequence_header(0)));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_segment_clock_follows_the_packagers_cuts() {
        let mut c = SegmentClock::new(Duration::from_secs(2));
        assert!(
            !c.needs_keyframe(5_000),
            "nothing before the first keyframe"
        );
        c.keyframe(1_000);
        assert!(!c.needs_keyframe(2_966));
        assert!(c.needs_keyframe(3_000));
        // An early keyframe (a loss recovery) does not cut: the segment still needs one.
        c.keyframe(2_500);
        assert_eq!(c.start_ms, Some(1_000));
        c.requested = true;
        assert!(!c.needs_keyframe(3_100), "asked once per segment");
        c.keyframe(3_066);
        assert_eq!(c.start_ms, Some(3_066));
        assert!(!c.requested);
        assert!(c.needs_keyframe(5_066));
    }

    #[test]
    fn the_rate_is_measured_once_over_the_first_frames() {
        let mut m = RateMeter::default();
        let mut got = Vec::new();
        for n in 0..200u64 {
            if let Some(r) = m.frame(1_000 + n * 1000 / 30) {
                got.push(r);
            }
        }
        assert_eq!(got.len(), 1);
        assert!((got[0] - 30.0).abs() < 0.2, "{got:?}");
    }
}
