//! A WHEP viewer inside the WebRTC socket task, and the per-feed state the task keeps: which
//! viewers watch a feed and the feed's clock.
//!
//! A viewer takes samples from the time its DTLS is up, video from a keyframe on: at the
//! start, after a gap in the feed, and after it reported a broken picture (PLI/FIR) — each
//! time the source is asked for a keyframe (a WHIP publisher sends one at once; an RTMP source
//! sends its next one within its GOP).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use str0m::{
    Event, IceConnectionState, Output, Rtc,
    format::Codec,
    media::{Frequency, MediaKind, MediaTime, Mid, Pt},
};
use tokio::net::UdpSocket;

use crate::whep::{Sample, Viewer, WhepFeed};

/// A feed's clock drifts this far from the wall clock (a publisher replaced after a pause,
/// a stall upstream) before it is set again: RTP time then follows the wall clock, as the
/// viewers' jitter buffers expect.
const REANCHOR: Duration = Duration::from_secs(1);

/// The socket task's view of one feed.
pub(crate) struct FeedState {
    pub feed: Arc<WhepFeed>,
    /// This task's index among the viewer tasks (its slot in the feed's counts).
    worker: usize,
    viewers: Vec<String>,
    /// RTP time 0.
    epoch: Instant,
    /// (wall clock, session ms) of the last anchor.
    anchor: Option<(Instant, u64)>,
}

impl FeedState {
    pub fn new(feed: Arc<WhepFeed>, worker: usize) -> FeedState {
        FeedState {
            feed,
            worker,
            viewers: Vec::new(),
            epoch: Instant::now(),
            anchor: None,
        }
    }

    pub fn add(&mut self, viewer: String) {
        self.viewers.push(viewer);
        self.publish_count();
    }

    pub fn remove(&mut self, viewer: &str) {
        self.viewers.retain(|v| v != viewer);
        self.publish_count();
    }

    pub fn is_empty(&self) -> bool {
        self.viewers.is_empty()
    }

    pub fn viewer_ids(&self) -> &[String] {
        &self.viewers
    }

    /// The socket task stops: the outputs stop converting.
    pub fn clear(&self) {
        self.feed.viewers[self.worker].store(0, std::sync::atomic::Ordering::Relaxed);
    }

    fn publish_count(&self) {
        self.feed.viewers[self.worker]
            .store(self.viewers.len(), std::sync::atomic::Ordering::Relaxed);
    }

    /// The wall clock and RTP milliseconds of a sample at publisher time `ms`, arriving `now`.
    pub fn clock(&mut self, ms: u64, now: Instant) -> (Instant, u64) {
        let at = self.anchor.and_then(|(t0, m0)| {
            if ms >= m0 {
                t0.checked_add(Duration::from_millis(ms - m0))
            } else {
                t0.checked_sub(Duration::from_millis(m0 - ms))
            }
        });
        let drift_ok = |t: Instant| {
            let d = if t > now { t - now } else { now - t };
            d <= REANCHOR
        };
        let wall = match at {
            Some(t) if drift_ok(t) => t,
            _ => {
                self.anchor = Some((now, ms));
                now
            }
        };
        let rtp_ms = wall.saturating_duration_since(self.epoch).as_millis() as u64;
        (wall, rtp_ms)
    }
}

/// One WHEP viewer.
pub(crate) struct ViewerSession {
    pub rtc: Rtc,
    pub feed: u64,
    pub deadline: Instant,
    video: Option<(Mid, Option<Pt>)>,
    audio: Option<(Mid, Option<Pt>)>,
    connected: bool,
    /// Inter frames are skipped until a keyframe.
    waiting_keyframe: bool,
    /// The source should be asked for a keyframe (read by the task).
    keyframe_wanted: bool,
    frames: u64,
}

impl ViewerSession {
    pub fn new(viewer: Viewer, feed: u64) -> ViewerSession {
        ViewerSession {
            rtc: viewer.rtc,
            feed,
            deadline: viewer.created,
            video: None,
            audio: None,
            connected: false,
            waiting_keyframe: true,
            keyframe_wanted: false,
            frames: 0,
        }
    }

    pub fn frames_sent(&self) -> u64 {
        self.frames
    }

    /// The picture broke (a gap upstream): wait for a keyframe and ask for one.
    pub fn lost_picture(&mut self) {
        self.waiting_keyframe = true;
        self.keyframe_wanted = true;
    }

    pub fn take_keyframe_wanted(&mut self) -> bool {
        std::mem::take(&mut self.keyframe_wanted)
    }

    /// Drain `poll_output`; `Some(())` when the viewer is gone.
    pub fn drive(&mut self, socket: &UdpSocket) -> Option<()> {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.deadline = t;
                    break;
                }
                Ok(Output::Transmit(t)) => {
                    let _ = socket.try_send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(e)) => {
                    if self.event(e) {
                        return Some(());
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "WHEP viewer failed");
                    return Some(());
                }
            }
        }
        (!self.rtc.is_alive()).then_some(())
    }

    /// True when the viewer is gone.
    fn event(&mut self, e: Event) -> bool {
        match e {
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => return true,
            Event::Connected => {
                self.connected = true;
                self.lost_picture();
            }
            Event::MediaAdded(m) => match m.kind {
                MediaKind::Video => self.video = Some((m.mid, None)),
                MediaKind::Audio => self.audio = Some((m.mid, None)),
            },
            Event::KeyframeRequest(_) => self.lost_picture(),
            _ => {}
        }
        false
    }

    /// The payload type to send `codec` with on `mid`: for H.264, packetization mode 1, the
    /// highest profile the viewer accepts (the source is usually High; browsers decode it
    /// whatever was negotiated, but a matching profile is what the SDP promises).
    fn pick_pt(rtc: &mut Rtc, mid: Mid, codec: Codec) -> Option<Pt> {
        let w = rtc.writer(mid)?;
        let rank = |profile: Option<u32>| match profile.map(|p| p >> 16) {
            Some(0x64) => 0,
            Some(0x4d) => 1,
            Some(0x42) => 2,
            _ => 3,
        };
        w.payload_params()
            .filter(|p| p.spec().codec == codec)
            .filter(|p| codec != Codec::H264 || p.spec().format.packetization_mode == Some(1))
            .min_by_key(|p| rank(p.spec().format.profile_level_id))
            .map(|p| p.pt())
    }

    /// Write one sample (shared bytes; str0m packetizes and encrypts it for this viewer).
    pub fn write(&mut self, sample: &Sample, wallclock: Instant, rtp_ms: u64) {
        if !self.connected {
            return;
        }
        let (slot, codec, data, time) = match sample {
            Sample::Video { data, keyframe, .. } => {
                if self.waiting_keyframe && !keyframe {
                    return;
                }
                self.waiting_keyframe = false;
                (
                    &mut self.video,
                    Codec::H264,
                    data,
                    MediaTime::new(rtp_ms * 90, Frequency::NINETY_KHZ),
                )
            }
            Sample::Audio { data, .. } => (
                &mut self.audio,
                Codec::Opus,
                data,
                MediaTime::new(rtp_ms * 48, Frequency::FORTY_EIGHT_KHZ),
            ),
            Sample::End => return,
        };
        let Some((mid, pt)) = slot else { return };
        let mid = *mid;
        let pt = match pt {
            Some(pt) => *pt,
            None => match Self::pick_pt(&mut self.rtc, mid, codec) {
                Some(p) => *pt.insert(p),
                None => return,
            },
        };
        let Some(w) = self.rtc.writer(mid) else {
            return;
        };
        match w.write(pt, wallclock, time, data.clone()) {
            Ok(()) => self.frames += 1,
            Err(e) => tracing::debug!(error = %e, "WHEP write refused"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_feed_clock_follows_media_time_and_re_anchors_after_a_pause() {
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        let mut f = FeedState::new(WhepFeed::new(1, Arc::from(vec![tx])), 0);
        let t0 = f.epoch + Duration::from_millis(100);
        let (w, rtp) = f.clock(5_000, t0);
        assert_eq!((w, rtp), (t0, 100));
        // 40 ms of media later, arriving 10 ms late: media time wins (the jitter buffer's job).
        let (w, rtp) = f.clock(5_040, t0 + Duration::from_millis(50));
        assert_eq!((w, rtp), (t0 + Duration::from_millis(40), 140));
        // B-frames: a presentation time before the anchor is fine.
        assert_eq!(f.clock(4_980, t0 + Duration::from_millis(60)).1, 80);
        // The same clock after 5 s of silence (a stall upstream): RTP time follows the wall
        // clock, forward, never back.
        let late = t0 + Duration::from_secs(5);
        let (w, rtp) = f.clock(5_100, late);
        assert_eq!((w, rtp), (late, 5_100));
        assert_eq!(f.clock(5_133, late + Duration::from_millis(33)).1, 5_133);
        // A replacing publisher whose clock starts again at 0: RTP time still goes forward.
        let next = late + Duration::from_millis(500);
        assert_eq!(f.clock(0, next), (next, 5_600));
    }
}
