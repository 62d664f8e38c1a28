//! One publisher's live output: frames from the ingest (RTMP, WHIP) → the [`Packager`] →
//! MPEG-TS segments in the session's spool directory.
//!
//! ```text
//!  RTMP connection task ──frame──> LiveOutput (inline)  ─┐
//!  WHIP ──frames (mpsc)──> spawn_publisher task ──> LiveOutput ─┤ Packager (TS mux, cut at
//!                                                               │ keyframes) → segment-N.ts.part
//!  PublisherEvent (mpsc) <── Started / SegmentClosed{segment-N.ts} / Ended ─┘ (renamed at the cut)
//! ```
//!
//! [`LiveOutput`] is synchronous: remuxing a frame is a few microseconds of copying, so it
//! needs no task or thread of its own. The RTMP connection task runs it inline, right after
//! parsing the frame (no channel, no wake-up of another task per frame); WHIP, whose frames
//! come out of its UDP task and an audio transcoder, hands them over a bounded channel to
//! [`spawn_publisher`]. Writes go to the spool in 128 KiB pieces with plain `std::fs` calls:
//! they land in the page cache in microseconds, and a thread hop per write would cost more than
//! the write. A segment is written as `segment-N.ts.part` and renamed when it closes, so a crash
//! leaves the unfinished segment recognisable and every `.ts` in the spool complete. Inline or
//! behind the bounded channel, a stalled disk slows the publisher's TCP, not our memory.
//!
//! Size: about 620 lines of code; over 800 with its unit tests.

use std::{
    fs::File,
    io::Write,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use time::OffsetDateTime;
use tokio::sync::mpsc;

use crate::frame::{EndReason, MediaFrame, StreamInfo};
use crate::llhls::{LlLimits, LlOutput, LlPackager, LlPlaylist, LlPlaylistConfig};
use crate::packager::{Closed, Packager, SegmentLimits, Step};
use crate::whep::{WhepOutput, WhepStage};

/// Where and how a publisher's segments are written.
#[derive(Debug, Clone)]
pub struct PackagerConfig {
    /// The session's spool directory (exists).
    pub dir: PathBuf,
    /// Segment lengths: cut at the first IDR at or past the target, never past the maximum
    /// (the playlists' fixed `EXT-X-TARGETDURATION`).
    pub segments: SegmentLimits,
    /// Index of the first segment (`segment-%08d.ts`); each publisher of a session starts a
    /// new range so names never collide across reconnects.
    pub start_index: u64,
    /// Where this publisher's first keyframe goes on the session timeline: where the previous
    /// publisher's last segment ended (`SegmentClosed::end_ms`), 0 for the first.
    pub timeline_start_ms: u64,
    /// The session's LL-HLS output, when LL-HLS is on.
    pub ll: Option<Arc<LlShared>>,
    /// The session's WHEP feed, when WHEP is on.
    pub whep: Option<WhepOutput>,
}

/// When LL-HLS parts are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlMode {
    /// Only while someone fetched the LL playlist or a part in the last minute: a stream
    /// nobody watches at low latency costs nothing more than plain HLS. The first LL viewer
    /// of a stream waits for its next keyframe.
    OnDemand,
    /// For every stream, from its first keyframe.
    Always,
}

/// How long after the last LL request an on-demand output keeps making parts.
const LL_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

/// The LL-HLS output of one live session: written by its publishers' [`LiveOutput`]s, read by
/// the HLS routes, which wait for parts on [`LlShared::subscribe`] (woken when a part is in,
/// never polling).
pub struct LlShared {
    pub playlist: Mutex<LlPlaylist>,
    pub limits: LlLimits,
    mode: LlMode,
    changed: tokio::sync::watch::Sender<u64>,
    /// Until when (ms on [`clock_ms`]) someone wants parts.
    wanted_until: AtomicU64,
    /// The publisher whose parts the playlist takes ([`LlShared::claim`]): a replaced
    /// publisher still draining must not add its parts to its successor's segments.
    owner: AtomicU64,
}

/// Milliseconds since the first call: a monotonic clock cheap enough to read per request.
fn clock_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

impl LlShared {
    pub fn new(limits: LlLimits, window_segments: usize, mode: LlMode) -> Arc<LlShared> {
        Arc::new(LlShared {
            playlist: Mutex::new(LlPlaylist::new(LlPlaylistConfig::new(
                limits,
                window_segments,
            ))),
            limits,
            mode,
            changed: tokio::sync::watch::Sender::new(0),
            wanted_until: AtomicU64::new(0),
            owner: AtomicU64::new(0),
        })
    }

    /// Where the LL playlist stands, for a node that continues the session.
    pub fn resume_point(&self) -> Option<crate::llhls::LlResumePoint> {
        self.playlist.lock().ok().map(|p| p.resume_point())
    }

    /// Go on from another node's LL playlist (a new session's, before its first part).
    pub fn continue_from(&self, from: crate::llhls::LlResumePoint) {
        if let Ok(mut p) = self.playlist.lock() {
            p.continue_from(from);
        }
    }

    /// A viewer asked for the LL playlist or a part: keep (or start) making parts.
    pub fn want(&self) {
        self.wanted_until
            .fetch_max(clock_ms() + LL_IDLE.as_millis() as u64, Ordering::Relaxed);
    }

    fn wanted(&self) -> bool {
        self.mode == LlMode::Always || clock_ms() < self.wanted_until.load(Ordering::Relaxed)
    }

    /// Changes after this call wake the receiver.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn notify(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    /// The newest publisher of the session takes the playlist over; returns its claim. What the
    /// previous one made stays (its open segment is complete), and the new publisher's first
    /// segment follows a discontinuity.
    fn claim(&self) -> u64 {
        let Ok(mut p) = self.playlist.lock() else {
            return self.owner.fetch_add(1, Ordering::AcqRel) + 1;
        };
        p.publisher_ended();
        self.owner.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Run `f` on the playlist if `claim` still owns it (then wake the waiting requests).
    fn with_playlist(&self, claim: u64, f: impl FnOnce(&mut LlPlaylist)) -> bool {
        let Ok(mut p) = self.playlist.lock() else {
            return false;
        };
        // Checked under the lock: a successor's claim cannot slip in between.
        if self.owner.load(Ordering::Acquire) != claim {
            return false;
        }
        f(&mut p);
        drop(p);
        self.notify();
        true
    }

    /// The session is over: `EXT-X-ENDLIST`, and every waiting request answers.
    pub fn end(&self) {
        if let Ok(mut p) = self.playlist.lock() {
            p.end();
        }
        self.notify();
    }
}

impl std::fmt::Debug for LlShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlShared")
            .field("mode", &self.mode)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// One publisher's LL-HLS stage inside its [`LiveOutput`]: starts the packager at a keyframe
/// when parts are wanted, stops it at a segment boundary when they no longer are.
struct LlStage {
    shared: Arc<LlShared>,
    /// This publisher's claim on the playlist ([`LlShared::claim`]).
    claim: u64,
    packager: Option<LlPackager>,
    /// The last decoder configurations, for a packager started mid-publish.
    video_config: Option<MediaFrame>,
    audio_config: Option<MediaFrame>,
    timeline_start_ms: u64,
    /// The publisher's first video DTS (where `timeline_start_ms` is).
    origin_ms: Option<u64>,
    out: Vec<LlOutput>,
}

impl LlStage {
    fn new(shared: Arc<LlShared>, timeline_start_ms: u64) -> LlStage {
        LlStage {
            claim: shared.claim(),
            shared,
            packager: None,
            video_config: None,
            audio_config: None,
            timeline_start_ms,
            origin_ms: None,
            out: Vec::new(),
        }
    }

    fn push(&mut self, frame: &MediaFrame) {
        match frame {
            MediaFrame::Video(v) if v.sequence_header => self.video_config = Some(frame.clone()),
            MediaFrame::Audio(a) if a.sequence_header => self.audio_config = Some(frame.clone()),
            MediaFrame::Video(v) if self.origin_ms.is_none() => self.origin_ms = Some(v.dts_ms),
            _ => {}
        }
        let packager = match &mut self.packager {
            Some(p) => p,
            None => {
                let MediaFrame::Video(v) = frame else { return };
                if !v.keyframe || v.sequence_header || !self.shared.wanted() || !self.owns() {
                    return;
                }
                let origin = self.origin_ms.unwrap_or(v.dts_ms);
                let mut p = LlPackager::new(self.shared.limits, self.timeline_start_ms);
                p.set_origin(origin);
                for config in [&self.video_config, &self.audio_config]
                    .into_iter()
                    .flatten()
                {
                    p.push(config, &mut self.out);
                }
                self.packager.insert(p)
            }
        };
        packager.push(frame, &mut self.out);
        if self.out.is_empty() {
            return;
        }
        let segment_started = self
            .out
            .iter()
            .any(|o| matches!(o, LlOutput::Part(p) if p.starts_segment));
        let stop = segment_started && !self.shared.wanted();
        let now = OffsetDateTime::now_utc();
        let out = &mut self.out;
        let owner = self.shared.with_playlist(self.claim, |p| {
            for o in out.drain(..) {
                p.apply(o, now);
            }
            if stop {
                p.clear();
            }
        });
        if stop || !owner {
            // Replaced by a newer publisher: nothing more to make.
            self.out.clear();
            self.packager = None;
        }
    }

    fn owns(&self) -> bool {
        self.shared.owner.load(Ordering::Acquire) == self.claim
    }

    fn finish(&mut self) {
        if let Some(mut p) = self.packager.take() {
            p.finish(&mut self.out);
        }
        let now = OffsetDateTime::now_utc();
        let out = &mut self.out;
        self.shared.with_playlist(self.claim, |p| {
            for o in out.drain(..) {
                p.apply(o, now);
            }
            p.publisher_ended();
        });
        self.out.clear();
    }
}

/// What happens to a publisher's output, in order: `Started`, any number of
/// `SegmentClosed`, then exactly one `Ended`.
#[derive(Debug, Clone, PartialEq)]
pub enum PublisherEvent {
    Started {
        has_audio: bool,
    },
    SegmentClosed {
        path: PathBuf,
        duration_ns: u64,
        /// End of the segment on the session timeline, in ms.
        end_ms: u64,
        /// When the segment's first frame arrived (`EXT-X-PROGRAM-DATE-TIME`).
        started_at: OffsetDateTime,
    },
    Ended {
        reason: EndReason,
        error: Option<String>,
    },
}

/// Counters the session reads while the publisher runs.
#[derive(Debug, Default)]
pub struct PublisherStats {
    pub bytes_in: AtomicU64,
    pub video_frames: AtomicU64,
    pub audio_frames: AtomicU64,
    pub info: Mutex<Option<StreamInfo>>,
}

/// The file name of segment `index`.
pub fn segment_name(index: u64) -> String {
    format!("segment-{index:08}.ts")
}

/// One publisher's output stage: its packager and spool files, and the stages that get the
/// same frames — LL-HLS parts ([`LlStage`]) and WHEP ([`WhepStage`]).
///
/// Synchronous, so it runs wherever the frames are: inline in the RTMP connection task (no
/// channel and no task wake-up per frame: the publisher's socket read, its parsing and its
/// packaging are one step, and a slow disk slows the publisher's TCP directly), or behind
/// [`spawn_publisher`]'s channel for ingests that produce frames in another task (WHIP).
///
/// Ends exactly once — on [`MediaFrame::End`], [`LiveOutput::finish`], a packaging or spool
/// error, or when dropped — closing the open segment and sending [`PublisherEvent::Ended`].
pub struct LiveOutput {
    packager: Packager,
    ll: Option<LlStage>,
    whep: Option<WhepStage>,
    spool: Spool,
    events: mpsc::UnboundedSender<PublisherEvent>,
    stats: Arc<PublisherStats>,
    /// Set once the output has ended (and `Ended` was sent).
    stopped: Option<Stopped>,
}

/// Why a [`LiveOutput`] takes no more frames.
#[derive(Debug, Clone, PartialEq)]
pub struct Stopped {
    /// The end reason it reported (`PublisherEvent::Ended::reason`).
    pub reason: EndReason,
    /// The spool write error, if that is what ended it.
    pub error: Option<String>,
}

impl LiveOutput {
    pub fn new(
        config: PackagerConfig,
        events: mpsc::UnboundedSender<PublisherEvent>,
        stats: Arc<PublisherStats>,
    ) -> LiveOutput {
        LiveOutput {
            packager: Packager::new(
                config.segments,
                config.start_index,
                config.timeline_start_ms,
            ),
            ll: config
                .ll
                .map(|shared| LlStage::new(shared, config.timeline_start_ms)),
            whep: config.whep.map(WhepStage::new),
            spool: Spool::new(config.dir),
            events,
            stats,
            stopped: None,
        }
    }

    /// Take one frame ([`MediaFrame::End`] finishes). `Err` once the output has ended: the
    /// ingest should close the publisher's connection.
    pub fn push(&mut self, frame: MediaFrame) -> Result<(), Stopped> {
        if let Some(stopped) = &self.stopped {
            return Err(stopped.clone());
        }
        account(&self.stats, &frame);
        let frame = match frame {
            MediaFrame::End(reason) => {
                self.finish(reason.clone());
                return Err(self.stopped.clone().unwrap_or(Stopped {
                    reason,
                    error: None,
                }));
            }
            MediaFrame::Metadata(info) => {
                if let Ok(mut i) = self.stats.info.lock() {
                    *i = Some(info);
                }
                return Ok(());
            }
            f => f,
        };
        if let Some(ll) = &mut self.ll {
            ll.push(&frame);
        }
        if let Some(whep) = &mut self.whep {
            whep.push(&frame);
        }
        let step = match self.packager.push(frame) {
            Ok(step) => step,
            Err(e) => {
                self.spool.abandon();
                return Err(self.stop(EndReason::ProtocolError(e.to_string()), None));
            }
        };
        let result = match step {
            Step::Continue if self.packager.wants_flush() => self.spool.write(&mut self.packager),
            Step::Continue => Ok(()),
            Step::Started { index, has_audio } => {
                let _ = self.events.send(PublisherEvent::Started { has_audio });
                self.spool.open(index)
            }
            Step::Cut { closed, index } => self
                .spool
                .close(&mut self.packager, closed, &self.events)
                .and_then(|()| {
                    self.packager.begin_next();
                    self.spool.open(index)
                }),
        };
        if let Err(e) = result {
            self.spool.abandon();
            let error = format!("cannot write to the spool: {e}");
            return Err(self.stop(EndReason::PublisherClosed, Some(error)));
        }
        Ok(())
    }

    /// The publisher is gone (`reason`): close the open segment at its last frame and send
    /// `Ended`. No-op once ended.
    pub fn finish(&mut self, reason: EndReason) {
        if self.stopped.is_some() {
            return;
        }
        if let Some(ll) = &mut self.ll {
            ll.finish();
        }
        if let Some(whep) = &mut self.whep {
            whep.finish();
        }
        let mut error = None;
        if let Some(closed) = self.packager.finish()
            && let Err(e) = self.spool.close(&mut self.packager, closed, &self.events)
        {
            self.spool.abandon();
            error = Some(format!("cannot write to the spool: {e}"));
        }
        self.stop(reason, error);
    }

    /// Whether the output has ended.
    pub fn is_stopped(&self) -> bool {
        self.stopped.is_some()
    }

    fn stop(&mut self, reason: EndReason, error: Option<String>) -> Stopped {
        let stopped = Stopped { reason, error };
        let _ = self.events.send(PublisherEvent::Ended {
            reason: stopped.reason.clone(),
            error: stopped.error.clone(),
        });
        self.stopped = Some(stopped.clone());
        stopped
    }
}

impl Drop for LiveOutput {
    /// An output dropped without an end (its task was aborted, a panic) still closes its
    /// segment and reports `Ended`, so the session never waits for it.
    fn drop(&mut self) {
        self.finish(EndReason::PublisherClosed);
    }
}

impl std::fmt::Debug for LiveOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveOutput")
            .field("segment", &self.packager.current_index())
            .field("stopped", &self.stopped)
            .finish_non_exhaustive()
    }
}

/// Where a granted publish finds its [`LiveOutput`]: an ingest that can run it inline takes it
/// ([`OutputSlot::take`]) before its first frame; otherwise [`spawn_publisher`]'s task takes it
/// when the first frame arrives on the grant's channel.
#[derive(Clone, Default)]
pub struct OutputSlot(Arc<Mutex<Option<LiveOutput>>>);

impl OutputSlot {
    pub fn new(output: LiveOutput) -> OutputSlot {
        OutputSlot(Arc::new(Mutex::new(Some(output))))
    }

    /// The output, if nobody took it yet.
    pub fn take(&self) -> Option<LiveOutput> {
        self.0.lock().ok().and_then(|mut o| o.take())
    }
}

impl std::fmt::Debug for OutputSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let full = self.0.lock().map(|o| o.is_some()).unwrap_or(false);
        f.debug_tuple("OutputSlot")
            .field(&if full { "waiting" } else { "taken" })
            .finish()
    }
}

/// Feed the output in `slot` from a channel, for ingests that produce frames in another task
/// (WHIP). The task takes the output when the first frame arrives — unless the ingest took it
/// to run inline (RTMP), then it only waits for the channel to close. A channel closed without
/// [`MediaFrame::End`] ends the output as [`EndReason::PublisherClosed`]; an output that ends
/// (error) drops the receiver, which the sender sees as closed.
pub fn spawn_publisher(
    mut frames: mpsc::Receiver<MediaFrame>,
    slot: OutputSlot,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut output: Option<LiveOutput> = None;
        while let Some(frame) = frames.recv().await {
            let out = match &mut output {
                Some(out) => out,
                None => match slot.take() {
                    Some(out) => output.insert(out),
                    // The ingest runs it inline: nothing for this task to do.
                    None => return,
                },
            };
            if out.push(frame).is_err() {
                return;
            }
        }
        drop(frames);
        if let Some(mut out) = output.or_else(|| slot.take()) {
            out.finish(EndReason::PublisherClosed);
        }
    })
}

fn account(stats: &PublisherStats, frame: &MediaFrame) {
    match frame {
        MediaFrame::Video(v) => {
            stats
                .bytes_in
                .fetch_add(v.data.len() as u64, Ordering::Relaxed);
            stats.video_frames.fetch_add(1, Ordering::Relaxed);
        }
        MediaFrame::Audio(a) => {
            stats
                .bytes_in
                .fetch_add(a.data.len() as u64, Ordering::Relaxed);
            stats.audio_frames.fetch_add(1, Ordering::Relaxed);
        }
        _ => {}
    }
}

/// The open segment file (with the arrival time of its first frame). Bytes are written
/// straight from the packager's buffer (no second copy that a keyframe would grow).
struct Spool {
    dir: PathBuf,
    open: Option<(File, PathBuf, OffsetDateTime)>,
}

impl Spool {
    fn new(dir: PathBuf) -> Spool {
        Spool { dir, open: None }
    }

    fn part_path(dir: &Path, index: u64) -> PathBuf {
        dir.join(format!("{}.part", segment_name(index)))
    }

    fn open(&mut self, index: u64) -> std::io::Result<()> {
        let path = Self::part_path(&self.dir, index);
        let file = File::create(&path)?;
        // The segment opens on the frame that just arrived: its wall-clock start.
        self.open = Some((file, path, OffsetDateTime::now_utc()));
        Ok(())
    }

    fn write(&mut self, packager: &mut Packager) -> std::io::Result<()> {
        if let Some((file, _, _)) = &mut self.open {
            file.write_all(packager.output())?;
        }
        packager.consume_output();
        Ok(())
    }

    /// Write the segment's last bytes, rename it to its final name and announce it.
    fn close(
        &mut self,
        packager: &mut Packager,
        closed: Closed,
        events: &mpsc::UnboundedSender<PublisherEvent>,
    ) -> std::io::Result<()> {
        self.write(packager)?;
        let Some((file, part, started_at)) = self.open.take() else {
            return Ok(());
        };
        drop(file);
        let path = self.dir.join(segment_name(closed.index));
        std::fs::rename(&part, &path)?;
        let _ = events.send(PublisherEvent::SegmentClosed {
            path,
            duration_ns: closed.duration_ns,
            end_ms: closed.end_ms,
            started_at,
        });
        Ok(())
    }

    /// Drop the unfinished segment after a failure.
    fn abandon(&mut self) {
        if let Some((file, part, _)) = self.open.take() {
            drop(file);
            let _ = std::fs::remove_file(part);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::codec::VideoCodec;
    use crate::frame::VideoFrame;

    fn video(dts_ms: u64, keyframe: bool, header: bool) -> MediaFrame {
        let body = if header {
            vec![
                0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1F, 0xFF, 0xE1, 0, 4, 0x67, 0x64, 0, 0x1F, 1, 0, 2,
                0x68, 0xEE,
            ]
        } else {
            let kind = if keyframe { 0x65 } else { 0x41 };
            vec![
                if keyframe { 0x17 } else { 0x27 },
                1,
                0,
                0,
                0,
                0,
                0,
                0,
                3,
                kind,
                1,
                2,
            ]
        };
        MediaFrame::Video(VideoFrame {
            dts_ms,
            cts_ms: 0,
            keyframe,
            sequence_header: header,
            codec: VideoCodec::H264,
            data: Bytes::from(body),
        })
    }

    fn output(dir: &Path) -> (LiveOutput, mpsc::UnboundedReceiver<PublisherEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let config = PackagerConfig {
            dir: dir.to_path_buf(),
            segments: SegmentLimits {
                target: Duration::from_millis(100),
                max: Duration::from_millis(1_000),
            },
            start_index: 0,
            timeline_start_ms: 0,
            ll: None,
            whep: None,
        };
        (LiveOutput::new(config, tx, Arc::default()), rx)
    }

    fn ll_output(dir: &Path, ll: &Arc<LlShared>) -> LiveOutput {
        let (tx, _rx) = mpsc::unbounded_channel();
        let config = PackagerConfig {
            dir: dir.to_path_buf(),
            segments: SegmentLimits {
                target: Duration::from_millis(1_000),
                max: Duration::from_millis(2_000),
            },
            start_index: 0,
            timeline_start_ms: 0,
            ll: Some(ll.clone()),
            whep: None,
        };
        LiveOutput::new(config, tx, Arc::default())
    }

    fn ll_shared(mode: LlMode) -> Arc<LlShared> {
        let limits = LlLimits {
            part_target: Duration::from_millis(200),
            segment_target: Duration::from_millis(1_000),
            segment_max: Duration::from_millis(2_000),
        };
        LlShared::new(limits, 3, mode)
    }

    /// Publish `from..to` frames of 40 ms (an IDR every 25 frames) into `out`.
    fn publish(out: &mut LiveOutput, from: u64, to: u64) {
        for i in from..to {
            out.push(video(i * 40, i % 25 == 0, false)).unwrap();
        }
    }

    fn parts_of(ll: &LlShared) -> usize {
        let p = ll.playlist.lock().unwrap();
        p.render("", None, false).matches("#EXT-X-PART:").count()
    }

    #[test]
    fn on_demand_ll_parts_start_at_the_keyframe_after_the_first_request() {
        let dir = std::env::temp_dir().join(format!("live-ll-demand-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ll = ll_shared(LlMode::OnDemand);
        let mut out = ll_output(&dir, &ll);
        out.push(video(0, true, true)).unwrap();
        publish(&mut out, 0, 60);
        assert_eq!(parts_of(&ll), 0, "nobody asked: no parts");
        ll.want();
        let changes = ll.subscribe();
        // The request came between keyframes (frame 60 of 25-frame GOPs): parts from frame 75.
        publish(&mut out, 60, 74);
        assert_eq!(parts_of(&ll), 0);
        assert!(!changes.has_changed().unwrap());
        publish(&mut out, 74, 120);
        assert!(parts_of(&ll) >= 8, "{}", parts_of(&ll));
        assert!(changes.has_changed().unwrap(), "waiting requests are woken");
        out.finish(EndReason::PublisherClosed);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_replaced_publisher_adds_nothing_to_its_successors_ll_segments() {
        let dir = std::env::temp_dir().join(format!("live-ll-claim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ll = ll_shared(LlMode::Always);
        let mut old = ll_output(&dir, &ll);
        old.push(video(0, true, true)).unwrap();
        publish(&mut old, 0, 40);
        let before = parts_of(&ll);
        assert!(before > 0);
        // The successor connects (claims the playlist) while the old connection still sends.
        let mut new = ll_output(&dir, &ll);
        publish(&mut old, 40, 80);
        old.finish(EndReason::Kicked);
        assert_eq!(
            parts_of(&ll),
            before,
            "the old publisher's late parts are not listed"
        );
        new.push(video(0, true, true)).unwrap();
        publish(&mut new, 0, 40);
        let text = ll.playlist.lock().unwrap().render("", None, false);
        assert!(parts_of(&ll) > before, "{text}");
        assert!(text.contains("#EXT-X-DISCONTINUITY"), "{text}");
        assert_eq!(text.matches("#EXT-X-MAP:").count(), 2, "{text}");
        new.finish(EndReason::PublisherClosed);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn drain(rx: &mut mpsc::UnboundedReceiver<PublisherEvent>) -> Vec<PublisherEvent> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    #[test]
    fn an_inline_output_writes_segments_and_ends_once() {
        let dir = std::env::temp_dir().join(format!("live-inline-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (mut out, mut rx) = output(&dir);
        out.push(video(0, true, true)).unwrap();
        for i in 0..10 {
            out.push(video(i * 40, i % 3 == 0, false)).unwrap();
        }
        out.finish(EndReason::Kicked);
        out.finish(EndReason::PublisherClosed); // no-op
        assert!(out.push(video(500, true, false)).is_err());
        drop(out); // no second Ended
        let events = drain(&mut rx);
        assert!(matches!(
            events[0],
            PublisherEvent::Started { has_audio: false }
        ));
        let closed: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                PublisherEvent::SegmentClosed { path, .. } => Some(path.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(closed.len(), 4, "3 cuts and the last segment: {events:?}");
        for path in &closed {
            let bytes = std::fs::read(path).unwrap();
            assert!(!bytes.is_empty() && bytes.len() % 188 == 0 && bytes[0] == 0x47);
        }
        let ended: Vec<_> = events
            .iter()
            .filter(|e| matches!(e, PublisherEvent::Ended { .. }))
            .collect();
        assert_eq!(
            ended,
            [&PublisherEvent::Ended {
                reason: EndReason::Kicked,
                error: None
            }]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn the_channel_task_runs_the_output_unless_the_ingest_took_it() {
        let dir = std::env::temp_dir().join(format!("live-channel-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Behind the channel (WHIP): the task takes the output at the first frame.
        let (out, mut rx) = output(&dir);
        let slot = OutputSlot::new(out);
        let (tx, frames) = mpsc::channel(8);
        let task = spawn_publisher(frames, slot.clone());
        tx.send(video(0, true, true)).await.unwrap();
        tx.send(video(0, true, false)).await.unwrap();
        drop(tx); // closed without End: PublisherClosed
        task.await.unwrap();
        assert!(slot.take().is_none());
        let events = drain(&mut rx);
        assert!(matches!(
            events.last(),
            Some(PublisherEvent::Ended {
                reason: EndReason::PublisherClosed,
                error: None
            })
        ));
        // Taken by the ingest (RTMP): the task leaves it alone and ends with the channel.
        let (out, mut rx) = output(&dir);
        let slot = OutputSlot::new(out);
        let (tx, frames) = mpsc::channel(8);
        let task = spawn_publisher(frames, slot.clone());
        let mut inline = slot.take().unwrap();
        drop(tx);
        task.await.unwrap();
        assert!(drain(&mut rx).is_empty());
        inline
            .push(MediaFrame::End(EndReason::Timeout))
            .unwrap_err();
        assert_eq!(
            drain(&mut rx),
            [PublisherEvent::Ended {
                reason: EndReason::Timeout,
                error: None
            }]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
