//! Low-Latency HLS (RFC 8216bis §4.4.4.9, §6.2.5), sans-IO: publisher frames → CMAF parts
//! ([`LlPackager`]), and the LL playlist those parts make ([`LlPlaylist`]) with its blocking
//! reload rules, delta updates and preload hints. The I/O around it (who feeds frames, who
//! waits for a part) is [`crate::live`]'s and the service's.
//!
//! Parts and segments:
//! - A part is one fMP4 fragment ([`crate::fmp4`]) of at most the part target: a frame joins
//!   the open part only if the part, with that frame, stays within the target. A part that
//!   starts with an IDR is `INDEPENDENT=YES`.
//! - A segment is its parts, back to back (a CMAF segment may hold several fragments). It is
//!   cut at the first IDR at or past the segment target — as the TS packager cuts — and never
//!   grows past the maximum (`EXT-X-TARGETDURATION`).
//! - Video durations are exact: a part closes when the frame after its last one arrives. AAC
//!   frames are stamped on a sample clock (1024 samples a frame, resynchronised when the
//!   publisher's timestamps move more than half a frame away), so the audio track has no
//!   gaps or overlaps from millisecond rounding.
//! - A new decoder configuration (a resolution change) makes a new init segment, used from
//!   the next segment on (`EXT-X-MAP` changes there).
//!
//! Size: about 840 lines of code, the rest its unit tests: one sans-IO state machine (parts,
//! segments, the playlist and the blocking-reload rules) whose invariants are checked together.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::codec::{self, AudioCodec, VideoCodec};
use crate::flv;
use crate::fmp4::{self, AudioTrack, Run, Sample, VIDEO_TIMESCALE, VideoTrack};
use crate::frame::{AudioFrame, MediaFrame, VideoFrame};

/// AAC samples per frame.
const AAC_FRAME: u64 = 1024;

/// AAC frames held while no video frame closes a part (about 10 s at 48 kHz).
const MAX_QUEUED_AUDIO: usize = 470;

/// Part and segment lengths of the LL output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LlLimits {
    pub part_target: Duration,
    pub segment_target: Duration,
    /// The longest segment: `EXT-X-TARGETDURATION`.
    pub segment_max: Duration,
}

/// What the packager made of a frame.
#[derive(Debug, Clone, PartialEq)]
pub enum LlOutput {
    /// A new init segment: it applies from the next part that starts a segment on.
    Init(Bytes),
    /// A finished part.
    Part(Part),
}

/// One finished part.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub bytes: Bytes,
    pub duration_ms: u32,
    /// Starts with an IDR: a player may start decoding here.
    pub independent: bool,
    /// Opens a new segment.
    pub starts_segment: bool,
}

/// A frame waiting for its part: its NAL units or AAC frame are the publisher's own bytes (a
/// slice of the frame's `Bytes`, no copy); they are copied once, into the part.
struct PendingVideo {
    dts_ms: u64,
    cts_ms: i32,
    idr: bool,
    data: Bytes,
}

struct PendingAudio {
    /// On the sample clock.
    time: u64,
    dts_ms: u64,
    data: Bytes,
}

/// Frames → CMAF parts. Feed every frame of a publisher from its first IDR on (earlier frames
/// are ignored, except the decoder configurations).
pub struct LlPackager {
    part_target_ms: u64,
    segment_target_ms: u64,
    segment_max_ms: u64,
    timeline_start_ms: u64,
    first_dts_ms: Option<u64>,
    /// The publisher DTS at `timeline_start_ms` (its first IDR unless set).
    origin_ms: Option<u64>,
    avcc: Option<Vec<u8>>,
    nal_length_size: usize,
    asc: Option<(Vec<u8>, codec::AacConfig)>,
    /// Whether the init segment in use has an audio track.
    audio_in_init: bool,
    saw_audio: bool,
    /// The decoder configuration changed: a new init at the next IDR.
    init_stale: bool,
    sequence: u32,
    // The open part.
    part_start_ms: u64,
    segment_start_ms: u64,
    part_independent: bool,
    part_starts_segment: bool,
    video: Vec<PendingVideo>,
    audio: VecDeque<PendingAudio>,
    audio_clock: Option<u64>,
    last_video_ms: u64,
    last_audio_ms: Option<u64>,
    frame_interval_ms: u64,
    samples: Vec<Sample>,
    audio_samples: Vec<Sample>,
}

impl LlPackager {
    /// `timeline_start_ms`: where the first IDR goes on the session timeline.
    pub fn new(limits: LlLimits, timeline_start_ms: u64) -> LlPackager {
        let segment_target_ms = (limits.segment_target.as_millis() as u64).max(1);
        LlPackager {
            part_target_ms: (limits.part_target.as_millis() as u64).max(1),
            segment_target_ms,
            segment_max_ms: (limits.segment_max.as_millis() as u64).max(segment_target_ms),
            timeline_start_ms,
            first_dts_ms: None,
            origin_ms: None,
            avcc: None,
            nal_length_size: 4,
            asc: None,
            audio_in_init: false,
            saw_audio: false,
            init_stale: true,
            sequence: 0,
            part_start_ms: 0,
            segment_start_ms: 0,
            part_independent: false,
            part_starts_segment: false,
            video: Vec::new(),
            audio: VecDeque::new(),
            audio_clock: None,
            last_video_ms: 0,
            last_audio_ms: None,
            frame_interval_ms: 33,
            samples: Vec::new(),
            audio_samples: Vec::new(),
        }
    }

    /// Put `timeline_start_ms` at this publisher DTS rather than at the first IDR (a packager
    /// started in the middle of a publish keeps the publisher's timeline).
    pub fn set_origin(&mut self, dts_ms: u64) {
        self.origin_ms = Some(dts_ms);
    }

    /// Whether the first IDR arrived (parts are being made).
    pub fn started(&self) -> bool {
        self.first_dts_ms.is_some()
    }

    /// Feed one frame; what it finished is appended to `out`. Frames of codecs other than
    /// H.264 and AAC, and metadata, are ignored.
    pub fn push(&mut self, frame: &MediaFrame, out: &mut Vec<LlOutput>) {
        match frame {
            MediaFrame::Video(v) if v.codec == VideoCodec::H264 => self.video(v, out),
            MediaFrame::Audio(a) => self.audio(a),
            _ => {}
        }
    }

    /// The publisher is gone: the open part is finished (its last frame lasts one frame
    /// interval).
    pub fn finish(&mut self, out: &mut Vec<LlOutput>) {
        if self.video.is_empty() {
            return;
        }
        let end = self.last_video_ms + self.frame_interval_ms;
        self.close_part(end, out);
    }

    fn video(&mut self, v: &VideoFrame, out: &mut Vec<LlOutput>) {
        let Ok(tag) = flv::parse_video(&v.data) else {
            return;
        };
        let body = v.data.get(tag.payload_offset..).unwrap_or_default();
        if v.sequence_header {
            if let Ok(config) = codec::parse_avc_config(body) {
                if self.avcc.as_deref() != Some(body) {
                    self.avcc = Some(body.to_vec());
                    self.init_stale = true;
                }
                self.nal_length_size = usize::from(config.nal_length_size);
            }
            return;
        }
        if tag.packet != flv::VideoPacket::Frame || body.is_empty() || self.avcc.is_none() {
            return;
        }
        let idr = codec::avc_has_idr(body, self.nal_length_size);
        let Some(_) = self.first_dts_ms else {
            if !idr {
                return;
            }
            self.first_dts_ms = Some(v.dts_ms);
            self.last_video_ms = v.dts_ms;
            self.segment_start_ms = v.dts_ms;
            self.emit_init(out);
            self.open_part(v.dts_ms, true, true);
            self.add_video(v, tag.payload_offset, v.dts_ms, true);
            return;
        };
        // Equal or backwards DTS: just after the last one (as the TS packager repairs).
        let dts = v.dts_ms.max(self.last_video_ms + 1);
        let gap = dts - self.last_video_ms;
        if gap < 1_000 {
            self.frame_interval_ms = gap;
        }
        let seg_elapsed = dts.saturating_sub(self.segment_start_ms);
        let new_segment = if idr {
            seg_elapsed >= self.segment_target_ms - self.segment_target_ms / 20
        } else {
            seg_elapsed + self.frame_interval_ms > self.segment_max_ms
        };
        // With this frame the part would last until about dts + one interval.
        let part_full = dts + self.frame_interval_ms - self.part_start_ms > self.part_target_ms;
        self.last_video_ms = dts;
        if new_segment || part_full || (idr && self.init_stale) {
            let new_segment = new_segment || (idr && self.init_stale);
            self.close_part(dts, out);
            if new_segment {
                self.segment_start_ms = dts;
                if self.init_stale && idr {
                    self.emit_init(out);
                }
            }
            self.open_part(dts, idr, new_segment);
        }
        self.add_video(v, tag.payload_offset, dts, idr);
    }

    fn audio(&mut self, a: &AudioFrame) {
        if a.codec != AudioCodec::Aac {
            return;
        }
        self.saw_audio = true;
        let Ok(tag) = flv::parse_audio(&a.data) else {
            return;
        };
        let body = a.data.get(tag.payload_offset..).unwrap_or_default();
        if a.sequence_header {
            if let Ok(config) = codec::parse_aac_config(body)
                && self.asc.as_ref().map(|(b, _)| b.as_slice()) != Some(body)
            {
                self.asc = Some((body.to_vec(), config));
                self.init_stale = true;
            }
            return;
        }
        let (Some(first), Some((_, config)), true) =
            (self.first_dts_ms, &self.asc, self.audio_in_init)
        else {
            return;
        };
        if body.is_empty() || body.len() > 8_000 || a.dts_ms < first {
            return;
        }
        let dts = match self.last_audio_ms {
            Some(last) if a.dts_ms <= last => last + 1,
            _ => a.dts_ms,
        };
        self.last_audio_ms = Some(dts);
        let rate = u64::from(config.sample_rate.max(1));
        let actual = self.timeline(dts) * rate / 1000;
        let time = match self.audio_clock {
            Some(expected) if expected.abs_diff(actual) < AAC_FRAME / 2 => expected,
            _ => actual,
        };
        self.audio_clock = Some(time + AAC_FRAME);
        // Parts are cut by video frames: a publisher whose video stopped must not make the
        // audio queue grow without end (a part holds a fraction of a second; keep ~10 s).
        if self.audio.len() >= MAX_QUEUED_AUDIO {
            let drop = self.audio.len() / 2;
            self.audio.drain(..drop);
        }
        self.audio.push_back(PendingAudio {
            time,
            dts_ms: dts,
            data: a.data.slice(tag.payload_offset..),
        });
    }

    fn timeline(&self, dts_ms: u64) -> u64 {
        let origin = self.origin_ms.or(self.first_dts_ms).unwrap_or(dts_ms);
        (self.timeline_start_ms + dts_ms).saturating_sub(origin)
    }

    fn emit_init(&mut self, out: &mut Vec<LlOutput>) {
        let Some(avcc) = &self.avcc else { return };
        let (width, height) = sps_size(avcc).unwrap_or((0, 0));
        let video = VideoTrack {
            avcc: avcc.clone(),
            width,
            height,
        };
        // Audio is in the init if the publisher sent its configuration by the first IDR.
        let audio = self
            .asc
            .as_ref()
            .filter(|_| self.saw_audio)
            .map(|(asc, c)| AudioTrack {
                asc: asc.clone(),
                sample_rate: c.sample_rate,
                channels: c.channels,
            });
        self.audio_in_init = audio.is_some();
        self.init_stale = false;
        out.push(LlOutput::Init(Bytes::from(fmp4::init_segment(
            &video,
            audio.as_ref(),
        ))));
    }

    fn open_part(&mut self, dts_ms: u64, independent: bool, starts_segment: bool) {
        self.part_start_ms = dts_ms;
        self.part_independent = independent;
        self.part_starts_segment = starts_segment;
    }

    fn add_video(&mut self, v: &VideoFrame, payload: usize, dts_ms: u64, idr: bool) {
        self.video.push(PendingVideo {
            dts_ms,
            cts_ms: v.cts_ms,
            idr,
            data: v.data.slice(payload..),
        });
    }

    /// Write the open part, which ends at `end_ms` (the next part's first frame). Audio that
    /// starts before there goes with it.
    fn close_part(&mut self, end_ms: u64, out: &mut Vec<LlOutput>) {
        let Some(first) = self.video.first() else {
            return;
        };
        let base_ms = first.dts_ms;
        self.samples.clear();
        for (i, f) in self.video.iter().enumerate() {
            let next = self.video.get(i + 1).map_or(end_ms, |n| n.dts_ms);
            self.samples.push(Sample {
                duration: ((next - f.dts_ms) * 90) as u32,
                size: f.data.len() as u32,
                cts_offset: f.cts_ms.max(0).saturating_mul(90),
                sync: f.idr,
            });
        }
        let video_data: Vec<&[u8]> = self.video.iter().map(|f| &f.data[..]).collect();
        let video = Run {
            base_decode_time: self.timeline(base_ms) * u64::from(VIDEO_TIMESCALE / 1000),
            samples: &self.samples,
            data: &video_data,
        };
        // Audio frames that start before the part's end.
        let take = self.audio.iter().take_while(|a| a.dts_ms < end_ms).count();
        self.audio_samples.clear();
        let mut audio_bytes = 0;
        let mut audio_base = 0;
        for i in 0..take {
            let a = &self.audio[i];
            if i == 0 {
                audio_base = a.time;
            }
            let next = self.audio.get(i + 1).map_or(a.time + AAC_FRAME, |n| n.time);
            self.audio_samples.push(Sample {
                duration: next.saturating_sub(a.time).max(1) as u32,
                size: a.data.len() as u32,
                cts_offset: 0,
                sync: true,
            });
            audio_bytes += a.data.len();
        }
        let audio_data: Vec<&[u8]> = self.audio.iter().take(take).map(|a| &a.data[..]).collect();
        let audio = (take > 0).then(|| Run {
            base_decode_time: audio_base,
            samples: &self.audio_samples,
            data: &audio_data,
        });
        self.sequence = self.sequence.wrapping_add(1);
        let video_bytes: usize = video_data.iter().map(|d| d.len()).sum();
        let mut bytes = Vec::with_capacity(video_bytes + audio_bytes + 512);
        fmp4::write_fragment(&mut bytes, self.sequence, video, audio);
        out.push(LlOutput::Part(Part {
            bytes: Bytes::from(bytes),
            // A pause in the publisher's timestamps is not media: never more than the target
            // (RFC 8216bis: no part longer than PART-TARGET).
            duration_ms: (end_ms - base_ms).min(self.part_target_ms) as u32,
            independent: self.part_independent,
            starts_segment: self.part_starts_segment,
        }));
        drop(video_data);
        drop(audio_data);
        self.video.clear();
        self.audio.drain(..take);
    }
}

/// The picture size from the first SPS of an AVCDecoderConfigurationRecord.
fn sps_size(avcc: &[u8]) -> Option<(u32, u32)> {
    let count = *avcc.get(5)? & 0x1F;
    if count == 0 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([*avcc.get(6)?, *avcc.get(7)?]));
    let sps = crate::sps::parse(avcc.get(8..8 + len)?)?;
    Some((sps.width, sps.height))
}

// --- The playlist --------------------------------------------------------------------------

/// One part as the playlist keeps it.
#[derive(Debug, Clone)]
struct ListedPart {
    duration_ms: u32,
    independent: bool,
    bytes: Bytes,
}

#[derive(Debug, Clone)]
struct ListedSegment {
    msn: u64,
    init: u64,
    discontinuity: bool,
    program_date_time: OffsetDateTime,
    parts: Vec<ListedPart>,
    /// All its parts are in: it is listed with `#EXTINF` and served whole (its parts back to
    /// back, never copied into one buffer).
    complete: bool,
    duration_ms: u64,
}

impl ListedSegment {
    fn complete(&self) -> bool {
        self.complete
    }
}

/// Settings of an LL playlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LlPlaylistConfig {
    pub part_target_ms: u64,
    /// `EXT-X-TARGETDURATION`, in whole seconds (the segment maximum rounded up).
    pub target_duration_s: u64,
    /// Complete segments listed (at least what delta updates need: `CAN-SKIP-UNTIL` plus two).
    pub window: usize,
}

impl LlPlaylistConfig {
    pub fn new(limits: LlLimits, window: usize) -> LlPlaylistConfig {
        let target_duration_s = limits.segment_max.as_secs_f64().ceil().max(1.0) as u64;
        let segment_s = limits.segment_target.as_secs_f64().max(0.1);
        // Delta updates skip what is older than six target durations: list a little more.
        let for_skip = ((6 * target_duration_s) as f64 / segment_s).ceil() as usize + 2;
        LlPlaylistConfig {
            part_target_ms: (limits.part_target.as_millis() as u64).max(1),
            target_duration_s,
            window: window.max(for_skip),
        }
    }

    fn skip_until_ms(&self) -> u64 {
        6 * self.target_duration_s * 1000
    }

    /// The longest a blocking request waits (three target durations, RFC 8216bis §6.2.5.2).
    pub fn block_limit(&self) -> Duration {
        Duration::from_secs(3 * self.target_duration_s)
    }
}

/// Whether a blocking playlist request can be answered ([`LlPlaylist::readiness`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Not yet: wait for the next change.
    Wait,
    /// The request is too far ahead or malformed (400).
    TooFar,
}

/// A part or segment request ([`LlPlaylist::part`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Ready(Bytes),
    /// Not made yet but due soon (the preload hint or just after): wait for it.
    Soon,
    /// Never made, or gone.
    Missing,
}

/// The LL playlist of one live session.
#[derive(Debug)]
pub struct LlPlaylist {
    config: LlPlaylistConfig,
    segments: VecDeque<ListedSegment>,
    inits: VecDeque<(u64, Bytes)>,
    next_init: u64,
    next_msn: u64,
    discontinuity_sequence: u64,
    pending_discontinuity: bool,
    ended: bool,
}

/// Where an LL playlist stopped ([`LlPlaylist::resume_point`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LlResumePoint {
    pub next_msn: u64,
    pub discontinuity_sequence: u64,
    pub next_init: u64,
}

impl LlPlaylist {
    pub fn new(config: LlPlaylistConfig) -> LlPlaylist {
        LlPlaylist {
            config,
            segments: VecDeque::new(),
            inits: VecDeque::new(),
            next_init: 0,
            next_msn: 0,
            discontinuity_sequence: 0,
            pending_discontinuity: false,
            ended: false,
        }
    }

    pub fn config(&self) -> &LlPlaylistConfig {
        &self.config
    }

    /// Where a playlist continuing this one (on another node) starts: numbering (segments,
    /// init sections) goes on, so no URI names other bytes than it did here.
    pub fn resume_point(&self) -> LlResumePoint {
        LlResumePoint {
            next_msn: self.next_msn,
            discontinuity_sequence: self.discontinuity_sequence
                + self.segments.iter().filter(|s| s.discontinuity).count() as u64,
            next_init: self.next_init,
        }
    }

    /// Go on from another playlist's [`LlResumePoint`]; the first segment follows a
    /// discontinuity. For a new, empty playlist. The break is counted in
    /// `EXT-X-DISCONTINUITY-SEQUENCE` rather than tagged: this playlist never renders a tag on
    /// its first segment.
    pub fn continue_from(&mut self, from: LlResumePoint) {
        self.next_msn = from.next_msn;
        self.discontinuity_sequence = from.discontinuity_sequence + u64::from(from.next_msn > 0);
        self.next_init = from.next_init;
        self.pending_discontinuity = false;
    }

    /// Take a packager's output; `now` stamps a new segment's `EXT-X-PROGRAM-DATE-TIME`.
    pub fn apply(&mut self, output: LlOutput, now: OffsetDateTime) {
        match output {
            LlOutput::Init(bytes) => {
                self.inits.push_back((self.next_init, bytes));
                self.next_init += 1;
            }
            LlOutput::Part(part) => self.push_part(part, now),
        }
    }

    fn push_part(&mut self, part: Part, now: OffsetDateTime) {
        self.ended = false;
        let open = self.segments.back().is_some_and(|s| !s.complete());
        if part.starts_segment || !open {
            self.complete_open();
            let init = self.next_init.saturating_sub(1);
            self.segments.push_back(ListedSegment {
                msn: self.next_msn,
                init,
                discontinuity: std::mem::take(&mut self.pending_discontinuity),
                program_date_time: now,
                parts: Vec::new(),
                complete: false,
                duration_ms: 0,
            });
            self.next_msn += 1;
            self.evict();
        }
        if let Some(seg) = self.segments.back_mut() {
            seg.duration_ms += u64::from(part.duration_ms);
            seg.parts.push(ListedPart {
                duration_ms: part.duration_ms,
                independent: part.independent,
                bytes: part.bytes,
            });
        }
    }

    /// The open segment is complete (its publisher ended, or the next segment starts).
    fn complete_open(&mut self) {
        if let Some(seg) = self.segments.back_mut() {
            seg.complete = true;
        }
    }

    fn evict(&mut self) {
        while self.segments.len() > self.config.window + 1 {
            if let Some(old) = self.segments.pop_front()
                && old.discontinuity
            {
                self.discontinuity_sequence += 1;
            }
        }
        let oldest = self.segments.front().map_or(u64::MAX, |s| s.init);
        while self.inits.len() > 1 && self.inits.front().is_some_and(|(id, _)| *id < oldest) {
            self.inits.pop_front();
        }
    }

    /// The publisher ended: its last segment is complete; the next publisher's first
    /// segment follows a discontinuity.
    pub fn publisher_ended(&mut self) {
        self.complete_open();
        if !self.segments.is_empty() {
            self.pending_discontinuity = true;
        }
    }

    /// Nobody watches the LL output any more: its segments go (memory), numbering goes on.
    pub fn clear(&mut self) {
        for seg in self.segments.drain(..) {
            if seg.discontinuity {
                self.discontinuity_sequence += 1;
            }
        }
        if self.next_msn > 0 {
            self.pending_discontinuity = true;
        }
    }

    /// The session is over: `EXT-X-ENDLIST`.
    pub fn end(&mut self) {
        self.complete_open();
        self.ended = true;
    }

    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Enough to start any player: a complete segment. (hls.js would start from parts alone,
    /// but a player without LL support — GStreamer's legacy `hlsdemux`, ffmpeg — refuses a
    /// playlist without one segment as invalid.)
    ///
    /// And the open segment has three parts (`PART-HOLD-BACK`): a player in low-latency mode
    /// then starts in the open segment's parts. Started inside the complete one, hls.js loads
    /// that segment whole and then its parts again, and the overlapping appends make the
    /// browser drop the rest of the GOP from its buffer: a stall at every start.
    pub fn is_playable(&self) -> bool {
        self.segments.iter().any(ListedSegment::complete)
            && self
                .segments
                .back()
                .is_some_and(|s| s.complete() || s.parts.len() >= 3)
    }

    /// The last part listed: (msn, part index).
    fn last_part(&self) -> Option<(u64, usize)> {
        let seg = self.segments.back()?;
        Some((seg.msn, seg.parts.len().checked_sub(1)?))
    }

    /// Whether a blocking request for `_HLS_msn=msn` (and `_HLS_part=part`) can be answered.
    pub fn readiness(&self, msn: u64, part: Option<u64>) -> Readiness {
        if self.ended {
            return Readiness::Ready;
        }
        let Some(last) = self.segments.back() else {
            // Nothing yet: the first request of a stream waits for its first parts.
            return if msn <= self.next_msn + 2 {
                Readiness::Wait
            } else {
                Readiness::TooFar
            };
        };
        // §6.2.5.2: more than two segments ahead of the last one is a bad request.
        if msn > last.msn + 2 {
            return Readiness::TooFar;
        }
        match part {
            None => {
                let complete = self
                    .segments
                    .iter()
                    .rev()
                    .find(|s| s.complete())
                    .map(|s| s.msn);
                if complete.is_some_and(|c| c >= msn) {
                    Readiness::Ready
                } else {
                    Readiness::Wait
                }
            }
            Some(p) => {
                let Some((lm, lp)) = self.last_part() else {
                    return Readiness::Wait;
                };
                // A part of `msn` at or after `p`, or any part of a later segment.
                let have = lm > msn || (lm == msn && lp as u64 >= p);
                let too_far = lm == msn && p > lp as u64 + 3 + self.parts_per_segment();
                match (have, too_far) {
                    (true, _) => Readiness::Ready,
                    (false, true) => Readiness::TooFar,
                    (false, false) => Readiness::Wait,
                }
            }
        }
    }

    fn parts_per_segment(&self) -> u64 {
        (self.config.target_duration_s * 1000).div_ceil(self.config.part_target_ms)
    }

    /// A part's bytes; `Soon` for the part the preload hint names (or the few after it).
    pub fn part(&self, msn: u64, index: u64) -> Lookup {
        if let Some(seg) = self.segments.iter().find(|s| s.msn == msn) {
            if let Some(p) = seg.parts.get(index as usize) {
                return Lookup::Ready(p.bytes.clone());
            }
            if !seg.complete() && !self.ended && index < seg.parts.len() as u64 + 3 {
                return Lookup::Soon;
            }
            return Lookup::Missing;
        }
        // The first part of the next segment is hinted at the end of a segment.
        if !self.ended && msn == self.next_msn && index < 3 {
            return Lookup::Soon;
        }
        Lookup::Missing
    }

    /// A complete segment: its parts, to be sent back to back.
    pub fn segment(&self, msn: u64) -> Option<Vec<Bytes>> {
        self.segments
            .iter()
            .find(|s| s.msn == msn && s.complete)
            .map(|s| s.parts.iter().map(|p| p.bytes.clone()).collect())
    }

    pub fn init(&self, id: u64) -> Option<Bytes> {
        self.inits
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, b)| b.clone())
    }

    /// The playlist; `query` (e.g. `token=…`) goes on every URI, `skip` asks for a delta
    /// update (`_HLS_skip=YES`). URIs are relative: `{prefix}ll-…`.
    pub fn render(&self, prefix: &str, query: Option<&str>, skip: bool) -> String {
        let c = &self.config;
        let q = query.map(|q| format!("?{q}")).unwrap_or_default();
        let mut s = String::with_capacity(2048);
        let part_target = c.part_target_ms as f64 / 1000.0;
        let _ = write!(
            s,
            "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:{}\n\
             #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={:.1},PART-HOLD-BACK={:.3}\n\
             #EXT-X-PART-INF:PART-TARGET={:.3}\n#EXT-X-MEDIA-SEQUENCE:{}\n",
            c.target_duration_s,
            c.skip_until_ms() as f64 / 1000.0,
            part_target * 3.0,
            part_target,
            self.segments.front().map_or(self.next_msn, |s| s.msn),
        );
        if self.discontinuity_sequence > 0 {
            let _ = writeln!(
                s,
                "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
                self.discontinuity_sequence
            );
        }
        // Delta update: complete segments that end before the skip boundary are left out.
        let total: u64 = self.segments.iter().map(|s| s.duration_ms).sum();
        let mut skipped = 0;
        if skip {
            let mut start = 0;
            for seg in &self.segments {
                let end = start + seg.duration_ms;
                // Only complete segments that end before the skip boundary.
                if !seg.complete() || total - end < c.skip_until_ms() {
                    break;
                }
                start = end;
                skipped += 1;
            }
            // A skip that leaves the playlist without its newest segments is never made.
            if skipped > 0 {
                let _ = writeln!(s, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
            }
        }
        // Parts are listed for the segments within three target durations of the end.
        let mut from_end = 0;
        let mut parts_from = self.segments.len();
        for (i, seg) in self.segments.iter().enumerate().rev() {
            if from_end >= 3 * c.target_duration_s * 1000 {
                break;
            }
            parts_from = i;
            from_end += seg.duration_ms;
        }
        let mut init = None;
        for (i, seg) in self.segments.iter().enumerate().skip(skipped) {
            if seg.discontinuity && i > 0 {
                s.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if init != Some(seg.init) {
                let _ = writeln!(s, "#EXT-X-MAP:URI=\"{prefix}ll-init-{}.mp4{q}\"", seg.init);
                init = Some(seg.init);
            }
            if let Ok(t) = seg.program_date_time.format(&Rfc3339) {
                let _ = writeln!(s, "#EXT-X-PROGRAM-DATE-TIME:{t}");
            }
            if i >= parts_from {
                for (n, p) in seg.parts.iter().enumerate() {
                    let _ = write!(
                        s,
                        "#EXT-X-PART:DURATION={:.3},URI=\"{prefix}ll-{}.{n}.m4s{q}\"",
                        f64::from(p.duration_ms) / 1000.0,
                        seg.msn
                    );
                    s.push_str(if p.independent {
                        ",INDEPENDENT=YES\n"
                    } else {
                        "\n"
                    });
                }
            }
            if seg.complete() {
                let _ = writeln!(
                    s,
                    "#EXTINF:{:.3},\n{prefix}ll-{}.m4s{q}",
                    seg.duration_ms as f64 / 1000.0,
                    seg.msn
                );
            }
        }
        if self.ended {
            s.push_str("#EXT-X-ENDLIST\n");
        } else if let Some((msn, index)) = self.hint() {
            let _ = writeln!(
                s,
                "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{prefix}ll-{msn}.{index}.m4s{q}\""
            );
        }
        s
    }

    /// The part the preload hint names: the next of the open segment, or the first of the
    /// next segment when the last one is complete.
    fn hint(&self) -> Option<(u64, usize)> {
        let seg = self.segments.back()?;
        Some(if seg.complete() {
            (self.next_msn, 0)
        } else {
            (seg.msn, seg.parts.len())
        })
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::frame::samples::{aac, avc_header, video};

    fn limits() -> LlLimits {
        LlLimits {
            part_target: Duration::from_millis(200),
            segment_target: Duration::from_secs(2),
            segment_max: Duration::from_secs(4),
        }
    }

    /// 30 fps video with an IDR every 2 s, AAC at 44.1 kHz, for `seconds`; the outputs.
    fn publish(seconds: u64) -> Vec<LlOutput> {
        let mut p = LlPackager::new(limits(), 0);
        let mut out = Vec::new();
        p.push(&avc_header(), &mut out);
        p.push(&aac(0, true), &mut out);
        let frames = seconds * 30;
        let mut audio_ms = 0.0;
        for i in 0..frames {
            let t = i * 1000 / 30;
            while audio_ms <= t as f64 {
                p.push(&aac(audio_ms as u64, false), &mut out);
                audio_ms += 1024.0 * 1000.0 / 44_100.0;
            }
            p.push(&video(t, i % 60 == 0), &mut out);
        }
        p.finish(&mut out);
        out
    }

    fn parts(out: &[LlOutput]) -> Vec<&Part> {
        out.iter()
            .filter_map(|o| match o {
                LlOutput::Part(p) => Some(p),
                LlOutput::Init(_) => None,
            })
            .collect()
    }

    /// (track id, base decode time, sample durations) of each `traf` of a fragment.
    fn runs(frag: &[u8]) -> Vec<(u32, u64, Vec<u32>)> {
        let u32_at = |b: &[u8], i: usize| u32::from_be_bytes(b[i..i + 4].try_into().unwrap());
        let size = u32_at(frag, 0) as usize;
        assert_eq!(&frag[4..8], b"moof");
        let mut out = Vec::new();
        let mut pos = 8;
        while pos < size {
            let len = u32_at(frag, pos) as usize;
            if &frag[pos + 4..pos + 8] == b"traf" {
                let traf = &frag[pos + 8..pos + len];
                let track = u32_at(traf, 12);
                // tfhd (16 bytes), tfdt (20 bytes, version 1), trun.
                let base = u64::from_be_bytes(traf[16 + 12..16 + 20].try_into().unwrap());
                let trun = &traf[36..];
                let count = u32_at(trun, 12) as usize;
                let video = track == 1;
                let stride = if video { 16 } else { 8 };
                let durations = (0..count).map(|i| u32_at(trun, 20 + i * stride)).collect();
                out.push((track, base, durations));
            }
            pos += len;
        }
        out
    }

    #[test]
    fn parts_stay_within_the_target_and_segments_start_at_idrs() {
        let out = publish(10);
        assert!(matches!(out[0], LlOutput::Init(_)), "the init comes first");
        let parts = parts(&out);
        assert!(
            parts.iter().all(|p| p.duration_ms <= 200),
            "no part longer than PART-TARGET"
        );
        let short = parts.iter().filter(|p| p.duration_ms < 150).count();
        assert!(
            short <= parts.len() / 10,
            "{short} of {} parts are short",
            parts.len()
        );
        let starts: Vec<usize> = (0..parts.len())
            .filter(|&i| parts[i].starts_segment)
            .collect();
        assert_eq!(starts.len(), 5, "a segment every 2 s IDR");
        for &i in &starts {
            assert!(parts[i].independent, "segment {i} starts with an IDR");
        }
        let independent = parts.iter().filter(|p| p.independent).count();
        assert_eq!(independent, 5);
        let total: u32 = parts.iter().map(|p| p.duration_ms).sum();
        assert!((9_990..=10_010).contains(&total), "{total} ms of media");
    }

    #[test]
    fn every_sample_is_in_exactly_one_part_on_a_gapless_clock() {
        let out = publish(6);
        let mut video_end = 0;
        let mut audio_end = None;
        let mut video_samples = 0;
        for part in parts(&out) {
            for (track, base, durations) in runs(&part.bytes) {
                let sum: u64 = durations.iter().map(|&d| u64::from(d)).sum();
                if track == 1 {
                    assert_eq!(base, video_end, "video continues where the last part ended");
                    video_end = base + sum;
                    video_samples += durations.len();
                } else {
                    if let Some(end) = audio_end {
                        assert_eq!(base, end, "audio has no gap or overlap");
                    }
                    assert!(durations.iter().all(|&d| d == 1024), "{durations:?}");
                    audio_end = Some(base + sum);
                }
            }
        }
        assert_eq!(video_samples, 180);
        // 6 s at 90 kHz, give or take the last frame's interval.
        assert!(video_end.abs_diff(540_000) <= 3_000, "{video_end}");
        let audio_s = audio_end.unwrap() as f64 / 44_100.0;
        assert!((audio_s - 6.0).abs() < 0.05, "{audio_s} s of audio");
    }

    #[test]
    fn audio_without_video_is_bounded() {
        let mut p = LlPackager::new(limits(), 0);
        let mut out = Vec::new();
        p.push(&avc_header(), &mut out);
        p.push(&aac(0, true), &mut out);
        p.push(&video(0, true), &mut out);
        // The camera stops; the microphone goes on for a minute.
        for i in 0..2_600 {
            p.push(&aac(i * 23, false), &mut out);
        }
        assert!(p.audio.len() <= MAX_QUEUED_AUDIO, "{}", p.audio.len());
        // Video comes back: the part is written with the audio that was kept, well formed.
        p.push(&video(60_000, false), &mut out);
        p.push(&video(60_033, false), &mut out);
        p.finish(&mut out);
        for part in parts(&out) {
            check_fragment(&part.bytes);
        }
    }

    #[test]
    fn a_new_configuration_starts_a_segment_with_a_new_init() {
        let mut p = LlPackager::new(limits(), 0);
        let mut out = Vec::new();
        p.push(&avc_header(), &mut out);
        for i in 0..20 {
            p.push(&video(i * 33, i == 0), &mut out);
        }
        // A resolution change: new parameter sets, then an IDR before the segment target.
        let MediaFrame::Video(mut header) = avc_header() else {
            unreachable!()
        };
        let mut data = header.data.to_vec();
        data[11] = 0x28; // level_idc in the SPS
        header.data = Bytes::from(data);
        p.push(&MediaFrame::Video(header), &mut out);
        p.push(&video(660, true), &mut out);
        p.push(&video(693, false), &mut out);
        p.finish(&mut out);
        let inits = out
            .iter()
            .filter(|o| matches!(o, LlOutput::Init(_)))
            .count();
        assert_eq!(inits, 2);
        let last_init = out
            .iter()
            .rposition(|o| matches!(o, LlOutput::Init(_)))
            .unwrap();
        let LlOutput::Part(next) = &out[last_init + 1] else {
            panic!("a part follows the init")
        };
        assert!(next.starts_segment && next.independent);
    }

    fn playlist_with(parts_per_segment: &[usize]) -> LlPlaylist {
        let mut p = LlPlaylist::new(LlPlaylistConfig::new(limits(), 6));
        feed(&mut p, parts_per_segment);
        p
    }

    /// An init section, then segments of the given numbers of 200 ms parts.
    fn feed(p: &mut LlPlaylist, parts_per_segment: &[usize]) {
        let now = OffsetDateTime::UNIX_EPOCH;
        p.apply(LlOutput::Init(Bytes::from_static(b"init")), now);
        for &n in parts_per_segment {
            for i in 0..n {
                p.apply(
                    LlOutput::Part(Part {
                        bytes: Bytes::from(vec![i as u8]),
                        duration_ms: 200,
                        independent: i == 0,
                        starts_segment: i == 0,
                    }),
                    now,
                );
            }
        }
    }

    #[test]
    fn a_continued_ll_playlist_numbers_segments_and_inits_after_the_old_ones() {
        let old = playlist_with(&[10, 10, 4]);
        let at = old.resume_point();
        assert_eq!((at.next_msn, at.next_init), (3, 1));
        let mut new = LlPlaylist::new(LlPlaylistConfig::new(limits(), 6));
        new.continue_from(at);
        feed(&mut new, &[10]);
        let text = new.render("s/", None, false);
        // No URI the old playlist used names other bytes here: init 1, segment 3 on.
        assert!(text.contains("ll-init-1.mp4"), "{text}");
        assert!(!text.contains("ll-init-0.mp4"), "{text}");
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:3\n"), "{text}");
        // A player that knew the old playlist (discontinuity sequence 0) sees the break.
        assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"), "{text}");
    }

    #[test]
    fn a_first_playlist_waits_for_a_whole_segment_and_three_parts_after_it() {
        assert!(!playlist_with(&[7]).is_playable(), "parts only");
        assert!(
            !playlist_with(&[10, 2]).is_playable(),
            "the edge is inside the complete one"
        );
        assert!(playlist_with(&[10, 3]).is_playable());
        let mut ended = playlist_with(&[10, 1]);
        ended.publisher_ended();
        assert!(ended.is_playable(), "a complete last segment");
    }

    #[test]
    fn the_playlist_lists_parts_hints_the_next_and_carries_the_token() {
        // Three complete segments of 10 parts, the fourth with 3 parts so far.
        let p = playlist_with(&[10, 10, 10, 3]);
        let text = p.render("s/", Some("token=t"), false);
        assert!(text.starts_with("#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:4\n"));
        assert!(text.contains(
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=24.0,PART-HOLD-BACK=0.600\n"
        ));
        assert!(text.contains("#EXT-X-PART-INF:PART-TARGET=0.200\n"));
        assert!(text.contains("#EXT-X-MAP:URI=\"s/ll-init-0.mp4?token=t\"\n"));
        assert!(text.contains("#EXTINF:2.000,\ns/ll-2.m4s?token=t\n"));
        assert!(
            text.contains(
                "#EXT-X-PART:DURATION=0.200,URI=\"s/ll-3.0.m4s?token=t\",INDEPENDENT=YES\n"
            )
        );
        assert!(text.contains("#EXT-X-PART:DURATION=0.200,URI=\"s/ll-3.2.m4s?token=t\"\n"));
        assert!(text.ends_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"s/ll-3.3.m4s?token=t\"\n"));
        // Parts are listed for the last three target durations (12 s) only: all of these.
        assert_eq!(text.matches("#EXT-X-PART:").count(), 33);
        assert_eq!(p.part(3, 2), Lookup::Ready(Bytes::from(vec![2u8])));
        assert_eq!(p.part(3, 3), Lookup::Soon, "the hinted part is waited for");
        assert_eq!(p.part(3, 9), Lookup::Missing);
        assert_eq!(
            p.segment(1).map(|parts| parts.concat()),
            Some((0..10u8).collect::<Vec<_>>()),
            "a segment is its parts"
        );
        assert_eq!(p.segment(3), None, "the open segment is not served whole");
    }

    #[test]
    fn blocking_reload_follows_rfc_8216bis() {
        let p = playlist_with(&[10, 10, 4]);
        // The last part is 2.3; segment 1 is complete.
        assert_eq!(p.readiness(1, None), Readiness::Ready);
        assert_eq!(
            p.readiness(2, None),
            Readiness::Wait,
            "segment 2 is not complete"
        );
        assert_eq!(p.readiness(2, Some(3)), Readiness::Ready);
        assert_eq!(p.readiness(2, Some(4)), Readiness::Wait);
        assert_eq!(
            p.readiness(1, Some(15)),
            Readiness::Ready,
            "a later segment has parts"
        );
        assert_eq!(p.readiness(3, Some(0)), Readiness::Wait);
        assert_eq!(
            p.readiness(4, Some(0)),
            Readiness::Wait,
            "two segments ahead: still waits"
        );
        assert_eq!(
            p.readiness(5, None),
            Readiness::TooFar,
            "more than two ahead: 400"
        );
        let mut ended = p;
        ended.end();
        assert_eq!(
            ended.readiness(4, Some(0)),
            Readiness::Ready,
            "an ended playlist answers"
        );
        assert!(ended.render("", None, false).ends_with("#EXT-X-ENDLIST\n"));
    }

    #[test]
    fn delta_updates_skip_what_is_older_than_can_skip_until() {
        // 20 complete segments of 2 s and an open one: 40 s, CAN-SKIP-UNTIL 24 s.
        let p = playlist_with(&[10; 21]);
        let full = p.render("", None, false);
        let delta = p.render("", None, true);
        assert!(!full.contains("#EXT-X-SKIP"));
        // Segments ending at least 24 s before the end (40.2 s) are skipped: 0..=7.
        assert!(delta.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS="), "{delta}");
        let first_listed = p.segments.front().unwrap().msn;
        let skipped: u64 = delta
            .split("SKIPPED-SEGMENTS=")
            .nth(1)
            .and_then(|r| r.lines().next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        // The media sequence stays that of the first segment, skipped or not.
        assert!(delta.contains(&format!("#EXT-X-MEDIA-SEQUENCE:{first_listed}\n")));
        assert!(!delta.contains(&format!("\nll-{}.m4s", first_listed + skipped - 1)));
        assert!(delta.contains(&format!("\nll-{}.m4s", first_listed + skipped)));
        // What stays covers at least CAN-SKIP-UNTIL, and the init is named again.
        // (complete segments of 2 s, and the open one's 2 s of parts)
        let listed = delta.matches("#EXTINF:").count() as u64;
        assert!(
            listed * 2 + 2 >= 24 && (listed - 1) * 2 + 2 < 24,
            "{listed} segments left"
        );
        assert!(delta.contains("#EXT-X-MAP:"));
        assert!(delta.len() < full.len());
    }

    #[test]
    fn an_unwatched_output_is_cleared_and_comes_back_after_a_discontinuity() {
        let mut p = playlist_with(&[10, 10]);
        p.clear();
        assert!(!p.is_playable());
        assert_eq!(p.readiness(2, Some(0)), Readiness::Wait);
        p.apply(
            LlOutput::Part(Part {
                bytes: Bytes::from_static(b"x"),
                duration_ms: 200,
                independent: true,
                starts_segment: true,
            }),
            OffsetDateTime::UNIX_EPOCH,
        );
        let text = p.render("", None, false);
        assert!(
            text.contains("#EXT-X-MEDIA-SEQUENCE:2\n"),
            "numbering goes on: {text}"
        );
        assert!(text.contains("ll-2.0.m4s"));
    }
}

/// Fuzzing entry: bytes → frames (each `[kind][dts step][len: u16][body]`; kind bit 2 wraps the
/// body into a well-formed H.264 access unit, IDR when bit 3 is set, so deep paths are reached)
/// into an [`LlPackager`] and an [`LlPlaylist`]. Asserts that nothing panics, that every part is
/// one `moof` + `mdat` whose run offsets point inside it, that no part is longer than the
/// target, and that rendering and blocking checks hold up for any request.
#[doc(hidden)]
pub fn fuzz_llhls(data: &[u8]) {
    let limits = LlLimits {
        part_target: Duration::from_millis(100),
        segment_target: Duration::from_millis(300),
        segment_max: Duration::from_millis(600),
    };
    let mut packager = LlPackager::new(limits, 1_000);
    let mut playlist = LlPlaylist::new(LlPlaylistConfig::new(limits, 3));
    let mut out = Vec::new();
    let check = |out: &mut Vec<LlOutput>, playlist: &mut LlPlaylist| {
        for o in out.drain(..) {
            if let LlOutput::Part(p) = &o {
                assert!(u64::from(p.duration_ms) <= 100);
                check_fragment(&p.bytes);
            }
            playlist.apply(o, OffsetDateTime::UNIX_EPOCH);
        }
    };
    for (kind, dts, raw) in crate::frame::fuzz_records(data) {
        let frame = if kind & 4 != 0 {
            let idr = kind & 8 != 0;
            let mut body = vec![if idr { 0x17 } else { 0x27 }, 1, 0, 0, 0];
            body.extend_from_slice(&(raw.len() as u32 + 1).to_be_bytes());
            body.push(if idr { 0x65 } else { 0x41 });
            body.extend_from_slice(raw);
            MediaFrame::Video(VideoFrame {
                dts_ms: dts,
                cts_ms: i32::from(kind as i8 >> 4),
                keyframe: idr,
                sequence_header: false,
                codec: VideoCodec::H264,
                data: Bytes::from(body),
            })
        } else if kind & 1 == 0 {
            MediaFrame::Video(VideoFrame {
                dts_ms: dts,
                cts_ms: i32::from(kind as i8),
                keyframe: raw.first().is_some_and(|b| b >> 4 == 1),
                sequence_header: raw.get(1) == Some(&0),
                codec: VideoCodec::H264,
                data: Bytes::copy_from_slice(raw),
            })
        } else {
            MediaFrame::Audio(AudioFrame {
                dts_ms: dts,
                sequence_header: raw.get(1) == Some(&0),
                codec: AudioCodec::Aac,
                data: Bytes::copy_from_slice(raw),
            })
        };
        packager.push(&frame, &mut out);
        check(&mut out, &mut playlist);
        if kind == 0xFF {
            playlist.publisher_ended();
        }
    }
    packager.finish(&mut out);
    check(&mut out, &mut playlist);
    for skip in [false, true] {
        let text = playlist.render("s/", Some("token=x"), skip);
        assert!(text.starts_with("#EXTM3U\n"));
    }
    for msn in 0..8 {
        for part in [None, Some(0), Some(3), Some(50)] {
            let _ = playlist.readiness(msn, part);
            let _ = playlist.part(msn, part.unwrap_or(0));
        }
    }
    playlist.end();
    // An ended playlist answers every blocking request at once.
    assert_eq!(playlist.readiness(u64::MAX / 2, Some(0)), Readiness::Ready);
}

/// A fragment is one `moof` and one `mdat`, and each `trun`'s data lies inside the `mdat`.
fn check_fragment(b: &[u8]) {
    let be = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize;
    let moof = be(0);
    assert_eq!(&b[4..8], b"moof");
    assert_eq!(&b[moof + 4..moof + 8], b"mdat");
    assert_eq!(moof + be(moof), b.len());
    // Walk the trafs: each trun's data offset is after the mdat header and its samples fit.
    let mut pos = 8;
    while pos < moof {
        let len = be(pos);
        assert!(len >= 8 && pos + len <= moof);
        if &b[pos + 4..pos + 8] == b"traf" {
            let trun = pos + 8 + 16 + 20;
            assert_eq!(&b[trun + 4..trun + 8], b"trun");
            let flags = be(trun + 8) & 0xFFFFFF;
            let count = be(trun + 12);
            let offset = be(trun + 16);
            let stride = if flags & 0x800 != 0 { 16 } else { 8 };
            let size: usize = (0..count).map(|i| be(trun + 20 + i * stride + 4)).sum();
            assert!(offset >= moof + 8 && offset + size <= b.len());
        }
        pos += len;
    }
}

#[cfg(test)]
mod fuzz_smoke {
    /// The fuzz target's properties over pseudo-random inputs, so CI exercises it without
    /// cargo-fuzz: a valid AVC and AAC configuration first, then random frames.
    #[test]
    fn random_frames_make_well_formed_parts() {
        let mut next = crate::frame::samples::xorshift(0x9E37_79B9_7F4A_7C15u64);
        let header = crate::frame::samples::FUZZ_HEADER;
        for _ in 0..2_000 {
            let mut data = header.to_vec();
            for _ in 0..(next() % 80) {
                let kind = match next() % 10 {
                    0 => 0x0C,     // IDR
                    1 | 2 => 0x01, // audio
                    3 => next() as u8,
                    _ => 0x04, // a coded frame
                };
                let len = (next() % 40) as u16;
                data.extend_from_slice(&[kind, (next() % 70) as u8]);
                data.extend_from_slice(&len.to_be_bytes());
                data.extend((0..len).map(|_| next() as u8));
            }
            super::fuzz_llhls(&data);
        }
    }
}
